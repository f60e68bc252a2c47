package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/keyspace"
	"github.com/zhimaq/zhimaq/internal/redistest"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

func TestNoLimitIsNil(t *testing.T) {
	for _, qps := range []float64{0, -1} {
		if l := New(nil, "", "app", qps); l != nil {
			t.Fatalf("qps %v gave a limiter %v", qps, l)
		}
	}
	var l *Limiter
	if waited, retry, err := l.Wait(context.Background(), Interactive, 0); waited != 0 || retry != 0 || err != nil {
		t.Fatalf("nil limiter waited: %v %v %v", waited, retry, err)
	}
	if l.Calls() != 0 || l.Interval() != 0 || l.String() != "no limit" {
		t.Fatalf("nil limiter: calls %d, interval %v, %q", l.Calls(), l.Interval(), l.String())
	}
}

func TestStringKeepsTheWorkersLogFormat(t *testing.T) {
	for qps, want := range map[float64]string{20: "20 req/s (burst 1)", 2.5: "25 req/10s (burst 1)", 0.5: "5 req/10s (burst 1)",
		12.5: "125 req/10s (burst 1)", 0.25: "25 req/1m40s (burst 1)"} {
		if got := New(nil, "", "app", qps).String(); got != want {
			t.Errorf("qps %v: %s, want %s", qps, got, want)
		}
	}
}

func TestIntervalIsTheQuotaSpacingWithTheMargin(t *testing.T) {
	for _, c := range []struct {
		qps  float64
		want time.Duration
	}{
		{50, 20160 * time.Microsecond},
		{12.5, 80640 * time.Microsecond},
		{3, 336000 * time.Microsecond}, // 333333.3 µs × 1.008, rounded up
		{1, 1008 * time.Millisecond},
		{1e7, time.Microsecond}, // never 0
	} {
		if got := New(nil, "", "app", c.qps).Interval(); got != c.want {
			t.Errorf("qps %v: interval %v, want %v", c.qps, got, c.want)
		}
	}
}

