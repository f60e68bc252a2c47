package tasks

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zhimaq/zhimaq/internal/breaker"
	"github.com/zhimaq/zhimaq/internal/metrics"
	"github.com/zhimaq/zhimaq/internal/ratelimit"
	"github.com/zhimaq/zhimaq/internal/results"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// metricValue is the value of the series of family name whose labels
// include labels, or -1 when there is none.
func metricValue(tb testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func TestBreakerOpenHoldsTheCallBackWithoutAnAttempt(t *testing.T) {
	f := newFixture(t, sandbox.Faults{UnavailableRate: 1})
	reg := prometheus.NewRegistry()
	f.h.Metrics = metrics.New(reg)
	f.app.Breaker = breaker.New(breaker.Config{Failures: 1, Cooldown: time.Minute})
	p := scorePayload("HELD_1")
	if err := f.h.ProcessTask(context.Background(), task(t, p)); err == nil {
		t.Fatal("first attempt: nil, want the retryable gateway error")
	}
	err := f.h.ProcessTask(context.Background(), task(t, p))
	var hb *HeldBack
	if !errors.As(err, &hb) || hb.Reason != "breaker open" || IsFailure(err) {
		t.Fatalf("second delivery: %v, want a HeldBack by the breaker that is no failure", err)
	}
	rec, _ := f.h.Results.Get(context.Background(), p.Key())
	if rec.State != results.Retrying || rec.Attempts != 1 {
		t.Fatalf("record %+v, want still retrying after 1 attempt", rec)
	}
	if calls := f.gateway.Calls(p.Method, p.TransactionID); calls != 1 {
		t.Fatalf("gateway saw %d calls, want 1", calls)
	}
	if v := metricValue(t, reg, "zhimaq_tasks_held_back_total", map[string]string{"reason": "breaker_open"}); v != 1 {
		t.Errorf("held back by the breaker counted %v times, want 1", v)
	}
}

func TestAttemptsUsedUpFailWithoutACall(t *testing.T) {
	f := newFixture(t, sandbox.Faults{UnavailableRate: 1})
	reg := prometheus.NewRegistry()
	f.h.Metrics = metrics.New(reg)
	f.h.MaxAttempts = 5
	p := scorePayload("USED_UP_1")
	for range 2 {
		f.h.ProcessTask(context.Background(), task(t, p))
	}
	// A worker with a smaller budget gets the task next: the attempts are used up.
	f.h.MaxAttempts = 2
	if err := f.h.ProcessTask(context.Background(), task(t, p)); err != nil {
		t.Fatalf("delivery after the budget: %v, want the task ended (nil)", err)
	}
	rec, _ := f.h.Results.Get(context.Background(), p.Key())
	if rec.State != results.Failed || rec.Attempts != 2 || rec.Error == nil || rec.Error.Code != "20000" {
		t.Fatalf("record %+v (error %+v), want failed after 2 attempts with the last gateway error", rec, rec.Error)
	}
	if calls := f.gateway.Calls(p.Method, p.TransactionID); calls != 2 {
		t.Fatalf("gateway saw %d calls, want 2", calls)
	}
	if v := metricValue(t, reg, "zhimaq_jobs_finished_total", map[string]string{"method": p.Method, "state": "failed"}); v != 1 {
		t.Errorf("failed jobs counted %v, want 1", v)
	}
}

// TestARefusedCallAsksTheLimiterOnceMore: a call refused because every slot
// within the wait is taken asks again after its pause when the slot it
// found opens within another wait, and calls, rather than handing its task
// back to asynq's retry set.
func TestARefusedCallAsksTheLimiterOnceMore(t *testing.T) {
	f := newFixture(t, sandbox.Faults{})
	reg := prometheus.NewRegistry()
	f.h.Metrics = metrics.New(reg)
	f.app.Limiter = ratelimit.New(f.rdb, f.prefix, zhimatest.AppID, 10) // slots 100.8 ms apart
	f.h.MaxLimiterWait = 70 * time.Millisecond
	// Another worker takes the slot open now: the next opens beyond the wait.
	if _, after, err := f.app.Limiter.Wait(context.Background(), ratelimit.Batch, f.h.MaxLimiterWait); err != nil || after != 0 {
		t.Fatalf("first slot: %v, %v", after, err)
	}
	p := scorePayload("ASK_AGAIN_1")
	if err := f.h.ProcessTask(context.Background(), task(t, p)); err != nil {
		t.Fatalf("ProcessTask = %v, want the call made in this delivery", err)
	}
	if calls := f.gateway.Calls(p.Method, p.TransactionID); calls != 1 {
		t.Errorf("gateway saw %d calls, want 1", calls)
	}
	if v := metricValue(t, reg, "zhimaq_tasks_held_back_total", map[string]string{"reason": "rate_limit"}); v > 0 {
		t.Errorf("held back by the rate limit %v times, want none", v)
	}
}
