// Package batches keeps batches of jobs in Redis: each batch's lines in
// input order and its metadata, read back as records for status, export and
// the callback that tells a producer its batch has finished.
//
// Its keys (package keyspace names them):
//
//	<prefix>batch:<id>         hash: app_id, created_at, lines, complete, callback, cursor
//	<prefix>batch:<id>:lines   list: one small JSON object per line, in input order
//	<prefix>batches:callbacks  sorted set: batches awaiting their callback, by next check (ms)
//
// A line of an accepted job holds only its method and transaction_id (and
// whether it was a duplicate): its record lives in the results store. A
// rejected line's record is never stored in the results store, so its line
// holds what the record is made of: its error, its method and
// transaction_id when they were known, and its updated_at as whole seconds
// after the batch's created_at; its place in the list is its line number.
// A rejected `{}` line costs Redis under 40 bytes. A batch's keys expire
// RESULT_TTL after the producer's last write to them.
//
// The lines' JSON forms, keys left out when empty:
//
//	{"m":method,"t":transaction_id,"d":true}  an accepted job ("d": a duplicate)
//	{"s":sub_msg,"c":sub_code,"m":…,"t":…,"u":seconds}
//	    rejected locally with code 40004, msg "Business Failed" (the
//	    INVALID_PARAMETER, TRANSACTION_ID_REPEAT and TRANSACTION_ID_EXPIRED
//	    refusals); "c" is left out for INVALID_PARAMETER
//	{"e":error,"m":…,"t":…,"u":seconds}       rejected with any other error object
//	{"r":record}                              a rejected line's whole record: how
//	    every rejected line was kept before the forms above, and still how
//	    a rejected record is kept that they cannot rebuild
package batches

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/keyspace"
	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/results"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// ErrNotFound is returned, wrapped, for a batch that does not exist: never
// written, expired, or an id of the wrong form. Test for it with errors.Is.
var ErrNotFound = errors.New("batches: no batch")

// maxIDLen bounds a batch id; ids are made by NewID and far shorter.
const maxIDLen = 64

// NewID returns a fresh batch id: "b_", the time as 20261126T031500Z, "_"
// and 6 random base32 characters, e.g. b_20261126T031500Z_K3QF7A. It holds
// only [A-Za-z0-9_], so it is safe in keys, URLs, file names and logs.
func NewID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	r := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])[:6]
	return "b_" + now.UTC().Format("20060102T150405Z") + "_" + r
}

