package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/zhimaq/zhimaq"
)

// result is one drill's tally.
type result struct {
	Name    string
	Skipped string // why the drill did not run; "" when it ran

	In          int // distinct jobs accepted
	Succeeded   int
	Failed      int
	Lost        int // accepted but not succeeded or failed by the deadline
	BilledTwice int // transaction_ids billed more than once or answered TRANSACTION_ID_REPEAT

	Calls           int64 // the sandbox's gateway calls
	Billed          int64 // the sandbox's billed calls
	UnrecordedCalls int64 // calls the records do not count (a worker died or could not store the outcome)

	InFlightMax   int64 // the highest sampled count of gateway requests in flight
	InFlightLimit int64 // WORKER_CONCURRENCY × workers

	Elapsed  time.Duration
	Notes    []string
	Problems []string // each fails the drill
}

// Pass reports whether the drill ran and found nothing wrong.
func (r *result) Pass() bool { return r.Skipped == "" && len(r.Problems) == 0 }

// Line is the drill's one summary line.
func (r *result) Line() string {
	if r.Skipped != "" {
		return fmt.Sprintf("%-17s SKIPPED  %s", r.Name, r.Skipped)
	}
	verdict := "PASS"
	if !r.Pass() {
		verdict = "FAIL"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-17s %s  in %d · finished %d (%d succeeded / %d failed) · lost %d · billed twice %d · sandbox %d calls, %d billed",
		r.Name, verdict, r.In, r.Succeeded+r.Failed, r.Succeeded, r.Failed, r.Lost, r.BilledTwice, r.Calls, r.Billed)
	if r.Billed == int64(r.Succeeded) {
		fmt.Fprintf(&b, " (= succeeded)")
	} else {
		fmt.Fprintf(&b, " (≠ %d succeeded)", r.Succeeded)
	}
	if r.InFlightLimit > 0 {
		fmt.Fprintf(&b, " · in flight ≤ %d/%d", r.InFlightMax, r.InFlightLimit)
	}
	fmt.Fprintf(&b, " · %s", formatDuration(r.Elapsed))
	return b.String()
}

