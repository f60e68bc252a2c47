package results

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/idempotency"
	"github.com/zhimaq/zhimaq/internal/taskwire"
)

// Claim is a producer's claim on a transaction for the de-duplication
// window, kept in the header of the transaction's record.
type Claim struct {
	// Fingerprint is the parameters' fingerprint (idempotency.Fingerprint,
	// or a keyed digest of it): 64 hex digits.
	Fingerprint string
	// Previous are other forms the same parameters' fingerprint may have been
	// stored in (digests under older data keys); a claim holding one of them
	// is a Duplicate too.
	Previous []string
	// Window is how long the claim holds; Now is when it starts, on the
	// producer's clock.
	Window time.Duration
	Now    time.Time
	// Enqueue, when set, is the job's task: it is enqueued in the same step
	// when the claim is made, and when it is a Duplicate whose record has not
	// finished (a task already there is left alone).
	Enqueue *taskwire.Task
}

// Claim atomically (one Lua script, one round trip) claims k with c and
// writes rec as its first record, or finds who holds it:
//   - Claimed: k had no record; rec is stored, holding the claim, and
//     returned.
//   - Duplicate: the claim holds the same fingerprint; the record stored is
//     returned, nothing is written.
//   - Conflict: the claim holds another fingerprint; nothing is written.
//   - Lapsed: the record lives on but its claim has expired: the
//     transaction's window is over; nothing is written.
//
// Of several producers racing for k, exactly one gets Claimed. With
// c.Enqueue the job's task is enqueued in the same step (see Claim), so no
// claim is ever left without its task. A record
// of the JSON format has its claim in a key of its own, which is read in
// the same step. It returns an error, and no outcome, when k is invalid,
// the fingerprint is not 64 hex digits, the window is under a millisecond,
// rec cannot be stored, the record found is corrupt, or Redis fails.
func (s *Store) Claim(ctx context.Context, k idempotency.Key, rec *Record, c Claim) (idempotency.Outcome, *Record, error) {
	keys, args, err := s.claimArgs(k, rec, c)
	if err != nil {
		return 0, nil, err
	}
	res, err := s.eval(ctx, claimScript, keys, true, args...).Slice()
	o, found, err := claimAnswer(k, rec, res, err)
	if err == nil && s.cluster && c.Enqueue != nil && (o == idempotency.Claimed || o == idempotency.Duplicate && !found.State.Terminal()) {
		err = s.enqueueApart(ctx, k, c.Enqueue)
	}
	return o, found, err
}

// enqueueApart enqueues a claimed job's task on a Redis Cluster, where the
// task's keys lie in another slot than its record's, so the claim script
// cannot: one step after the claim. A producer that dies between the two
// leaves a claimed job without its task; submitting the job again enqueues
// it (a duplicate whose job has not finished does, as on one Redis), and it
// is still billed once. The error leaves the claim made: trying the
// submission again is that resubmission.
func (s *Store) enqueueApart(ctx context.Context, k idempotency.Key, t *taskwire.Task) error {
	if !t.Listed {
		if err := s.rdb.SAdd(ctx, taskwire.QueuesKey, t.Queue).Err(); err != nil {
			return fmt.Errorf("results: claim %s: list the queue: %w", k, err)
		}
	}
	// Durable as the claim: a claim that outlives a failover without its
	// task would wait for a resubmission.
	c := apartCall(t)
	if err := s.eval(ctx, enqueueScript, c.keys, true, c.args...).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("results: claim %s: enqueue: %w", k, err)
	}
	return nil
}

// enqueueScript enqueues a task alone (enqueueApart): KEYS[1..2] its hash
// and pending list, ARGV its Args with no queue to list.
var enqueueScript = redis.NewScript(`return ` + taskwire.Enqueue(1, 1))

// apartCall is enqueueScript's run for t: asynq:queues is in a slot of its
// own, so the queue is listed beside the script.
func apartCall(t *taskwire.Task) *scriptCall {
	args := t.Args(time.Now())
	args[3] = ""
	return &scriptCall{keys: t.Keys()[:2], args: args}
}

// ClaimRequest is one claim of ClaimMany.
type ClaimRequest struct {
	Key    idempotency.Key
	Record *Record
	Claim  Claim
}

