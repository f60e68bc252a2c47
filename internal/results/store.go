package results

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/idempotency"
	"github.com/zhimaq/zhimaq/internal/keyspace"
)

const (
	// mgetChunk keys go in one MGET; mgetPerTrip MGETs in one round trip.
	mgetChunk   = 500
	mgetPerTrip = 20
	// maxUpdateTries bounds Update's optimistic retries. A try fails only when
	// another writer committed since its WATCH, so up to this many writers
	// racing on one record all get through.
	maxUpdateTries = 10
)

// ErrNotFound is returned, wrapped with the key, when a job has no record:
// never written, or expired. Test for it with errors.Is.
var ErrNotFound = errors.New("results: no record")

// CorruptError is returned when a stored value is not a record of its key.
// Its text names the key (transaction ids are safe to show) and where the
// value is broken, never the value's contents. Reach it with errors.As.
type CorruptError struct {
	// Key is the record's key.
	Key idempotency.Key
	// Reason says what is wrong, without quoting the value.
	Reason string
}

// Error returns "results: corrupt record app_id/method/transaction_id: reason".
func (e *CorruptError) Error() string {
	return "results: corrupt record " + e.Key.String() + ": " + e.Reason
}

// Store reads and writes result records in Redis. Every write sets the
// record to expire ttl later. It is safe for concurrent use.
type Store struct {
	rdb     redis.UniversalClient
	keys    keyspace.Space
	ttl     time.Duration
	cluster bool // rdb is a Redis Cluster's client: tagged keys, tasks enqueued apart

	// replicas acknowledge claims and final records within waitTimeout
	// (Durable); 0: nobody waits.
	replicas    int
	waitTimeout time.Duration
}

// ErrNotDurable is returned, wrapped, when fewer replicas than Durable asks
// acknowledged a write in time. The write stands on the master, and
// repeating the call answers as the first would have (a claim: Duplicate).
var ErrNotDurable = errors.New("too few replicas acknowledged the write")

// Durable makes s wait, after each claim and each record that reaches a
// final state, until replicas replicas hold it (Redis WAIT, on the
// connection that wrote), at most timeout; fewer is ErrNotDurable. 0
// replicas waits for none. It returns s.
func (s *Store) Durable(replicas int, timeout time.Duration) *Store {
	s.replicas, s.waitTimeout = replicas, timeout
	return s
}

// eval runs script on keys (keys[0] names the node), and when durable and
// s waits for replicas, WAIT after it on the same connection
// (pipelineByNode).
func (s *Store) eval(ctx context.Context, script *redis.Script, keys []string, durable bool, args ...any) *redis.Cmd {
	if !durable || s.replicas <= 0 {
		return script.Run(ctx, s.rdb, keys, args...)
	}
	c := &scriptCall{keys: keys, args: args}
	s.pipelineByNode(ctx, script, []*scriptCall{c})
	return c.cmd
}

// scriptCall is one run of a script among many (pipelined); cmd holds its
// answer once they have run.
type scriptCall struct {
	keys []string // keys[0] names the node
	args []any
	cmd  *redis.Cmd
}

// pipelineByNode runs script for each call that is not nil: in one
// pipeline on a single Redis, in one to each master on a cluster (all at
// once, each call on its first key's master).
func (s *Store) pipelineByNode(ctx context.Context, script *redis.Script, calls []*scriptCall) {
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		s.pipelined(ctx, s.rdb, script, calls)
		return
	}
	byNode := map[*redis.Client][]*scriptCall{}
	for _, c := range calls {
		if c == nil {
			continue
		}
		node, err := cc.MasterForKey(ctx, c.keys[0])
		if err != nil {
			c.cmd = redis.NewCmd(ctx)
			c.cmd.SetErr(err)
			continue
		}
		byNode[node] = append(byNode[node], c)
	}
	if len(byNode) == 1 { // one claim, or one record: no goroutine to wait on
		for node, calls := range byNode {
			s.pipelined(ctx, node, script, calls)
		}
		return
	}
	var wg sync.WaitGroup
	for node, calls := range byNode {
		wg.Go(func() { s.pipelined(ctx, node, script, calls) })
	}
	wg.Wait()
}

