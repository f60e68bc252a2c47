// Package payload is what a zhimaq task carries and how it is built and
// read: the Payload with its sealing, the asynq task type, id and queue, and
// the strict decoding of jobs and biz_content into typed gateway requests,
// with errors that never quote the input. Producers and workers share it;
// it holds no worker code.
package payload

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/hibiken/asynq"

	"github.com/zhimaq/zhimaq/internal/idempotency"
	"github.com/zhimaq/zhimaq/internal/keyspace"
	"github.com/zhimaq/zhimaq/internal/results"
	"github.com/zhimaq/zhimaq/internal/seal"
	"github.com/zhimaq/zhimaq/internal/taskwire"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// Payload is what a task carries: one gateway call, ready to sign. In Redis
// its personal data is sealed: BizContent and AppAuthToken travel inside
// Sealed, and only a worker holding the data key opens them.
type Payload struct {
	AppID         string          `json:"app_id"`
	Method        string          `json:"method"`
	TransactionID string          `json:"transaction_id"`
	AppAuthToken  string          `json:"app_auth_token,omitempty"`
	BizContent    json.RawMessage `json:"biz_content,omitempty"`
	Sealed        string          `json:"sealed,omitempty"`
}

// sealedPart is what Sealed holds.
type sealedPart struct {
	BizContent   json.RawMessage `json:"biz_content"`
	AppAuthToken string          `json:"app_auth_token,omitempty"`
}

// aad binds a sealed part to its transaction, so it cannot be moved to another.
func (p *Payload) aad() []byte {
	return []byte(p.AppID + "\x00" + p.Method + "\x00" + p.TransactionID)
}

// Seal moves BizContent and AppAuthToken into Sealed under keys' sealing
// key. With a plaintext keyring it leaves p as it is.
func (p *Payload) Seal(keys *seal.Keyring) error {
	if keys.Plaintext() || p.Sealed != "" {
		return nil
	}
	part, err := json.Marshal(sealedPart{BizContent: p.BizContent, AppAuthToken: p.AppAuthToken})
	if err != nil {
		return fmt.Errorf("payload: seal: %w", err)
	}
	if p.Sealed, err = keys.Seal(part, p.aad()); err != nil {
		return fmt.Errorf("payload: seal: %w", err)
	}
	p.BizContent, p.AppAuthToken = nil, ""
	return nil
}

// ErrNotSealed is wrapped by Open's error for a payload in clear when the
// keyring seals: the producer did not seal it, and anyone who can write to
// Redis could have queued it.
var ErrNotSealed = errors.New("the payload is not sealed and this worker runs sealed jobs only: the producer must use the workers' DATA_KEYS")

// Open reverses Seal. With a plaintext keyring an unsealed payload stays as
// it is; with a keyring that seals, it is refused. Errors wrap ErrNotSealed,
// seal.ErrUnknownKey (this process lacks the key the payload was sealed
// with) or seal.ErrCorrupt.
func (p *Payload) Open(keys *seal.Keyring) error {
	if p.Sealed == "" {
		if !keys.Plaintext() {
			return fmt.Errorf("payload: open payload: %w", ErrNotSealed)
		}
		return nil
	}
	plain, err := keys.Open(p.Sealed, p.aad())
	if err != nil {
		return fmt.Errorf("payload: open payload: %w", err)
	}
	var part sealedPart
	if err := json.Unmarshal(plain, &part); err != nil {
		return fmt.Errorf("payload: open payload: %w: %s", seal.ErrCorrupt, JSONProblem(err))
	}
	p.BizContent, p.AppAuthToken, p.Sealed = part.BizContent, part.AppAuthToken, ""
	return nil
}

// Key is the transaction the payload belongs to.
func (p *Payload) Key() idempotency.Key {
	return idempotency.Key{AppID: p.AppID, Method: p.Method, TransactionID: p.TransactionID}
}

// TaskType is the asynq task type of a method: the method name itself, so
// queues read plainly in asynq's tools.
func TaskType(method string) string { return method }

