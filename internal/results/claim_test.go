package results

import (
	"context"
	"crypto/sha256"
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
	"github.com/zhimaq/zhimaq/internal/taskwire"
)

var (
	fpA = strings.Repeat("a", 64)
	fpB = strings.Repeat("b", 64)
)

// fp returns the i-th test fingerprint, a hash as real ones are.
func fp(i int) string { return fmt.Sprintf("%x", sha256.Sum256([]byte{byte(i)})) }

func claimAt(tb testing.TB, s *Store, k idempotency.Key, fp string, now time.Time, previous ...string) (idempotency.Outcome, *Record) {
	tb.Helper()
	o, rec, err := s.Claim(context.Background(), k, queued(k), Claim{Fingerprint: fp, Previous: previous, Window: time.Hour, Now: now})
	if err != nil {
		tb.Fatalf("Claim(%s): %v", k, err)
	}
	return o, rec
}

func TestClaim(t *testing.T) {
	t.Parallel()
	k := key("T_001")
	other := func(f func(*idempotency.Key)) idempotency.Key { o := k; f(&o); return o }
	tests := []struct {
		name  string
		first string // fingerprint already claimed on k ("" none)
		key   idempotency.Key
		fp    string
		want  idempotency.Outcome
	}{
		{"claimed_when_unclaimed", "", k, fpA, idempotency.Claimed},
		{"duplicate_when_same_fingerprint", fpA, k, fpA, idempotency.Duplicate},
		{"conflict_when_other_fingerprint", fpA, k, fpB, idempotency.Conflict},
		{"claimed_when_other_app_id", fpA, other(func(k *idempotency.Key) { k.AppID = "2015000000000002" }), fpB, idempotency.Claimed},
		{"claimed_when_other_method", fpA, other(func(k *idempotency.Key) { k.Method = "zhima.credit.relation.query" }), fpB, idempotency.Claimed},
		{"claimed_when_other_transaction_id", fpA, other(func(k *idempotency.Key) { k.TransactionID = "T_002" }), fpB, idempotency.Claimed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _, _ := newStore(t)
			now := time.Now()
			if tt.first != "" {
				if o, _ := claimAt(t, s, k, tt.first, now); o != idempotency.Claimed {
					t.Fatalf("first Claim = %v, want claimed", o)
				}
			}
			got, rec := claimAt(t, s, tt.key, tt.fp, now)
			if got != tt.want {
				t.Fatalf("Claim = %v, want %v", got, tt.want)
			}
			if (rec != nil) != (got == idempotency.Claimed || got == idempotency.Duplicate) {
				t.Errorf("Claim %v returned record %+v", got, rec)
			}
			if rec != nil {
				assertSame(t, rec, queued(tt.key))
			}
		})
	}
}

func TestClaimInvalid(t *testing.T) {
	t.Parallel()
	s, _, srv := newStore(t)
	k := key("T_001")
	tests := []struct {
		name string
		key  idempotency.Key
		rec  *Record
		c    Claim
	}{
		{"error_when_key_invalid", idempotency.Key{AppID: "a", Method: "m", TransactionID: "T-1"}, &Record{Method: "m", TransactionID: "T-1", State: Queued}, Claim{Fingerprint: fpA, Window: time.Hour}},
		{"error_when_fingerprint_empty", k, queued(k), Claim{Window: time.Hour}},
		{"error_when_fingerprint_not_hex", k, queued(k), Claim{Fingerprint: strings.Repeat("z", 64), Window: time.Hour}},
		{"error_when_previous_not_hex", k, queued(k), Claim{Fingerprint: fpA, Previous: []string{"old"}, Window: time.Hour}},
		{"error_when_window_under_1ms", k, queued(k), Claim{Fingerprint: fpA, Window: time.Microsecond}},
		{"error_when_record_of_other_transaction", k, queued(key("T_002")), Claim{Fingerprint: fpA, Window: time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if o, _, err := s.Claim(context.Background(), tt.key, tt.rec, tt.c); err == nil {
				t.Fatalf("Claim = %v, want an error", o)
			}
		})
	}
	if n := srv.Keys(t, srv.Prefix+"*"); len(n) != 0 {
		t.Errorf("keys after refused claims = %v; want none", n)
	}
}

