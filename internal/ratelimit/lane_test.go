package ratelimit

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/keyspace"
	"github.com/zhimaq/zhimaq/internal/redistest"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

func TestHorizonIsHalfASecondInWholeIntervals(t *testing.T) {
	for _, c := range []struct {
		qps  float64
		want time.Duration
	}{
		{50, 504 * time.Millisecond},      // 25 × 20.16 ms
		{20, 504 * time.Millisecond},      // 10 × 50.4 ms
		{12.5, 564480 * time.Microsecond}, // 7 × 80.64 ms
		{4, 504 * time.Millisecond},       // 2 × 252 ms
		{1, 2016 * time.Millisecond},      // 2 × 1.008 s
		{1e7, 500 * time.Millisecond},     // 500,000 × 1 µs
	} {
		if got := New(nil, "", "app", c.qps).Horizon(); got != c.want {
			t.Errorf("qps %v: horizon %v, want %v", c.qps, got, c.want)
		}
	}
	if got := (*Limiter)(nil).Horizon(); got != 0 {
		t.Errorf("nil limiter: horizon %v", got)
	}
}

func TestReachDependsOnTheLane(t *testing.T) {
	l := New(nil, "", "app", 50) // horizon 504 ms
	for _, c := range []struct {
		lane    Lane
		maxWait time.Duration
		want    time.Duration
	}{
		{Interactive, 2 * time.Second, 2 * time.Second},
		{Interactive, 0, 0},
		{Batch, 2 * time.Second, 504 * time.Millisecond},
		{Batch, 100 * time.Millisecond, 100 * time.Millisecond},
		{Lane(7), 2 * time.Second, 504 * time.Millisecond}, // unknown lanes queue as Batch
	} {
		if got := l.reach(c.lane, c.maxWait); got != c.want {
			t.Errorf("%v, maxWait %v: reach %v, want %v", c.lane, c.maxWait, got, c.want)
		}
	}
	for lane, want := range map[Lane]string{Batch: "batch", Interactive: "interactive", Lane(7): "lane(7)"} {
		if got := lane.String(); got != want {
			t.Errorf("Lane(%d).String() = %q, want %q", uint8(lane), got, want)
		}
	}
}

// TestWithoutLoadEitherLaneGoesAtOnce: on an idle key the first call of
// either lane gets the slot that opens now.
func TestWithoutLoadEitherLaneGoesAtOnce(t *testing.T) {
	srv := redistest.New(t)
	c := srv.Client(t)
	for _, lane := range []Lane{Interactive, Batch} {
		t.Run(lane.String(), func(t *testing.T) {
			l := New(c, srv.Prefix, "app-"+lane.String(), 20)
			gr, err := l.wait(context.Background(), lane, 2*time.Second)
			if err != nil || gr.retryAfter != 0 || gr.slot.IsZero() {
				t.Fatalf("held back on an idle key: %+v, %v", gr, err)
			}
			if gr.ahead != 0 {
				t.Fatalf("slot %v ahead of now on an idle key; want 0", gr.ahead)
			}
			if gr.waited > time.Second {
				t.Logf("an immediate grant took %v (a slow machine?)", gr.waited)
			}
		})
	}
}

