package bench

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/launch"
	"github.com/zhimaq/zhimaq/internal/procs"
	"github.com/zhimaq/zhimaq/internal/ratelimit"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// countingProxy forwards to the sandbox and notes when each gateway call
// arrived.
type countingProxy struct {
	mu    sync.Mutex
	times []time.Time
	rp    *httputil.ReverseProxy
}

func (p *countingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/gateway.do" {
		now := time.Now()
		p.mu.Lock()
		p.times = append(p.times, now)
		p.mu.Unlock()
	}
	p.rp.ServeHTTP(w, r)
}

// startProxy serves a countingProxy in front of the sandbox on a loopback
// port; it returns the proxy, its gateway URL and how to stop it.
func (e *env) startProxy() (*countingProxy, string, func(), error) {
	target, _ := url.Parse(e.sb.AdminURL)
	proxy := &countingProxy{rp: httputil.NewSingleHostReverseProxy(target)}
	proxy.rp.Transport = &http.Transport{MaxIdleConns: 400, MaxIdleConnsPerHost: 400, IdleConnTimeout: 30 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, err
	}
	hs := &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	return proxy, "http://" + ln.Addr().String() + "/gateway.do", func() { hs.Close() }, nil
}

// quotaRun is one drain by two worker processes under ZHIMA_QPS.
type quotaRun struct {
	calls      int     // calls the proxy saw
	sandboxN   int64   // calls the sandbox counted
	rate       float64 // (calls − 1) / (last − first)
	maxWindow  int     // most calls in any one-second window
	gapP50     time.Duration
	rate90     float64       // calls/s over the first 90% of calls
	last10     time.Duration // time the last 10% of calls took
	shortGaps  int           // arrivals less than half the limiter's spacing after the one before
	perSecond  []int
	succeeded  int
	span       time.Duration
	workerLogs []string

	// How far arrivals lag an even schedule at the limiter's interval
	// fitted under them, over the first 90% of calls (see lateness).
	lateP50, lateP99, lateMax time.Duration

	// The limiter's Redis calls: limiterCalls, the round trips of both
	// workers' limiters (zhimaq_ratelimit_redis_calls_total: every EVALSHA
	// and fallback EVAL), beside limiterWaits, the handlers' asks of the
	// limiter (zhimaq_ratelimit_wait_seconds_count, one per task admitted or
	// handed back), of which heldBack were refused
	// (zhimaq_tasks_held_back_total{reason="rate_limit"}), and evals, every
	// EVAL anyone sent during the round (INFO commandstats).
	limiterCalls, limiterWaits, heldBack, evals int64
}