// ClaimResult is what one claim of ClaimMany came to, as Claim returns it.
type ClaimResult struct {
	Outcome idempotency.Outcome
	Record  *Record
	Err     error
}

// ClaimMany makes each claim as Claim does, all in one pipeline (one round
// trip; two when Redis has yet to load the script), in order: a later claim
// of the same transaction sees an earlier one. On a cluster it is a
// pipeline to each master the claims lie on, all at once, then one to each
// holding their tasks. It returns a result per request; when Redis fails,
// each claim fails with its error, and a claim that failed may be made
// again: it answers as it would have.
func (s *Store) ClaimMany(ctx context.Context, reqs []ClaimRequest) []ClaimResult {
	out := make([]ClaimResult, len(reqs))
	calls := make([]*scriptCall, len(reqs))
	for i, r := range reqs {
		keys, args, err := s.claimArgs(r.Key, r.Record, r.Claim)
		if err != nil {
			out[i].Err = err
			continue
		}
		calls[i] = &scriptCall{keys: keys, args: args}
	}
	s.pipelineByNode(ctx, claimScript, calls)
	for i, c := range calls {
		if c != nil {
			res, err := c.cmd.Slice()
			out[i].Outcome, out[i].Record, out[i].Err = claimAnswer(reqs[i].Key, reqs[i].Record, res, err)
		}
	}
	if !s.cluster {
		return out // the claim script enqueued the tasks
	}
	tasks := make([]*scriptCall, len(reqs))
	queues := map[string]bool{}
	for i, r := range reqs {
		if t := r.Claim.Enqueue; t != nil && out[i].Err == nil &&
			(out[i].Outcome == idempotency.Claimed || out[i].Outcome == idempotency.Duplicate && !out[i].Record.State.Terminal()) {
			tasks[i] = apartCall(t)
			if !t.Listed {
				queues[t.Queue] = true
			}
		}
	}
	for q := range queues {
		if err := s.rdb.SAdd(ctx, taskwire.QueuesKey, q).Err(); err != nil {
			for i, c := range tasks {
				if c != nil && reqs[i].Claim.Enqueue.Queue == q {
					out[i].Err, tasks[i] = fmt.Errorf("results: claim %s: list the queue: %w", reqs[i].Key, err), nil
				}
			}
		}
	}
	s.pipelineByNode(ctx, enqueueScript, tasks)
	for i, c := range tasks {
		if c != nil {
			if err := c.cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
				out[i].Err = fmt.Errorf("results: claim %s: enqueue: %w", reqs[i].Key, err)
			}
		}
	}
	return out
}

// claimArgs checks a claim and builds the claim script's keys and
// arguments for it.
func (s *Store) claimArgs(k idempotency.Key, rec *Record, c Claim) ([]string, []any, error) {
	forms := append([]string{c.Fingerprint}, c.Previous...)
	for _, fp := range forms {
		if b, err := hex.DecodeString(fp); err != nil || len(b) != 32 {
			return nil, nil, fmt.Errorf("results: claim %s: a fingerprint is not 64 hex digits", k)
		}
	}
	if c.Window < time.Millisecond {
		return nil, nil, fmt.Errorf("results: claim %s: window %v is under 1ms", k, c.Window)
	}
	m := meta{version: 1, claimUntil: c.Now.Add(c.Window).UnixMilli(), claim: storedForm(c.Fingerprint)}
	data, err := encode("claim", k, rec, m)
	if err != nil {
		return nil, nil, err
	}
	keys := []string{s.key(k), s.keys.Claim(k.AppID, k.Method, k.TransactionID)}
	args := make([]any, 0, 9+2*len(forms))
	args = append(args, data, max(s.ttl, c.Window).Milliseconds(), c.Now.UnixMilli())
	if c.Enqueue != nil && !s.cluster { // on a cluster, enqueueApart
		keys = append(keys, c.Enqueue.Keys()...)
		args = append(args, "1")
		args = append(args, c.Enqueue.Args(time.Now())...)
	} else {
		args = append(args, "", "", "", "", "")
	}
	args = append(args, len(forms))
	for _, fp := range forms {
		args = append(args, storedForm(fp))
	}
	for _, fp := range forms {
		args = append(args, fp)
	}
	return keys, args, nil
}