// formatDuration prints d rounded to a tenth of a second, or to the second
// from a minute on.
func formatDuration(d time.Duration) string {
	if d >= time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// account reads the final state of the drill: records, sandbox counters,
// calls per transaction, the proxy's counts, asynq's queue and the workers'
// logs. The sandbox must still run.
func (d *drill) account(ctx context.Context) {
	r := d.res
	r.In = len(d.order)
	failedBy := map[string]int{}
	lostBy := map[string]int{}
	repeatTx := map[zhimaq.Ref]bool{}
	for _, ref := range d.order {
		rec := d.final[ref]
		switch {
		case rec == nil:
			r.Lost++
			lostBy["no record"]++
		case rec.State == zhimaq.Succeeded:
			r.Succeeded++
		case rec.State == zhimaq.Failed:
			r.Failed++
			failedBy[errorKey(rec.Error)]++
		default:
			r.Lost++
			lostBy[string(rec.State)]++
		}
		if rec != nil && rec.Error != nil && rec.Error.Source == "gateway" && rec.Error.SubCode == "TRANSACTION_ID_REPEAT" {
			repeatTx[ref] = true
		}
	}
	if r.Lost > 0 {
		d.problem("%d accepted jobs never finished: %s", r.Lost, countsText(lostBy))
	}
	if r.Failed > 0 {
		d.problem("%d jobs failed although no fault of this drill is permanent: %s", r.Failed, countsText(failedBy))
	}

	st, err := d.gw.sb.Stats(ctx)
	if err != nil {
		d.problem("cannot read the sandbox's stats: %v", err)
		return
	}
	r.Calls, r.Billed = st.Calls, st.Billed
	codes := map[string]int{}
	for k, v := range st.Codes {
		codes[k] = int(v)
	}
	d.note("sandbox answers: %s", countsText(codes))

	// Calls per transaction: a transaction the sandbox billed was called at
	// least once, so billed > called transactions means one was billed twice.
	calls, err := d.callsPerTransaction(ctx)
	if err != nil {
		d.problem("cannot read calls per transaction: %v", err)
	}
	called, multi := 0, 0
	var fewer int
	for _, ref := range d.order {
		n := calls[ref]
		if n > 0 {
			called++
		}
		if n > 1 {
			multi++
		}
		if rec := d.final[ref]; rec != nil {
			if extra := n - int64(rec.Attempts); extra > 0 {
				r.UnrecordedCalls += extra
			} else if extra < 0 {
				fewer++
			}
		}
	}
	repeats := st.Codes["40004/TRANSACTION_ID_REPEAT"]
	r.BilledTwice = max(len(repeatTx), int(repeats)) + max(0, int(st.Billed)-called)
	if r.BilledTwice > 0 {
		d.problem("%d transaction_ids billed twice: %d TRANSACTION_ID_REPEAT answers from the gateway (%d records), %d billed calls for %d transactions called",
			r.BilledTwice, repeats, len(repeatTx), st.Billed, called)
	}
	if st.Billed != int64(r.Succeeded) {
		d.problem("the sandbox billed %d calls for %d distinct succeeded transactions", st.Billed, r.Succeeded)
	}
	if d.oneCallEach && (multi > 0 || called != r.In) {
		d.problem("%d transactions were called more than once and %d not at all; each should have been called exactly once",
			multi, r.In-called)
	}
	d.note("calls per transaction: %d transactions called, %d more than once; %d calls not counted in any record's attempts (a worker died or could not store the outcome); %d records count more attempts than the sandbox saw",
		called, multi, r.UnrecordedCalls, fewer)

	ps := d.gw.proxy.stats()
	r.InFlightMax = ps.SampledMax
	if r.InFlightLimit > 0 && ps.SampledMax > r.InFlightLimit {
		d.problem("%d gateway requests were in flight at once, more than the %d handlers of the workers", ps.SampledMax, r.InFlightLimit)
	}
	d.note("gateway requests in flight (proxy, %d samples every 50ms): max %d, instantaneous peak %d, limit %d; slowest request %s of %d",
		ps.Samples, ps.SampledMax, ps.Peak, r.InFlightLimit, ps.Slowest.Round(time.Millisecond), ps.Requests)

	if qi, err := d.queueInfo(); err != nil {
		d.note("asynq queue: cannot read: %v", err)
	} else if qi.Active+qi.Pending+qi.Retry+qi.Archived+qi.Scheduled > 0 {
		d.note("asynq queue %s at the end: %d active, %d pending, %d scheduled, %d retry, %d archived",
			d.queue, qi.Active, qi.Pending, qi.Scheduled, qi.Retry, qi.Archived)
	}
	if s := scanWorkerLogs(d.logDir); s != "" {
		d.note("worker logs: %s", s)
	}
}

// callsPerTransaction asks the sandbox how often each accepted job's
// transaction was called.
func (d *drill) callsPerTransaction(ctx context.Context) (map[zhimaq.Ref]int64, error) {
	out := make(map[zhimaq.Ref]int64, len(d.order))
	var mu sync.Mutex
	var firstErr error
	refs := make(chan zhimaq.Ref)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ref := range refs {
				n, err := d.gw.sb.Calls(ctx, ref.Method, ref.TransactionID)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				out[ref] = n
				mu.Unlock()
			}
		}()
	}
	for _, ref := range d.order {
		refs <- ref
	}
	close(refs)
	wg.Wait()
	return out, firstErr
}

// errorKey names a record's error for counting: source/code/sub_code.
func errorKey(e *zhimaq.ErrorInfo) string {
	if e == nil {
		return "no error"
	}
	k := e.Source
	if e.Code != "" {
		k += "/" + e.Code
	}
	if e.SubCode != "" {
		k += "/" + e.SubCode
	}
	if e.Code == "" && e.SubCode == "" && e.Msg != "" {
		msg := e.Msg
		// "zhimaq: submit <key>: what: why" is counted by what and why.
		const submit = "zhimaq: submit "
		if rest, ok := strings.CutPrefix(msg, submit); ok {
			if i := strings.Index(rest, ": "); i >= 0 {
				msg = submit + "…: " + rest[i+2:]
			}
		}
		if len(msg) > 60 {
			msg = msg[:60] + "…"
		}
		k += ": " + msg
	}
	return k
}