// TestRefusalSaysWhenTheLaneCouldReserve fills the key 60 slots (3 s)
// ahead, as callers of other processes would, and asks in each lane. A
// Batch caller is refused though its maxWait would reach the slot: after
// its pause (no slot of its limiter opens to wake it), its retryAfter runs
// until the slot comes within the horizon. An Interactive caller is
// refused only beyond its maxWait, and told when the slot opens; within
// it, it gets that very slot. Refusals store nothing.
func TestRefusalSaysWhenTheLaneCouldReserve(t *testing.T) {
	ctx := context.Background()
	srv := redistest.New(t)
	c := srv.Client(t)
	// fill reserves 60 slots on app's key, 3 s at 20/s (50.4 ms apart,
	// horizon 504 ms), and returns the limiter and the next free slot.
	fill := func(t *testing.T, app string) (*Limiter, time.Time) {
		t.Helper()
		l := New(c, srv.Prefix, app, 20)
		for range 60 {
			if res, err := l.run(ctx, time.Hour); err != nil || res[0] != 1 {
				t.Fatalf("filling the key: %v, %v", res, err)
			}
		}
		return l, storedTAT(t, c, keyspace.New(srv.Prefix).Rate(app))
	}

	for i, tc := range []struct {
		name    string
		lane    Lane
		maxWait time.Duration
		reach   time.Duration // 0: Interactive, told when the slot opens
	}{
		{"batch refused beyond the horizon", Batch, 2 * time.Second, 504 * time.Millisecond},
		{"batch refused beyond its maxWait", Batch, 200 * time.Millisecond, 200 * time.Millisecond},
		{"interactive refused beyond its maxWait", Interactive, 500 * time.Millisecond, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := fmt.Sprintf("app%d", i)
			l, next := fill(t, app)
			before := redisNow(t, c)
			gr, err := l.wait(ctx, tc.lane, tc.maxWait)
			after := redisNow(t, c)
			if err != nil || !gr.slot.IsZero() || gr.retryAfter <= 0 {
				t.Fatalf("not refused: %+v, %v", gr, err)
			}
			if gr.waited < tc.maxWait {
				t.Errorf("refused after %v, before maxWait %v", gr.waited, tc.maxWait)
			}
			// The script ran between before and after − maxWait (the pause
			// came after it); retryAfter runs from the script's now + maxWait
			// to when the lane could have the slot, next − reach.
			could := next.Add(-tc.reach)
			lo, hi := could.Sub(after), could.Sub(before)-tc.maxWait
			if gr.retryAfter < lo-time.Microsecond || gr.retryAfter > hi+time.Microsecond {
				t.Errorf("retryAfter %v; want %v to %v (until %s; Redis's now %s after the return)",
					gr.retryAfter, lo, hi, could.Format("15:04:05.000000"), after.Format("15:04:05.000000"))
			}
			if got := storedTAT(t, c, keyspace.New(srv.Prefix).Rate(app)); !got.Equal(next) {
				t.Fatalf("after the refusal the key holds %s, want %s", got, next)
			}
		})
	}

	t.Run("interactive within its maxWait gets the slot", func(t *testing.T) {
		l, next := fill(t, "app-interactive")
		// Ended during the sleep: the reservation is what is checked.
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		gr, _ := l.wait(ctx, Interactive, 5*time.Second)
		if !gr.slot.Equal(next) {
			t.Fatalf("slot %s, want %s, the next free one", gr.slot, next)
		}
		if gr.ahead <= l.Horizon() {
			t.Fatalf("slot %v ahead; the test needs it beyond the horizon %v", gr.ahead, l.Horizon())
		}
	})
}

