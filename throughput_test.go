package zhimaq_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/sandbox"
)

// With one attempt per job, any job that a limiter wait cost an attempt
// would fail: every job must still succeed, each with one call.
func TestRateLimitWaitsUseNoAttempts(t *testing.T) {
	p := startPipeline(t, sandbox.Faults{}, func(c *config.Config) {
		c.QPS = 10
		c.RetryMaxAttempts = 1
	})
	var jobs []zhimaq.Job
	for i := range 20 {
		jobs = append(jobs, scoreJob(fmt.Sprintf("QPS_%d", i), 600))
		p.submit(t, jobs[i])
	}
	start := time.Now()
	for i, rec := range p.wait(t, jobs...) {
		if rec.State != zhimaq.Succeeded || rec.Attempts != 1 {
			t.Fatalf("job %d: %+v (error %+v)", i, rec, rec.Error)
		}
	}
	if elapsed := time.Since(start); elapsed < 1500*time.Millisecond {
		t.Fatalf("20 calls at 10/s took %s: the limiter did not hold them back", elapsed)
	}
	if !strings.Contains(p.logs.String(), `"rate_limit":"10 req/s (burst 1)"`) {
		t.Fatalf("the worker did not log its limit")
	}
}

// A storm of 20000 answers opens the breaker, which then holds calls back
// instead of spending attempts; once the gateway recovers, a probe closes
// it and every job succeeds.
func TestBreakerHoldsBackCallsThroughAStorm(t *testing.T) {
	const jobsN, failures = 30, 5
	p := startPipeline(t, sandbox.Faults{UnavailableRate: 1}, func(c *config.Config) {
		c.BreakerFailures, c.BreakerCooldown = failures, 150*time.Millisecond
		c.RetryMaxAttempts = 6
	})
	var jobs []zhimaq.Job
	for i := range jobsN {
		jobs = append(jobs, relationJob(fmt.Sprintf("STORM_%d", i)))
		p.submit(t, jobs[i])
	}
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(p.logs.String(), `"to":"open"`); {
		if time.Now().After(deadline) {
			t.Fatal("the breaker never opened")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(600 * time.Millisecond) // the storm goes on: about four cool-downs
	stormCalls := p.gateway.Stats().Calls
	p.gateway.SetFaults(sandbox.Faults{})
	for i, rec := range p.wait(t, jobs...) {
		if rec.State != zhimaq.Succeeded {
			t.Fatalf("job %d: %+v (error %+v)", i, rec, rec.Error)
		}
	}
	// Without the breaker 30 jobs retrying every 10–40ms for ~0.7s would
	// make hundreds of calls; with it: the first wave (at most the
	// concurrency, 20) plus about one probe per cool-down.
	if stormCalls > 20+failures+8 {
		t.Fatalf("%d calls during the storm; the breaker did not hold them back", stormCalls)
	}
	logs := p.logs.String()
	if !strings.Contains(logs, `"from":"half-open","to":"closed"`) {
		t.Fatalf("the breaker never closed again")
	}
	t.Logf("calls during the storm: %d; total %d for %d jobs", stormCalls, p.gateway.Stats().Calls, jobsN)
}
