package results

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/idempotency"
)

// Rules are what Begin checks before an attempt.
type Rules struct {
	// Window is how long the gateway honours a transaction_id after its
	// first call: the first attempt holds the claim at least that long.
	Window time.Duration
	// LastStart is how long after the first call an attempt may still start.
	LastStart time.Duration
	// MaxAttempts bounds the gateway calls of a job.
	MaxAttempts int
}

// Start is what Begin found.
type Start int

const (
	// Started: the record is marked running (its first call set, if none
	// was) and the attempt may call the gateway.
	Started Start = iota + 1
	// Finished: the record is terminal; nothing was written.
	Finished
	// WindowClosed: the transaction's first call was longer ago than
	// Rules.LastStart; nothing was written.
	WindowClosed
	// AttemptsUsed: the record has used Rules.MaxAttempts; nothing was
	// written.
	AttemptsUsed
)

// Begin starts an attempt at k's job at now (the worker's clock) in one
// round trip: it reads the record, checks it against r and, when the
// attempt may go ahead, marks it running, sets its first call and, on the
// first attempt, holds the claim until the first call + r.Window. A missing
// record is created running (with no enqueued_at and no fingerprint: a
// later submission of the transaction is a Conflict). It returns the record
// as it stands afterwards and its version, for UpdateFrom.
//
// A record of the JSON format is first rewritten in the current one with
// its claim folded in. Errors are UpdateFrom's.
func (s *Store) Begin(ctx context.Context, k idempotency.Key, now time.Time, r Rules) (Start, *Record, Version, error) {
	if err := k.Validate(); err != nil {
		return 0, nil, Version{}, fmt.Errorf("results: begin: %w", err)
	}
	args := []any{now.UnixMilli(), r.LastStart.Milliseconds(), r.Window.Milliseconds(), r.MaxAttempts, s.ttl.Milliseconds()}
	for range 2 {
		res, err := beginScript.Run(ctx, s.rdb, []string{s.key(k)}, args...).Slice()
		if err != nil {
			return 0, nil, Version{}, fmt.Errorf("results: begin %s: %w", k, err)
		}
		code, data, err := scriptReply(res)
		if err != nil {
			return 0, nil, Version{}, fmt.Errorf("results: begin %s: %w", k, err)
		}
		if code == beginLegacy {
			if err := s.migrate(ctx, k); err != nil {
				return 0, nil, Version{}, err
			}
			continue
		}
		rec, v, err := decode(k, data)
		if err != nil {
			return 0, nil, Version{}, err
		}
		if code < int64(Started) || code > int64(AttemptsUsed) {
			return 0, nil, Version{}, &CorruptError{Key: k, Reason: "its header cannot be read"}
		}
		return Start(code), rec, v, nil
	}
	return 0, nil, Version{}, fmt.Errorf("results: begin %s: the record is still of the JSON format after rewriting it", k)
}

// migrate rewrites k's record of the JSON format in the current one, its
// claim folded in.
func (s *Store) migrate(ctx context.Context, k idempotency.Key) error {
	_, _, err := s.UpdateFrom(ctx, k, nil, Version{}, func(*Record) error { return nil })
	return err
}

// beginLegacy is the begin script's answer for a record of the JSON format.
const beginLegacy = 8

// beginScript: KEYS[1] record; ARGV[1] now (Unix ms), ARGV[2] the last start
// after the first call (ms), ARGV[3] the window (ms), ARGV[4] the most
// attempts, ARGV[5] RESULT_TTL (ms). Returns {Start, value}, {8} for a
// record of the JSON format, {0, value} for a value it cannot read.
var beginScript = redis.NewScript(`
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[5])
local v = redis.call('GET', KEYS[1])
if not v then
  local claim = now + tonumber(ARGV[3])
  v = '2|1|r|0|' .. string.format('%.0f', claim) .. '|||' .. ARGV[1] .. '|' .. ARGV[1] .. '||\n'
  redis.call('SET', KEYS[1], v, 'PX', math.max(ttl, claim - now))
  return {1, v}
end
if string.sub(v, 1, 1) == '{' then return {8} end
local ver, st, att, untl, fp, enq, first, rest = string.match(v, '^2|(%d+)|(%a)|(%d+)|(%d*)|([^|]*)|(%d*)|%d*|(%d*)|(.*)$')
if not ver then return {0, v} end
if st == 's' or st == 'f' or st == 'x' then return {2, v} end
if first ~= '' and now > tonumber(first) + tonumber(ARGV[2]) then return {3, v} end
if tonumber(att) >= tonumber(ARGV[4]) then return {4, v} end
if first == '' then first = ARGV[1] end
local claim = tonumber(untl) or 0
if att == '0' then claim = math.max(claim, tonumber(first) + tonumber(ARGV[3])) end
local c = ''
if claim > 0 then c = string.format('%.0f', claim) end
v = '2|' .. string.format('%.0f', tonumber(ver) + 1) .. '|r|' .. att .. '|' .. c .. '|' .. fp .. '|' .. enq .. '|' .. ARGV[1] .. '|' .. first .. '|' .. rest
redis.call('SET', KEYS[1], v, 'PX', math.max(ttl, claim - now))
return {1, v}
`)