// TestInteractiveGoesBeforeABatchBacklog saturates the limiter with Batch
// callers, as handlers draining a backfill would (30 goroutines over two
// limiters asking again as soon as they return, at 20/s: 10 slots fit in
// the horizon, 40 in maxWait). Every Batch grant lies within the horizon;
// an Interactive caller, and a Batch caller with it, then ask in several
// rounds. The Interactive one's slot lies at most the horizon plus one
// interval ahead (before lanes it was ~30 slots, 1.5 s, behind the
// backlog); the Batch one's, if it gets one, within the horizon. The
// bounds are on Redis's clock and exact by construction, so a slow machine
// (late callers only shorten the backlog) cannot make them flake.
func TestInteractiveGoesBeforeABatchBacklog(t *testing.T) {
	srv := redistest.New(t)
	const qps, maxWait, callers, rounds = 20, 2 * time.Second, 30, 3
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var limiters []*Limiter
	for range 2 {
		limiters = append(limiters, New(srv.Client(t), srv.Prefix, "app", qps))
	}
	l := limiters[0]
	// The bounds are the horizon at 20/s as a literal, not l.Horizon(), so
	// that they separate lanes from the limiter before them (whose "horizon"
	// was maxWait).
	const horizon = 504 * time.Millisecond
	interval := l.Interval()

	var mu sync.Mutex
	var beyond []string
	var grants atomic.Int64
	full := make(chan struct{})
	var fullOnce sync.Once
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				gr, err := limiters[i%2].wait(ctx, Batch, maxWait)
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("batch caller %d: %v", i, err)
					}
					return
				}
				if gr.slot.IsZero() {
					continue
				}
				if gr.ahead > horizon {
					mu.Lock()
					beyond = append(beyond, fmt.Sprintf("%v ahead", gr.ahead))
					mu.Unlock()
				}
				if grants.Add(1) == 2*qps {
					fullOnce.Do(func() { close(full) })
				}
			}
		}()
	}
	// The backlog is full well before the callers have had 2 s of slots
	// (before lanes, it held ~30 slots from the first asks).
	select {
	case <-full:
	case <-time.After(30 * time.Second):
		t.Fatal("the batch callers got too few slots")
	}

	batchRefused := 0
	for r := range rounds {
		var inter, batch grant
		var interErr, batchErr error
		var probes sync.WaitGroup
		probes.Add(2)
		go func() { defer probes.Done(); inter, interErr = limiters[1].wait(ctx, Interactive, maxWait) }()
		go func() { defer probes.Done(); batch, batchErr = l.wait(ctx, Batch, maxWait) }()
		probes.Wait()
		if interErr != nil || batchErr != nil {
			t.Fatalf("round %d: interactive %v, batch %v", r, interErr, batchErr)
		}
		if inter.slot.IsZero() || inter.retryAfter != 0 {
			t.Fatalf("round %d: the interactive caller was refused: %+v", r, inter)
		}
		if inter.ahead > horizon+interval+time.Millisecond {
			t.Errorf("round %d: the interactive caller's slot was %v ahead; want at most the horizon %v + one interval %v",
				r, inter.ahead, horizon, interval)
		}
		switch {
		case batch.slot.IsZero():
			batchRefused++
			if batch.ahead <= horizon {
				t.Errorf("round %d: the batch caller was refused a slot %v ahead, within the horizon", r, batch.ahead)
			}
		case batch.ahead > horizon:
			t.Errorf("round %d: the batch caller got a slot %v ahead, beyond the horizon %v", r, batch.ahead, horizon)
		}
		t.Logf("round %d: interactive slot %v ahead; batch %s", r, inter.ahead,
			map[bool]string{true: fmt.Sprintf("refused (next free slot %v ahead)", batch.ahead), false: fmt.Sprintf("slot %v ahead", batch.ahead)}[batch.slot.IsZero()])
	}
	cancel()
	wg.Wait()
	if len(beyond) > 0 {
		t.Errorf("%d batch grants beyond the horizon %v, e.g. %s", len(beyond), horizon, beyond[0])
	}
	t.Logf("%d batch grants; the batch probe was refused in %d of %d rounds", grants.Load(), batchRefused, rounds)
}

