package zhimaq

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/batches"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/hosts"
	"github.com/zhimaq/zhimaq/internal/idempotency"
	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/results"
	"github.com/zhimaq/zhimaq/internal/seal"
	"github.com/zhimaq/zhimaq/internal/taskwire"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// ProducerConfig configures a Producer. Zero values mean the defaults.
type ProducerConfig struct {
	// AppID is the Alipay app a job is for when it names none (Job.AppID).
	// Required.
	AppID string
	// OtherAppIDs are the further apps jobs may name (the rest of
	// ZHIMA_APPS_FILE); a job naming any other app is rejected.
	OtherAppIDs []string
	// DataKeys seal each job's personal data before it enters Redis:
	// "id:base64-of-32-bytes,…", the first seals (DATA_KEYS). Required; the
	// value "plaintext" stores personal data in clear instead.
	DataKeys string
	// Queue is the asynq queue; default "zhimaq".
	Queue string
	// WaitReplicas, when above 0, is how many replicas must hold each claim
	// before Submit answers (REDIS_WAIT_REPLICAS), within WaitTimeout
	// (default 1s); fewer is an error, and the job may be submitted again.
	WaitReplicas int
	WaitTimeout  time.Duration
	// QueueShards spreads each app's batch jobs over that many queues
	// (ZHIMAQ_QUEUE_SHARDS; see the README's "Scaling out"); 0 means 1.
	// Workers must listen to at least as many.
	QueueShards int
	// DedupWindow is how long a transaction_id stays claimed; default 24h.
	DedupWindow time.Duration
	// ResultTTL is how long records stay readable; default 168h.
	ResultTTL time.Duration
	// KeyPrefix prefixes zhimaq's own Redis keys; default "zhimaq:".
	KeyPrefix string
	// CallbackHosts are the hosts a batch's CallbackURL may name, in
	// CALLBACK_HOSTS's form ("hooks.example.com,*.internal.example:8443");
	// "" allows any host with a public address. The workers check their own list again before
	// each delivery.
	CallbackHosts string
	// MaxBatchLines is the most lines one batch may hold (BATCH_MAX_LINES);
	// 0 (or less) means BATCH_MAX_LINES's default, 100,000. A line beyond it
	// fails with ErrTooManyLines, and its job is not submitted.
	MaxBatchLines int
	// Now is the clock; default time.Now.
	Now func() time.Time
	// OnDedup, when set, is told of each submission answered by
	// de-duplication: "duplicate", or "conflict" (TRANSACTION_ID_REPEAT).
	// It must not block.
	OnDedup func(method, outcome string)
}

// Producer submits jobs and reads their records. It is safe for concurrent use.
type Producer struct {
	cfg           ProducerConfig
	rdb           redis.UniversalClient
	keys          *seal.Keyring
	callbackHosts hosts.List
	results       *results.Store
	listed        sync.Map // queue name → true: it is in asynq:queues (a claim enqueued a task there)
	batches       *batches.Store
	queues        payload.QueueNames
}