// TestClaimLapses: the claim holds for its window on the producer's clock;
// after it, the record lives on and a claim finds it Lapsed.
func TestClaimLapses(t *testing.T) {
	t.Parallel()
	s, rdb, _ := newStore(t)
	k := key("T_001")
	now := time.Now()
	claimAt(t, s, k, fpA, now)
	assertTTLNear(t, rdb, s, k, testTTL) // RESULT_TTL, longer than the window
	if o, _ := claimAt(t, s, k, fpB, now.Add(time.Hour-time.Millisecond)); o != idempotency.Conflict {
		t.Errorf("Claim inside the window = %v, want conflict", o)
	}
	for _, fp := range []string{fpA, fpB} {
		if o, _ := claimAt(t, s, k, fp, now.Add(time.Hour)); o != idempotency.Lapsed {
			t.Errorf("Claim after the window = %v, want lapsed", o)
		}
	}
	if got := get(t, s, k); got.State != Queued {
		t.Errorf("lapsed claims changed the record: %+v", got)
	}
}

// TestClaimOutlivesResultTTL: a window longer than RESULT_TTL keeps the
// record (and so the claim) for the window.
func TestClaimOutlivesResultTTL(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t)
	rdb := srv.Client(t)
	s := New(rdb, srv.Prefix, time.Minute)
	k := key("T_001")
	if _, _, err := s.Claim(context.Background(), k, queued(k), Claim{Fingerprint: fpA, Window: time.Hour, Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	assertTTLNear(t, rdb, s, k, time.Hour)
	if _, err := s.Update(context.Background(), k, func(r *Record) error { r.State = Running; return nil }); err != nil {
		t.Fatal(err)
	}
	assertTTLNear(t, rdb, s, k, time.Hour)
}

func TestClaimMatchesEarlierFormsOfTheFingerprint(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t)
	k := key("T_001")
	now := time.Now()
	underOld, underNew, otherOld, otherNew := fp(1), fp(2), fp(3), fp(4)
	if o, _ := claimAt(t, s, k, underOld, now); o != idempotency.Claimed {
		t.Fatalf("first claim = %v", o)
	}
	if o, _ := claimAt(t, s, k, underNew, now, underOld); o != idempotency.Duplicate {
		t.Errorf("the same parameters under a new data key = %v, want duplicate", o)
	}
	if o, _ := claimAt(t, s, k, otherNew, now, otherOld); o != idempotency.Conflict {
		t.Errorf("other parameters = %v, want conflict", o)
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
		{"one_claimed_rest_conflict_when_fingerprints_differ", fp},
		{"one_claimed_when_fingerprints_mixed", func(i int) string { return []string{fpA, fpB}[i%2] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.New(t)
			k := key("T_001")
			stores := make([]*Store, n)
			for i := range stores {
				stores[i] = New(srv.Client(t), srv.Prefix, testTTL) // one client (pool) each
			}
			var (
				wg       sync.WaitGroup
				start    = make(chan struct{})
				outcomes = make([]idempotency.Outcome, n)
				errs     = make([]error, n)
			)
			for i := range n {
				wg.Go(func() {
					<-start
					outcomes[i], _, errs[i] = stores[i].Claim(context.Background(), k, queued(k), Claim{Fingerprint: tt.fp(i), Window: time.Hour, Now: time.Now()})
				})
			}
			close(start)
			wg.Wait()
			winner := -1
			for i, o := range outcomes {
				if errs[i] != nil {
					t.Fatalf("goroutine %d: %v", i, errs[i])
				}
				if o == idempotency.Claimed {
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
				want := idempotency.Conflict
				switch {
				case i == winner:
					want = idempotency.Claimed
				case tt.fp(i) == tt.fp(winner):
					want = idempotency.Duplicate
				}
				if o != want {
					t.Errorf("goroutine %d = %v, want %v", i, o, want)
				}
			}
		})
	}
}

// TestClaimOfARecordOfTheJSONFormat: a record written before the current
// format has its claim in a key of its own, which Claim reads.
func TestClaimOfARecordOfTheJSONFormat(t *testing.T) {
	t.Parallel()
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	k := key("T_001")
	legacy := `{"method":"zhima.credit.score.brief.get","transaction_id":"T_001","state":"queued","attempts":0,"duplicate":false,"response":null,"error":null,"enqueued_at":"2024-05-01T02:03:04Z","updated_at":"2024-05-01T02:03:04Z"}`
	rdb.Set(ctx, s.key(k), legacy, testTTL)
	claimKey := s.keys.Claim(k.AppID, k.Method, k.TransactionID)
	rdb.Set(ctx, claimKey, fpA, time.Hour)
	now := time.Now()
	o, rec := claimAt(t, s, k, fpA, now)
	if o != idempotency.Duplicate || rec == nil || rec.State != Queued {
		t.Fatalf("same fingerprint = %v %+v, want duplicate of the queued record", o, rec)
	}
	if o, _ := claimAt(t, s, k, fpB, now); o != idempotency.Conflict {
		t.Errorf("other fingerprint = %v, want conflict", o)
	}
	rdb.Del(ctx, claimKey)
	if o, _ := claimAt(t, s, k, fpA, now); o != idempotency.Lapsed {
		t.Errorf("without its claim = %v, want lapsed", o)
	}
	if v, _ := rdb.Get(ctx, s.key(k)).Result(); v != legacy {
		t.Errorf("claims rewrote the record: %q", v)
	}
}

func TestClaimUntil(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t)
	ctx := context.Background()
	k := key("T_001")
	now := time.Now().Truncate(time.Millisecond)
	if _, err := s.ClaimUntil(ctx, k); !errors.Is(err, ErrNotFound) {
		t.Errorf("ClaimUntil of no record = %v, want ErrNotFound", err)
	}
	claimAt(t, s, k, fpA, now)
	if got, err := s.ClaimUntil(ctx, k); err != nil || !got.Equal(now.Add(time.Hour)) {
		t.Errorf("ClaimUntil = %v, %v; want %v", got, err, now.Add(time.Hour))
	}
}