// runQuota enqueues jobs, starts two bin/worker processes with ZHIMA_QPS
// against a counting proxy in front of the sandbox, and waits until the
// queue is empty.
func (e *env) runQuota(ctx context.Context, qps float64, jobs int) (quotaRun, error) {
	ns, rdb, end, err := e.fresh(ctx)
	if err != nil {
		return quotaRun{}, err
	}
	defer end()
	if err := e.setFaults(ctx, sandbox.Faults{}); err != nil {
		return quotaRun{}, err
	}
	proxy, gatewayURL, stop, err := e.startProxy()
	if err != nil {
		return quotaRun{}, err
	}
	defer stop()

	m := e.workerEnv(ns, map[string]string{
		"ZHIMA_GATEWAY_URL": gatewayURL,
		"ZHIMA_QPS":         strconv.FormatFloat(qps, 'f', -1, 64),
		"RETRY_BASE_DELAY":  "10ms",
		"RETRY_MAX_DELAY":   "1s",
		"LOG_LEVEL":         "warn",
	})
	p, err := newProducer(rdb, m)
	if err != nil {
		return quotaRun{}, err
	}
	defer p.Close()
	txs := make([]string, jobs)
	for i := range txs {
		txs[i] = nextTx()
	}
	if err := submitter(ctx, p)(txs); err != nil {
		return quotaRun{}, err
	}

	var run quotaRun
	before, err := commandCounts(ctx, rdb)
	if err != nil {
		return quotaRun{}, err
	}
	var workers []*procs.Child
	var metricsURLs []string
	defer func() {
		for _, w := range workers {
			_ = w.Stop(20 * time.Second)
		}
	}()
	for i := range 2 {
		logPath := filepath.Join(e.tmp, fmt.Sprintf("%s-worker%d.log", ns.queue, i+1))
		lf, err := os.Create(logPath)
		if err != nil {
			return quotaRun{}, err
		}
		defer lf.Close()
		// Each worker serves /metrics on a port of its own, read once the
		// queue has drained for the limiter's counts.
		port, err := launch.FreePort()
		if err != nil {
			return quotaRun{}, err
		}
		wm := maps.Clone(m)
		wm["HTTP_ADDR"] = fmt.Sprintf("127.0.0.1:%d", port)
		w, err := e.l.Children.Start("worker", e.bins["worker"], nil, envList(wm), lf, lf)
		if err != nil {
			return quotaRun{}, err
		}
		workers = append(workers, w)
		metricsURLs = append(metricsURLs, "http://"+wm["HTTP_ADDR"]+"/metrics")
		run.workerLogs = append(run.workerLogs, logPath)
	}
	timeout := time.Duration(float64(jobs)/qps*float64(time.Second))*3 + time.Minute
	done := make(chan error, 1)
	go func() {
		_, err := waitDrained(ctx, rdb, ns.queue, timeout, e.sb.Child.Done())
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return quotaRun{}, err
		}
	case <-workers[0].Done():
		return quotaRun{}, fmt.Errorf("bench: bin/worker exited early (log: %s)", run.workerLogs[0])
	case <-workers[1].Done():
		return quotaRun{}, fmt.Errorf("bench: bin/worker exited early (log: %s)", run.workerLogs[1])
	}
	for _, u := range metricsURLs {
		calls, waits, held, err := limiterMetrics(ctx, u)
		if err != nil {
			return quotaRun{}, fmt.Errorf("bench: worker metrics: %w", err)
		}
		run.limiterCalls += calls
		run.limiterWaits += waits
		run.heldBack += held
	}
	for _, w := range workers {
		_ = w.Stop(20 * time.Second)
	}
	workers = nil
	after, err := commandCounts(ctx, rdb)
	if err != nil {
		return quotaRun{}, err
	}
	run.evals = after["eval"] - before["eval"]

	st, err := e.sb.Stats(ctx)
	if err != nil {
		return quotaRun{}, err
	}
	proxy.mu.Lock()
	ts := append([]time.Time(nil), proxy.times...)
	proxy.mu.Unlock()
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	run.calls, run.sandboxN = len(ts), st.Calls
	if len(ts) > 1 {
		run.span = ts[len(ts)-1].Sub(ts[0])
		run.rate = float64(len(ts)-1) / run.span.Seconds()
	}
	run.maxWindow = zhimatest.MostInWindow(ts, time.Second)
	if len(ts) > 1 {
		gaps := make([]float64, len(ts)-1)
		for i := range gaps {
			gaps[i] = ts[i+1].Sub(ts[i]).Seconds()
			if gaps[i] < 0.5/qps {
				run.shortGaps++
			}
		}
		run.gapP50 = time.Duration(median(gaps) * float64(time.Second))
		i90 := len(ts) * 9 / 10
		if i90 > 1 {
			run.rate90 = float64(i90-1) / ts[i90-1].Sub(ts[0]).Seconds()
			run.last10 = ts[len(ts)-1].Sub(ts[i90-1])
			run.lateP50, run.lateP99, run.lateMax = lateness(ts[:i90], ratelimit.New(nil, "", "app", qps).Interval())
		}
	}
	run.perSecond = perSecond(ts)
	states, err := countStates(ctx, p, txs)
	if err != nil {
		return quotaRun{}, err
	}
	run.succeeded = states[zhimaq.Succeeded]
	return run, nil
}