// TestSlotsKeepTheQuotaAcrossWorkers runs many goroutines over several
// limiters, each with its own Redis client as separate worker processes
// would have, sharing one key. On Redis's clock the slots granted must
// never put more than the quota in any one-second window, and must fill
// the quota: over a few seconds at least 97% of qps × duration. A
// fractional rate (12.5/s) is checked over 2 s windows as well. The
// margin costs 0.8%, the edges of the window at most one slot (0.7% of
// 150); the 97% leaves ~2% for what should not happen at all here, the
// queue of reservations running dry (16 callers hold reservations up to
// 16 slots, 320 ms, ahead, so that needs every one of them stalled that
// long). Each caller must also never start before its slot: Redis's clock,
// read after Wait returns, is past it (lateness, which a loaded machine
// causes, is allowed).
func TestSlotsKeepTheQuotaAcrossWorkers(t *testing.T) {
	for _, c := range []struct {
		qps float64
		dur time.Duration
	}{{50, 3 * time.Second}, {12.5, 2 * time.Second}} {
		t.Run(fmt.Sprintf("qps %v", c.qps), func(t *testing.T) {
			srv := redistest.New(t)
			clock := srv.Client(t)
			start := redisNow(t, clock)
			stopAt := start.Add(c.dur + 300*time.Millisecond)

			var mu sync.Mutex
			var slots []time.Time
			var early []string
			var wg sync.WaitGroup
			var limiters []*Limiter
			for w := range 4 {
				l := New(srv.Client(t), srv.Prefix, "app", c.qps)
				limiters = append(limiters, l)
				for g := range 4 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							gr, err := l.wait(context.Background(), Interactive, 5*time.Second)
							if err != nil || gr.retryAfter != 0 {
								t.Errorf("worker %d/%d: retryAfter %v, err %v", w, g, gr.retryAfter, err)
								return
							}
							now, err := redisTime(clock)
							mu.Lock()
							slots = append(slots, gr.slot)
							if err == nil && now.Before(gr.slot) {
								early = append(early, fmt.Sprintf("started at %s, %v before its slot", now.Format("15:04:05.000000"), gr.slot.Sub(now)))
							}
							mu.Unlock()
							if gr.slot.After(stopAt) {
								return
							}
						}
					}()
				}
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			if len(early) > 0 {
				t.Errorf("%d calls started before their slot, e.g. %s", len(early), early[0])
			}
			slices.SortFunc(slots, func(a, b time.Time) int { return a.Compare(b) })
			interval := limiters[0].Interval()
			for i := 1; i < len(slots); i++ {
				if gap := slots[i].Sub(slots[i-1]); gap < interval {
					t.Fatalf("slots %d and %d are %v apart; the interval is %v", i-1, i, gap, interval)
				}
			}
			// In a window of w, at most qps × w calls when that is whole
			// (50/s: 50 in 1 s; 12.5/s: 25 in 2 s); else the next whole
			// number (12.5/s: 13 in some 1 s windows, as any even spacing at
			// 12.5/s must have: see the package doc).
			for _, w := range []time.Duration{time.Second, 2 * time.Second} {
				if most, limit := zhimatest.MostInWindow(slots, w), int(math.Ceil(c.qps*w.Seconds())); most > limit {
					t.Errorf("%d slots within %v; at most %d at %v/s", most, w, limit, c.qps)
				}
			}
			n := 0
			for _, s := range slots {
				if s.Sub(slots[0]) < c.dur {
					n++
				}
			}
			if want := 0.97 * c.qps * c.dur.Seconds(); float64(n) < want {
				t.Errorf("%d slots in the first %v; want at least %.1f (97%% of the quota)", n, c.dur, want)
			}
			var calls int64
			for _, l := range limiters {
				calls += l.Calls()
			}
			t.Logf("%d slots in %v (quota %.0f), %d limiter calls for %d grants", n, c.dur, c.qps*c.dur.Seconds(), calls, len(slots))
			// + one EVAL per caller whose first EVALSHA found Redis without the script
			if calls > int64(len(slots))+16 {
				t.Errorf("%d limiter calls for %d grants without contention; want one each", calls, len(slots))
			}
		})
	}
}

// TestFewCallsPerGrantUnderContention has twice as many callers as fit in
// their reach's worth of slots, each behaving as a task handler with a
// deep queue does: refused, it hands its task back and asks again at once
// with the next. The quota must hold, and the limiter must make at most 3
// Redis calls per granted call (about 2 are expected: callers / slots
// within reach; for Batch callers, those woken in their pause ask twice).
func TestFewCallsPerGrantUnderContention(t *testing.T) {
	for _, c := range []struct {
		lane    Lane
		maxWait time.Duration
		callers int
	}{
		{Interactive, 200 * time.Millisecond, 20}, // 10 slots within maxWait
		{Batch, 2 * time.Second, 50},              // 25 within the horizon
	} {
		t.Run(c.lane.String(), func(t *testing.T) { fewCallsPerGrant(t, c.lane, c.maxWait, c.callers) })
	}
}

