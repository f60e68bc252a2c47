package budget

import (
	"context"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/keyspace"
	"github.com/zhimaq/zhimaq/internal/redistest"
)

const method = "zhima.credit.score.get"

// day0 is 12:00 on 2026-12-06 in Beijing.
var day0 = time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)

func reserveT(tb testing.TB, b *Budget, method string, now time.Time) Reservation {
	tb.Helper()
	r, err := b.Reserve(context.Background(), method, now)
	if err != nil {
		tb.Fatalf("reserve %s at %v: %v", method, now, err)
	}
	return r
}

func usedT(tb testing.TB, b *Budget, method string, now time.Time) int {
	tb.Helper()
	n, err := b.Used(context.Background(), method, now)
	if err != nil {
		tb.Fatalf("used %s at %v: %v", method, now, err)
	}
	return n
}

func refundT(tb testing.TB, b *Budget, r Reservation) {
	tb.Helper()
	if err := b.Refund(context.Background(), r); err != nil {
		tb.Fatalf("refund %+v: %v", r, err)
	}
}

func TestNewWithoutAPositiveLimitIsNilAndAllowsEverything(t *testing.T) {
	for _, limits := range []map[string]int{nil, {}, {method: 0, "other": -3}} {
		if b := New(nil, "", "app", limits); b != nil {
			t.Fatalf("limits %v gave a budget", limits)
		}
	}
	var b *Budget
	r := reserveT(t, b, method, day0)
	if want := (Reservation{Method: method, Granted: true, Day: "20261206"}); r != want {
		t.Fatalf("nil budget reserved %+v, want %+v", r, want)
	}
	refundT(t, b, r)
	if n := usedT(t, b, method, day0); n != 0 {
		t.Fatalf("nil budget used %d", n)
	}
	if l := b.Limits(); l != nil {
		t.Fatalf("nil budget limits %v", l)
	}
}

func TestLimitsIsACopyOfThePositiveLimits(t *testing.T) {
	b := New(nil, "", "app", map[string]int{method: 5, "off": 0, "neg": -1})
	l := b.Limits()
	if want := map[string]int{method: 5}; !maps.Equal(l, want) {
		t.Fatalf("limits %v, want %v", l, want)
	}
	l[method] = 1000
	if b.Limits()[method] != 5 {
		t.Fatalf("changing the copy changed the budget: %v", b.Limits())
	}
}

