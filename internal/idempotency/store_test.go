package idempotency

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/redistest"
)

const (
	fpA = "aaaa"
	fpB = "bbbb"
)

var testKey = Key{AppID: "2015000000000001", Method: "zhima.credit.score.brief.get", TransactionID: "T_001"}

// newStore returns a Store on the test's Redis, its client and its server.
func newStore(tb testing.TB) (*Store, *redis.Client, *redistest.Server) {
	tb.Helper()
	srv := redistest.New(tb)
	rdb := srv.Client(tb)
	return New(rdb, srv.Prefix), rdb, srv
}

// pttl returns the claim's remaining time to live (negative: none / no key).
func pttl(tb testing.TB, rdb redis.Cmdable, s *Store, k Key) time.Duration {
	tb.Helper()
	d, err := rdb.PTTL(context.Background(), s.key(k)).Result()
	if err != nil {
		tb.Fatalf("PTTL: %v", err)
	}
	return d
}

func claim(tb testing.TB, s *Store, k Key, fp string, window time.Duration) Outcome {
	tb.Helper()
	o, err := s.Claim(context.Background(), k, fp, window)
	if err != nil {
		tb.Fatalf("Claim(%s, %s): %v", k, fp, err)
	}
	return o
}

// assertTTLNear fails unless the claim's TTL is in (want-slack, want].
func assertTTLNear(tb testing.TB, rdb redis.Cmdable, s *Store, k Key, want time.Duration) {
	tb.Helper()
	const slack = 5 * time.Second
	if got := pttl(tb, rdb, s, k); got > want || got <= want-slack {
		tb.Errorf("PTTL = %v, want within %v below %v", got, slack, want)
	}
}