func fewCallsPerGrant(t *testing.T, lane Lane, maxWait time.Duration, callers int) {
	srv := redistest.New(t)
	const qps = 50
	const run = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), run)
	defer cancel()
	var mu sync.Mutex
	var slots []time.Time
	var limiters []*Limiter
	var refused int
	var wg sync.WaitGroup
	for w := range 2 {
		l := New(srv.Client(t), srv.Prefix, "app", qps)
		limiters = append(limiters, l)
		for range callers / 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					gr, err := l.wait(ctx, lane, maxWait)
					mu.Lock()
					if !gr.slot.IsZero() {
						slots = append(slots, gr.slot) // a slot lost to ctx still counts against the quota
					}
					if gr.retryAfter > 0 {
						refused++
					}
					mu.Unlock()
					switch {
					case err != nil && ctx.Err() != nil:
						return
					case err != nil:
						t.Errorf("worker %d: %v", w, err)
						return
					case gr.retryAfter > 0 && gr.waited < maxWait:
						t.Errorf("refused after %v, before maxWait %v", gr.waited, maxWait)
					}
				}
			}()
		}
	}
	wg.Wait()
	var calls int64
	for _, l := range limiters {
		calls += l.Calls()
	}
	slices.SortFunc(slots, func(a, b time.Time) int { return a.Compare(b) })
	if most := zhimatest.MostInWindow(slots, time.Second); most > qps {
		t.Errorf("%d slots within one second; quota %d", most, qps)
	}
	if len(slots) < qps {
		t.Fatalf("only %d slots in %v at %d/s", len(slots), run, qps)
	}
	per := float64(calls) / float64(len(slots))
	t.Logf("%d limiter calls for %d slots (%d refusals): %.2f per granted call", calls, len(slots), refused, per)
	if per > 3 {
		t.Errorf("%.2f limiter calls per granted call; want at most 3", per)
	}
}

// TestRefusalReservesNothing: a caller refused for maxWait changes nothing,
// so the next caller gets the very slot the refused one was told about.
func TestRefusalReservesNothing(t *testing.T) {
	srv := redistest.New(t)
	c := srv.Client(t)
	l := New(c, srv.Prefix, "app", 1)
	key := keyspace.New(srv.Prefix).Rate("app")
	first, err := l.wait(context.Background(), Interactive, 0)
	if err != nil || first.retryAfter != 0 || first.slot.IsZero() {
		t.Fatalf("first call held back: %+v, %v", first, err)
	}
	want := first.slot.Add(l.Interval())
	for i := range 5 {
		waited, retry, err := l.Wait(context.Background(), Interactive, 10*time.Millisecond)
		if err != nil || retry <= 10*time.Millisecond || retry > l.Interval() {
			t.Fatalf("call %d: retryAfter %v, err %v; want held back for up to %v", i, retry, err, l.Interval())
		}
		if waited > 500*time.Millisecond {
			t.Logf("call %d: a refusal took %v (a slow machine?)", i, waited)
		}
		if got := storedTAT(t, c, key); !got.Equal(want) {
			t.Fatalf("after refusal %d the key holds %s, want %s: the refusal reserved something", i, got, want)
		}
	}
	next, err := l.wait(context.Background(), Interactive, 5*time.Second)
	if err != nil || !next.slot.Equal(want) {
		t.Fatalf("the call after the refusals got slot %s (err %v), want %s", next.slot, err, want)
	}
	if next.waited <= 0 {
		t.Fatalf("the call after the refusals did not wait for its slot: %+v", next)
	}
}