// TaskID is the asynq task id of a transaction: 22 characters of base64url,
// the first 128 bits of the SHA-256 of "app_id:method:transaction_id". It is
// derived from the key, so enqueueing the same transaction twice can never
// make two tasks; it is short because asynq keeps it three times per task.
// (Before, the id was the key itself: a task enqueued by an older producer
// and re-enqueued by this one can run twice during an upgrade; its record
// and the gateway's de-duplication keep it from being billed twice.)
func TaskID(k idempotency.Key) string {
	sum := sha256.Sum256([]byte(k.AppID + ":" + k.Method + ":" + k.TransactionID))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// NewTask builds the task for p. opts are asynq options (queue, retries).
func NewTask(p *Payload, opts ...asynq.Option) (*asynq.Task, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("payload: encode payload: %w", err)
	}
	opts = append([]asynq.Option{asynq.TaskID(TaskID(p.Key()))}, opts...)
	return asynq.NewTask(TaskType(p.Method), b, opts...), nil
}

// Wire is the task for p in queue as a producer enqueues it, in the same
// step as its claim: NewTask's task with Queue(queue) and
// MaxRetry(MaxDeliveries).
func Wire(p *Payload, queue string) (*taskwire.Task, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("payload: encode payload: %w", err)
	}
	return &taskwire.Task{Type: TaskType(p.Method), Payload: b, ID: TaskID(p.Key()), Queue: queue, MaxRetry: MaxDeliveries}, nil
}

// A job's lane says which queue it waits in and how it asks the rate
// limiter for a slot.
const (
	LaneBatch       = "batch"       // the default
	LaneInteractive = "interactive" // an applicant is waiting: first in the queue and at the limiter
)

// ParseLane checks a job's "lane": "" is LaneBatch.
func ParseLane(lane string) (string, error) {
	switch lane {
	case "", LaneBatch:
		return LaneBatch, nil
	case LaneInteractive:
		return LaneInteractive, nil
	}
	return "", errors.New("lane: want interactive or batch")
}

// QueueNames name a deployment's asynq queues. The first app's batch jobs
// wait in Base itself (as every job did before apps had queues of their
// own), another app's in "<Base>:<app_id>", so one app's backlog never
// stands before another's jobs. With Shards > 1 an app's batch jobs spread
// over that many queues by a stable hash of the transaction, the first
// being the one above and shard k "<Base>:<app_id>:<k>" (asynq keeps a
// queue in one slot of a Redis Cluster: shards spread the load over the
// nodes). Interactive jobs wait, unsharded, in the app's first queue's
// name + ":interactive", which the worker's interactive handlers alone read.
type QueueNames struct {
	Base   string   // ZHIMAQ_QUEUE
	Apps   []string // the deployment's apps, the first first
	Shards int      // ZHIMAQ_QUEUE_SHARDS; 0 means 1
}

// Of is the queue of a job of transaction k in lane.
func (q QueueNames) Of(k idempotency.Key, lane string) string {
	if lane == LaneInteractive {
		return q.queue(k.AppID, 0) + interactiveSuffix
	}
	shard := 0
	if q.Shards > 1 {
		h := fnv.New32a()
		h.Write([]byte(k.AppID + ":" + k.Method + ":" + k.TransactionID))
		shard = int(h.Sum32() % uint32(q.Shards))
	}
	return q.queue(k.AppID, shard)
}

// queue is app's batch queue of shard.
func (q QueueNames) queue(app string, shard int) string {
	switch {
	case shard > 0:
		return keyspace.AppQueue(q.Base, app) + ":" + strconv.Itoa(shard)
	case len(q.Apps) > 0 && app == q.Apps[0]:
		return q.Base
	}
	return keyspace.AppQueue(q.Base, app)
}

const interactiveSuffix = ":interactive"

// LaneOf is the lane of a task taken from queue.
func LaneOf(queue string) string {
	if strings.HasSuffix(queue, interactiveSuffix) {
		return LaneInteractive
	}
	return LaneBatch
}