// figQuota is figure 5: with ZHIMA_QPS and two worker processes draining
// jobs of the batch lane (the default: the limiter's Batch lane), the calls
// per second the gateway saw against the quota, the most in any one-second
// window against the quota, and the limiter's Redis calls per gateway call
// (read from the workers' /metrics after the drain, not through MONITOR:
// on two cores MONITOR's cost delayed calls by up to 50 ms, enough to put
// 51 arrivals into a second).
func (e *env) figQuota(ctx context.Context) ([]*figure, error) {
	const qps = 50
	const callsTarget = 3.0
	lim := ratelimit.New(nil, "", "app", qps)
	interval, horizon := lim.Interval(), lim.Horizon()
	jobs := e.opts.scaled(10*qps, 2*qps)
	avg := &figure{ID: "5", Name: fmt.Sprintf("gateway calls/s, ZHIMA_QPS=%d, 2 bin/worker, %d jobs", qps, jobs), Target: "0.99–1.00×"}
	peak := &figure{ID: "5", Name: "most calls in any 1 s window", Target: "≤ 1.00× (never above)"}
	cost := &figure{ID: "5", Name: "limiter Redis calls per gateway call", Target: "≤ 1.00×"}
	var rates, peaks, perCall []float64
	var runs []quotaRun
	for round := range e.opts.Rounds {
		run, err := e.runQuota(ctx, qps, jobs)
		if err != nil {
			return nil, err
		}
		runs = append(runs, run)
		rates, peaks = append(rates, run.rate), append(peaks, float64(run.maxWindow))
		if run.calls > 0 {
			perCall = append(perCall, float64(run.limiterCalls)/float64(run.calls))
		}
		e.logf("  round %d: %.2f calls/s over %.1f s, at most %d in a second; %d calls (sandbox %d), %d/%d succeeded; "+
			"%d limiter Redis calls for %d asks (%d refused); %d EVAL",
			round+1, run.rate, run.span.Seconds(), run.maxWindow, run.calls, run.sandboxN, run.succeeded, jobs, run.limiterCalls, run.limiterWaits, run.heldBack, run.evals)
	}
	avg.Zhimaq, avg.Reference = fmt.Sprintf("%.2f/s", median(rates)), fmt.Sprintf("%d/s (quota)", qps)
	avg.Ratio = median(rates) / qps
	avg.check(avg.Ratio >= 0.99 && avg.Ratio <= 1.0)
	maxPeak := 0.0
	for _, p := range peaks {
		maxPeak = max(maxPeak, p)
	}
	peak.Zhimaq, peak.Reference = fmt.Sprintf("%.0f (worst round)", maxPeak), fmt.Sprintf("%d (quota)", qps)
	peak.Ratio = maxPeak / qps
	peak.check(maxPeak <= qps)
	cost.Zhimaq, cost.Reference = fmt.Sprintf("%.2f", median(perCall)), fmt.Sprintf("%.0f (target)", callsTarget)
	cost.Ratio = median(perCall) / callsTarget
	cost.check(cost.Ratio <= 1.0)
	avg.rawf("calls/s per round: %s", list("%.2f", rates))
	peak.rawf("most calls in any 1 s window per round: %s", list("%.0f", peaks))
	var gaps, short, rate90, last10 []float64
	var waits, refused, evals []float64
	var lateP50, lateP99, lateMax []float64
	for _, r := range runs {
		lateP50, lateP99 = append(lateP50, r.lateP50.Seconds()*1e3), append(lateP99, r.lateP99.Seconds()*1e3)
		lateMax = append(lateMax, r.lateMax.Seconds()*1e3)
		gaps, short = append(gaps, r.gapP50.Seconds()*1e3), append(short, float64(r.shortGaps))
		rate90, last10 = append(rate90, r.rate90), append(last10, r.last10.Seconds())
		waits, refused, evals = append(waits, float64(r.limiterWaits)), append(refused, float64(r.heldBack)), append(evals, float64(r.evals))
	}
	avg.rawf("calls/s over the first 90%% of calls: %s; seconds the last 10%% took: %s (%.1f at the quota)", list("%.2f", rate90), list("%.2f", last10),
		0.1*float64(jobs)/qps)
	avg.rawf("median gap between arrivals (ms) per round: %s (the limiter spaces slots %.1f ms apart: 1/%d s + %.1f%%)", list("%.2f", gaps),
		interval.Seconds()*1e3, qps, ratelimit.Margin*100)
	peak.rawf("arrivals less than %.0f ms after the one before, per round: %s", 500.0/qps, list("%.0f", short))
	peak.rawf("lateness of arrivals behind back-to-back slots %.1f ms apart fitted under them, first 90%% of calls, ms per round: "+
		"median %s; 99th percentile %s; largest %s", interval.Seconds()*1e3, list("%.1f", lateP50), list("%.1f", lateP99), list("%.1f", lateMax))
	cost.rawf("limiter Redis calls per gateway call per round: %s; the handlers' asks of the limiter per round: %s, of them refused (task handed back): %s; "+
		"EVAL commands per round (all clients): %s", list("%.2f", perCall), list("%.0f", waits), list("%.0f", refused), list("%.0f", evals))
	for i, r := range runs {
		avg.rawf("round %d: %d calls at the proxy, %d counted by the sandbox, %d of %d jobs succeeded; calls in each second from the first: %v",
			i+1, r.calls, r.sandboxN, r.succeeded, jobs, r.perSecond)
	}
	avg.How = fmt.Sprintf("%d jobs (batch lane, the default) enqueued first, then two bin/worker processes (WORKER_CONCURRENCY 50 each, ZHIMA_QPS=%d, DATA_KEYS=plaintext, LOG_LEVEL=warn, "+
		"HTTP_ADDR on a free loopback port for /metrics) sharing the bench's Redis, pointed at a counting reverse proxy (in the bench) in front of bin/zhima-sandbox; the proxy notes when each "+
		"/gateway.do request arrives, and its count is checked against the sandbox's Stats.Calls. Rate = (calls − 1) / (last − first arrival); "+
		"%d rounds; ratio = median rate / quota.", jobs, qps, e.opts.Rounds)
	peak.How = "the largest number of arrivals at the proxy in any half-open window [t, t+1 s), sliding over every arrival, worst of all rounds; reference = the quota."
	cost.How = "the Redis round trips of both workers' rate limiters (zhimaq_ratelimit_redis_calls_total: each EVALSHA of the reservation script, " +
		"a Batch Wait woken in its pause asking twice, and each EVAL when Redis lacked the script), read from their /metrics (the workers run with " +
		"HTTP_ADDR on a free loopback port) once the queue has drained, divided by the calls the proxy saw; median of the rounds; ratio = that / 3, the target."
	if !*avg.Met && avg.Ratio < 0.99 {
		if g := median(gaps); g > 1.01*interval.Seconds()*1e3 {
			avg.whyf("The median gap between calls is %.2f ms against the limiter's %.1f ms (%.1f calls/s over the first 90%% of calls): slots went "+
				"unused, so fewer handlers were waiting on the limiter than slots within the batch horizon (%.0f ms), or calls were delayed between "+
				"the grant and the gateway.", g, interval.Seconds()*1e3, median(rate90), horizon.Seconds()*1e3)
		}
		if median(last10) > 1.5*0.1*float64(jobs)/qps {
			avg.whyf("The last 10%% of calls took %.2f s against %.1f s at the quota: with %d jobs and 2 × 50 handlers, a handler whose slot "+
				"lies beyond the batch horizon (%.0f ms) ahead pauses for MaxLimiterWait (2 s) unless a slot of its worker opens first, and "+
				"refused twice hands its task back, which returns through asynq's retry set, checked every 1 s; fewer jobs than handlers make "+
				"that tail a larger share.", median(last10), 0.1*float64(jobs)/qps, jobs, horizon.Seconds()*1e3)
		}
	}
	if !*peak.Met {
		peak.whyf("The proxy sees arrivals, not grants (the limiter's own tests check on Redis's clock that grants never exceed the quota). "+
			"Slots are %.1f ms apart, so %d of them span %.0f ms more than 1 s; a window holds %d arrivals only when a call reaches the proxy "+
			"that much later after its slot than the call %d slots on. Arrivals lagged their slots by %s ms at the 99th percentile and up to "+
			"%s ms (per round): the script's reply, the timer, the handler's work before the request (signing) and the HTTP write, on two "+
			"cores shared by two workers, the sandbox, Redis and the bench. A margin covering that would cost more than the 1%% the rate "+
			"target leaves.", interval.Seconds()*1e3, qps, (qps*interval.Seconds()-1)*1e3, qps+1, qps, list("%.1f", lateP99), list("%.1f", lateMax))
	}
	if cost.Met != nil && !*cost.Met {
		cost.whyf("Each Wait is one script call; more than one per gateway call are refusals: handlers whose slot would lie beyond "+
			"the batch horizon (%.0f ms × %d/s = %.0f slots, against 2 × 50 handlers) ask, are refused, and ask again when woken or when "+
			"their task comes back.", horizon.Seconds()*1e3, qps, horizon.Seconds()*qps)
	}
	return []*figure{avg, peak, cost}, nil
}

