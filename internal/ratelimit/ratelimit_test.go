package ratelimit

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/redistest"
)

func TestNoLimitIsNil(t *testing.T) {
	if l := New(nil, "", "app", 0); l != nil {
		t.Fatalf("qps 0 gave a limiter %v", l)
	}
	var l *Limiter
	if waited, retry, err := l.Wait(context.Background(), 0); waited != 0 || retry != 0 || err != nil {
		t.Fatalf("nil limiter waited: %v %v %v", waited, retry, err)
	}
}

func TestFractionalRatesKeepTheirSpacing(t *testing.T) {
	for qps, want := range map[float64]string{20: "20 req/s (burst 1)", 2.5: "25 req/10s (burst 1)", 0.5: "5 req/10s (burst 1)"} {
		if got := New(nil, "", "app", qps).String(); got != want {
			t.Errorf("qps %v: %s, want %s", qps, got, want)
		}
	}
}

// TestCallsAreSpacedAcrossClients starts calls from many goroutines, each
// with its own Redis client as separate worker processes would have, and
// checks that no one-second window holds more calls than the quota.
func TestCallsAreSpacedAcrossClients(t *testing.T) {
	srv := redistest.New(t)
	const qps, calls = 40, 60
	var mu sync.Mutex
	var starts []time.Time
	var wg sync.WaitGroup
	for g := range 6 {
		l := New(srv.Client(t), srv.Prefix, "app", qps)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls / 6 {
				_, retry, err := l.Wait(context.Background(), 10*time.Second)
				if err != nil || retry != 0 {
					t.Errorf("client %d: retry %v, err %v", g, retry, err)
					return
				}
				mu.Lock()
				starts = append(starts, time.Now())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
	most := 0
	for i := range starts {
		n := sort.Search(len(starts), func(j int) bool { return !starts[j].Before(starts[i].Add(time.Second)) }) - i
		most = max(most, n)
	}
	if most > qps {
		t.Fatalf("%d calls started within one second; quota %d", most, qps)
	}
}

func TestWaitGivesUpAfterMaxWait(t *testing.T) {
	srv := redistest.New(t)
	l := New(srv.Client(t), srv.Prefix, "app", 1)
	if _, retry, err := l.Wait(context.Background(), 0); err != nil || retry != 0 {
		t.Fatalf("first call held back: %v %v", retry, err)
	}
	_, retry, err := l.Wait(context.Background(), 10*time.Millisecond)
	if err != nil || retry <= 0 || retry > time.Second {
		t.Fatalf("second call: retryAfter %v, err %v; want held back for up to 1s", retry, err)
	}
}
