package results

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/clustertest"
	"github.com/zhimaq/zhimaq/internal/idempotency"
	"github.com/zhimaq/zhimaq/internal/redistest"
)

const testTTL = 2 * time.Hour

// newStore returns a Store with testTTL on the test's Redis, and its client.
func newStore(tb testing.TB) (*Store, redis.UniversalClient, *redistest.Server) {
	tb.Helper()
	srv := redistest.New(tb)
	rdb := srv.Client(tb)
	return New(rdb, srv.Prefix, testTTL), rdb, srv
}

func key(txID string) idempotency.Key {
	return idempotency.Key{AppID: "2015000000000001", Method: "zhima.credit.score.brief.get", TransactionID: txID}
}

// queued returns a fresh queued record for k.
func queued(k idempotency.Key) *Record {
	return &Record{AppID: k.AppID, Method: k.Method, TransactionID: k.TransactionID, State: Queued, EnqueuedAt: ptr(t0), UpdatedAt: t0}
}

func put(tb testing.TB, s *Store, k idempotency.Key, rec *Record) {
	tb.Helper()
	if _, err := s.Put(context.Background(), k, rec); err != nil {
		tb.Fatalf("Put(%s): %v", k, err)
	}
}

func get(tb testing.TB, s *Store, k idempotency.Key) *Record {
	tb.Helper()
	rec, err := s.Get(context.Background(), k)
	if err != nil {
		tb.Fatalf("Get(%s): %v", k, err)
	}
	return rec
}

// assertSame fails unless a and b encode alike.
func assertSame(tb testing.TB, got, want *Record) {
	tb.Helper()
	g, err1 := got.MarshalJSON()
	w, err2 := want.MarshalJSON()
	if err1 != nil || err2 != nil || string(g) != string(w) {
		tb.Errorf("record =\n%s\nwant\n%s", g, w)
	}
}

// assertTTLNear fails unless k's record expires within a few seconds under want.
func assertTTLNear(tb testing.TB, rdb redis.Cmdable, s *Store, k idempotency.Key, want time.Duration) {
	tb.Helper()
	got, err := rdb.PTTL(context.Background(), s.key(k)).Result()
	if err != nil {
		tb.Fatal(err)
	}
	// Times are kept to the millisecond: a TTL derived from another may
	// round up by one.
	if got > want+time.Millisecond || got <= want-5*time.Second {
		tb.Errorf("PTTL = %v, want just under %v (to the millisecond)", got, want)
	}
}

func TestNewDefaults(t *testing.T) {
	s := New(nil, "", 0)
	if got, want := s.key(key("T1")), "zhimaq:result:2015000000000001:zhima.credit.score.brief.get:T1"; got != want {
		t.Errorf("key = %q, want %q", got, want)
	}
	if s.ttl != 168*time.Hour {
		t.Errorf("ttl = %v, want 168h", s.ttl)
	}
}

func TestGetPut(t *testing.T) {
	t.Parallel()
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	k := key("T1")
	t.Run("not_found_when_none", func(t *testing.T) {
		_, err := s.Get(ctx, k)
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get = %v, want ErrNotFound", err)
		}
		if !strings.Contains(err.Error(), "T1") {
			t.Errorf("error %q does not name the key", err)
		}
	})
	t.Run("found_after_put", func(t *testing.T) {
		want := queued(k)
		put(t, s, k, want)
		assertSame(t, get(t, s, k), want)
		assertTTLNear(t, rdb, s, k, testTTL)
	})
	t.Run("overwritten_by_put", func(t *testing.T) {
		want := queued(k)
		want.State, want.Attempts = Succeeded, 1
		want.Response = []byte(`{"code":"10000","msg":"Success"}`)
		rdb.PExpire(ctx, s.key(k), time.Minute)
		put(t, s, k, want)
		assertSame(t, get(t, s, k), want)
		assertTTLNear(t, rdb, s, k, testTTL)
	})
}