// ValidID reports whether id has the form of a batch id: "b_" followed by
// letters, digits and '_', at most 64 characters in all.
func ValidID(id string) bool {
	if len(id) > maxIDLen || !strings.HasPrefix(id, "b_") || len(id) == 2 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Meta describes a batch.
type Meta struct {
	// ID is the batch's id (NewID).
	ID string
	// AppID is the Alipay app its jobs were submitted for.
	AppID string
	// CreatedAt is when the batch was started.
	CreatedAt time.Time
	// Lines is how many lines the batch holds so far.
	Lines int
	// Complete is true once every line is in: the producer closed the batch.
	Complete bool
	// CallbackURL, when set, receives the batch's summary once it finishes.
	// Redis keeps it sealed (SealCallbackURL) unless the producer's keyring
	// is plaintext.
	CallbackURL string
	// Cursor is the sweeper's mark: every line before it has finished.
	Cursor int
}

// Line is one line of a batch: an accepted job, named by its method and
// transaction_id, or a rejected line's record.
type Line struct {
	// AppID is the job's app; "" for the batch's (Meta.AppID).
	AppID         string
	Method        string
	TransactionID string
	// Duplicate marks a line whose job had been submitted before.
	Duplicate bool
	// Rejected is the record of a line that was never enqueued. A record
	// that holds only what a rejection holds (a state of Rejected, an error,
	// the method and transaction_id, updated_at; no attempts, response,
	// other times or duplicate mark) reads back with its updated_at as the
	// batch's created_at plus the whole seconds between the two: less than
	// a second earlier, never before created_at when it was not before.
	// Any other record reads back as it was written.
	Rejected *results.Record
}

// LineOf is the line that a submission leaves in a batch: rec is its
// record, duplicate whether it was a duplicate.
func LineOf(rec *results.Record, duplicate bool) Line {
	if rec.State == results.Rejected {
		return Line{Rejected: rec}
	}
	return Line{AppID: rec.AppID, Method: rec.Method, TransactionID: rec.TransactionID, Duplicate: duplicate}
}

// storedLine is a Line as the batch's list holds it (the forms of the
// package comment).
type storedLine struct {
	AppID         string `json:"a,omitempty"` // "" for the batch's
	Method        string `json:"m,omitempty"`
	TransactionID string `json:"t,omitempty"`
	Duplicate     bool   `json:"d,omitempty"`
	// SubMsg and SubCode are a local "Business Failed" rejection's;
	// SubCode "" stands for INVALID_PARAMETER.
	SubMsg  string `json:"s,omitempty"`
	SubCode string `json:"c,omitempty"`
	// Error is any other rejection's error.
	Error *results.ErrorInfo `json:"e,omitempty"`
	// Updated is a rejection's updated_at: whole seconds after the batch's created_at.
	Updated int64 `json:"u,omitempty"`
	// Rejected is a rejected line's whole record.
	Rejected *results.Record `json:"r,omitempty"`
	// BatchApp says a compact rejection's app is the batch's (a rejection
	// of another app has AppID; one whose app was unknown, neither).
	BatchApp bool `json:"b,omitempty"`
}

// encodeLine is l's JSON as a batch of app created at created keeps it.
func encodeLine(l Line, created time.Time, app string) ([]byte, error) {
	if l.AppID == app {
		l.AppID = "" // the batch's: not kept per line
	}
	rec := l.Rejected
	if rec == nil {
		return json.Marshal(storedLine{AppID: l.AppID, Method: l.Method, TransactionID: l.TransactionID, Duplicate: l.Duplicate})
	}
	secs := rec.UpdatedAt.Sub(created) / time.Second // toward zero: never before created_at
	late := rec.UpdatedAt.Sub(created.Add(secs * time.Second))
	if rec.State != results.Rejected || rec.Error == nil || rec.Attempts != 0 || rec.Duplicate || len(rec.Response) != 0 ||
		rec.EnqueuedAt != nil || rec.FirstCallAt != nil || late <= -time.Second || late >= time.Second {
		return json.Marshal(storedLine{Rejected: rec}) // more than a compact form rebuilds
	}
	sl := storedLine{AppID: rec.AppID, Method: rec.Method, TransactionID: rec.TransactionID, Updated: int64(secs), Error: rec.Error}
	if rec.AppID != "" && rec.AppID == app {
		sl.AppID, sl.BatchApp = "", true
	}
	if e := rec.Error; e.Source == string(zhima.SourceLocal) && e.Code == zhima.CodeBusinessFailed && e.Msg == zhima.MsgBusinessFailed &&
		e.SubCode != "" && e.SubMsg != "" && e.TraceID == "" {
		sl.Error, sl.SubMsg = nil, e.SubMsg
		if e.SubCode != zhima.SubInvalidParameter {
			sl.SubCode = e.SubCode
		}
	}
	return json.Marshal(sl)
}

// rejected rebuilds the record of a compact rejected line of a batch of
// app, or returns nil when sl is none.
func (sl storedLine) rejected(created time.Time, app string) *results.Record {
	if sl.BatchApp {
		sl.AppID = app
	}
	rec := &results.Record{AppID: sl.AppID, Method: sl.Method, TransactionID: sl.TransactionID, State: results.Rejected,
		UpdatedAt: created.UTC().Add(time.Duration(sl.Updated) * time.Second)}
	switch {
	case sl.SubMsg != "":
		code := sl.SubCode
		if code == "" {
			code = zhima.SubInvalidParameter
		}
		rec.Error = payload.ErrorInfo(zhima.BusinessFailure(sl.Method, code, sl.SubMsg))
	case sl.Error != nil:
		e := *sl.Error
		rec.Error = &e
	default:
		return nil
	}
	return rec
}

// decodeLine reads a line of a batch of app created at created.
func decodeLine(raw []byte, created time.Time, app string) (Line, error) {
	var sl storedLine
	if err := json.Unmarshal(raw, &sl); err != nil {
		return Line{}, errors.New("is corrupt")
	}
	if sl.Rejected != nil {
		return Line{Rejected: sl.Rejected}, nil
	}
	if rec := sl.rejected(created, app); rec != nil {
		return Line{Rejected: rec}, nil
	}
	if sl.Method == "" || sl.TransactionID == "" {
		return Line{}, errors.New("names no job")
	}
	return Line{AppID: sl.AppID, Method: sl.Method, TransactionID: sl.TransactionID, Duplicate: sl.Duplicate}, nil
}

// Store keeps batches in Redis. It is safe for concurrent use; a Writer is not.
type Store struct {
	rdb     redis.UniversalClient
	keys    keyspace.Space
	ttl     time.Duration
	results *results.Store
	cluster bool // rdb is a Redis Cluster's client: tagged keys, the callbacks set written apart
}

// New returns a Store on rdb that reads records from the results store with
// the same prefix. prefix "" means "zhimaq:"; ttl 0 (or less) means
// RESULT_TTL's default (168h).
func New(rdb redis.UniversalClient, prefix string, ttl time.Duration) *Store {
	if ttl <= 0 {
		ttl = config.Defaults.ResultTTL
	}
	s := &Store{rdb: rdb, keys: keyspace.New(prefix), ttl: ttl, results: results.New(rdb, prefix, ttl)}
	if _, s.cluster = rdb.(*redis.ClusterClient); s.cluster {
		s.keys = s.keys.Tagged()
	}
	return s
}

func (s *Store) metaKey(id string) string  { return s.keys.Batch(id) }
func (s *Store) linesKey(id string) string { return s.keys.BatchLines(id) }
func (s *Store) pendingKey() string        { return s.keys.BatchCallbacks() }

// Meta returns the batch's metadata in one round trip, or an error wrapping
// ErrNotFound when there is no such batch.
func (s *Store) Meta(ctx context.Context, id string) (*Meta, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%w: the id is not a batch id", ErrNotFound)
	}
	h, err := s.rdb.HGetAll(ctx, s.metaKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("batches: read %s: %w", id, err)
	}
	if len(h) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	m := &Meta{ID: id, AppID: h["app_id"], CallbackURL: h["callback"], Complete: h["complete"] == "1"}
	if m.CreatedAt, err = time.Parse(time.RFC3339Nano, h["created_at"]); err != nil {
		return nil, fmt.Errorf("batches: read %s: created_at is not a time", id)
	}
	for name, dst := range map[string]*int{"lines": &m.Lines, "cursor": &m.Cursor} {
		if v, ok := h[name]; ok {
			if *dst, err = strconv.Atoi(v); err != nil {
				return nil, fmt.Errorf("batches: read %s: %s is not a number", id, name)
			}
		}
	}
	return m, nil
}