func TestKey(t *testing.T) {
	if got, want := testKey.String(), "2015000000000001/zhima.credit.score.brief.get/T_001"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := New(nil, "").key(testKey), "zhimaq:claim:2015000000000001:zhima.credit.score.brief.get:T_001"; got != want {
		t.Errorf("key = %q, want %q", got, want)
	}
	tests := []struct {
		name    string
		key     Key
		wantErr string
	}{
		{"valid", testKey, ""},
		{"invalid_when_app_id_empty", Key{"", "m", "T"}, "app_id is empty"},
		{"invalid_when_method_empty", Key{"a", "", "T"}, "method is empty"},
		{"invalid_when_transaction_id_empty", Key{"a", "m", ""}, "transaction_id is empty"},
		{"invalid_when_app_id_has_colon", Key{"a:b", "m", "T"}, "app_id holds"},
		{"invalid_when_method_has_space", Key{"a", "m x", "T"}, "method holds"},
		{"invalid_when_transaction_id_has_dash", Key{"a", "m", "T-1"}, "transaction_id may hold only"},
		{"invalid_when_transaction_id_has_non_ascii", Key{"a", "m", "张三"}, "transaction_id may hold only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.key.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{Claimed: "claimed", Duplicate: "duplicate", Conflict: "conflict", 0: "Outcome(0)", 9: "Outcome(9)"} {
		if got := o.String(); got != want {
			t.Errorf("Outcome(%d).String() = %q, want %q", int(o), got, want)
		}
	}
}

func TestClaim(t *testing.T) {
	t.Parallel()
	other := func(f func(*Key)) Key { k := testKey; f(&k); return k }
	tests := []struct {
		name  string
		first string // fingerprint already claimed on testKey ("" none)
		key   Key
		fp    string
		want  Outcome
	}{
		{"claimed_when_unclaimed", "", testKey, fpA, Claimed},
		{"duplicate_when_same_fingerprint", fpA, testKey, fpA, Duplicate},
		{"conflict_when_other_fingerprint", fpA, testKey, fpB, Conflict},
		{"claimed_when_other_app_id", fpA, other(func(k *Key) { k.AppID = "2015000000000002" }), fpB, Claimed},
		{"claimed_when_other_method", fpA, other(func(k *Key) { k.Method = "zhima.credit.relation.query" }), fpB, Claimed},
		{"claimed_when_other_transaction_id", fpA, other(func(k *Key) { k.TransactionID = "T_002" }), fpB, Claimed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _, _ := newStore(t)
			if tt.first != "" {
				if o := claim(t, s, testKey, tt.first, time.Hour); o != Claimed {
					t.Fatalf("first Claim = %v, want claimed", o)
				}
			}
			if got := claim(t, s, tt.key, tt.fp, time.Hour); got != tt.want {
				t.Errorf("Claim = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestClaimInvalid(t *testing.T) {
	t.Parallel()
	s, rdb, srv := newStore(t)
	tests := []struct {
		name   string
		key    Key
		fp     string
		window time.Duration
	}{
		{"error_when_key_invalid", Key{"a", "m", "T-1"}, fpA, time.Hour},
		{"error_when_fingerprint_empty", testKey, "", time.Hour},
		{"error_when_window_zero", testKey, fpA, 0},
		{"error_when_window_under_1ms", testKey, fpA, time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if o, err := s.Claim(context.Background(), tt.key, tt.fp, tt.window); err == nil {
				t.Fatalf("Claim = %v, want an error", o)
			}
		})
	}
	if n, err := rdb.Keys(context.Background(), srv.Prefix+"*").Result(); err != nil || len(n) != 0 {
		t.Errorf("keys after refused claims = %v, %v; want none", n, err)
	}
}

func TestClaimTTL(t *testing.T) {
	t.Parallel()
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	claim(t, s, testKey, fpA, 24*time.Hour)
	t.Run("claimed_sets_window", func(t *testing.T) {
		assertTTLNear(t, rdb, s, testKey, 24*time.Hour)
	})
	t.Run("duplicate_leaves_ttl", func(t *testing.T) {
		if err := rdb.PExpire(ctx, s.key(testKey), time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		if o := claim(t, s, testKey, fpA, 24*time.Hour); o != Duplicate {
			t.Fatalf("Claim = %v, want duplicate", o)
		}
		assertTTLNear(t, rdb, s, testKey, time.Hour)
	})
	t.Run("conflict_leaves_ttl_and_fingerprint", func(t *testing.T) {
		if o := claim(t, s, testKey, fpB, 24*time.Hour); o != Conflict {
			t.Fatalf("Claim = %v, want conflict", o)
		}
		assertTTLNear(t, rdb, s, testKey, time.Hour)
		if v, err := rdb.Get(ctx, s.key(testKey)).Result(); err != nil || v != fpA {
			t.Errorf("stored fingerprint = %q, %v; want %q", v, err, fpA)
		}
	})
}

// expiring returns a Store and a function that lets d pass for its keys:
// on an embedded Redis the test's own miniredis, fast-forwarded; on a real
// one, the real clock (callers keep d short and poll).
func expiring(tb testing.TB) (s *Store, advance func(time.Duration), embedded bool) {
	tb.Helper()
	srv := redistest.New(tb)
	rdb := srv.Client(tb)
	if !srv.Embedded {
		return New(rdb, srv.Prefix), func(d time.Duration) { time.Sleep(d) }, false
	}
	m := miniredis.RunT(tb)
	own := redis.NewClient(&redis.Options{Addr: m.Addr()})
	tb.Cleanup(func() { own.Close() })
	return New(own, srv.Prefix), m.FastForward, true
}

func TestClaimExpires(t *testing.T) {
	t.Parallel()
	s, advance, embedded := expiring(t)
	window := 50 * time.Millisecond
	if embedded {
		window = 24 * time.Hour
	}
	claim(t, s, testKey, fpA, window)
	if o := claim(t, s, testKey, fpB, window); o != Conflict {
		t.Fatalf("Claim inside window = %v, want conflict", o)
	}
	advance(window)
	// A real Redis expires keys lazily or in its cycle: poll, bounded.
	deadline := time.Now().Add(2 * time.Second)
	for {
		o := claim(t, s, testKey, fpB, window)
		if o == Claimed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Claim after window = %v, want claimed", o)
		}
		advance(10 * time.Millisecond)
	}
}

func TestClaimRace(t *testing.T) {
	t.Parallel()
	const n = 8
	tests := []struct {
		name string
		fp   func(i int) string
	}{
		{"one_claimed_rest_duplicate_when_same_fingerprint", func(int) string { return fpA }},
		{"one_claimed_rest_conflict_when_fingerprints_differ", func(i int) string { return fmt.Sprintf("fp%d", i) }},
		{"one_claimed_when_fingerprints_mixed", func(i int) string { return []string{fpA, fpB}[i%2] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.New(t)
			stores := make([]*Store, n)
			for i := range stores {
				stores[i] = New(srv.Client(t), srv.Prefix) // one client (pool) each
			}
			var (
				wg       sync.WaitGroup
				start    = make(chan struct{})
				outcomes = make([]Outcome, n)
				errs     = make([]error, n)
			)
			for i := range n {
				wg.Go(func() {
					<-start
					outcomes[i], errs[i] = stores[i].Claim(context.Background(), testKey, tt.fp(i), time.Hour)
				})
			}
			close(start)
			wg.Wait()
			winner := -1
			for i, o := range outcomes {
				if errs[i] != nil {
					t.Fatalf("goroutine %d: %v", i, errs[i])
				}
				if o == Claimed {
					if winner >= 0 {
						t.Fatalf("goroutines %d and %d both claimed", winner, i)
					}
					winner = i
				}
			}
			if winner < 0 {
				t.Fatalf("no goroutine claimed: %v", outcomes)
			}
			for i, o := range outcomes {
				want := Conflict
				switch {
				case i == winner:
					want = Claimed
				case tt.fp(i) == tt.fp(winner):
					want = Duplicate
				}
				if o != want {
					t.Errorf("goroutine %d (fingerprint %s, winner %s) = %v, want %v", i, tt.fp(i), tt.fp(winner), o, want)
				}
			}
		})
	}
}

func TestExtend(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		claimed time.Duration // window of the existing claim; 0 none
		until   time.Duration // from now
		wantTTL time.Duration // expected PTTL afterwards; <0: no key
	}{
		{"lengthened_when_until_later", time.Hour, 2 * time.Hour, 2 * time.Hour},
		{"kept_when_until_sooner", 2 * time.Hour, 30 * time.Minute, 2 * time.Hour},
		{"kept_when_until_passed", time.Hour, -time.Minute, time.Hour},
		{"nothing_when_claim_missing", 0, time.Hour, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, rdb, _ := newStore(t)
			if tt.claimed > 0 {
				claim(t, s, testKey, fpA, tt.claimed)
			}
			if err := s.Extend(context.Background(), testKey, time.Now().Add(tt.until)); err != nil {
				t.Fatalf("Extend: %v", err)
			}
			if tt.wantTTL < 0 {
				if n, _ := rdb.Exists(context.Background(), s.key(testKey)).Result(); n != 0 {
					t.Errorf("Extend created a claim")
				}
				return
			}
			assertTTLNear(t, rdb, s, testKey, tt.wantTTL)
			if v, _ := rdb.Get(context.Background(), s.key(testKey)).Result(); v != fpA {
				t.Errorf("fingerprint = %q after Extend, want %q", v, fpA)
			}
		})
	}
	t.Run("error_when_key_invalid", func(t *testing.T) {
		s, _, _ := newStore(t)
		if err := s.Extend(context.Background(), Key{}, time.Now().Add(time.Hour)); err == nil {
			t.Fatal("Extend with an empty key succeeded")
		}
	})
}

func TestNewDefaultPrefix(t *testing.T) {
	s := New(nil, "")
	if got := s.key(testKey); !strings.HasPrefix(got, "zhimaq:claim:") {
		t.Errorf("key = %q, want prefix zhimaq:claim:", got)
	}
}

func TestClaimMatchesEarlierFormsOfTheFingerprint(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	if o, err := s.Claim(ctx, testKey, "digest-under-old-key", time.Minute); err != nil || o != Claimed {
		t.Fatalf("first claim: %v %v", o, err)
	}
	if o, err := s.Claim(ctx, testKey, "digest-under-new-key", time.Minute, "digest-under-old-key"); err != nil || o != Duplicate {
		t.Fatalf("claim after a key rotation: %v %v, want Duplicate", o, err)
	}
	if o, err := s.Claim(ctx, testKey, "other-params-new-key", time.Minute, "other-params-old-key"); err != nil || o != Conflict {
		t.Fatalf("claim with other parameters: %v %v, want Conflict", o, err)
	}
}

func TestClaimWithWritesTheRecordInTheSameStep(t *testing.T) {
	s, rdb, srv := newStore(t)
	ctx := context.Background()
	record := Companion{Key: srv.Prefix + "result:first", Value: []byte(`{"state":"queued"}`), TTL: time.Hour}
	if o, err := s.ClaimWith(ctx, testKey, "fp", time.Minute, record); err != nil || o != Claimed {
		t.Fatalf("first claim: %v %v", o, err)
	}
	if v, err := rdb.Get(ctx, record.Key).Result(); err != nil || v != `{"state":"queued"}` {
		t.Fatalf("companion: %q %v", v, err)
	}
	other := record
	other.Value = []byte(`{"state":"overwritten"}`)
	if o, err := s.ClaimWith(ctx, testKey, "fp", time.Minute, other); err != nil || o != Duplicate {
		t.Fatalf("same fingerprint: %v %v", o, err)
	}
	if v, _ := rdb.Get(ctx, record.Key).Result(); v != `{"state":"queued"}` {
		t.Fatalf("a duplicate overwrote the record: %q", v)
	}
	t.Run("a lapsed claim whose record lives on claims nothing", func(t *testing.T) {
		rdb.Del(ctx, s.key(testKey))
		if o, err := s.ClaimWith(ctx, testKey, "fp2", time.Minute, other); err != nil || o != Lapsed {
			t.Fatalf("got %v %v, want Lapsed", o, err)
		}
		if n, _ := rdb.Exists(ctx, s.key(testKey)).Result(); n != 0 {
			t.Fatal("Lapsed left a claim behind")
		}
	})
}