func TestWriteRefused(t *testing.T) {
	t.Parallel()
	s, _, srv := newStore(t)
	ctx := context.Background()
	k := key("T1")
	tests := []struct {
		name string
		key  idempotency.Key
		rec  *Record
	}{
		{"error_when_key_invalid", idempotency.Key{AppID: "a", Method: "m", TransactionID: "T-1"}, &Record{Method: "m", TransactionID: "T-1"}},
		{"error_when_record_nil", k, nil},
		{"error_when_record_of_other_transaction", k, queued(key("T2"))},
		{"error_when_response_invalid", k, &Record{Method: k.Method, TransactionID: k.TransactionID, Response: []byte(`{"cert_no":"1101`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Put(ctx, tt.key, tt.rec)
			if err == nil {
				t.Fatal("Put succeeded")
			}
			if strings.Contains(err.Error(), "1101") {
				t.Errorf("error %q quotes the record", err)
			}
		})
	}
	if keys := srv.Keys(t, srv.Prefix+"*"); len(keys) != 0 {
		t.Errorf("keys after refused writes = %v; want none", keys)
	}
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	errChange := errors.New("change refused")
	tests := []struct {
		name    string
		exists  bool
		change  func(*Record) error
		wantErr func(error) bool
		want    func(*Record) // applied to the stored record's expected value
	}{
		{
			name:   "updated_when_exists",
			exists: true,
			change: func(r *Record) error { r.State, r.Attempts, r.UpdatedAt = Running, r.Attempts+1, t1; return nil },
			want:   func(r *Record) { r.State, r.Attempts, r.UpdatedAt = Running, 1, t1 },
		},
		{
			name:    "not_found_when_missing",
			change:  func(*Record) error { return nil },
			wantErr: func(err error) bool { return errors.Is(err, ErrNotFound) },
		},
		{
			name:    "change_error_returned_and_nothing_written",
			exists:  true,
			change:  func(r *Record) error { r.State = Failed; return errChange },
			wantErr: func(err error) bool { return err == errChange },
			want:    func(*Record) {},
		},
		{
			name:    "error_when_change_moves_record_to_other_key",
			exists:  true,
			change:  func(r *Record) error { r.TransactionID = "T2"; return nil },
			wantErr: func(err error) bool { return err != nil },
			want:    func(*Record) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _, _ := newStore(t)
			k := key("T1")
			if tt.exists {
				put(t, s, k, queued(k))
			}
			got, err := s.Update(context.Background(), k, tt.change)
			if tt.wantErr != nil {
				if err == nil || !tt.wantErr(err) {
					t.Fatalf("Update = %v, %v; want the test's error", got, err)
				}
			} else if err != nil {
				t.Fatalf("Update: %v", err)
			}
			if tt.want == nil {
				return
			}
			want := queued(k)
			tt.want(want)
			stored := get(t, s, k)
			assertSame(t, stored, want)
			if err == nil {
				assertSame(t, got, want)
			}
		})
	}
}

func TestUpdateRefreshesTTL(t *testing.T) {
	t.Parallel()
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	k := key("T1")
	put(t, s, k, queued(k))
	if err := rdb.PExpire(ctx, s.key(k), time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, k, func(r *Record) error { r.State = Running; return nil }); err != nil {
		t.Fatalf("Update: %v", err)
	}
	assertTTLNear(t, rdb, s, k, testTTL)
}

func TestUpdateConcurrent(t *testing.T) {
	t.Parallel()
	const n = 8
	srv := redistest.New(t)
	k := key("T1")
	stores := make([]*Store, n)
	for i := range stores {
		stores[i] = New(srv.Client(t), srv.Prefix, testTTL) // one client (pool) each
	}
	put(t, stores[0], k, queued(k))
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = stores[i].Update(context.Background(), k, func(r *Record) error {
				r.Attempts++
				return nil
			})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("goroutine %d: %v", i, err)
		}
	}
	if got := get(t, stores[0], k).Attempts; got != n {
		t.Errorf("Attempts = %d, want %d", got, n)
	}
}