// TestCancelledWaitLosesItsSlot: when ctx ends during the sleep, Wait
// returns ctx's error at once, and the slot stays taken.
func TestCancelledWaitLosesItsSlot(t *testing.T) {
	srv := redistest.New(t)
	c := srv.Client(t)
	l := New(c, srv.Prefix, "app", 1)
	first, err := l.wait(context.Background(), Interactive, 0)
	if err != nil || first.slot.IsZero() {
		t.Fatalf("first call: %+v, %v", first, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	gr, err := l.wait(ctx, Interactive, 5*time.Second)
	if !errors.Is(err, context.DeadlineExceeded) || gr.retryAfter != 0 {
		t.Fatalf("cancelled wait: %+v, err %v; want context.DeadlineExceeded", gr, err)
	}
	if want := first.slot.Add(l.Interval()); !gr.slot.Equal(want) {
		t.Fatalf("cancelled wait had slot %s, want %s", gr.slot, want)
	}
	if got, want := storedTAT(t, c, keyspace.New(srv.Prefix).Rate("app")), gr.slot.Add(l.Interval()); !got.Equal(want) {
		t.Fatalf("after the cancelled wait the key holds %s, want %s (the lost slot stays taken)", got, want)
	}
}

// TestForeignValuesAreOverwritten: whatever else the key holds (another
// type, a non-number, a time absurdly far ahead) counts as no value: the
// call goes at once and its reservation replaces it.
func TestForeignValuesAreOverwritten(t *testing.T) {
	ctx := context.Background()
	srv := redistest.New(t)
	c := srv.Client(t)
	for _, tc := range []struct {
		name string
		put  func(key string) error
	}{
		{"hash", func(k string) error { return c.HSet(ctx, k, "tat", "1", "tokens", "3").Err() }},
		{"list", func(k string) error { return c.RPush(ctx, k, "1").Err() }},
		{"text", func(k string) error { return c.Set(ctx, k, "not a time", 0).Err() }},
		{"empty", func(k string) error { return c.Set(ctx, k, "", 0).Err() }},
		{"inf", func(k string) error { return c.Set(ctx, k, "inf", 0).Err() }},
		{"nan", func(k string) error { return c.Set(ctx, k, "nan", 0).Err() }},
		{"a year ahead", func(k string) error {
			return c.Set(ctx, k, strconv.FormatFloat(float64(time.Now().Unix()-epoch2017+365*86400), 'f', 6, 64), 0).Err()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := "app-" + tc.name
			key := keyspace.New(srv.Prefix).Rate(app)
			if err := tc.put(key); err != nil {
				t.Fatal(err)
			}
			l := New(c, srv.Prefix, app, 10)
			gr, err := l.wait(ctx, Interactive, 0)
			if err != nil || gr.retryAfter != 0 {
				t.Fatalf("held back by a foreign value: %+v, %v", gr, err)
			}
			if now := redisNow(t, c); gr.slot.After(now) {
				t.Fatalf("slot %s is after now %s", gr.slot, now)
			}
			if got, want := storedTAT(t, c, key), gr.slot.Add(l.Interval()); !got.Equal(want) {
				t.Fatalf("key holds %s, want %s", got, want)
			}
			if ttl := c.PTTL(ctx, key).Val(); ttl <= 0 || ttl > l.Interval()+time.Second+time.Millisecond {
				t.Fatalf("PTTL %v; want the reservation's %v plus 1 s", ttl, l.Interval())
			}
		})
	}
}

// oldRedisRate is the script of github.com/go-redis/redis_rate/v10
// (allowN, which Limiter.Allow ran), the limiter of workers before this one,
// verbatim but for comments. Copyright (c) 2017 Pavel Pravosud
// (https://github.com/rwz/redis-gcra), BSD-2-Clause as redis_rate.
var oldRedisRate = redis.NewScript(`
redis.replicate_commands()
local rate_limit_key = KEYS[1]
local burst = ARGV[1]
local rate = ARGV[2]
local period = ARGV[3]
local cost = tonumber(ARGV[4])
local emission_interval = period / rate
local increment = emission_interval * cost
local burst_offset = emission_interval * burst
local jan_1_2017 = 1483228800
local now = redis.call("TIME")
now = (now[1] - jan_1_2017) + (now[2] / 1000000)
local tat = redis.call("GET", rate_limit_key)
if not tat then
  tat = now
else
  tat = tonumber(tat)
end
tat = math.max(tat, now)
local new_tat = tat + increment
local allow_at = new_tat - burst_offset
local diff = now - allow_at
local remaining = diff / emission_interval
if remaining < 0 then
  local reset_after = tat - now
  local retry_after = diff * -1
  return {0, 0, tostring(retry_after), tostring(reset_after)}
end
local reset_after = new_tat - now
if reset_after > 0 then
  redis.call("SET", rate_limit_key, new_tat, "EX", math.ceil(reset_after))
end
local retry_after = -1
return {cost, remaining, tostring(retry_after), tostring(reset_after)}
`)

// TestMixedWithRedisRateWorkers: during a rolling upgrade an old worker
// (redis_rate, burst 1, at 1/s) and a new one share the key. Each honours
// the other's stored time, so their grants stay an interval apart, and the
// old one reads the new value as a sane wait, not as an absurd one.
func TestMixedWithRedisRateWorkers(t *testing.T) {
	ctx := context.Background()
	srv := redistest.New(t)
	c := srv.Client(t)
	key := keyspace.New(srv.Prefix).Rate("app")
	l := New(c, srv.Prefix, "app", 1)
	oldAllow := func() (allowed bool, retryAfter time.Duration) {
		t.Helper()
		res, err := oldRedisRate.Run(ctx, c, []string{key}, 1, 1, 1, 1).Slice()
		if err != nil {
			t.Fatalf("redis_rate script: %v", err)
		}
		ra, err := strconv.ParseFloat(res[2].(string), 64)
		if err != nil {
			t.Fatalf("redis_rate retry_after %v: %v", res[2], err)
		}
		return res[0].(int64) > 0, time.Duration(ra * float64(time.Second))
	}

	first, err := l.wait(ctx, Interactive, 0)
	if err != nil || first.slot.IsZero() {
		t.Fatalf("new worker: %+v, %v", first, err)
	}
	// The old worker now: held back until the new one's next slot.
	allowed, retry := oldAllow()
	if allowed {
		t.Fatalf("old worker allowed right after the new one's grant (a stall of %v?)", l.Interval())
	}
	if retry <= 0 || retry > l.Interval() {
		t.Fatalf("old worker told to wait %v; want up to %v", retry, l.Interval())
	}
	time.Sleep(retry + time.Millisecond)
	if allowed, retry = oldAllow(); !allowed {
		t.Fatalf("old worker still held back after its wait: %v more", retry)
	}
	// The old worker stored new_tat = its grant + 1 s.
	oldTAT := storedTAT(t, c, key)
	if oldGrant := oldTAT.Add(-time.Second); oldGrant.Before(first.slot.Add(l.Interval())) {
		t.Fatalf("old worker granted at %s, before the new one's next slot %s", oldGrant, first.slot.Add(l.Interval()))
	}
	// And the new worker honours what the old one stored.
	next, err := l.wait(ctx, Interactive, 5*time.Second)
	if err != nil || next.slot.Before(oldTAT.Add(-time.Microsecond)) || next.slot.After(oldTAT.Add(time.Microsecond)) {
		t.Fatalf("new worker after the old one: slot %s (err %v), want %s", next.slot, err, oldTAT)
	}
}

// TestStoredValueFormat: decimal seconds since 2017 with six decimals.
func TestStoredValueFormat(t *testing.T) {
	srv := redistest.New(t)
	c := srv.Client(t)
	if _, _, err := New(c, srv.Prefix, "app", 3).Wait(context.Background(), Interactive, 0); err != nil {
		t.Fatal(err)
	}
	v := c.Get(context.Background(), keyspace.New(srv.Prefix).Rate("app")).Val()
	if !regexp.MustCompile(`^[0-9]{9,10}\.[0-9]{6}$`).MatchString(v) {
		t.Fatalf("stored %q", v)
	}
}

func TestRedisErrorsAreReturned(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer c.Close()
	_, retry, err := New(c, "p:", "app", 5).Wait(context.Background(), Interactive, time.Second)
	if err == nil || retry != 0 {
		t.Fatalf("no Redis: retryAfter %v, err %v; want an error", retry, err)
	}
}

// storedTAT reads the key as the script stores it.
func storedTAT(t *testing.T, c redis.UniversalClient, key string) time.Time {
	t.Helper()
	v, err := c.Get(context.Background(), key).Float64()
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	us := int64(v*1e6 + 0.5)
	return time.Unix(epoch2017, 0).Add(time.Duration(us) * time.Microsecond)
}

func redisTime(c redis.UniversalClient) (time.Time, error) {
	return c.Time(context.Background()).Result()
}

func redisNow(t *testing.T, c redis.UniversalClient) time.Time {
	t.Helper()
	now, err := redisTime(c)
	if err != nil {
		t.Fatal(err)
	}
	return now
}