// lines returns lines [start, start+n) of batch m (fewer at its end) in one round trip.
func (s *Store) lines(ctx context.Context, m *Meta, start, n int) ([]Line, error) {
	raw, err := s.rdb.LRange(ctx, s.linesKey(m.ID), int64(start), int64(start+n-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("batches: read lines of %s: %w", m.ID, err)
	}
	out := make([]Line, len(raw))
	for i, r := range raw {
		if out[i], err = decodeLine([]byte(r), m.CreatedAt, m.AppID); err != nil {
			return nil, fmt.Errorf("batches: read lines of %s: line %d %v", m.ID, start+i+1, err)
		}
	}
	return out, nil
}

// Writer appends the lines of one new batch, in order, in chunks: one
// pipelined round trip per ChunkLines lines (or per FlushEvery, when lines
// come slowly), so a batch of 50,000 lines costs 50 round trips. The first
// line is written at once, so the batch can be read as soon as it has one.
// A Writer is not safe for concurrent use. After a failed write it fails
// every later call with the same error.
type Writer struct {
	s       *Store
	meta    Meta
	buf     []any
	lines   int
	started bool
	last    time.Time
	err     error
	closed  bool
}

// ChunkLines is how many lines a Writer buffers before writing them.
const ChunkLines = 1000

// FlushEvery is how long a Writer holds a line back at most while more come.
const FlushEvery = time.Second

// Writer returns a Writer for a new batch described by m: its ID, AppID,
// CreatedAt and CallbackURL. Nothing is written before the first Add or Close.
func (s *Store) Writer(m Meta) *Writer {
	return &Writer{s: s, meta: Meta{ID: m.ID, AppID: m.AppID, CreatedAt: m.CreatedAt.UTC(), CallbackURL: m.CallbackURL}}
}

// Lines is how many lines were added so far.
func (w *Writer) Lines() int { return w.lines + len(w.buf) }

// Add appends one line. It writes the lines buffered so far when this is
// the first line, ChunkLines are waiting, or FlushEvery has passed since
// the last write; errors are Redis's, or a line that cannot be encoded.
func (w *Writer) Add(ctx context.Context, l Line) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return fmt.Errorf("batches: add to %s: the batch is closed", w.meta.ID)
	}
	b, err := encodeLine(l, w.meta.CreatedAt, w.meta.AppID)
	if err != nil {
		return fmt.Errorf("batches: add to %s: %w", w.meta.ID, err)
	}
	w.buf = append(w.buf, string(b))
	if !w.started || len(w.buf) >= ChunkLines || time.Since(w.last) >= FlushEvery {
		return w.write(ctx, false)
	}
	return nil
}