// Weights are the queues of lane with their asynq weights, each 1: a
// worker's handlers of that lane take the apps' (and shards') jobs side
// by side. The batch lane's include Base, where batch callbacks wait.
func (q QueueNames) Weights(lane string) map[string]int {
	qs := map[string]int{}
	for _, app := range q.Apps {
		if lane == LaneInteractive {
			qs[q.queue(app, 0)+interactiveSuffix] = 1
			continue
		}
		for shard := range max(q.Shards, 1) {
			qs[q.queue(app, shard)] = 1
		}
	}
	if lane == LaneBatch {
		qs[q.Base] = 1
	}
	return qs
}

// ErrBadPayload marks a task payload that cannot be decoded; such a task can
// never succeed.
var ErrBadPayload = errors.New("bad task payload")

// DecodePayload reads a task's payload and checks that it names the task's
// method and a transaction. Errors wrap ErrBadPayload and quote no data.
func DecodePayload(taskType string, b []byte) (*Payload, error) {
	var p Payload
	if err := decodeOne(b, &p); err != nil {
		return nil, fmt.Errorf("payload: %w: %s", ErrBadPayload, JSONProblem(err))
	}
	switch {
	case p.AppID == "" || p.TransactionID == "":
		return nil, fmt.Errorf("payload: %w: app_id and transaction_id are required", ErrBadPayload)
	case p.Method != taskType:
		return nil, fmt.Errorf("payload: %w: method does not match task type %s", ErrBadPayload, taskType)
	case len(p.BizContent) == 0 && p.Sealed == "":
		return nil, fmt.Errorf("payload: %w: biz_content is missing", ErrBadPayload)
	}
	return &p, nil
}

// Request decodes biz_content into method's typed request and validates it.
// Field names must be exactly Alipay's (encoding/json alone would take
// "CERT_NO" for "cert_no"). Errors are *zhima.Error (INVALID_PARAMETER
// naming the field).
func Request(method string, biz json.RawMessage) (zhima.Request, error) {
	return RequestNamed(method, biz, nil)
}

// RequestNamed is Request for a biz_content whose member names are known
// already (idempotency.Parse's, of a valid JSON object), so it is decoded
// once more only into the typed request; nil names are found here. Its
// results are Request's.
func RequestNamed(method string, biz json.RawMessage, names []string) (zhima.Request, error) {
	req, err := decode(method, biz, names)
	if err != nil {
		return nil, err
	}
	return req, req.Validate()
}

// Decode is Request without the validation: for a caller that validates
// the request itself, once (the worker, with zhima.Prepare).
func Decode(method string, biz json.RawMessage) (zhima.Request, error) {
	return decode(method, biz, nil)
}

// decode is Decode with biz's member names, when known (see RequestNamed).
func decode(method string, biz json.RawMessage, names []string) (zhima.Request, error) {
	req, err := zhima.NewRequest(method)
	if err != nil {
		return nil, zhima.InvalidParameter(method, "method: unknown method; want one of "+strings.Join(zhima.Methods, ", "))
	}
	if names == nil {
		err = DecodeStrict(biz, req)
	} else {
		err = decodeNamed(biz, names, req)
	}
	if err != nil {
		return nil, zhima.InvalidParameter(method, "biz_content: "+err.Error())
	}
	return req, nil
}

// MaxDeliveries is the asynq MaxRetry of every job's task: a backstop, not
// the attempt budget. The worker's handler counts gateway calls in the
// job's record and ends the job itself after RETRY_MAX_ATTEMPTS of them,
// or when the transaction_id window closes; asynq gives up on a task only
// after this many failed deliveries beyond the first, and the worker then
// marks its record failed. asynq counts a delivery that returns an error (a
// transient gateway failure, a Redis failure, a data key this worker
// lacks) or whose lease expires; not one held back by the rate limiter or
// the breaker, nor one handed back at shutdown. With the default backoff
// (2s doubling to 10m), 100 retries take about 12 hours.
const MaxDeliveries = 100

