package results

import (
	"context"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/idempotency"
)

var rules = Rules{Window: 24 * time.Hour, LastStart: 23*time.Hour + 50*time.Minute, MaxAttempts: 3}

func begin(tb testing.TB, s *Store, k idempotency.Key, now time.Time) (Start, *Record, Version) {
	tb.Helper()
	st, rec, v, err := s.Begin(context.Background(), k, now, rules)
	if err != nil {
		tb.Fatalf("Begin(%s): %v", k, err)
	}
	return st, rec, v
}

func TestBegin(t *testing.T) {
	t.Parallel()
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	k := key("T_001")
	now := time.Now().Truncate(time.Millisecond)
	if _, _, err := s.Claim(ctx, k, queued(k), Claim{Fingerprint: fpA, Window: time.Hour, Now: now}); err != nil {
		t.Fatal(err)
	}

	st, rec, v := begin(t, s, k, now)
	if st != Started || rec.State != Running || rec.FirstCallAt == nil || !rec.FirstCallAt.Equal(now) || !rec.UpdatedAt.Equal(now) || rec.EnqueuedAt == nil {
		t.Fatalf("first Begin = %v %+v, want started, running, first call and updated at now, enqueued kept", st, rec)
	}
	// The first attempt holds the claim for the gateway's window.
	assertTTLNear(t, rdb, s, k, rules.Window)
	if o, _, _ := s.Claim(ctx, k, queued(k), Claim{Fingerprint: fpA, Window: time.Hour, Now: now.Add(2 * time.Hour)}); o != idempotency.Duplicate {
		t.Errorf("Claim after the submission's window but inside the gateway's = %v, want duplicate", o)
	}

	// The outcome is stored at the version Begin returned, in one try.
	calls := 0
	rec, v, err := s.UpdateFrom(ctx, k, rec, v, func(r *Record) error { calls++; r.State, r.Attempts = Retrying, r.Attempts+1; return nil })
	if err != nil || calls != 1 {
		t.Fatalf("UpdateFrom after Begin: %v after %d calls", err, calls)
	}
	later := now.Add(time.Minute)
	st, rec, _ = begin(t, s, k, later)
	if st != Started || !rec.FirstCallAt.Equal(now) || rec.Attempts != 1 {
		t.Errorf("second Begin = %v %+v, want the first call kept and attempts 1", st, rec)
	}
	_ = v

	t.Run("window_closed", func(t *testing.T) {
		st, _, _ := begin(t, s, k, now.Add(rules.LastStart+time.Millisecond))
		if st != WindowClosed {
			t.Errorf("Begin after the last start = %v, want window closed", st)
		}
	})
	t.Run("attempts_used", func(t *testing.T) {
		if _, err := s.Update(ctx, k, func(r *Record) error { r.Attempts = rules.MaxAttempts; return nil }); err != nil {
			t.Fatal(err)
		}
		if st, _, _ := begin(t, s, k, later); st != AttemptsUsed {
			t.Errorf("Begin with the attempts used = %v, want attempts used", st)
		}
	})
	t.Run("finished", func(t *testing.T) {
		if _, err := s.Update(ctx, k, func(r *Record) error { r.State = Succeeded; return nil }); err != nil {
			t.Fatal(err)
		}
		before, _ := rdb.Get(ctx, s.key(k)).Result()
		if st, rec, _ := begin(t, s, k, later); st != Finished || rec.State != Succeeded {
			t.Errorf("Begin of a finished job = %v %+v, want finished", st, rec)
		}
		if after, _ := rdb.Get(ctx, s.key(k)).Result(); after != before {
			t.Error("Begin of a finished job wrote the record")
		}
	})
}

func TestBeginCreatesAMissingRecord(t *testing.T) {
	t.Parallel()
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	k := key("T_001")
	now := time.Now().Truncate(time.Millisecond)
	st, rec, _ := begin(t, s, k, now)
	if st != Started || rec.State != Running || rec.EnqueuedAt != nil || !rec.FirstCallAt.Equal(now) {
		t.Fatalf("Begin of no record = %v %+v", st, rec)
	}
	assertTTLNear(t, rdb, s, k, rules.Window)
	// Its claim holds no fingerprint: no submission can join it.
	if o, _, _ := s.Claim(ctx, k, queued(k), Claim{Fingerprint: fpA, Window: time.Hour, Now: now}); o != idempotency.Conflict {
		t.Errorf("Claim of the re-created record = %v, want conflict", o)
	}
}

// TestBeginRewritesARecordOfTheJSONFormat: a record written before the
// current format is rewritten with its claim folded in, then begun.
func TestBeginRewritesARecordOfTheJSONFormat(t *testing.T) {
	t.Parallel()
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	k := key("T_001")
	first := time.Now().Add(-4 * time.Hour).UTC().Truncate(time.Millisecond)
	legacy := `{"method":"zhima.credit.score.brief.get","transaction_id":"T_001","state":"retrying","attempts":1,"duplicate":false,"response":null,` +
		`"error":{"source":"gateway","code":"20000","msg":"Service Currently Unavailable","sub_code":"isp.unknow-error"},` +
		`"enqueued_at":"2024-05-01T02:03:04Z","updated_at":"2024-05-01T02:03:05.5Z","first_call_at":"` + first.Format(time.RFC3339Nano) + `","batch_id":"b_1"}`
	rdb.Set(ctx, s.key(k), legacy, testTTL)
	claimKey := s.keys.Claim(k.AppID, k.Method, k.TransactionID)
	rdb.Set(ctx, claimKey, fpA, 20*time.Hour)
	st, rec, _ := begin(t, s, k, time.Now())
	if st != Started || rec.Attempts != 1 || rec.BatchID != "b_1" || rec.Error == nil || rec.Error.SubCode != "isp.unknow-error" || !rec.FirstCallAt.Equal(first) {
		t.Fatalf("Begin of a JSON record = %v %+v", st, rec)
	}
	if v, _ := rdb.Get(ctx, s.key(k)).Result(); v[0] != '2' {
		t.Errorf("the record was not rewritten in the current format: %.20q", v)
	}
	// The folded claim still answers a submission with its fingerprint.
	if o, _, _ := s.Claim(ctx, k, queued(k), Claim{Fingerprint: fpA, Window: time.Hour, Now: time.Now()}); o != idempotency.Duplicate {
		t.Errorf("Claim after the rewrite = %v, want duplicate", o)
	}
	assertTTLNear(t, rdb, s, k, 20*time.Hour)
}
