package zhimaq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/batches"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/hosts"
	"github.com/zhimaq/zhimaq/internal/idempotency"
	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/results"
	"github.com/zhimaq/zhimaq/internal/seal"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// ProducerConfig configures a Producer. Zero values mean the defaults.
type ProducerConfig struct {
	// AppID is the Alipay app the jobs are for. Required.
	AppID string
	// DataKeys seal each job's personal data before it enters Redis:
	// "id:base64-of-32-bytes,…", the first seals (DATA_KEYS). Required; the
	// value "plaintext" stores personal data in clear instead.
	DataKeys string
	// Queue is the asynq queue; default "zhimaq".
	Queue string
	// DedupWindow is how long a transaction_id stays claimed; default 24h.
	DedupWindow time.Duration
	// ResultTTL is how long records stay readable; default 168h.
	ResultTTL time.Duration
	// MaxAttempts bounds gateway calls per job; default 12. The worker's
	// own setting decides; this one sizes asynq's retry budget.
	MaxAttempts int
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
	keys          *seal.Keyring
	callbackHosts hosts.List
	queue         *asynq.Client
	claims        *idempotency.Store
	results       *results.Store
	batches       *batches.Store
}

// NewProducer returns a Producer that keeps its queue, claims and records in
// rdb. It does not close rdb.
func NewProducer(rdb redis.UniversalClient, cfg ProducerConfig) (*Producer, error) {
	if cfg.AppID == "" {
		return nil, errors.New("zhimaq: producer: AppID is required")
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
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = config.Defaults.RetryMaxAttempts
	}
	if cfg.MaxBatchLines <= 0 {
		cfg.MaxBatchLines = config.Defaults.BatchMaxLines
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Producer{
		cfg:           cfg,
		keys:          keys,
		callbackHosts: hosts,
		queue:         asynq.NewClientFromRedisClient(rdb),
		claims:        idempotency.New(rdb, cfg.KeyPrefix),
		results:       results.New(rdb, cfg.KeyPrefix, cfg.ResultTTL),
		batches:       batches.New(rdb, cfg.KeyPrefix, cfg.ResultTTL),
	}, nil
}

// Close releases the producer's queue client; rdb stays open.
func (p *Producer) Close() error { return p.queue.Close() }

// Submit validates a job, claims its transaction_id and enqueues it. It
// returns the job's record: Queued for a new job; the first job's record
// with Duplicate set for a repeat with the same parameters; Rejected for bad
// input or a transaction_id already used with other parameters (nothing is
// enqueued then). The error is non-nil only when Redis fails.
func (p *Producer) Submit(ctx context.Context, job Job) (*Record, error) {
	return p.submit(ctx, job, "")
}

// submit is Submit for a job of batch batchID ("" for none): a record it
// creates carries batchID, and so does every record it returns.
func (p *Producer) submit(ctx context.Context, job Job, batchID string) (*Record, error) {
	rec, err := p.submitJob(ctx, job, batchID)
	if rec != nil && batchID != "" {
		rec.BatchID = batchID
	}
	return rec, err
}

func (p *Producer) submitJob(ctx context.Context, job Job, batchID string) (*Record, error) {
	req, err := payload.Request(job.Method, job.BizContent)
	if err != nil {
		return rejection(job, transactionOf(job.BizContent), err), nil
	}
	key := idempotency.Key{AppID: p.cfg.AppID, Method: job.Method, TransactionID: req.Transaction()}
	fp, err := idempotency.Fingerprint(job.BizContent, job.AppAuthToken)
	if err != nil {
		return rejection(job, key.TransactionID, zhima.InvalidParameter(job.Method, "biz_content: "+err.Error())), nil
	}
	// With data keys, Redis holds a keyed digest of the fingerprint: a plain
	// hash of an ID number and a name could be matched against guesses.
	var previous []string
	if digests := p.keys.Digests([]byte(fp)); digests != nil {
		fp, previous = digests[0], digests[1:]
	}
	now := p.cfg.Now().UTC()
	rec := &Record{Method: job.Method, TransactionID: key.TransactionID, State: Queued, EnqueuedAt: &now, UpdatedAt: now, BatchID: batchID}
	first, err := p.results.Companion(key, rec)
	if err != nil {
		return nil, fmt.Errorf("zhimaq: submit %s: %w", key, err)
	}
	// The claim and the first record are written in one step, so a racing
	// producer sees both or neither.
	outcome, err := p.claims.ClaimWith(ctx, key, fp, p.cfg.DedupWindow, first, previous...)
	if err != nil {
		return nil, fmt.Errorf("zhimaq: submit %s: claim: %w", key, err)
	}
	switch outcome {
	case idempotency.Conflict:
		p.dedup(job.Method, "conflict")
		return rejection(job, key.TransactionID,
			zhima.TransactionIDRepeat(job.Method, "transaction_id was already used with other parameters within the window")), nil
	case idempotency.Duplicate:
		p.dedup(job.Method, "duplicate")
		return p.resume(ctx, key, job, batchID)
	case idempotency.Lapsed:
		// The claim has expired but the record of the first use lives on:
		// the gateway's one-day window for this transaction_id is over.
		return rejection(job, key.TransactionID,
			zhima.TransactionIDExpired(job.Method, "transaction_id was first used more than the de-duplication window ago; use a new one")), nil
	}
	if err := p.enqueue(ctx, key, job); err != nil {
		return nil, err
	}
	return rec, nil
}

// resume answers a duplicate submission with the first job's record, and
// re-enqueues the job if an earlier producer stopped between claim and
// enqueue. A claim without a record (one made before records were written
// with claims, or whose record was lost) gets its record back.
func (p *Producer) resume(ctx context.Context, key idempotency.Key, job Job, batchID string) (*Record, error) {
	rec, err := p.results.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		now := p.cfg.Now().UTC()
		rec = &Record{Method: job.Method, TransactionID: key.TransactionID, State: Queued, EnqueuedAt: &now, UpdatedAt: now, BatchID: batchID}
		if _, err := p.results.Create(ctx, key, rec); err != nil {
			return nil, fmt.Errorf("zhimaq: submit %s: record: %w", key, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("zhimaq: submit %s: read record: %w", key, err)
	}
	if !rec.State.Terminal() {
		if err := p.enqueue(ctx, key, job); err != nil {
			return nil, err
		}
	}
	rec.Duplicate = true
	return rec, nil
}

// enqueue puts the job's task in the queue; a task already there is fine.
func (p *Producer) enqueue(ctx context.Context, key idempotency.Key, job Job) error {
	pl := &payload.Payload{AppID: key.AppID, Method: key.Method, TransactionID: key.TransactionID,
		AppAuthToken: job.AppAuthToken, BizContent: job.BizContent}
	if err := pl.Seal(p.keys); err != nil {
		return err
	}
	task, err := payload.NewTask(pl, asynq.Queue(p.cfg.Queue), asynq.MaxRetry(p.cfg.MaxAttempts+retrySlack))
	if err != nil {
		return err
	}
	_, err = p.queue.EnqueueContext(ctx, task)
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("zhimaq: submit %s: enqueue: %w", key, err)
	}
	return nil
}

// retrySlack lets asynq redeliver a few times more than MaxAttempts, for
// deliveries that end before a gateway call (Redis hiccups); the handler's
// own count of calls is what ends a job.
const retrySlack = 8

// Ref names one job of this producer's app.
type Ref struct {
	Method        string `json:"method"`
	TransactionID string `json:"transaction_id"`
}

func (p *Producer) key(r Ref) idempotency.Key {
	return idempotency.Key{AppID: p.cfg.AppID, Method: r.Method, TransactionID: r.TransactionID}
}

// Result returns a job's record, or ErrNotFound.
func (p *Producer) Result(ctx context.Context, r Ref) (*Record, error) {
	return p.results.Get(ctx, p.key(r))
}

// Results returns the records of many jobs in few round trips; nil where a
// job has none.
func (p *Producer) Results(ctx context.Context, refs []Ref) ([]*Record, error) {
	keys := make([]idempotency.Key, len(refs))
	for i, r := range refs {
		keys[i] = p.key(r)
	}
	return p.results.GetMany(ctx, keys)
}

// Wait polls until every job in refs has finished (succeeded, failed or
// rejected) or ctx ends, calling progress (when not nil) after each poll
// with how many have finished. It returns the last records read; on ctx's
// end it returns them with ctx's error. A job with no record counts as
// unfinished. interval 0 means 200ms.
func (p *Producer) Wait(ctx context.Context, refs []Ref, interval time.Duration, progress func(done, total int)) ([]*Record, error) {
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	recs := make([]*Record, len(refs))
	pending := make([]int, len(refs))
	for i := range refs {
		pending[i] = i
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		keys := make([]idempotency.Key, len(pending))
		for j, i := range pending {
			keys[j] = p.key(refs[i])
		}
		got, err := p.results.GetMany(ctx, keys)
		if err != nil && ctx.Err() == nil {
			return recs, fmt.Errorf("zhimaq: wait: %w", err)
		}
		still := pending[:0]
		for j, i := range pending {
			if j < len(got) && got[j] != nil {
				recs[i] = got[j]
			}
			if recs[i] == nil || !recs[i].State.Terminal() {
				still = append(still, i)
			}
		}
		pending = still
		if progress != nil {
			progress(len(refs)-len(pending), len(refs))
		}
		if len(pending) == 0 {
			return recs, nil
		}
		select {
		case <-ctx.Done():
			return recs, ctx.Err()
		case <-tick.C:
		}
	}
}

// rejection is the record of a job that was never enqueued for err, a
// *zhima.Error made by one of zhima's constructors.
func rejection(job Job, transactionID string, err error) *Record {
	now := time.Now().UTC()
	method := "" // an unknown method is input in the wrong place: not echoed
	if slices.Contains(zhima.Methods, job.Method) {
		method = job.Method
	}
	return &Record{Method: method, TransactionID: transactionID, State: Rejected, UpdatedAt: now, Error: payload.ErrorInfo(err)}
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