// claimAnswer reads the claim script's reply (or the error of running it)
// for k, whose first record would be rec.
func claimAnswer(k idempotency.Key, rec *Record, res []any, err error) (idempotency.Outcome, *Record, error) {
	if err != nil {
		return 0, nil, fmt.Errorf("results: claim %s: %w", k, err)
	}
	o, found, err := scriptReply(res)
	if err != nil {
		return 0, nil, fmt.Errorf("results: claim %s: %w", k, err)
	}
	switch outcome := idempotency.Outcome(o); outcome {
	case idempotency.Claimed:
		return outcome, rec, nil
	case idempotency.Duplicate:
		got, _, err := decode(k, found)
		if err != nil {
			return 0, nil, err
		}
		return outcome, got, nil
	case idempotency.Conflict, idempotency.Lapsed:
		return outcome, nil, nil
	case claimCorrupt:
		_, _, err := decode(k, found)
		if err == nil {
			err = &CorruptError{Key: k, Reason: "its header cannot be read"}
		}
		return 0, nil, err
	}
	return 0, nil, fmt.Errorf("results: claim %s: unexpected script result %d", k, o)
}

// claimCorrupt is the claim script's answer for a value it cannot read.
const claimCorrupt = 9

// claimScript: KEYS[1] record, KEYS[2] the claim of a record of the JSON
// format, KEYS[3..5] the task's keys (taskwire) when there is one; ARGV[1]
// the first record (holding the claim), ARGV[2] its TTL in ms, ARGV[3] now
// in Unix ms, ARGV[4] "1" to enqueue the task, ARGV[5..8] its arguments,
// ARGV[9] n, then n fingerprint forms as the header stores them and the
// same n as a JSON-format claim does. Returns {outcome, value found}.
var claimScript = redis.NewScript(`
local function enqueue()
  if ARGV[4] == '1' then return ` + taskwire.Enqueue(3, 5) + ` end
end
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  enqueue()
  return {1}
end
local n = tonumber(ARGV[9])
local held, first, st
if string.sub(v, 1, 1) == '{' then
  held = redis.call('GET', KEYS[2])
  if not held then return {4} end
  first = 10 + n
  st = string.match(v, '"state":"(%a+)"')
  st = (st == 'succeeded' or st == 'failed' or st == 'rejected') and 's' or 'q'
else
  local state, untl, fp = string.match(v, '^2|%d+|(%a)|%d+|(%d*)|([^|]*)|')
  if not state then return {9, v} end
  if untl == '' or tonumber(untl) <= tonumber(ARGV[3]) then return {4} end
  held, first, st = fp, 10, state
end
for i = first, first + n - 1 do
  if held == ARGV[i] then
    if st ~= 's' and st ~= 'f' and st ~= 'x' then enqueue() end
    return {2, v}
  end
end
return {3}
`)

// scriptReply reads a script's {code, value?} reply.
func scriptReply(res []any) (int64, []byte, error) {
	if len(res) == 0 {
		return 0, nil, fmt.Errorf("empty script reply")
	}
	code, ok := res[0].(int64)
	if !ok {
		return 0, nil, fmt.Errorf("unexpected script reply %T", res[0])
	}
	if len(res) < 2 {
		return code, nil, nil
	}
	v, ok := res[1].(string)
	if !ok {
		return 0, nil, fmt.Errorf("unexpected script reply %T", res[1])
	}
	return code, []byte(v), nil
}

// ClaimUntil returns when k's claim ends (zero when its record holds none)
// on the producer's clock, or an error wrapping ErrNotFound when k has no
// record.
func (s *Store) ClaimUntil(ctx context.Context, k idempotency.Key) (time.Time, error) {
	if err := k.Validate(); err != nil {
		return time.Time{}, fmt.Errorf("results: claim: %w", err)
	}
	_, v, err := s.read(ctx, k)
	if err != nil || v.claimUntil == 0 {
		return time.Time{}, err
	}
	return time.UnixMilli(v.claimUntil), nil
}