// Flush writes the buffered lines.
func (w *Writer) Flush(ctx context.Context) error {
	if w.err != nil || len(w.buf) == 0 {
		return w.err
	}
	return w.write(ctx, false)
}

// Close writes the buffered lines and marks the batch complete, in one
// round trip; a batch with a callback URL then waits for its callback. A
// batch closed without lines exists, with none. Closing twice is a no-op.
func (w *Writer) Close(ctx context.Context) error {
	if w.err != nil || w.closed {
		return w.err
	}
	return w.write(ctx, true)
}

// write sends the buffer, and with closing the completion, in one MULTI.
// On a Redis Cluster the set of batches awaiting their callback lies in
// another slot than the batch's keys: a closing batch with a callback is
// added to it first, in a step of its own; should the MULTI then fail, the
// sweeper finds the batch incomplete and leaves it until it expires.
func (w *Writer) write(ctx context.Context, closing bool) error {
	id := w.meta.ID
	meta, lines := w.s.metaKey(id), w.s.linesKey(id)
	apart := closing && w.meta.CallbackURL != "" && w.s.cluster
	if apart {
		if _, err := w.s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.ZAdd(ctx, w.s.pendingKey(), redis.Z{Score: 0, Member: id})
			p.PExpire(ctx, w.s.pendingKey(), w.s.ttl)
			return nil
		}); err != nil {
			w.err = fmt.Errorf("batches: write %s: %w", id, err)
			return w.err
		}
	}
	_, err := w.s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if !w.started {
			p.HSet(ctx, meta, "app_id", w.meta.AppID, "created_at", w.meta.CreatedAt.Format(time.RFC3339Nano))
			if w.meta.CallbackURL != "" {
				p.HSet(ctx, meta, "callback", w.meta.CallbackURL)
			}
		}
		p.HIncrBy(ctx, meta, "lines", int64(len(w.buf)))
		if len(w.buf) > 0 {
			p.RPush(ctx, lines, w.buf...)
		}
		p.PExpire(ctx, lines, w.s.ttl)
		if closing {
			p.HSet(ctx, meta, "complete", "1")
			if w.meta.CallbackURL != "" && !apart {
				p.ZAdd(ctx, w.s.pendingKey(), redis.Z{Score: 0, Member: id})
				p.PExpire(ctx, w.s.pendingKey(), w.s.ttl)
			}
		}
		p.PExpire(ctx, meta, w.s.ttl)
		return nil
	})
	if err != nil {
		w.err = fmt.Errorf("batches: write %s: %w", id, err)
		return w.err
	}
	w.started, w.last, w.closed = true, time.Now(), closing
	w.lines += len(w.buf)
	w.buf = w.buf[:0]
	return nil
}

// claimDueScript: KEYS[1] the set of batches awaiting their callback;
// ARGV[1] now (ms), ARGV[2] lease (ms), ARGV[3] limit. It returns the ids
// that were due, each now pushed a lease into the future.
var claimDueScript = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local due = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], 'XX', due, id)
end
return ids
`)

// ClaimDue returns up to limit batches awaiting their callback whose next
// check is due at now, in one step that pushes each one's next check lease
// into the future: no two sweepers check one batch at once, and a sweeper
// that dies mid-check delays the batch by the lease only.
func (s *Store) ClaimDue(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]string, error) {
	return claimDueScript.Run(ctx, s.rdb, []string{s.pendingKey()}, now.UnixMilli(), lease.Milliseconds(), limit).StringSlice()
}

// Postpone moves the next check of batch m to next and, when cursor is
// past m.Cursor, records that every line before cursor has finished. It
// keeps the batch's expiry: a sweeper's bookkeeping does not keep an
// abandoned batch alive.
func (s *Store) Postpone(ctx context.Context, m *Meta, cursor int, next time.Time) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if cursor > m.Cursor {
			p.HSet(ctx, s.metaKey(m.ID), "cursor", strconv.Itoa(cursor))
		}
		p.ZAddXX(ctx, s.pendingKey(), redis.Z{Score: float64(next.UnixMilli()), Member: m.ID})
		return nil
	})
	return err
}

// Settle drops batch id from the batches awaiting their callback: its
// callback is enqueued, or the batch has expired.
func (s *Store) Settle(ctx context.Context, id string) error {
	return s.rdb.ZRem(ctx, s.pendingKey(), id).Err()
}

// TTL is how long the store keeps a batch after its last write (RESULT_TTL).
func (s *Store) TTL() time.Duration { return s.ttl }