// TestClaimMany: claims in one pipeline answer as one by one would, in
// order, even before Redis holds the script.
func TestClaimMany(t *testing.T) {
	t.Parallel()
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	req := func(tx, fp string) ClaimRequest {
		k := key(tx)
		return ClaimRequest{Key: k, Record: queued(k), Claim: Claim{Fingerprint: fp, Window: time.Hour, Now: now}}
	}
	got := s.ClaimMany(ctx, []ClaimRequest{req("T_1", fpA), req("T_2", fpA), req("T_1", fpA), req("T_1", fpB), req("T_3", "not hex")})
	want := []idempotency.Outcome{idempotency.Claimed, idempotency.Claimed, idempotency.Duplicate, idempotency.Conflict, 0}
	for i, r := range got {
		if r.Outcome != want[i] || (r.Err != nil) != (want[i] == 0) {
			t.Errorf("claim %d = %v, %v; want %v", i, r.Outcome, r.Err, want[i])
		}
	}
	if got[2].Record == nil || got[2].Record.State != Queued {
		t.Errorf("the duplicate came without the first record: %+v", got[2].Record)
	}

	t.Run("every_claim_fails_when_redis_does", func(t *testing.T) {
		down := New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1}), "zhimaq:", testTTL)
		for i, r := range down.ClaimMany(ctx, []ClaimRequest{req("T_4", fpA), req("T_5", fpA)}) {
			if r.Err == nil || r.Outcome != 0 {
				t.Errorf("claim %d with Redis down = %v, %v; want an error", i, r.Outcome, r.Err)
			}
		}
	})
}