// TestConcurrentReserversTakeExactlyTheLimit races 8 goroutines on each of
// two budgets, each with its own client as two worker processes would
// have, reserving until refused.
func TestConcurrentReserversTakeExactlyTheLimit(t *testing.T) {
	const limit = 100
	srv := redistest.New(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := make(map[int]int) // Used of each grant → how often
	refused := 0
	for w := range 2 {
		b := New(srv.Client(t), srv.Prefix, "app", map[string]int{method: limit})
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					r, err := b.Reserve(context.Background(), method, day0)
					if err != nil {
						t.Errorf("worker %d/%d: %v", w, g, err)
						return
					}
					mu.Lock()
					if !r.Granted {
						refused++
						mu.Unlock()
						if r.Used != limit || r.Limit != limit {
							t.Errorf("worker %d/%d refused with used %d of %d", w, g, r.Used, r.Limit)
						}
						return
					}
					seen[r.Used]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	granted := 0
	for used, n := range seen {
		granted += n
		if n != 1 || used < 1 || used > limit {
			t.Errorf("used %d granted %d times", used, n)
		}
	}
	if granted != limit || refused != 16 {
		t.Fatalf("granted %d, refused %d; want %d and 16", granted, refused, limit)
	}
	b := New(srv.Client(t), srv.Prefix, "app", map[string]int{method: limit})
	if n := usedT(t, b, method, day0); n != limit {
		t.Fatalf("used %d, want %d", n, limit)
	}
}

func TestRefund(t *testing.T) {
	t.Run("gives the unit back to a refused reserver", func(t *testing.T) {
		srv := redistest.New(t)
		b := New(srv.Client(t), srv.Prefix, "app", map[string]int{method: 1})
		r := reserveT(t, b, method, day0)
		if no := reserveT(t, b, method, day0); no.Granted {
			t.Fatalf("second unit of 1 granted: %+v", no)
		}
		refundT(t, b, r)
		if n := usedT(t, b, method, day0); n != 0 {
			t.Fatalf("used %d after the refund", n)
		}
		if again := reserveT(t, b, method, day0); !again.Granted || again.Used != 1 {
			t.Fatalf("after the refund: %+v", again)
		}
	})
	t.Run("never goes below 0", func(t *testing.T) {
		srv := redistest.New(t)
		b := New(srv.Client(t), srv.Prefix, "app", map[string]int{method: 3})
		r := reserveT(t, b, method, day0)
		refundT(t, b, r)
		refundT(t, b, r)
		if n := usedT(t, b, method, day0); n != 0 {
			t.Fatalf("used %d after refunding one unit twice", n)
		}
		if again := reserveT(t, b, method, day0); again.Used != 1 {
			t.Fatalf("after the refunds: %+v", again)
		}
	})
	t.Run("does nothing for a refused reservation", func(t *testing.T) {
		srv := redistest.New(t)
		b := New(srv.Client(t), srv.Prefix, "app", map[string]int{method: 1})
		reserveT(t, b, method, day0)
		refundT(t, b, reserveT(t, b, method, day0))
		if n := usedT(t, b, method, day0); n != 1 {
			t.Fatalf("used %d after refunding a refusal", n)
		}
	})
	t.Run("decrements the reservation's day after it is over", func(t *testing.T) {
		srv := redistest.New(t)
		b := New(srv.Client(t), srv.Prefix, "app", map[string]int{method: 2})
		old := reserveT(t, b, method, day0)
		reserveT(t, b, method, day0)
		tomorrow := day0.Add(24 * time.Hour)
		reserveT(t, b, method, tomorrow)
		refundT(t, b, old)
		if o, n := usedT(t, b, method, day0), usedT(t, b, method, tomorrow); o != 1 || n != 1 {
			t.Fatalf("used %d on the old day and %d on the new; want 1 and 1", o, n)
		}
	})
	t.Run("recreates no expired key", func(t *testing.T) {
		srv := redistest.New(t)
		rdb := srv.Client(t)
		b := New(rdb, srv.Prefix, "app", map[string]int{method: 2})
		r := reserveT(t, b, method, day0)
		key := keyspace.New(srv.Prefix).Budget("app", method, r.Day)
		rdb.Del(context.Background(), key)
		refundT(t, b, r)
		if n := rdb.Exists(context.Background(), key).Val(); n != 0 {
			t.Fatalf("a refund recreated the expired key")
		}
	})
}

func TestDayAndNextDayAreBeijings(t *testing.T) {
	newYork := time.FixedZone("UTC-5", -5*60*60)
	midnight := time.Date(2026, 12, 6, 16, 0, 0, 0, time.UTC) // 2026-12-07 00:00 in Beijing
	for _, c := range []struct {
		t    time.Time
		day  string
		next time.Time
	}{
		{midnight.Add(-time.Millisecond), "20261206", midnight}, // 23:59:59.999 in Beijing, UTC day 12-06
		{midnight, "20261207", midnight.Add(24 * time.Hour)},    // 00:00 in Beijing, UTC day still 12-06
		{midnight.In(newYork), "20261207", midnight.Add(24 * time.Hour)},
		{time.Date(2026, 12, 31, 17, 0, 0, 0, time.UTC), "20270101", time.Date(2027, 1, 1, 16, 0, 0, 0, time.UTC)},
	} {
		if d := Day(c.t); d != c.day {
			t.Errorf("Day(%v) = %s, want %s", c.t, d, c.day)
		}
		if n := NextDay(c.t); !n.Equal(c.next) {
			t.Errorf("NextDay(%v) = %v, want %v", c.t, n, c.next)
		}
	}
}

func TestTheDayRollsAtBeijingMidnight(t *testing.T) {
	srv := redistest.New(t)
	b := New(srv.Client(t), srv.Prefix, "app", map[string]int{method: 2})
	midnight := time.Date(2026, 12, 6, 16, 0, 0, 0, time.UTC) // 2026-12-07 00:00 in Beijing
	before := midnight.Add(-time.Millisecond)                 // 2026-12-06 23:59:59.999 in Beijing

	reserveT(t, b, method, before)
	reserveT(t, b, method, before)
	no := reserveT(t, b, method, before)
	if no.Granted || no.Day != "20261206" || no.Used != 2 || !no.Resumes.Equal(midnight) {
		t.Fatalf("third unit of 2 at %v: %+v, want refused on 20261206, resuming %v", before, no, midnight)
	}
	r := reserveT(t, b, method, midnight)
	if !r.Granted || r.Day != "20261207" || r.Used != 1 || !r.Resumes.IsZero() {
		t.Fatalf("first unit of the new day: %+v", r)
	}
	if n := usedT(t, b, method, before); n != 2 {
		t.Fatalf("the old day's count is %d, want 2", n)
	}
}

func TestMethodsAndAppsAreIndependent(t *testing.T) {
	srv := redistest.New(t)
	a := New(srv.Client(t), srv.Prefix, "appA", map[string]int{method: 1, "zhima.other": 1})
	b := New(srv.Client(t), srv.Prefix, "appB", map[string]int{method: 1})
	reserveT(t, a, method, day0)
	if r := reserveT(t, a, method, day0); r.Granted {
		t.Fatalf("appA's second unit of 1 granted")
	}
	if r := reserveT(t, a, "zhima.other", day0); !r.Granted || r.Used != 1 {
		t.Fatalf("appA's other method: %+v", r)
	}
	if r := reserveT(t, b, method, day0); !r.Granted || r.Used != 1 {
		t.Fatalf("appB: %+v", r)
	}
}

// TestAMethodWithoutALimitMakesNoRedisCall uses a budget without a Redis
// client: any Redis call would panic.
func TestAMethodWithoutALimitMakesNoRedisCall(t *testing.T) {
	b := New(nil, "", "app", map[string]int{method: 1})
	for range 3 {
		r := reserveT(t, b, "zhima.unlimited", day0)
		if want := (Reservation{Method: "zhima.unlimited", Granted: true, Day: "20261206"}); r != want {
			t.Fatalf("reserved %+v, want %+v", r, want)
		}
		refundT(t, b, r)
	}
	if n := usedT(t, b, "zhima.unlimited", day0); n != 0 {
		t.Fatalf("used %d", n)
	}
}

func TestTheKeyExpiresAfterTheDay(t *testing.T) {
	midnight := time.Date(2026, 12, 6, 16, 0, 0, 0, time.UTC)
	for name, now := range map[string]time.Time{
		"reserved just after midnight":  midnight,
		"reserved just before midnight": midnight.Add(-time.Millisecond),
	} {
		t.Run(name, func(t *testing.T) {
			srv := redistest.New(t)
			rdb := srv.Client(t)
			b := New(rdb, srv.Prefix, "app", map[string]int{method: 5})
			r := reserveT(t, b, method, now)
			reserveT(t, b, method, now)
			ttl := rdb.PTTL(context.Background(), keyspace.New(srv.Prefix).Budget("app", method, r.Day)).Val()
			if ttl <= 24*time.Hour || ttl >= 72*time.Hour {
				t.Fatalf("TTL %v, want more than 24h and less than 72h", ttl)
			}
		})
	}
}

func TestScriptsAreResentAfterAFlush(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client(t)
	b := New(rdb, srv.Prefix, "app", map[string]int{method: 5})
	r := reserveT(t, b, method, day0) // loads the script
	for i, step := range []func() error{
		func() error { _, err := b.Reserve(context.Background(), method, day0); return err },
		func() error { return b.Refund(context.Background(), r) },
	} {
		if err := rdb.ScriptFlush(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		if err := step(); err != nil {
			t.Fatalf("step %d after SCRIPT FLUSH: %v", i, err)
		}
	}
	if n := usedT(t, b, method, day0); n != 1 {
		t.Fatalf("used %d, want 1", n)
	}
}

func TestACorruptCounterIsAnErrorNotAReset(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client(t)
	b := New(rdb, srv.Prefix, "app", map[string]int{method: 5})
	key := keyspace.New(srv.Prefix).Budget("app", method, Day(day0))
	for name, set := range map[string]func() error{
		"not a number": func() error { return rdb.Set(context.Background(), key, "many", 0).Err() },
		"a hash":       func() error { return rdb.HSet(context.Background(), key, "n", 1).Err() },
	} {
		t.Run(name, func(t *testing.T) {
			rdb.Del(context.Background(), key)
			if err := set(); err != nil {
				t.Fatal(err)
			}
			r, err := b.Reserve(context.Background(), method, day0)
			if err == nil || r.Granted || !strings.HasPrefix(err.Error(), "budget: ") {
				t.Fatalf("reserved %+v, err %v; want a budget error", r, err)
			}
			if _, err := b.Used(context.Background(), method, day0); err == nil || !strings.HasPrefix(err.Error(), "budget: ") {
				t.Fatalf("used: err %v, want a budget error", err)
			}
		})
	}
}