// pipelined runs script for each call that is not nil in one pipeline on
// rdb, in order (one round trip; two when Redis has yet to load the
// script), and when s waits for replicas one WAIT after them on the same
// connection, which covers them all.
func (s *Store) pipelined(ctx context.Context, rdb redis.Cmdable, script *redis.Script, calls []*scriptCall) {
	for try := 0; ; try++ {
		pipe := rdb.Pipeline()
		n := 0
		for _, c := range calls {
			if c != nil {
				c.cmd = script.EvalSha(ctx, pipe, c.keys, c.args...)
				n++
			}
		}
		if n == 0 {
			return
		}
		var wait *redis.Cmd
		if s.replicas > 0 {
			wait = pipe.Do(ctx, "WAIT", s.replicas, max(s.waitTimeout.Milliseconds(), 1))
		}
		_, _ = pipe.Exec(ctx) // each command holds its own error
		if wait != nil {
			if err := s.acked(wait); err != nil {
				for _, c := range calls {
					if c != nil && c.cmd.Err() == nil {
						c.cmd.SetErr(err)
					}
				}
			}
		}
		var again []*scriptCall
		for _, c := range calls {
			if c != nil && try == 0 && redis.HasErrorPrefix(c.cmd.Err(), "NOSCRIPT") {
				again = append(again, c)
			}
		}
		if len(again) == 0 {
			return
		}
		if err := script.Load(ctx, rdb).Err(); err != nil {
			for _, c := range again {
				c.cmd.SetErr(fmt.Errorf("load the script: %w", err))
			}
			return
		}
		calls = again
	}
}

// acked reads a WAIT's reply: nil when enough replicas acknowledged.
func (s *Store) acked(wait *redis.Cmd) error {
	n, err := wait.Int()
	switch {
	case err != nil:
		return fmt.Errorf("wait for replicas: %w", err)
	case n < s.replicas:
		return fmt.Errorf("%w: %d of %d within %s", ErrNotDurable, n, s.replicas, s.waitTimeout)
	}
	return nil
}

// New returns a Store on rdb. prefix "" means keyspace.DefaultPrefix
// ("zhimaq:"); ttl 0 (or less) means RESULT_TTL's default (168h).
func New(rdb redis.UniversalClient, prefix string, ttl time.Duration) *Store {
	if ttl <= 0 {
		ttl = config.Defaults.ResultTTL
	}
	s := &Store{rdb: rdb, keys: keyspace.New(prefix), ttl: ttl}
	if _, s.cluster = rdb.(*redis.ClusterClient); s.cluster {
		s.keys = s.keys.Tagged()
	}
	return s
}

func (s *Store) key(k idempotency.Key) string {
	return s.keys.Result(k.AppID, k.Method, k.TransactionID)
}

// Get returns k's record in one round trip. It returns an error wrapping
// ErrNotFound when there is none, a *CorruptError when the stored value is
// not a record of k, and an error when k is invalid or Redis fails.
func (s *Store) Get(ctx context.Context, k idempotency.Key) (*Record, error) {
	if err := k.Validate(); err != nil {
		return nil, fmt.Errorf("results: get: %w", err)
	}
	data, err := s.rdb.Get(ctx, s.key(k)).Bytes()
	if err == redis.Nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, k)
	}
	if err != nil {
		return nil, fmt.Errorf("results: get %s: %w", k, err)
	}
	rec, _, err := decode(k, data)
	return rec, err
}

// GetMany returns the records of keys, in order, with nil where there is
// none. It reads them with MGETs of 500 keys, pipelined 20 to a round trip;
// on a Redis Cluster with GETs, as many to a round trip, each node sent its
// share.
//
// When some stored values are corrupt it returns the other records, nil in
// their places, and an error joining one *CorruptError for each. An invalid
// key (named by its index) or a Redis failure returns no records.
func (s *Store) GetMany(ctx context.Context, keys []idempotency.Key) ([]*Record, error) {
	names := make([]string, len(keys))
	for i, k := range keys {
		if err := k.Validate(); err != nil {
			return nil, fmt.Errorf("results: get many: key %d: %w", i, err)
		}
		names[i] = s.key(k)
	}
	recs := make([]*Record, len(keys))
	var corrupt []error
	for trip := 0; trip < len(names); trip += mgetChunk * mgetPerTrip {
		end := min(trip+mgetChunk*mgetPerTrip, len(names))
		vals, err := s.fetch(ctx, names[trip:end])
		if err != nil {
			return nil, fmt.Errorf("results: get many: %w", err)
		}
		for j, v := range vals {
			i := trip + j
			switch v := v.(type) {
			case nil:
			case string:
				rec, _, err := decode(keys[i], []byte(v))
				if err != nil {
					corrupt = append(corrupt, err)
					continue
				}
				recs[i] = rec
			default:
				corrupt = append(corrupt, &CorruptError{Key: keys[i], Reason: fmt.Sprintf("unexpected reply type %T", v)})
			}
		}
	}
	return recs, errors.Join(corrupt...)
}

