package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/launch"
	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/sandbox"
)

// The lane figure's setting (issue 13): one app at 20 calls/s, the sandbox
// answering in 100 ms, a 5,000-job batch draining, one interactive job a
// second.
const (
	laneQPS      = 20
	laneLatency  = 100 * time.Millisecond
	laneBacklog  = 5000
	laneWarmUp   = 3 * time.Second // the batch fills the quota before the first interactive job
	laneGrace    = 5 * time.Second // after the last interactive job, for it to finish
	laneP99Goal  = time.Second
	laneUseGoal  = 0.95
	lanePollEach = 10 * time.Millisecond
)

// laneRun is one run of the lane figure.
type laneRun struct {
	lane        string          // the lane the interactive jobs were submitted in
	waits       []time.Duration // submission to finished, of the jobs that finished
	unfinished  int             // interactive jobs not finished by the end of the run
	oldest      time.Duration   // how long the oldest unfinished one had waited then
	ahead       int64           // batch jobs still queued when the last interactive job came
	calls       int             // gateway calls while interactive jobs came
	interactive int             // of them, interactive jobs' calls
	window      time.Duration
}

// batchShare is the share of the quota the interactive jobs left that the
// batch used, while they came.
func (r laneRun) batchShare() float64 {
	left := laneQPS*r.window.Seconds() - float64(r.interactive)
	return float64(r.calls-r.interactive) / left
}

// p99 is the 99th percentile wait of the interactive jobs that finished.
func (r laneRun) p99() time.Duration {
	if len(r.waits) == 0 {
		return 0
	}
	w := slices.Sorted(slices.Values(r.waits))
	return w[(len(w)*99+99)/100-1]
}

// runLanes drains a batch backlog through one bin/worker at laneQPS while
// it submits one job a second in lane, for n seconds, and times those jobs.
func (e *env) runLanes(ctx context.Context, lane string, backlog, n int) (laneRun, error) {
	run := laneRun{lane: lane}
	ns, rdb, end, err := e.fresh(ctx)
	if err != nil {
		return run, err
	}
	defer end()
	if err := e.setFaults(ctx, sandbox.Faults{Latency: sandbox.Duration(laneLatency)}); err != nil {
		return run, err
	}
	defer e.setFaults(ctx, sandbox.Faults{})
	proxy, gatewayURL, stop, err := e.startProxy()
	if err != nil {
		return run, err
	}
	defer stop()
	m := e.workerEnv(ns, map[string]string{
		"ZHIMA_GATEWAY_URL": gatewayURL,
		"ZHIMA_QPS":         strconv.Itoa(laneQPS),
		"LOG_LEVEL":         "warn",
	})
	p, err := newProducer(rdb, m)
	if err != nil {
		return run, err
	}
	defer p.Close()
	batch := make([]string, backlog)
	for i := range batch {
		batch[i] = nextTx()
	}
	if err := submitter(ctx, p)(batch); err != nil {
		return run, err
	}
	logPath := filepath.Join(e.tmp, ns.queue+"-worker.log")
	lf, err := os.Create(logPath)
	if err != nil {
		return run, err
	}
	defer lf.Close()
	w, err := e.l.Children.Start("worker", e.bins["worker"], nil, envList(m), lf, lf)
	if err != nil {
		return run, err
	}
	defer w.Stop(20 * time.Second)
	if err := launch.Sleep(ctx, laneWarmUp); err != nil {
		return run, err
	}

	var mu sync.Mutex
	var wg sync.WaitGroup
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	for i := range n {
		if err := launch.Sleep(ctx, time.Until(start.Add(time.Duration(i)*time.Second))); err != nil {
			return run, err
		}
		j := job(nextTx())
		j.Lane = lane
		submitted := time.Now()
		sub, err := p.Submit(ctx, j)
		if err != nil {
			return run, err
		}
		if sub.State != zhimaq.Queued {
			return run, fmt.Errorf("bench: interactive job came back %s (%+v)", sub.State, sub.Error)
		}
		ref := zhimaq.Ref{Method: sub.Method, TransactionID: sub.TransactionID}
		wg.Go(func() {
			for runCtx.Err() == nil {
				rec, err := p.Result(runCtx, ref)
				if err == nil && rec.State.Terminal() {
					mu.Lock()
					run.waits = append(run.waits, rec.UpdatedAt.Sub(submitted))
					if rec.FirstCallAt != nil && rec.FirstCallAt.Before(start.Add(time.Duration(n)*time.Second)) {
						run.interactive++
					}
					mu.Unlock()
					return
				}
				launch.Sleep(runCtx, lanePollEach)
			}
			mu.Lock()
			run.unfinished++
			run.oldest = max(run.oldest, time.Since(submitted))
			mu.Unlock()
		})
	}
	run.window = time.Duration(n) * time.Second
	if err := launch.Sleep(ctx, time.Until(start.Add(run.window))); err != nil {
		return run, err
	}
	run.ahead, _ = rdb.LLen(ctx, "asynq:{"+ns.queue+"}:pending").Result()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(laneGrace):
		cancel()
		<-done
	case <-w.Done():
		return run, fmt.Errorf("bench: bin/worker exited early (log: %s)", logPath)
	}
	proxy.mu.Lock()
	for _, t := range proxy.times {
		if !t.Before(start) && t.Before(start.Add(run.window)) {
			run.calls++
		}
	}
	proxy.mu.Unlock()
	return run, nil
}

