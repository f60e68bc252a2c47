package idempotency

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/keyspace"
)

// Store holds claims in Redis at <prefix>claim:<app_id>:<method>:<transaction_id>,
// each a string holding the fingerprint, expiring when the window closes.
// It is safe for concurrent use.
type Store struct {
	rdb  redis.UniversalClient
	keys keyspace.Space
}

// New returns a Store on rdb. prefix "" means keyspace.DefaultPrefix ("zhimaq:").
func New(rdb redis.UniversalClient, prefix string) *Store {
	return &Store{rdb: rdb, keys: keyspace.New(prefix)}
}

func (s *Store) key(k Key) string { return s.keys.Claim(k.AppID, k.Method, k.TransactionID) }

// claimScript: KEYS[1] claim, ARGV[1] fingerprint, ARGV[2] window in ms,
// ARGV[3..] earlier forms of the same fingerprint.
// Returns 1 claimed, 2 duplicate, 3 conflict.
var claimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then return 2 end
for i = 3, #ARGV do
  if v == ARGV[i] then return 2 end
end
return 3
`)

// claimWithScript: KEYS[1] claim, KEYS[2] companion; ARGV[1] fingerprint,
// ARGV[2] window in ms, ARGV[3] companion value, ARGV[4] its TTL in ms,
// ARGV[5..] earlier forms of the fingerprint.
// Returns 1 claimed (and the companion written), 2 duplicate, 3 conflict,
// 4 lapsed (no claim, but the companion exists: nothing written).
var claimWithScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  if redis.call('EXISTS', KEYS[2]) == 1 then return 4 end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
  return 1
end
if v == ARGV[1] then return 2 end
for i = 5, #ARGV do
  if v == ARGV[i] then return 2 end
end
return 3
`)

// extendScript: KEYS[1] claim, ARGV[1] ms from now. Raises the TTL to
// ARGV[1] when it is lower; leaves a missing or persistent key alone.
var extendScript = redis.NewScript(`
local ttl = redis.call('PTTL', KEYS[1])
if ttl >= 0 and ttl < tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return 1
end
return 0
`)

// Claim atomically (one Lua script) claims k with fingerprint for window:
// if k is unclaimed it is claimed for window and Claimed returned; if it is
// claimed with the same fingerprint, Duplicate (the claim's expiry is left as
// it is); if with another fingerprint, Conflict. Of several processes racing
// for the same key, exactly one gets Claimed.
//
// It returns an error, and no outcome, when k is invalid (Key.Validate), the
// fingerprint is empty, window is under a millisecond, or Redis fails.
//
// previous are other forms the same parameters' fingerprint may have been
// stored in (digests under older data keys); a claim holding one of them is
// a Duplicate too.
func (s *Store) Claim(ctx context.Context, k Key, fingerprint string, window time.Duration, previous ...string) (Outcome, error) {
	if err := k.Validate(); err != nil {
		return 0, err
	}
	if fingerprint == "" {
		return 0, fmt.Errorf("idempotency: claim %s: empty fingerprint", k)
	}
	if window < time.Millisecond {
		return 0, fmt.Errorf("idempotency: claim %s: window %v is under 1ms", k, window)
	}
	args := []any{fingerprint, window.Milliseconds()}
	for _, p := range previous {
		args = append(args, p)
	}
	n, err := claimScript.Run(ctx, s.rdb, []string{s.key(k)}, args...).Int64()
	if err != nil {
		return 0, fmt.Errorf("idempotency: claim %s: %w", k, err)
	}
	switch o := Outcome(n); o {
	case Claimed, Duplicate, Conflict:
		return o, nil
	}
	return 0, fmt.Errorf("idempotency: claim %s: unexpected script result %d", k, n)
}

// Companion is a key written together with a claim, in the same atomic step:
// a transaction's first record.
type Companion struct {
	Key   string
	Value []byte
	TTL   time.Duration
}

// ClaimWith is Claim that writes c in the same atomic step when it claims k,
// so no other producer can see the claim without the record. When k is
// unclaimed but c's key exists (a claim that lapsed while the record lives
// on) it writes nothing and returns Lapsed. Errors are Claim's.
func (s *Store) ClaimWith(ctx context.Context, k Key, fingerprint string, window time.Duration, c Companion, previous ...string) (Outcome, error) {
	if err := k.Validate(); err != nil {
		return 0, err
	}
	if fingerprint == "" || c.Key == "" || c.TTL < time.Millisecond {
		return 0, fmt.Errorf("idempotency: claim %s: empty fingerprint or companion", k)
	}
	if window < time.Millisecond {
		return 0, fmt.Errorf("idempotency: claim %s: window %v is under 1ms", k, window)
	}
	args := []any{fingerprint, window.Milliseconds(), c.Value, c.TTL.Milliseconds()}
	for _, p := range previous {
		args = append(args, p)
	}
	n, err := claimWithScript.Run(ctx, s.rdb, []string{s.key(k), c.Key}, args...).Int64()
	if err != nil {
		return 0, fmt.Errorf("idempotency: claim %s: %w", k, err)
	}
	switch o := Outcome(n); o {
	case Claimed, Duplicate, Conflict, Lapsed:
		return o, nil
	}
	return 0, fmt.Errorf("idempotency: claim %s: unexpected script result %d", k, n)
}

// Extend keeps the claim on k until at least until: it lengthens the claim's
// expiry when it would come sooner and never shortens it. A missing claim
// (expired or released) is not an error and is not re-created; an until that
// has passed does nothing. until is read against the local clock.
// It returns an error when k is invalid or Redis fails.
func (s *Store) Extend(ctx context.Context, k Key, until time.Time) error {
	if err := k.Validate(); err != nil {
		return err
	}
	d := time.Until(until)
	if d <= 0 {
		return nil
	}
	ms := (d + time.Millisecond - 1).Milliseconds() // round up: at least until
	if err := extendScript.Run(ctx, s.rdb, []string{s.key(k)}, ms).Err(); err != nil {
		return fmt.Errorf("idempotency: extend %s: %w", k, err)
	}
	return nil
}