func TestGetMany(t *testing.T) {
	t.Parallel()
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	// More than one MGET chunk, and every third record missing.
	const n = 2*mgetChunk + 203
	keys := make([]idempotency.Key, n)
	pipe := rdb.Pipeline()
	for i := range keys {
		keys[i] = key(fmt.Sprintf("T%d", i))
		if i%3 == 1 {
			continue
		}
		rec := queued(keys[i])
		rec.Attempts = i
		data, err := rec.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		pipe.Set(ctx, s.key(keys[i]), data, testTTL)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	t.Run("nil_where_missing", func(t *testing.T) {
		recs, err := s.GetMany(ctx, keys)
		if err != nil {
			t.Fatalf("GetMany: %v", err)
		}
		if len(recs) != n {
			t.Fatalf("len = %d, want %d", len(recs), n)
		}
		for i, rec := range recs {
			switch {
			case i%3 == 1 && rec != nil:
				t.Fatalf("record %d = %+v, want nil", i, rec)
			case i%3 != 1 && (rec == nil || rec.Attempts != i || rec.TransactionID != keys[i].TransactionID):
				t.Fatalf("record %d = %+v, want attempts %d", i, rec, i)
			}
		}
	})
	t.Run("empty_when_no_keys", func(t *testing.T) {
		recs, err := s.GetMany(ctx, nil)
		if err != nil || len(recs) != 0 {
			t.Fatalf("GetMany(nil) = %v, %v", recs, err)
		}
	})
	t.Run("corrupt_reported_others_returned", func(t *testing.T) {
		if err := rdb.Set(ctx, s.key(keys[3]), "{not json", testTTL).Err(); err != nil {
			t.Fatal(err)
		}
		recs, err := s.GetMany(ctx, keys[:6])
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Key != keys[3] {
			t.Fatalf("GetMany error = %v, want a CorruptError for %s", err, keys[3])
		}
		if len(recs) != 6 || recs[0] == nil || recs[3] != nil || recs[5] == nil {
			t.Fatalf("records = %v, want 0, 2, 5 set and 3 nil", recs)
		}
	})
	t.Run("error_when_key_invalid", func(t *testing.T) {
		if _, err := s.GetMany(ctx, []idempotency.Key{keys[0], {}}); err == nil {
			t.Fatal("GetMany with an empty key succeeded")
		}
	})
}

func TestCorrupt(t *testing.T) {
	t.Parallel()
	const secret = "110101199003074518"
	tests := []struct {
		name  string
		value string
	}{
		{"corrupt_when_not_json", "cert_no=" + secret},
		{"corrupt_when_truncated", `{"method":"zhima.credit.score.brief.get","transaction_id":"T1","response":{"cert_no":"` + secret},
		{"corrupt_when_field_of_wrong_type", `{"method":"zhima.credit.score.brief.get","transaction_id":"T1","attempts":"` + secret + `"}`},
		{"corrupt_when_time_malformed", `{"method":"zhima.credit.score.brief.get","transaction_id":"T1","updated_at":"` + secret + `"}`},
		{"corrupt_when_not_an_object", `["` + secret + `"]`},
		{"corrupt_when_record_of_other_transaction", `{"method":"zhima.credit.score.brief.get","transaction_id":"T` + secret + `"}`},
		{"corrupt_when_header_has_no_end", "2|1|q|0|||" + secret},
		{"corrupt_when_header_short", "2|1|q|0|" + secret + "\n"},
		{"corrupt_when_state_unknown", "2|1|z|0|||||||\n"},
		{"corrupt_when_attempts_not_a_number", "2|1|q|x" + secret + "|||||||\n"},
		{"corrupt_when_time_not_a_number", "2|1|q|0|||x" + secret + "||||\n"},
		{"corrupt_when_error_not_json", "2|1|f|1|||1|1|||{" + secret + "\n"},
		{"corrupt_when_response_not_json", "2|1|s|1|||1|1|||\n{\"cert_no\":\"" + secret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, rdb, _ := newStore(t)
			ctx := context.Background()
			k := key("T1")
			if err := rdb.Set(ctx, s.key(k), tt.value, testTTL).Err(); err != nil {
				t.Fatal(err)
			}
			check := func(op string, err error) {
				t.Helper()
				var ce *CorruptError
				if !errors.As(err, &ce) || ce.Key != k {
					t.Fatalf("%s error = %v, want a CorruptError for %s", op, err, k)
				}
				if msg := err.Error(); !strings.Contains(msg, k.String()) || strings.Contains(msg, secret) {
					t.Errorf("%s error %q must name the key and not quote the value", op, msg)
				}
			}
			_, err := s.Get(ctx, k)
			check("Get", err)
			_, err = s.Update(ctx, k, func(*Record) error { t.Error("change called on a corrupt record"); return nil })
			check("Update", err)
			_, err = s.GetMany(ctx, []idempotency.Key{k})
			check("GetMany", err)
		})
	}
}