// TestPausedBatchCallerIsWokenWhenItsLimitersSlotOpens: with the horizon
// full (reserved by other processes), a Batch caller is refused and
// pauses; when a slot its own limiter handed out opens, it asks once more
// and gets the room that slot made, the very next slot, instead of being
// refused at the end of its maxWait (5 s here).
func TestPausedBatchCallerIsWokenWhenItsLimitersSlotOpens(t *testing.T) {
	ctx := context.Background()
	srv := redistest.New(t)
	c := srv.Client(t)
	l := New(c, srv.Prefix, "app", 20) // 50.4 ms apart, horizon 504 ms
	for {
		res, err := l.run(ctx, l.Horizon())
		if err != nil {
			t.Fatal(err)
		}
		if res[0] == 0 {
			break // the horizon is full
		}
	}
	const maxWait = 5 * time.Second
	paused := make(chan grant, 1)
	go func() {
		gr, err := l.wait(ctx, Batch, maxWait)
		if err != nil {
			t.Errorf("paused caller: %v", err)
		}
		paused <- gr
	}()
	for deadline := time.Now().Add(maxWait); ; time.Sleep(time.Millisecond) {
		l.mu.Lock()
		n := len(l.paused)
		l.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Batch caller was not refused")
		}
	}
	// A call of this limiter: its slot, beyond the horizon, opens in ~0.55 s.
	own, err := l.wait(ctx, Interactive, maxWait)
	if err != nil || own.slot.IsZero() {
		t.Fatalf("interactive caller: %+v, %v", own, err)
	}
	gr := <-paused
	if gr.slot.IsZero() || gr.retryAfter != 0 {
		t.Fatalf("the paused caller was not granted after the limiter's slot opened: %+v", gr)
	}
	if want := own.slot.Add(l.Interval()); !gr.slot.Equal(want) {
		t.Errorf("woken caller's slot %s, want %s, the one after the slot that woke it", gr.slot, want)
	}
	if gr.ahead > l.Interval() {
		t.Errorf("woken caller's slot was %v ahead when it asked again; want at most one interval", gr.ahead)
	}
	if gr.waited >= maxWait {
		t.Errorf("woken caller waited %v, its whole maxWait", gr.waited)
	}
}

// TestBatchCallersAloneFillTheQuota: handlers in the Batch lane only (two
// workers of 25, each call taking 100 ms at the gateway, at 50/s: 25
// slots in the horizon, 5 in flight) keep the limiter's queue of
// reservations from running dry: over 3 s at least 95% of the quota (the
// margin costs 0.8%), spaced an interval apart, never more than the quota
// in a second.
func TestBatchCallersAloneFillTheQuota(t *testing.T) {
	srv := redistest.New(t)
	const qps, maxWait, latency = 50, 2 * time.Second, 100 * time.Millisecond
	const run = 3 * time.Second
	clock := srv.Client(t)
	stopAt := redisNow(t, clock).Add(run + time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var mu sync.Mutex
	var slots []time.Time
	var refused int
	var limiters []*Limiter
	var wg sync.WaitGroup
	for w := range 2 {
		l := New(srv.Client(t), srv.Prefix, "app", qps)
		limiters = append(limiters, l)
		for range 25 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					gr, err := l.wait(ctx, Batch, maxWait)
					if err != nil {
						if ctx.Err() == nil {
							t.Errorf("worker %d: %v", w, err)
						}
						return
					}
					mu.Lock()
					if gr.slot.IsZero() {
						refused++
					} else {
						slots = append(slots, gr.slot)
					}
					mu.Unlock()
					if gr.slot.After(stopAt) {
						cancel()
						return
					}
					if !gr.slot.IsZero() {
						time.Sleep(latency) // the gateway call
					}
				}
			}()
		}
	}
	wg.Wait()
	slices.SortFunc(slots, func(a, b time.Time) int { return a.Compare(b) })
	if len(slots) == 0 {
		t.Fatal("no slots")
	}
	interval := limiters[0].Interval()
	for i := 1; i < len(slots); i++ {
		if gap := slots[i].Sub(slots[i-1]); gap < interval {
			t.Fatalf("slots %d and %d are %v apart; the interval is %v", i-1, i, gap, interval)
		}
	}
	if most := zhimatest.MostInWindow(slots, time.Second); most > qps {
		t.Errorf("%d slots within one second; quota %d", most, qps)
	}
	n := 0
	for _, s := range slots {
		if s.Sub(slots[0]) < run {
			n++
		}
	}
	var calls int64
	for _, l := range limiters {
		calls += l.Calls()
	}
	t.Logf("%d slots in the first %v (quota %.0f); %d refusals; %d limiter calls for %d grants",
		n, run, qps*run.Seconds(), refused, calls, len(slots))
	if want := 0.95 * qps * run.Seconds(); float64(n) < want {
		t.Errorf("%d slots in the first %v; want at least %.1f (95%% of the quota)", n, run, want)
	}
}