// NewProducer returns a Producer that keeps its queue, claims and records in
// rdb. It does not close rdb.
func NewProducer(rdb redis.UniversalClient, cfg ProducerConfig) (*Producer, error) {
	if cfg.AppID == "" {
		return nil, errors.New("zhimaq: producer: AppID is required")
	}
	for _, id := range append([]string{cfg.AppID}, cfg.OtherAppIDs...) {
		if err := idempotency.ValidAppID(id); err != nil {
			return nil, errors.New("zhimaq: producer: an app id holds ':', a space or a control character")
		}
	}
	if cfg.DataKeys == "" {
		return nil, errors.New(`zhimaq: producer: DataKeys is required (or "plaintext" to keep personal data in clear)`)
	}
	keys, err := seal.Parse(cfg.DataKeys)
	if err != nil {
		return nil, fmt.Errorf("zhimaq: producer: DataKeys: %w", err)
	}
	hosts, err := hosts.Parse(cfg.CallbackHosts)
	if err != nil {
		return nil, fmt.Errorf("zhimaq: producer: CallbackHosts: %w", err)
	}
	if cfg.Queue == "" {
		cfg.Queue = config.Defaults.Queue
	}
	if cfg.DedupWindow == 0 {
		cfg.DedupWindow = config.Defaults.DedupWindow
	}
	if cfg.MaxBatchLines <= 0 {
		cfg.MaxBatchLines = config.Defaults.BatchMaxLines
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Producer{
		cfg:           cfg,
		rdb:           rdb,
		keys:          keys,
		callbackHosts: hosts,
		results:       results.New(rdb, cfg.KeyPrefix, cfg.ResultTTL).Durable(cfg.WaitReplicas, cmp.Or(cfg.WaitTimeout, config.Defaults.RedisWaitTimeout)),
		batches:       batches.New(rdb, cfg.KeyPrefix, cfg.ResultTTL),
		queues:        payload.QueueNames{Base: cfg.Queue, Apps: append([]string{cfg.AppID}, cfg.OtherAppIDs...), Shards: cfg.QueueShards},
	}, nil
}

// Close releases what the producer holds (nothing today: it enqueues
// through rdb itself); rdb stays open.
func (p *Producer) Close() error { return nil }

// Submit validates a job, claims its transaction_id and enqueues it. The
// submission's record is Queued for a new job; the first job's, with
// Duplicate set, for a repeat with the same parameters; Rejected for bad
// input or a transaction_id already used with other parameters (nothing is
// enqueued then). The error is non-nil only when Redis fails.
func (p *Producer) Submit(ctx context.Context, job Job) (*Submission, error) {
	return p.submit(ctx, prepare(job), "")
}

// preparedJob is a job decoded and validated once for its submission.
type preparedJob struct {
	job Job
	req zhima.Request // nil when err is set
	err error         // why the job is invalid: a *zhima.Error

	// biz_content parsed once, for the fingerprint and the field names;
	// parseErr when it is not one valid JSON value in UTF-8.
	parsed   idempotency.Parsed
	parseErr error

	// at, when set, is the time every try of the job claims it at (its
	// record's enqueued_at); retried: an earlier try failed, and may have
	// made the claim all the same (its answer lost, or too few replicas).
	at      time.Time
	retried bool
}

func prepare(job Job) preparedJob {
	pj := preparedJob{job: job}
	pj.parsed, pj.parseErr = idempotency.Parse(job.BizContent)
	pj.req, pj.err = payload.RequestNamed(job.Method, job.BizContent, pj.parsed.Names)
	return pj
}

// transaction is the job's transaction_id when it is a well-formed one.
func (pj preparedJob) transaction() string {
	if pj.err != nil {
		return transactionOf(pj.job.BizContent)
	}
	return pj.req.Transaction()
}

// submit is Submit for a job of batch batchID ("" for none): a record it
// creates carries batchID, and so does the submission.
func (p *Producer) submit(ctx context.Context, pj preparedJob, batchID string) (*Submission, error) {
	req, done, err := p.claimRequest(pj, batchID)
	if done != nil || err != nil {
		return done, err
	}
	// The claim, the first record and the task are written in one step.
	outcome, found, err := p.results.Claim(ctx, req.Key, req.Record, req.Claim)
	return p.answer(pj, req, outcome, found, err, batchID)
}

// submitMany is submit for many jobs of batch batchID, their claims made in
// one round trip. A job whose claim met a Redis failure gets a nil
// submission and its error, to be tried again.
func (p *Producer) submitMany(ctx context.Context, pjs []preparedJob, batchID string) ([]*Submission, []error) {
	subs, errs := make([]*Submission, len(pjs)), make([]error, len(pjs))
	reqs := make([]results.ClaimRequest, 0, len(pjs))
	at := make([]int, 0, len(pjs))
	for i, pj := range pjs {
		req, done, err := p.claimRequest(pj, batchID)
		if done != nil || err != nil {
			subs[i], errs[i] = done, err
			continue
		}
		reqs, at = append(reqs, req), append(at, i)
	}
	for n, r := range p.results.ClaimMany(ctx, reqs) {
		i := at[n]
		subs[i], errs[i] = p.answer(pjs[i], reqs[n], r.Outcome, r.Record, r.Err, batchID)
	}
	return subs, errs
}

// claimRequest is the claim a job makes, with its first record and its task;
// or the job's submission when it needs none (it is invalid).
func (p *Producer) claimRequest(pj preparedJob, batchID string) (results.ClaimRequest, *Submission, error) {
	job := pj.job
	if pj.err != nil {
		return results.ClaimRequest{}, &Submission{Record: rejection(job, pj.transaction(), pj.err), BatchID: batchID}, nil
	}
	key := idempotency.Key{AppID: cmp.Or(job.AppID, p.cfg.AppID), Method: job.Method, TransactionID: pj.req.Transaction()}
	if !p.serves(key.AppID) {
		return results.ClaimRequest{}, &Submission{Record: rejection(job, key.TransactionID,
			zhima.InvalidParameter(job.Method, "app_id: is not an app of this deployment (ZHIMA_APP_ID or ZHIMA_APPS_FILE)")), BatchID: batchID}, nil
	}
	lane, err := payload.ParseLane(job.Lane)
	if err != nil {
		return results.ClaimRequest{}, &Submission{Record: rejectionOf(job, key, zhima.InvalidParameter(job.Method, err.Error())), BatchID: batchID}, nil
	}
	if pj.parseErr != nil {
		return results.ClaimRequest{}, &Submission{Record: rejectionOf(job, key, zhima.InvalidParameter(job.Method, "biz_content: "+pj.parseErr.Error())), BatchID: batchID}, nil
	}
	fp := pj.parsed.Fingerprint(job.AppAuthToken)
	// With data keys, Redis holds a keyed digest of the fingerprint: a plain
	// hash of an ID number and a name could be matched against guesses.
	var previous []string
	if digests := p.keys.Digests([]byte(fp)); digests != nil {
		fp, previous = digests[0], digests[1:]
	}
	now := pj.at
	if now.IsZero() {
		now = p.now()
	}
	rec := &results.Record{AppID: key.AppID, Method: job.Method, TransactionID: key.TransactionID, State: results.Queued, EnqueuedAt: &now, UpdatedAt: now, BatchID: batchID}
	task, err := p.task(key, job, lane)
	if err != nil {
		return results.ClaimRequest{}, nil, fmt.Errorf("zhimaq: submit %s: %w", key, err)
	}
	return results.ClaimRequest{Key: key, Record: rec,
		Claim: results.Claim{Fingerprint: fp, Previous: previous, Window: p.cfg.DedupWindow, Now: now, Enqueue: task}}, nil, nil
}

// now is the producer's clock to the millisecond, as records keep it.
func (p *Producer) now() time.Time { return p.cfg.Now().UTC().Truncate(time.Millisecond) }

// answer is the submission of a job whose claim req came to outcome (the
// record found for a duplicate), or err when the claim failed.
func (p *Producer) answer(pj preparedJob, req results.ClaimRequest, outcome idempotency.Outcome, found *results.Record, err error, batchID string) (*Submission, error) {
	job, key := pj.job, req.Key
	if err != nil {
		return nil, fmt.Errorf("zhimaq: submit %s: claim: %w", key, err)
	}
	switch outcome {
	case idempotency.Conflict:
		p.dedup(job.Method, "conflict")
		return &Submission{Record: rejectionOf(job, key,
			zhima.TransactionIDRepeat(job.Method, "transaction_id was already used with other parameters within the window")), BatchID: batchID}, nil
	case idempotency.Duplicate:
		if pj.retried && found.BatchID == batchID && found.EnqueuedAt != nil && found.EnqueuedAt.Equal(req.Claim.Now) {
			// This job's own claim, made by a try whose answer was lost.
			return &Submission{Record: recordOf(found), BatchID: batchID}, nil
		}
		// The first job's record; its task was enqueued again if an earlier
		// producer's enqueue was lost.
		p.dedup(job.Method, "duplicate")
		return &Submission{Record: recordOf(found), Duplicate: true, BatchID: batchID}, nil
	case idempotency.Lapsed:
		// The claim has expired but the record of the first use lives on:
		// the gateway's one-day window for this transaction_id is over.
		return &Submission{Record: rejectionOf(job, key,
			zhima.TransactionIDExpired(job.Method, "transaction_id was first used more than the de-duplication window ago; use a new one")), BatchID: batchID}, nil
	}
	p.listed.Store(req.Claim.Enqueue.Queue, true)
	return &Submission{Record: recordOf(req.Record), BatchID: batchID}, nil
}

// task is the job's task for lane, its payload sealed.
func (p *Producer) task(key idempotency.Key, job Job, lane string) (*taskwire.Task, error) {
	pl := &payload.Payload{AppID: key.AppID, Method: key.Method, TransactionID: key.TransactionID,
		AppAuthToken: job.AppAuthToken, BizContent: job.BizContent}
	if err := pl.Seal(p.keys); err != nil {
		return nil, err
	}
	t, err := payload.Wire(pl, p.queues.Of(key, lane))
	if err == nil {
		_, t.Listed = p.listed.Load(t.Queue)
	}
	return t, err
}

// serves says app is one of the producer's.
func (p *Producer) serves(app string) bool {
	return app == p.cfg.AppID || slices.Contains(p.cfg.OtherAppIDs, app)
}

// Ref names one job.
type Ref struct {
	// AppID is the job's app; "" is the producer's first (ProducerConfig.AppID).
	AppID         string `json:"app_id,omitempty"`
	Method        string `json:"method"`
	TransactionID string `json:"transaction_id"`
}

// ErrUnknownApp is returned for a Ref naming an app the producer does not serve.
var ErrUnknownApp = errors.New("zhimaq: app_id is not an app of this deployment (ZHIMA_APP_ID or ZHIMA_APPS_FILE)")

// key is r's transaction, or ErrUnknownApp.
func (p *Producer) key(r Ref) (idempotency.Key, error) {
	app := cmp.Or(r.AppID, p.cfg.AppID)
	if !p.serves(app) {
		return idempotency.Key{}, ErrUnknownApp
	}
	return idempotency.Key{AppID: app, Method: r.Method, TransactionID: r.TransactionID}, nil
}

// refKeys are the transactions of refs, or ErrUnknownApp.
func (p *Producer) refKeys(refs []Ref) ([]idempotency.Key, error) {
	keys := make([]idempotency.Key, len(refs))
	for i, r := range refs {
		k, err := p.key(r)
		if err != nil {
			return nil, err
		}
		keys[i] = k
	}
	return keys, nil
}

// Result returns a job's record, or ErrNotFound.
func (p *Producer) Result(ctx context.Context, r Ref) (*Record, error) {
	k, err := p.key(r)
	if err != nil {
		return nil, err
	}
	rec, err := p.results.Get(ctx, k)
	return recordOf(rec), err
}

// Results returns the records of many jobs in few round trips; nil where a
// job has none.
func (p *Producer) Results(ctx context.Context, refs []Ref) ([]*Record, error) {
	keys, err := p.refKeys(refs)
	if err != nil {
		return nil, err
	}
	got, err := p.results.GetMany(ctx, keys)
	recs := make([]*Record, len(got))
	for i, r := range got {
		recs[i] = recordOf(r)
	}
	return recs, err
}

// ping checks that Redis answers.
func (p *Producer) ping(ctx context.Context) error { return p.rdb.Ping(ctx).Err() }

// rejection is the record of a job that was never enqueued for err, a
// *zhima.Error made by one of zhima's constructors.
func rejection(job Job, transactionID string, err error) *Record {
	now := time.Now().UTC()
	method := "" // an unknown method is input in the wrong place: not echoed
	if slices.Contains(zhima.Methods, job.Method) {
		method = job.Method
	}
	return &Record{Method: method, TransactionID: transactionID, State: Rejected, UpdatedAt: now, Error: errorInfo(err)}
}

// rejectionOf is rejection for a job of a known app, key its transaction:
// the record carries the app.
func rejectionOf(job Job, key idempotency.Key, err error) *Record {
	r := rejection(job, key.TransactionID, err)
	r.AppID = key.AppID
	return r
}

// errorInfo is the record's error object for err (see payload.ErrorInfo).
func errorInfo(err error) *ErrorInfo {
	e := payload.ErrorInfo(err)
	if e == nil {
		return nil
	}
	pub := ErrorInfo(*e)
	return &pub
}

// transactionOf reads biz_content.transaction_id when it is a well-formed
// one; anything else might be personal data pasted in the wrong field.
func transactionOf(biz json.RawMessage) string {
	var probe struct {
		TransactionID any `json:"transaction_id"`
	}
	if json.Unmarshal(biz, &probe) == nil {
		if s, ok := probe.TransactionID.(string); ok && zhima.IsTransactionID(s) {
			return s
		}
	}
	return ""
}

// dedup tells OnDedup of a submission answered by de-duplication.
func (p *Producer) dedup(method, outcome string) {
	if p.cfg.OnDedup != nil {
		p.cfg.OnDedup(method, outcome)
	}
}