// fetch reads names in one round trip: MGETs of mgetChunk keys pipelined,
// or on a Redis Cluster, whose MGET cannot span slots, one GET each (the
// cluster client sends each node its share, pipelined).
func (s *Store) fetch(ctx context.Context, names []string) ([]any, error) {
	pipe := s.rdb.Pipeline()
	var vals []any
	if s.cluster {
		cmds := make([]*redis.StringCmd, len(names))
		for i, n := range names {
			cmds[i] = pipe.Get(ctx, n)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for _, c := range cmds {
			if v, err := c.Result(); err == nil {
				vals = append(vals, v)
			} else {
				vals = append(vals, nil)
			}
		}
		return vals, nil
	}
	var cmds []*redis.SliceCmd
	for lo := 0; lo < len(names); lo += mgetChunk {
		cmds = append(cmds, pipe.MGet(ctx, names[lo:min(lo+mgetChunk, len(names))]...))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	for _, c := range cmds {
		vals = append(vals, c.Val()...)
	}
	return vals, nil
}

// Update reads k's record, applies change to it and writes it back, with the
// TTL refreshed, atomically: the write is a compare-and-set (one Lua script)
// that succeeds only if the record is still what was read, else Update
// reads again and retries (up to 10 times); change is then called again on
// the freshly read record, so it must only modify the record it is given.
// It returns the record written.
//
// Update sets no field itself (UpdatedAt included). It returns an error
// wrapping ErrNotFound when there is no record; change's error itself,
// unwrapped, when change fails, and then writes nothing; a *CorruptError for
// a corrupt value; an error wrapping redis.TxFailedErr when every try met a
// conflicting write; and an error when k is invalid, change made the record
// one of another key, or Redis fails.
func (s *Store) Update(ctx context.Context, k idempotency.Key, change func(*Record) error) (*Record, error) {
	rec, _, err := s.UpdateFrom(ctx, k, nil, Version{}, change)
	return rec, err
}

// Version is the stored value a record was read from or written as:
// UpdateFrom writes only while the store still holds it. The zero Version
// is none: UpdateFrom reads the record afresh.
type Version struct {
	meta
	legacy []byte // the whole value, for a record of the JSON format
}

// IsZero reports whether v is no version.
func (v Version) IsZero() bool { return v.version == 0 && v.legacy == nil }

// expected is what the compare-and-set compares the stored value with.
func (v Version) expected() string {
	if v.legacy != nil {
		return string(v.legacy)
	}
	return strconv.FormatInt(v.version, 10)
}

// next is the header of the value that replaces v: the next version, the
// same claim.
func (v Version) next() meta {
	m := v.meta
	m.version++
	return m
}

// Put writes rec as k's record whatever is there (a claim included), with
// the TTL, in one round trip, and returns the version it wrote. It returns
// an error when k is invalid, rec is not for k (its Method and
// TransactionID), rec cannot be encoded, or Redis fails.
func (s *Store) Put(ctx context.Context, k idempotency.Key, rec *Record) (Version, error) {
	m := meta{version: 1}
	data, err := encode("put", k, rec, m)
	if err != nil {
		return Version{}, err
	}
	if err := s.rdb.Set(ctx, s.key(k), data, s.ttl).Err(); err != nil {
		return Version{}, fmt.Errorf("results: put %s: %w", k, err)
	}
	return Version{meta: m}, nil
}

// UpdateFrom is Update starting from current at version v (from Begin, Put
// or UpdateFrom): while the store still holds v it costs one round trip
// instead of two. A nil current or a zero v is read afresh. It returns the
// record written and its version. The record keeps its claim.
func (s *Store) UpdateFrom(ctx context.Context, k idempotency.Key, current *Record, v Version, change func(*Record) error) (*Record, Version, error) {
	if err := k.Validate(); err != nil {
		return nil, Version{}, fmt.Errorf("results: update: %w", err)
	}
	key := s.key(k)
	var rec *Record
	if current != nil && !v.IsZero() {
		rec = current.clone()
	}
	for range maxUpdateTries {
		if rec == nil {
			var err error
			if rec, v, err = s.read(ctx, k); err != nil {
				return nil, Version{}, err
			}
		}
		if err := change(rec); err != nil {
			return nil, Version{}, err
		}
		m := v.next()
		data, err := encode("update", k, rec, m)
		if err != nil {
			return nil, Version{}, err
		}
		swapped, err := s.eval(ctx, casScript, []string{key}, rec.State.Terminal(), v.expected(), data, s.px(m)).Int()
		if err != nil {
			return nil, Version{}, fmt.Errorf("results: update %s: %w", k, err)
		}
		if swapped == 1 {
			return rec, Version{meta: m}, nil
		}
		rec = nil
		if err := ctx.Err(); err != nil {
			return nil, Version{}, fmt.Errorf("results: update %s: %w", k, err)
		}
	}
	return nil, Version{}, fmt.Errorf("results: update %s: %d tries met conflicting writes: %w", k, maxUpdateTries, redis.TxFailedErr)
}

// read returns k's record and its version for an update. A record of the
// JSON format comes with the claim of its own key, so that the update
// folds it in.
func (s *Store) read(ctx context.Context, k idempotency.Key) (*Record, Version, error) {
	data, err := s.rdb.Get(ctx, s.key(k)).Bytes()
	if err == redis.Nil {
		return nil, Version{}, fmt.Errorf("%w: %s", ErrNotFound, k)
	}
	if err != nil {
		return nil, Version{}, fmt.Errorf("results: update %s: %w", k, err)
	}
	rec, v, err := decode(k, data)
	if err != nil || v.legacy == nil {
		return rec, v, err
	}
	if v.meta, err = s.legacyClaim(ctx, k); err != nil {
		return nil, Version{}, fmt.Errorf("results: update %s: %w", k, err)
	}
	return rec, v, nil
}

// legacyClaim reads the claim a record of the JSON format has in a key of
// its own, as the header fields of the record that will replace it.
func (s *Store) legacyClaim(ctx context.Context, k idempotency.Key) (meta, error) {
	key := s.keys.Claim(k.AppID, k.Method, k.TransactionID)
	pipe := s.rdb.Pipeline()
	fp := pipe.Get(ctx, key)
	ttl := pipe.PTTL(ctx, key)
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return meta{}, err
	}
	if fp.Err() == redis.Nil || ttl.Val() <= 0 {
		return meta{}, nil
	}
	return meta{claimUntil: time.Now().UnixMilli() + ttl.Val().Milliseconds(), claim: storedForm(fp.Val())}, nil
}

// px is the TTL of a value with header m: RESULT_TTL, or longer while its
// claim lasts.
func (s *Store) px(m meta) int64 {
	return max(s.ttl.Milliseconds(), m.claimUntil-time.Now().UnixMilli())
}

// casScript: KEYS[1] record, ARGV[1] the version read (or, for a record of
// the JSON format, the whole value read), ARGV[2] the new value, ARGV[3]
// its TTL in ms. Writes only if the record is still at the version read.
var casScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and (string.match(v, '^2|(%d+)|') == ARGV[1] or v == ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
`)

// errEncode marks encode's errors, which Update passes on as they are.
var errEncode = errors.New("cannot store record")

// encode checks k and that rec belongs to it, and returns rec's stored form
// with header m.
func encode(op string, k idempotency.Key, rec *Record, m meta) ([]byte, error) {
	if err := k.Validate(); err != nil {
		return nil, fmt.Errorf("results: %s: %w", op, err)
	}
	if rec == nil {
		return nil, fmt.Errorf("results: %s %s: %w: nil record", op, k, errEncode)
	}
	if rec.Method != k.Method || rec.TransactionID != k.TransactionID || (rec.AppID != "" && rec.AppID != k.AppID) {
		return nil, fmt.Errorf("results: %s %s: %w: its app_id, method or transaction_id is not the key's", op, k, errEncode)
	}
	data, reason := encodeV2(rec, m)
	if reason != "" {
		return nil, fmt.Errorf("results: %s %s: %w: %s", op, k, errEncode, reason)
	}
	return data, nil
}

// decode reads a stored value as k's record, of either format.
func decode(k idempotency.Key, data []byte) (*Record, Version, error) {
	if isLegacy(data) {
		rec, err := decodeLegacy(k, data)
		if rec != nil {
			rec.AppID = k.AppID
		}
		return rec, Version{legacy: data}, err
	}
	rec, m, reason := decodeV2(data)
	if reason != "" {
		return nil, Version{}, &CorruptError{Key: k, Reason: reason}
	}
	rec.AppID, rec.Method, rec.TransactionID = k.AppID, k.Method, k.TransactionID
	return rec, Version{meta: m}, nil
}

// decodeLegacy reads a record of the JSON format.
func decodeLegacy(k idempotency.Key, data []byte) (*Record, error) {
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, &CorruptError{Key: k, Reason: decodeReason(err)}
	}
	if rec.Method != k.Method || rec.TransactionID != k.TransactionID {
		return nil, &CorruptError{Key: k, Reason: "the record names another method or transaction_id"}
	}
	return &rec, nil
}

// decodeReason describes a decoding error without quoting the value.
func decodeReason(err error) string {
	var (
		se *json.SyntaxError
		te *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("not valid JSON (at byte %d)", se.Offset)
	case errors.As(err, &te) && te.Field != "":
		return fmt.Sprintf("field %q does not hold a %s", te.Field, te.Type)
	case errors.As(err, &te):
		return fmt.Sprintf("not a JSON object (at byte %d)", te.Offset)
	}
	return "a field has a value of the wrong form"
}