// countsText prints counts as "a 3, b 2", highest first, then by name.
func countsText(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// logLine is the part of a zap JSON line chaos reads.
type logLine struct {
	Level  string `json:"level"`
	Logger string `json:"logger"`
	Msg    string `json:"msg"`
}

// scanWorkerLogs sums up the workers' logs in dir: error and warn lines by
// message, and deliveries of jobs that had already finished.
func scanWorkerLogs(dir string) string {
	files, _ := filepath.Glob(filepath.Join(dir, "worker-*.log"))
	levels := map[string]map[string]int{"error": {}, "warn": {}}
	redelivered, other := 0, 0
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var l logLine
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				if len(strings.TrimSpace(sc.Text())) > 0 {
					other++
				}
				continue
			}
			if l.Msg == "job already finished; no gateway call" {
				redelivered++
			}
			if m, ok := levels[l.Level]; ok {
				m[shortLogMsg(l)]++
			}
		}
		f.Close()
	}
	return summarizeLogCounts(levels["error"], levels["warn"], redelivered, other)
}

// shortLogMsg is a log message without the task ids asynq puts in some.
func shortLogMsg(l logLine) string {
	msg := l.Msg
	if i := strings.Index(msg, "id="); i >= 0 {
		msg = msg[:i] + "id=…"
	}
	if len(msg) > 90 {
		msg = msg[:90] + "…"
	}
	if l.Logger != "" {
		msg = l.Logger + ": " + msg
	}
	return fmt.Sprintf("%q", msg)
}

func summarizeLogCounts(errs, warns map[string]int, redelivered, other int) string {
	total := func(m map[string]int) int {
		n := 0
		for _, v := range m {
			n += v
		}
		return n
	}
	var parts []string
	if n := total(errs); n > 0 {
		parts = append(parts, fmt.Sprintf("%d error lines (%s)", n, topCounts(errs, 3)))
	}
	if n := total(warns); n > 0 {
		parts = append(parts, fmt.Sprintf("%d warn lines (%s)", n, topCounts(warns, 3)))
	}
	if redelivered > 0 {
		parts = append(parts, fmt.Sprintf("%d deliveries of already finished jobs (no call)", redelivered))
	}
	if other > 0 {
		parts = append(parts, fmt.Sprintf("%d lines that are not JSON", other))
	}
	if len(parts) == 0 {
		return "no errors or warnings"
	}
	return strings.Join(parts, "; ")
}

// topCounts is countsText of the n highest, with "…" when there are more.
func topCounts(m map[string]int, n int) string {
	s := strings.Split(countsText(m), ", ")
	if len(s) > n {
		s = append(s[:n], "…")
	}
	return strings.Join(s, ", ")
}

// minRetrySpan is the shortest time in which a job can spend attempts
// gateway calls that all fail at once, with the worker's backoff: retry n
// (from 0) waits base·2ⁿ capped at max, of which half is random
// (tasks.RetryDelay), so at least half of it.
func minRetrySpan(base, max time.Duration, attempts int) time.Duration {
	var sum time.Duration
	for n := 0; n < attempts-1; n++ {
		d := max
		if n < 40 {
			if e := base << n; e > 0 && e < max {
				d = e
			}
		}
		sum += d / 2
	}
	return sum
}

// outageBackoff picks RETRY_BASE_DELAY and RETRY_MAX_DELAY for an outage:
// base 1s, and the smallest max of 20s, 30s, 45s, 1m, … such that attempts
// failing calls take at least the outage plus a quarter of it; a job that
// meets the outage then always has an attempt left after it.
func outageBackoff(outage time.Duration, attempts int) (base, max time.Duration) {
	base = time.Second
	need := outage + outage/4
	for _, m := range []time.Duration{20 * time.Second, 30 * time.Second, 45 * time.Second, time.Minute,
		90 * time.Second, 2 * time.Minute, 3 * time.Minute, 5 * time.Minute, 10 * time.Minute} {
		if minRetrySpan(base, m, attempts) >= need {
			return base, m
		}
	}
	return base, 10 * time.Minute
}
