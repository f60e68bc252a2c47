package batches

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/idempotency"
	"github.com/zhimaq/zhimaq/internal/redistest"
	"github.com/zhimaq/zhimaq/internal/results"
)

const (
	testApp    = "2021000000000001"
	testMethod = "zhima.credit.score.brief.get"
	testTTL    = 2 * time.Hour
)

// tripCounter counts the round trips a client makes: one per command or
// pipeline, leaving out those that set up a new connection.
type tripCounter struct{ n atomic.Int64 }

func setUp(cmd redis.Cmder) bool { return cmd.Name() == "hello" || cmd.Name() == "client" }

func (c *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !setUp(cmd) {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (c *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && !setUp(cmds[0]) {
			c.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

// fixture is a Store on the test's Redis, with its results store and client.
type fixture struct {
	store   *Store
	results *results.Store
	rdb     redis.UniversalClient
	trips   *tripCounter
	srv     *redistest.Server
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	srv := redistest.New(tb)
	rdb := srv.Client(tb)
	trips := &tripCounter{}
	rdb.AddHook(trips)
	if err := rdb.Ping(context.Background()).Err(); err != nil { // dial now: connection set-up is no round trip of ours
		tb.Fatal(err)
	}
	return &fixture{store: New(rdb, srv.Prefix, testTTL), results: results.New(rdb, srv.Prefix, testTTL), rdb: rdb, trips: trips, srv: srv}
}

func key(tid string) idempotency.Key {
	return idempotency.Key{AppID: testApp, Method: testMethod, TransactionID: tid}
}

// putRecord stores tid's record in state, last changed at.
func (f *fixture) putRecord(tb testing.TB, tid string, state results.State, batchID string, at time.Time) {
	tb.Helper()
	rec := &results.Record{Method: testMethod, TransactionID: tid, State: state, EnqueuedAt: &at, UpdatedAt: at, BatchID: batchID}
	if _, err := f.results.Put(context.Background(), key(tid), rec); err != nil {
		tb.Fatal(err)
	}
}

func rejected(msg string) *results.Record {
	return &results.Record{State: results.Rejected, UpdatedAt: time.Unix(1700000000, 0).UTC(),
		Error: &results.ErrorInfo{Source: "local", SubCode: "INVALID_PARAMETER", SubMsg: msg}}
}

func TestNewIDIsValid(t *testing.T) {
	seen := map[string]bool{}
	at := time.Date(2026, 11, 26, 11, 15, 0, 0, time.FixedZone("CST", 8*3600))
	for range 100 {
		id := NewID(at)
		if !strings.HasPrefix(id, "b_20261126T031500Z_") || len(id) != len("b_20261126T031500Z_")+6 || !ValidID(id) {
			t.Fatalf("NewID = %q", id)
		}
		seen[id] = true
	}
	if len(seen) < 95 {
		t.Errorf("%d distinct ids of 100", len(seen))
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"b_20261126T031500Z_K3QF7A", true}, {"b_x", true}, {"b_", false}, {"", false}, {"x_20261126", false},
		{"b_1:2", false}, {"b_*", false}, {"b_a b", false}, {"b_" + strings.Repeat("a", 62), true}, {"b_" + strings.Repeat("a", 63), false},
	}
	for _, tt := range tests {
		if got := ValidID(tt.id); got != tt.want {
			t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestWriterWritesInChunks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	created := time.Date(2026, 11, 26, 3, 15, 0, 0, time.UTC)
	id := NewID(created)
	w := f.store.Writer(Meta{ID: id, AppID: testApp, CreatedAt: created, CallbackURL: "https://example.com/hook?t=1"})
	const n = 2*ChunkLines + 500
	before := f.trips.n.Load()
	for i := range n {
		l := Line{Method: testMethod, TransactionID: fmt.Sprintf("T%d", i)}
		if i%100 == 7 {
			l = Line{Rejected: rejected("cert_no: bad")}
		}
		if err := w.Add(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The first line alone, two full chunks, the rest with the close; on a
	// cluster the callbacks set, in a slot of its own, in a step apart.
	want := int64(4)
	if f.srv.Cluster {
		want++
	}
	if trips := f.trips.n.Load() - before; trips > want {
		t.Errorf("%d round trips for %d lines, want at most %d", trips, n, want)
	}
	m, err := f.store.Meta(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != id || m.AppID != testApp || !m.CreatedAt.Equal(created) || m.Lines != n || !m.Complete || m.CallbackURL != "https://example.com/hook?t=1" {
		t.Errorf("meta = %+v", m)
	}
	for _, k := range []string{f.store.metaKey(id), f.store.linesKey(id), f.store.pendingKey()} {
		if ttl := f.rdb.PTTL(ctx, k).Val(); ttl <= testTTL-time.Minute || ttl > testTTL {
			t.Errorf("PTTL(%s) = %v, want about %v", k, ttl, testTTL)
		}
	}
	if got := f.rdb.ZScore(ctx, f.store.pendingKey(), id).Val(); got != 0 {
		t.Errorf("pending score = %v, want 0 (due now)", got)
	}
	if err := w.Add(ctx, Line{Method: testMethod, TransactionID: "late"}); err == nil {
		t.Error("Add after Close succeeded")
	}
}

func TestWriterEmptyBatchAndNoCallback(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	id := NewID(time.Now())
	if err := f.store.Writer(Meta{ID: id, AppID: testApp, CreatedAt: time.Now()}).Close(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := f.store.Meta(ctx, id)
	if err != nil || m.Lines != 0 || !m.Complete || m.CallbackURL != "" {
		t.Fatalf("meta = %+v, %v", m, err)
	}
	if n := f.rdb.Exists(ctx, f.store.pendingKey()).Val(); n != 0 {
		t.Error("a batch without a callback waits for one")
	}
}

func TestWriterFailsForGood(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer rdb.Close()
	w := New(rdb, "x:", time.Hour).Writer(Meta{ID: "b_x", AppID: testApp, CreatedAt: time.Now()})
	first := w.Add(context.Background(), Line{Method: testMethod, TransactionID: "T1"})
	if first == nil {
		t.Fatal("Add succeeded without Redis")
	}
	if err := w.Close(context.Background()); !errors.Is(err, first) && err != first {
		t.Errorf("Close = %v, want the first error %v", err, first)
	}
}

func TestMetaNotFound(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, id := range []string{"b_20260101T000000Z_AAAAAA", "b_x:*", ""} {
		if _, err := f.store.Meta(context.Background(), id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Meta(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestEntriesInOrderWithTheirRecords(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	other := "b_20260101T000000Z_OTHERB"
	at := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	id := NewID(at)
	f.putRecord(t, "A", results.Succeeded, id, at.Add(time.Minute))
	f.putRecord(t, "B", results.Retrying, id, at.Add(2*time.Minute))
	f.putRecord(t, "OLD", results.Failed, other, at.Add(-time.Hour)) // first submitted in another batch
	w := f.store.Writer(Meta{ID: id, AppID: testApp, CreatedAt: at})
	lines := []Line{
		{Method: testMethod, TransactionID: "A"},
		{Rejected: rejected("name: bad")},
		{Method: testMethod, TransactionID: "B"},
		{Method: testMethod, TransactionID: "OLD", Duplicate: true},
		{Method: testMethod, TransactionID: "GONE"}, // its record has expired
		{Method: testMethod, TransactionID: "A", Duplicate: true},
	}
	for _, l := range lines {
		if err := w.Add(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := f.store.Meta(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		tid   string
		state results.State
		dup   bool
	}
	wants := []want{{"A", results.Succeeded, false}, {"", results.Rejected, false}, {"B", results.Retrying, false},
		{"OLD", results.Failed, true}, {"GONE", results.Failed, false}, {"A", results.Succeeded, true}}
	i := 0
	for e, err := range f.store.Entries(ctx, m, 0) {
		if err != nil {
			t.Fatal(err)
		}
		w := wants[i]
		if e.Index != i || e.Record.TransactionID != w.tid || e.Record.State != w.state || e.Line.Duplicate != w.dup {
			t.Errorf("entry %d: %+v (duplicate %v), want %+v", i, e.Record, e.Line.Duplicate, w)
		}
		i++
	}
	if i != len(wants) {
		t.Fatalf("%d entries, want %d", i, len(wants))
	}
	stored, _ := f.results.Get(ctx, key("OLD"))
	if stored.BatchID != other {
		t.Errorf("stored record of OLD names batch %q, want %q", stored.BatchID, other)
	}
	var gone *results.Record
	for e := range f.store.Entries(ctx, m, 4) {
		gone = e.Record
		break
	}
	if gone == nil || gone.Error == nil || gone.Error.Msg != Expired {
		t.Errorf("expired record = %+v", gone)
	}

	tally, err := f.store.Tally(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if tally.Lines != 6 || tally.Total != 5 || tally.Finished != 4 || tally.Counts[results.Succeeded] != 2 || tally.Counts[results.Retrying] != 1 ||
		tally.Counts[results.Failed] != 2 || tally.Counts[results.Rejected] != 1 || tally.Counts[results.Queued] != 0 || len(tally.Counts) != len(results.States) {
		t.Errorf("tally = %+v", tally)
	}
}

func TestEntriesReadInChunks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	id := NewID(time.Now())
	w := f.store.Writer(Meta{ID: id, AppID: testApp, CreatedAt: time.Now()})
	const n = readChunk*2 + 1
	for i := range n {
		if err := w.Add(ctx, Line{Rejected: rejected(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	m, _ := f.store.Meta(ctx, id)
	before := f.trips.n.Load()
	count := 0
	for e, err := range f.store.Entries(ctx, m, 0) {
		if err != nil || e.Record.Error.SubMsg != fmt.Sprint(count) {
			t.Fatalf("entry %d: %+v, %v", count, e.Record, err)
		}
		count++
	}
	if trips := f.trips.n.Load() - before; count != n || trips > 6 {
		t.Errorf("%d entries in %d round trips; want %d in at most 6", count, trips, n)
	}
}

func TestLinesKeepRejectionsCompactly(t *testing.T) {
	created := time.Date(2026, 11, 26, 3, 15, 0, 250_000_000, time.UTC)
	at := func(d time.Duration) time.Time { return created.Add(d) }
	local := func(code, msg string) *results.ErrorInfo {
		return &results.ErrorInfo{Source: "local", Code: "40004", Msg: "Business Failed", SubCode: code, SubMsg: msg}
	}
	rej := func(method, tid string, e *results.ErrorInfo, updated time.Time) *results.Record {
		return &results.Record{Method: method, TransactionID: tid, State: results.Rejected, Error: e, UpdatedAt: updated, BatchID: "b_x"}
	}
	withAttempts := rej(testMethod, "T9", local("INVALID_PARAMETER", "x"), at(time.Second))
	withAttempts.Attempts = 1
	tests := []struct {
		name   string
		line   Line
		stored string
		// updated is the rejected record's updated_at as read back.
		updated time.Time
	}{
		{"accepted_job_keeps_method_and_transaction", Line{Method: testMethod, TransactionID: "T1"},
			`{"m":"zhima.credit.score.brief.get","t":"T1"}`, time.Time{}},
		{"duplicate_is_marked", Line{Method: testMethod, TransactionID: "T1", Duplicate: true},
			`{"m":"zhima.credit.score.brief.get","t":"T1","d":true}`, time.Time{}},
		{"empty_object_keeps_its_sub_msg_and_whole_seconds", Line{Rejected: rej("", "", local("INVALID_PARAMETER", "method: is required"), at(2900*time.Millisecond))},
			`{"s":"method: is required","u":2}`, at(2 * time.Second)},
		{"repeat_keeps_its_sub_code", Line{Rejected: rej(testMethod, "T1", local("TRANSACTION_ID_REPEAT", "transaction_id was already used"), at(300*time.Millisecond))},
			`{"m":"zhima.credit.score.brief.get","t":"T1","s":"transaction_id was already used","c":"TRANSACTION_ID_REPEAT"}`, created},
		{"other_error_keeps_its_object", Line{Rejected: rej(testMethod, "T2", &results.ErrorInfo{Source: "local", Msg: "Redis failed"}, at(61*time.Second))},
			`{"m":"zhima.credit.score.brief.get","t":"T2","e":{"source":"local","msg":"Redis failed"},"u":61}`, at(61 * time.Second)},
		{"rejection_before_the_batch_reads_back_within_a_second", Line{Rejected: rej("", "", local("INVALID_PARAMETER", "x"), at(-1500*time.Millisecond))},
			`{"s":"x","u":-1}`, at(-time.Second)},
		{"record_with_attempts_is_kept_whole", Line{Rejected: withAttempts}, "", withAttempts.UpdatedAt},
		{"record_without_error_is_kept_whole", Line{Rejected: rej("", "", nil, at(time.Second))}, "", at(time.Second)},
		{"zero_updated_at_is_kept_whole", Line{Rejected: rej("", "", local("INVALID_PARAMETER", "x"), time.Time{})}, "", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := encodeLine(tt.line, created, "")
			if err != nil {
				t.Fatal(err)
			}
			stored := tt.stored
			if stored == "" { // kept whole: the form every rejected line had before
				rec, _ := tt.line.Rejected.MarshalJSON()
				stored = `{"r":` + string(rec) + `}`
			}
			if string(b) != stored {
				t.Errorf("stored %s\n          want %s", b, stored)
			}
			back, err := decodeLine(b, created, "")
			if err != nil {
				t.Fatal(err)
			}
			if tt.line.Rejected == nil {
				if back != tt.line {
					t.Errorf("read back %+v, want %+v", back, tt.line)
				}
				return
			}
			want := *tt.line.Rejected
			want.UpdatedAt = tt.updated
			if tt.stored != "" {
				want.BatchID = "" // a compact line names no batch: its reader knows the batch
			}
			if got, wantJSON := recordJSON(t, back.Rejected), recordJSON(t, &want); got != wantJSON {
				t.Errorf("read back %s\n     want %s", got, wantJSON)
			}
		})
	}
}

func recordJSON(tb testing.TB, rec *results.Record) string {
	tb.Helper()
	if rec == nil {
		tb.Fatal("no record")
	}
	b, err := rec.MarshalJSON()
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func TestLinesReadBack(t *testing.T) {
	created := time.Date(2026, 11, 26, 3, 15, 0, 0, time.UTC)
	tests := []struct {
		name, raw string
		want      Line
		err       string
	}{
		{"line_written_before_the_compact_forms", `{"r":{"method":"","transaction_id":"","state":"rejected","attempts":0,"duplicate":false,"response":null,` +
			`"error":{"source":"local","code":"40004","msg":"Business Failed","sub_code":"INVALID_PARAMETER","sub_msg":"method: is required"},` +
			`"enqueued_at":null,"updated_at":"2026-11-26T03:15:02.123456789Z","batch_id":"b_x"}}`,
			Line{Rejected: &results.Record{State: results.Rejected, UpdatedAt: time.Date(2026, 11, 26, 3, 15, 2, 123456789, time.UTC), BatchID: "b_x",
				Error: &results.ErrorInfo{Source: "local", Code: "40004", Msg: "Business Failed", SubCode: "INVALID_PARAMETER", SubMsg: "method: is required"}}}, ""},
		{"corrupt_line_fails", `{"m":`, Line{}, "is corrupt"},
		{"line_without_a_job_fails", `{"d":true}`, Line{}, "names no job"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeLine([]byte(tt.raw), created, "")
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("decodeLine = %+v, %v; want error %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if recordJSON(t, got.Rejected) != recordJSON(t, tt.want.Rejected) {
				t.Errorf("read back %s\n     want %s", recordJSON(t, got.Rejected), recordJSON(t, tt.want.Rejected))
			}
		})
	}
}

// TestEmptyObjectLineIsSmall pins what a rejected `{}` line costs in its
// list: the bytes stored, whatever Redis adds per list entry (2 or 3 bytes).
func TestEmptyObjectLineIsSmall(t *testing.T) {
	created := time.Now()
	rec := &results.Record{State: results.Rejected, UpdatedAt: created.Add(99999 * time.Second), // more than a day later
		Error: &results.ErrorInfo{Source: "local", Code: "40004", Msg: "Business Failed", SubCode: "INVALID_PARAMETER", SubMsg: "method: is required"}}
	b, err := encodeLine(Line{Rejected: rec}, created, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 40 {
		t.Errorf("a rejected {} line is stored in %d bytes, want at most 40: %s", len(b), b)
	}
}