// TestClaimEnqueuesTheTask: a claim made enqueues the job's task in the
// same step; a duplicate enqueues it again only when the task is gone and
// the job has not finished; a conflict never does.
func TestClaimEnqueuesTheTask(t *testing.T) {
	t.Parallel()
	for _, many := range []bool{false, true} {
		s, rdb, srv := newStore(t)
		claimEnqueuesTheTask(t, s, rdb, srv.Queue, many)
	}
}

// TestClaimEnqueuesTheTaskOnACluster: on a Redis Cluster the task, whose
// keys lie in another slot than the record's, is enqueued in a step of its
// own, with the same outcomes; ClaimMany's pipelines to each node too.
func TestClaimEnqueuesTheTaskOnACluster(t *testing.T) {
	for _, many := range []bool{false, true} {
		srv := clustertest.New(t)
		rdb := srv.Client(t)
		claimEnqueuesTheTask(t, New(rdb, srv.Prefix, 0), rdb, srv.Queue, many)
	}
}

// claimEnqueuesTheTask claims with Claim, or with ClaimMany when many.
func claimEnqueuesTheTask(t *testing.T, s *Store, rdb redis.UniversalClient, queue string, many bool) {
	ctx := context.Background()
	k := key("T_001")
	task := &taskwire.Task{Type: k.Method, Payload: []byte(`{}`), ID: "task1", Queue: queue, MaxRetry: 3}
	pending := func() int64 {
		n, err := rdb.LLen(ctx, task.Keys()[1]).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	claimOne := func(k idempotency.Key, c Claim) (idempotency.Outcome, *Record, error) {
		if many { // beside a claim of another job, with no task
			other, alone := key("T_OTHER_"+k.TransactionID), c
			alone.Enqueue = nil
			r := s.ClaimMany(ctx, []ClaimRequest{{Key: other, Record: queued(other), Claim: alone}, {Key: k, Record: queued(k), Claim: c}})[1]
			return r.Outcome, r.Record, r.Err
		}
		return s.Claim(ctx, k, queued(k), c)
	}
	claim := func(fp string) idempotency.Outcome {
		o, _, err := claimOne(k, Claim{Fingerprint: fp, Window: time.Hour, Now: time.Now(), Enqueue: task})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	if o := claim(fpA); o != idempotency.Claimed || pending() != 1 {
		t.Fatalf("claim = %v with %d pending, want claimed and the task enqueued", o, pending())
	}
	if ok, _ := rdb.SIsMember(ctx, task.Keys()[2], queue).Result(); !ok {
		t.Error("the queue is not in asynq:queues")
	}
	if o := claim(fpA); o != idempotency.Duplicate || pending() != 1 {
		t.Errorf("duplicate with its task there = %v with %d pending, want the task left alone", o, pending())
	}
	if o := claim(fpB); o != idempotency.Conflict || pending() != 1 {
		t.Errorf("conflict = %v with %d pending", o, pending())
	}
	// The task is lost (a producer of old stopped between its two steps,
	// or Redis lost it): the next duplicate puts it back.
	rdb.Del(ctx, task.Keys()[0], task.Keys()[1])
	if o := claim(fpA); o != idempotency.Duplicate || pending() != 1 {
		t.Errorf("duplicate without its task = %v with %d pending, want the task enqueued again", o, pending())
	}
	// A job that has finished is not run again.
	rdb.Del(ctx, task.Keys()[0], task.Keys()[1])
	if _, err := s.Update(ctx, k, func(r *Record) error { r.State = Succeeded; return nil }); err != nil {
		t.Fatal(err)
	}
	if o := claim(fpA); o != idempotency.Duplicate || pending() != 0 {
		t.Errorf("duplicate of a finished job = %v with %d pending, want no task", o, pending())
	}
	// The same for a record of the JSON format and its claim key.
	legacyKey := key("T_002")
	legacyTask := *task
	legacyTask.ID = "task2"
	claimKey := s.keys.Claim(legacyKey.AppID, legacyKey.Method, legacyKey.TransactionID)
	rdb.Set(ctx, claimKey, fpA, time.Hour)
	for _, st := range []string{"retrying", "failed"} {
		rdb.Del(ctx, legacyTask.Keys()[0], legacyTask.Keys()[1])
		rdb.Set(ctx, s.key(legacyKey), `{"method":"zhima.credit.score.brief.get","transaction_id":"T_002","state":"`+st+`","attempts":1}`, time.Hour)
		o, _, err := claimOne(legacyKey, Claim{Fingerprint: fpA, Window: time.Hour, Now: time.Now(), Enqueue: &legacyTask})
		n, _ := rdb.LLen(ctx, legacyTask.Keys()[1]).Result()
		if want := map[string]int64{"retrying": 1, "failed": 0}[st]; err != nil || o != idempotency.Duplicate || n != want {
			t.Errorf("duplicate of a %s JSON record = %v, %v with %d pending, want %d", st, o, err, n, want)
		}
	}
}

// TestDurableClaimsWaitForReplicas: with Durable, a claim and a final
// record count only once enough replicas hold them; too few is
// ErrNotDurable, the write stands, and repeating the claim answers as the
// first would have.
func TestDurableClaimsWaitForReplicas(t *testing.T) {
	srv := clustertest.New(t) // every master has one replica
	rdb := srv.Client(t)
	ctx := context.Background()
	claim := func(s *Store, k idempotency.Key) (idempotency.Outcome, error) {
		o, _, err := s.Claim(ctx, k, queued(k), Claim{Fingerprint: fpA, Window: time.Hour, Now: time.Now()})
		return o, err
	}
	one := New(rdb, srv.Prefix, 0).Durable(1, 2*time.Second)
	for i := range 10 { // keys in every master's slots
		k := key(fmt.Sprintf("DUR_%d", i))
		if o, err := claim(one, k); err != nil || o != idempotency.Claimed {
			t.Fatalf("claim %s with 1 replica to wait for: %v, %v", k.TransactionID, o, err)
		}
		if _, err := one.Update(ctx, k, func(r *Record) error { r.State = Succeeded; return nil }); err != nil {
			t.Fatalf("final record of %s: %v", k.TransactionID, err)
		}
	}
	two := New(rdb, srv.Prefix, 0).Durable(2, 100*time.Millisecond)
	k := key("DUR_TWO")
	if _, err := claim(two, k); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("claim waiting for 2 of 1 replicas: %v, want ErrNotDurable", err)
	}
	if o, err := claim(one, k); err != nil || o != idempotency.Duplicate {
		t.Fatalf("the claim again: %v, %v; want the first one's duplicate", o, err)
	}
	// Intermediate states are not waited for.
	if _, err := two.Update(ctx, k, func(r *Record) error { r.State = Running; return nil }); err != nil {
		t.Fatalf("running record: %v", err)
	}
	if _, err := two.Update(ctx, k, func(r *Record) error { r.State = Failed; return nil }); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("final record waiting for 2 of 1 replicas: %v, want ErrNotDurable", err)
	}
	if rec, err := one.Get(ctx, k); err != nil || rec.State != Failed {
		t.Fatalf("record %+v, %v: the write stands on the master", rec, err)
	}
}

// TestClaimManyWaitsForReplicas: the batch path's one WAIT covers its
// pipeline; a single Redis has no replica to acknowledge it, a test
// cluster's master one, not two.
func TestClaimManyWaitsForReplicas(t *testing.T) {
	t.Parallel()
	s, _, srv := newStore(t)
	replicas := 1
	if srv.Cluster {
		replicas = 2
	}
	s.Durable(replicas, 50*time.Millisecond)
	k := key("DUR_MANY")
	res := s.ClaimMany(context.Background(), []ClaimRequest{{Key: k, Record: queued(k), Claim: Claim{Fingerprint: fpA, Window: time.Hour, Now: time.Now()}}})
	if !errors.Is(res[0].Err, ErrNotDurable) {
		t.Fatalf("claim with no replica to acknowledge it: %+v, want ErrNotDurable", res[0])
	}
}