// ErrorInfo is the record's form of an error, the one place a record's
// error object is made: a *zhima.Error (reached with errors.As) keeps its
// source, codes, messages and the gateway's trace id; any other error is a
// zhima.LocalFailure with the error's text as msg. Build local failures
// with zhima's constructors (InvalidParameter, TransactionIDRepeat,
// TransactionIDExpired, LocalFailure) and convert them here.
func ErrorInfo(err error) *results.ErrorInfo {
	var zerr *zhima.Error
	if !errors.As(err, &zerr) {
		zerr = zhima.LocalFailure("", err.Error())
	}
	info := &results.ErrorInfo{Source: string(zerr.Source), Code: zerr.Code, Msg: zerr.Msg, SubCode: zerr.SubCode, SubMsg: zerr.SubMsg,
		TraceID: zerr.TraceID}
	if zerr.Err != nil && info.Msg == "" {
		info.Msg = zerr.Err.Error()
	} else if zerr.HTTPStatus != 0 && zerr.HTTPStatus != 200 && info.Msg == "" {
		info.Msg = fmt.Sprintf("HTTP %d", zerr.HTTPStatus)
	}
	return info
}

// DecodeStrict decodes one JSON object into the struct dst: every field
// name must match a json tag of dst exactly, and nothing but white space may
// follow the object. Errors describe the problem without quoting the input.
func DecodeStrict(data []byte, dst any) error {
	var fields map[string]json.RawMessage
	if err := decodeOne(data, &fields); err != nil {
		return errors.New(JSONProblem(err))
	}
	if fields == nil {
		return errors.New("must be a JSON object, not null")
	}
	return decodeNamed(data, slices.Collect(maps.Keys(fields)), dst)
}

// decodeNamed is DecodeStrict for a valid JSON object whose member names
// are known.
func decodeNamed(data []byte, names []string, dst any) error {
	if problem := unknownFields(names, jsonFields(dst)); problem != "" {
		return errors.New(problem)
	}
	if err := json.Unmarshal(data, dst); err != nil {
		return errors.New(JSONProblem(err))
	}
	return nil
}

// decodeOne decodes data into v and requires that nothing follows it.
func decodeOne(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errTrailing
	}
	return nil
}

var errTrailing = errors.New("trailing data")

// jsonFields lists the json names of struct dst's fields, in their order.
func jsonFields(dst any) []string {
	t := reflect.TypeOf(dst)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

// unknownFields describes the names of fields that are not in known, or
// returns "" when there are none. It never quotes them: a name in the
// wrong place may be personal data (a name or an ID number used as a key).
// It lists the known names instead, or, when every unknown name is a known
// one in other letter case, names those: the known names are ours.
func unknownFields(names, known []string) string {
	var unknown []string
	for _, name := range names {
		if !slices.Contains(known, name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return ""
	}
	what := "unknown field"
	if len(unknown) > 1 {
		what = fmt.Sprintf("%d unknown fields", len(unknown))
	}
	var meant []string
	for _, k := range known {
		if slices.ContainsFunc(unknown, func(name string) bool { return strings.EqualFold(name, k) }) {
			meant = append(meant, k)
		}
	}
	if len(meant) == len(unknown) {
		return what + "; did you mean " + strings.Join(meant, ", ")
	}
	return what + "; want one of " + strings.Join(known, ", ")
}

// JSONProblem describes a JSON decoding error without quoting the input.
func JSONProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, errTrailing):
		return "more than one JSON value"
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		got, _, _ := strings.Cut(typ.Value, " ") // "number 650.5" -> "number": never the value
		want := jsonKind(typ.Type.Kind().String())
		if got == "number" && want == "number" {
			got = "a fraction or a number out of range"
		}
		if typ.Field == "" {
			return "must be a JSON " + want + ", not " + got
		}
		return fmt.Sprintf("%s must be a JSON %s, not %s", typ.Field, want, got)
	case errors.Is(err, io.EOF), strings.Contains(err.Error(), "unexpected EOF"):
		return "truncated JSON"
	case strings.Contains(err.Error(), "exceeded max depth"):
		return "nested too deeply"
	}
	return "cannot be decoded"
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int64", "float64", "uint64":
		return "number"
	case "string":
		return "string"
	case "struct", "map":
		return "object"
	}
	return goKind
}