// figLanes is the lane figure: the interactive jobs' p99 from submission
// to finished, and the batch's use of the quota they leave, beside the
// same run with those jobs in the batch lane.
func (e *env) figLanes(ctx context.Context) ([]*figure, error) {
	backlog := e.opts.scaled(laneBacklog, 1000)
	n := e.opts.scaled(30, 10)
	wait := &figure{ID: "lanes", Name: fmt.Sprintf("interactive job, submission to finished, p99 (qps %d, %s gateway, %d-job batch draining, 1 job/s for %d s)",
		laneQPS, laneLatency, backlog, n), Target: fmt.Sprintf("≤ %s", laneP99Goal)}
	use := &figure{ID: "lanes", Name: "batch's use of the quota the interactive jobs leave, meanwhile", Target: fmt.Sprintf("≥ %.2f", laneUseGoal)}
	var lanes, refs []laneRun
	for round := range max(1, min(e.opts.Rounds, 2)) {
		for _, lane := range []string{payload.LaneInteractive, payload.LaneBatch} {
			r, err := e.runLanes(ctx, lane, backlog, n)
			if err != nil {
				return nil, err
			}
			e.logf("  round %d, lane %s: %d of %d finished, p99 %s; %d still waiting (oldest %s), %d batch jobs ahead; %d calls in %s (%d interactive), batch share %.3f",
				round+1, lane, len(r.waits), n, r.p99().Round(time.Millisecond), r.unfinished, r.oldest.Round(time.Second), r.ahead, r.calls, r.window, r.interactive, r.batchShare())
			if lane == payload.LaneInteractive {
				lanes = append(lanes, r)
			} else {
				refs = append(refs, r)
			}
		}
	}
	var p99s, shares, refShares []float64
	worstRef := laneRun{}
	for i := range lanes {
		p99s = append(p99s, lanes[i].p99().Seconds())
		if lanes[i].unfinished > 0 {
			p99s[i] = lanes[i].window.Seconds() + laneGrace.Seconds() // not finished: at least that
		}
		shares, refShares = append(shares, lanes[i].batchShare()), append(refShares, refs[i].batchShare())
		if refs[i].unfinished >= worstRef.unfinished {
			worstRef = refs[i]
		}
	}
	wait.Zhimaq = dur(median(p99s))
	switch {
	case worstRef.unfinished > 0:
		// They wait behind the backlog: at the quota that is ahead / qps.
		behind := float64(worstRef.ahead) / (laneQPS * 0.992)
		wait.Reference = fmt.Sprintf("> %s (%d of %d not finished; ≈ %.0f s behind %d queued jobs)", dur(worstRef.oldest.Seconds()), worstRef.unfinished, n, behind, worstRef.ahead)
		wait.Ratio = median(p99s) / behind
	default:
		wait.Reference = dur(worstRef.p99().Seconds())
		wait.Ratio = median(p99s) / worstRef.p99().Seconds()
	}
	wait.check(median(p99s) <= laneP99Goal.Seconds())
	use.Zhimaq, use.Reference = fmt.Sprintf("%.3f", median(shares)), fmt.Sprintf("%.3f", median(refShares))
	use.Ratio = median(shares) / median(refShares)
	use.check(median(shares) >= laneUseGoal)
	for i := range lanes {
		l, r := lanes[i], refs[i]
		wait.rawf("round %d, interactive lane: p99 %s, slowest %s, %d of %d finished; batch lane (reference): %d of %d finished, %d still waiting after up to %s, %d batch jobs ahead of the last",
			i+1, l.p99().Round(time.Millisecond), slices.Max(append(l.waits, 0)).Round(time.Millisecond), len(l.waits), n, len(r.waits), n, r.unfinished, r.oldest.Round(time.Second), r.ahead)
		use.rawf("round %d: %d gateway calls in %s with lanes (%d interactive), %d without (%d interactive); all calls / quota: %.3f and %.3f",
			i+1, l.calls, l.window, l.interactive, r.calls, r.interactive, float64(l.calls)/(laneQPS*l.window.Seconds()), float64(r.calls)/(laneQPS*r.window.Seconds()))
	}
	wait.How = fmt.Sprintf("%d batch jobs queued, then one bin/worker (WORKER_CONCURRENCY 50, ZHIMA_QPS=%d) against bin/zhima-sandbox at %s latency through a counting proxy; "+
		"after %s, one job a second for %d s in the interactive lane, each polled every %s until it finished; its wait is its record's updated_at less its submission. "+
		"Reference: the same run with those jobs in the batch lane, stopped %s after the last (jobs not finished then are counted as waiting). %d round(s).",
		backlog, laneQPS, laneLatency, laneWarmUp, n, lanePollEach, laneGrace, len(lanes))
	use.How = fmt.Sprintf("gateway calls the proxy saw while the interactive jobs came, less the interactive jobs' own, over what the quota leaves them: "+
		"%d/s × the window less the interactive calls. The limiter's slots are 0.8%% wider than 1/qps, so 0.992 is the most any run reaches.", laneQPS)
	if !*wait.Met {
		wait.whyf("An interactive call takes the next free slot, behind the batch calls that already hold one (those within the batch horizon), "+
			"and waits for a handler: %d of %d finished within the run, p99 %s.", len(lanes[0].waits), n, dur(median(p99s)))
	}
	if !*use.Met {
		use.whyf("Slots went unused while interactive jobs came: %d calls in %s against %d/s.", lanes[0].calls, lanes[0].window, laneQPS)
	}
	return []*figure{wait, use}, nil
}