// TestUpdateFromVersion: an update from the version it was read at writes
// at once; from a version another writer has since replaced, it reads the
// record again and applies the change to what that writer stored.
func TestUpdateFromVersion(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	k := key("VERSION_1")
	v, err := s.Put(ctx, k, queued(k))
	if err != nil {
		t.Fatal(err)
	}
	rec, v2, err := s.UpdateFrom(ctx, k, queued(k), v, func(r *Record) error { r.Attempts++; return nil })
	if err != nil || rec.Attempts != 1 {
		t.Fatalf("UpdateFrom at the current version = %+v, %v", rec, err)
	}
	if _, err := s.Update(ctx, k, func(r *Record) error { r.State = Retrying; r.Attempts = 5; return nil }); err != nil {
		t.Fatal(err)
	}
	calls := 0
	rec, _, err = s.UpdateFrom(ctx, k, rec, v2, func(r *Record) error { calls++; r.Attempts++; return nil })
	if err != nil || rec.Attempts != 6 || rec.State != Retrying || calls != 2 {
		t.Fatalf("UpdateFrom at a replaced version = %+v, %v after %d calls; want the other writer's record changed (attempts 6, retrying), tried twice", rec, err, calls)
	}
	if got := get(t, s, k); got.Attempts != 6 {
		t.Errorf("stored attempts %d, want 6", got.Attempts)
	}
}

// TestStoredForm: a record is stored as its header and the response as the
// gateway sent it, and reads back as it was written.
func TestStoredForm(t *testing.T) {
	t.Parallel()
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	k := key("T1")
	resp := `{"code":"10000","msg":"Success","is_admittance":true,"biz_no":"ZM2024\/05","name":"张*"}`
	rec := queued(k)
	rec.State, rec.Attempts, rec.FirstCallAt, rec.UpdatedAt, rec.BatchID = Failed, 2, ptr(t0), t1, "b_batch1"
	rec.Response = []byte(resp)
	rec.Error = &ErrorInfo{Source: "gateway", Code: "40004", Msg: "Business Failed | with a bar", SubCode: "INVALID_PARAMETER"}
	put(t, s, k, rec)
	raw, err := rdb.Get(ctx, s.key(k)).Result()
	if err != nil {
		t.Fatal(err)
	}
	header := fmt.Sprintf("2|1|f|2|||%d|%d|%d|b_batch1|", t0.UnixMilli(), t1.UnixMilli(), t0.UnixMilli())
	if !strings.HasPrefix(raw, header) || !strings.HasSuffix(raw, "\n"+resp) {
		t.Errorf("stored value = %q, want header %q and the response byte for byte", raw, header)
	}
	assertSame(t, get(t, s, k), rec)
}

// TestGetManyOnACluster: the records of many jobs live in every slot of a
// Redis Cluster, and GetMany reads them all in order, nil where none.
func TestGetManyOnACluster(t *testing.T) {
	srv := clustertest.New(t)
	s := New(srv.Client(t), srv.Prefix, time.Minute)
	var keys []idempotency.Key
	for i := range 1200 {
		k := idempotency.Key{AppID: "2015000000000001", Method: "zhima.credit.score.brief.get", TransactionID: fmt.Sprintf("CL_%04d", i)}
		keys = append(keys, k)
		if i%3 != 0 {
			put(t, s, k, queued(k))
		}
	}
	got, err := s.GetMany(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, rec := range got {
		switch {
		case i%3 == 0 && rec != nil:
			t.Fatalf("key %d: %+v, want none", i, rec)
		case i%3 != 0 && (rec == nil || rec.TransactionID != keys[i].TransactionID || rec.AppID != keys[i].AppID):
			t.Fatalf("key %d: %+v", i, rec)
		}
	}
}