// lateness estimates how late sorted arrivals ts came after their slots,
// assuming the slots were back to back, interval apart (they are while
// handlers keep the limiter's reservations full, as in figure 5 until its
// last 10%): slot i = s0 + i × interval, with s0 the latest start that
// puts no arrival before its slot. It returns the median, the 99th
// percentile and the largest lateness.
func lateness(ts []time.Time, interval time.Duration) (p50, p99, most time.Duration) {
	if len(ts) == 0 {
		return 0, 0, 0
	}
	lag := make([]time.Duration, len(ts))
	for i, t := range ts {
		lag[i] = t.Sub(ts[0]) - time.Duration(i)*interval
	}
	least := slices.Min(lag)
	for i := range lag {
		lag[i] -= least
	}
	slices.Sort(lag)
	return lag[len(lag)/2], lag[len(lag)*99/100], lag[len(lag)-1]
}

// limiterMetrics reads a worker's /metrics: its limiter's Redis calls, the
// asks of the limiter its handlers made and the tasks they handed back for
// the rate limit.
func limiterMetrics(ctx context.Context, url string) (calls, waits, heldBack int64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	text, app := string(body), `app="`+zhimatest.AppID+`"`
	return promValue(text, `zhimaq_ratelimit_redis_calls_total{`+app+`}`), promValue(text, "zhimaq_ratelimit_wait_seconds_count"),
		promValue(text, `zhimaq_tasks_held_back_total{`+app+`,reason="rate_limit"}`), nil
}

// promValue is the value of the series named exactly series (with its
// labels as Prometheus writes them) in a text exposition; 0 when absent.
func promValue(text, series string) int64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.Fields(v)[0], 64)
			if err == nil {
				return int64(f)
			}
		}
	}
	return 0
}
