package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/idempotency"
	"github.com/zhimaq/zhimaq/internal/launch"
	"github.com/zhimaq/zhimaq/internal/procs"
	"github.com/zhimaq/zhimaq/internal/results"
	"github.com/zhimaq/zhimaq/internal/sandbox"
)

// drillSpec is one drill: a name for --drill, a short transaction_id
// prefix, what it does, and its run. A run starts the drill's processes,
// does its damage, and waits for the jobs; the tally happens after it.
type drillSpec struct {
	name  string
	short string
	about string
	// needsRedisServer: the drill restarts Redis, which an embedded one
	// cannot show, or runs a Redis of its own (redis).
	needsRedisServer bool
	redis            string // the topology it runs on: shared, sentinel or cluster
	run              func(ctx context.Context, d *drill) error
}

var drills = []drillSpec{
	{name: "kill-worker", short: "KW", run: drillKillWorker,
		about: "two workers; kill -9 one in mid-batch, start it again 10s later; asynq hands its tasks back after their lease"},
	{name: "restart-redis", short: "RR", run: drillRestartRedis, needsRedisServer: true,
		about: "jobs stream into enqueue; SHUTDOWN the private redis-server in mid-batch, start it again on the same port and dir 3s later; submit the file again if enqueue gave up"},
	{name: "gateway-outage", short: "GO", run: drillGatewayOutage,
		about: "every gateway call answers 20000 for a while, then the gateway recovers; no job may run out of attempts"},
	{name: "gateway-hang", short: "GH", run: drillGatewayHang,
		about: "5% of calls hang; ZHIMA_TIMEOUT=2s ends them; gateway requests in flight never exceed the workers' handlers"},
	{name: "racing-producers", short: "RP", run: drillRacingProducers,
		about: "two `enqueue batch --wait` at once on files that overlap by 60%, a tenth of the overlap with other parameters"},
	{name: "graceful-stop", short: "GS", run: drillGracefulStop,
		about: "SIGTERM the only worker while calls run; it exits 0 within its shutdown timeout; start it again to drain"},
	{name: "sentinel-failover", short: "SF", run: drillSentinelFailover, needsRedisServer: true, redis: sentinel,
		about: "a master, a replica and 3 sentinels of the drill's own; jobs stream into enqueue; kill -9 the master in mid-batch; the sentinels promote the replica; the old master, started again, follows it"},
	{name: "cluster-failover", short: "CF", run: drillClusterFailover, needsRedisServer: true, redis: cluster,
		about: "a Redis Cluster of 3 masters with a replica each; jobs stream into enqueue; kill -9 the master of the queue's slot in mid-batch; its replica takes over; the old master, started again, follows it"},
	{name: "cluster-reshard", short: "CR", run: drillClusterReshard, needsRedisServer: true, redis: cluster,
		about: "a Redis Cluster of 3 masters with a replica each; jobs stream into enqueue; move every slot of the queue's master to another master in mid-batch"},
}

func drillNames() []string {
	names := make([]string, len(drills))
	for i, s := range drills {
		names[i] = s.name
	}
	return names
}

func refsOf(jobs []job) []zhimaq.Ref {
	refs := make([]zhimaq.Ref, len(jobs))
	for i, j := range jobs {
		refs[i] = j.ref()
	}
	return refs
}

// batchFile writes the drill's batch of env.jobs jobs and returns its path.
func (d *drill) batchFile() (string, []job, error) {
	jobs := d.gen.batch(d.txPre, 0, d.jobs)
	path := filepath.Join(d.dir, "jobs.jsonl")
	return path, jobs, writeJobs(path, jobs)
}

// startProcesses starts the drill's sandbox with the given extra flags, then
// workers a, b, … .
func (d *drill) startProcesses(ctx context.Context, workers int, gatewayArgs ...string) error {
	if err := d.startGateway(ctx, gatewayArgs...); err != nil {
		return err
	}
	return d.startWorkers(ctx, workers)
}

// startBatch writes the drill's batch and starts `enqueue batch` on it,
// not waiting.
func (d *drill) startBatch() (*producerRun, []job, error) {
	file, jobs, err := d.batchFile()
	if err != nil {
		return nil, nil, err
	}
	pr, err := d.startProducer("enqueue", file, false)
	return pr, jobs, err
}

// rejectedCounts counts the rejected records by error.
func rejectedCounts(recs []*zhimaq.Submission) map[string]int {
	rejected := map[string]int{}
	for _, r := range recs {
		if r.State == zhimaq.Rejected {
			rejected[errorKey(r.Error)]++
		}
	}
	return rejected
}

// submitted waits for a producer and takes in its records; every line is
// expected to be accepted.
func (d *drill) submitted(ctx context.Context, pr *producerRun, lines int) ([]*zhimaq.Submission, error) {
	recs, code, err := pr.finish(ctx)
	if err != nil {
		return nil, err
	}
	d.accept(recs)
	rejected := rejectedCounts(recs)
	if len(recs) != lines || len(rejected) > 0 || code != 0 {
		d.problem("%s: %d records for %d lines, rejected: %s, %s", pr.name, len(recs), lines, countsText(rejected), procs.DescribeExit(pr.child.Err()))
	}
	return recs, nil
}

// lateJobs counts the final records last updated more than d after t.
func (d *drill) lateJobs(t time.Time, after time.Duration) int {
	n := 0
	for _, r := range d.final {
		if r != nil && r.UpdatedAt.After(t.Add(after)) {
			n++
		}
	}
	return n
}

// lastUpdate is the latest updated_at among the final records.
func (d *drill) lastUpdate() time.Time {
	var last time.Time
	for _, r := range d.final {
		if r != nil && r.UpdatedAt.After(last) {
			last = r.UpdatedAt
		}
	}
	return last
}

func countRunning(recs []*zhimaq.Record) int {
	n := 0
	for _, r := range recs {
		if r != nil && r.State == zhimaq.Running {
			n++
		}
	}
	return n
}

// 1. kill-worker
func drillKillWorker(ctx context.Context, d *drill) error {
	if err := d.startProcesses(ctx, 2, "--latency", "100ms"); err != nil {
		return err
	}
	d.logf("sandbox latency 100ms; 2 workers, %s", d.wcfg)
	pr, jobs, err := d.startBatch()
	if err != nil {
		return err
	}
	refs := refsOf(jobs)
	if _, err := d.waitProgress(ctx, refs, 0.25, 3*time.Minute); err != nil {
		return err
	}
	victim := d.workers["worker-b"]
	done, recs, _ := d.finished(ctx, refs)
	if err := victim.Signal(procs.SigKill); err != nil {
		return fmt.Errorf("kill -9 worker-b: %w", err)
	}
	<-victim.Done()
	killed := time.Now()
	qi, _ := d.queueInfo()
	active := -1
	if qi != nil {
		active = qi.Active
	}
	d.logf("kill -9 worker-b (pid %d): %d of %d jobs finished, %d records running, %d tasks active in asynq",
		victim.Pid(), done, len(refs), countRunning(recs), active)
	if err := launch.Sleep(ctx, 10*time.Second); err != nil {
		return err
	}
	if _, err := d.startWorker(ctx, "worker-b"); err != nil {
		return err
	}
	d.logf("worker-b started again")
	if _, err := d.submitted(ctx, pr, len(jobs)); err != nil {
		return err
	}
	if err := d.awaitAll(ctx, killed.Add(leaseRecovery+time.Minute)); err != nil {
		return err
	}
	d.note("the last job finished %s after the kill; %d jobs finished more than 30s after it (asynq reclaims a dead worker's tasks 60–120s after it died)",
		d.lastUpdate().Sub(killed).Round(time.Second), d.lateJobs(killed, 30*time.Second))
	return nil
}

// 2. restart-redis
func drillRestartRedis(ctx context.Context, d *drill) error {
	srv := d.redis
	return d.strikeMidBatch(ctx, func(ctx context.Context) (string, error) {
		down := time.Now()
		if err := srv.Shutdown(); err != nil {
			return "", err
		}
		if err := launch.Sleep(ctx, 3*time.Second); err != nil {
			return "", err
		}
		if err := srv.Restart(ctx); err != nil {
			return "", fmt.Errorf("start redis-server again: %w", err)
		}
		return fmt.Sprintf("redis SHUTDOWN; started again (pid %d) after %s", srv.Child().Pid(), time.Since(down).Round(time.Millisecond)), nil
	})
}

// strikeMidBatch is the drills that break Redis: it starts the sandbox
// (50ms) and 2 workers, streams the drill's batch into enqueue on its
// standard input at 400 lines a second (a little faster than the workers
// take them), and strikes when 40% of the lines are in. strike returns
// once Redis serves again, with what it did. Then the file is submitted
// again until every line is accepted (enqueue stops when Redis fails under
// it; running the file again is the documented way on, lines already
// accepted come back as duplicates), and every job is waited for.
func (d *drill) strikeMidBatch(ctx context.Context, strike func(ctx context.Context) (string, error)) error {
	if err := d.startProcesses(ctx, 2, "--latency", "50ms"); err != nil {
		return err
	}
	d.logf("sandbox latency 50ms; 2 workers, %s; redis: %s", d.wcfg, d.describe())
	if d.replicated() {
		d.logf("REDIS_WAIT_REPLICAS=%d for the workers and enqueue", d.waitReplicas)
	}
	file, jobs, err := d.batchFile()
	if err != nil {
		return err
	}
	refs := refsOf(jobs)
	const rate = 400
	pr, err := d.startPacedProducer(ctx, "enqueue-1", jobs, rate)
	if err != nil {
		return err
	}
	for pr.lines.Load() < int64(len(jobs)*2/5) && !pr.child.Exited() {
		if err := launch.Sleep(ctx, 5*time.Millisecond); err != nil {
			return err
		}
	}
	done, _, _ := d.finished(ctx, refs)
	submittedAt := pr.lines.Load()
	what, err := strike(ctx)
	if err != nil {
		return err
	}
	up := time.Now()
	d.logf("%s; struck with %d of %d lines submitted (enqueue-1 reads them from a pipe, %d a second) and %d jobs finished",
		what, submittedAt, len(jobs), rate, done)

	recs, code, err := pr.finish(ctx)
	if err != nil {
		return err
	}
	d.accept(recs)
	rejected := rejectedCounts(recs)
	d.logf("enqueue-1 exited with status %d: %d records for %d lines, %d lines fed, rejected: %s", code, len(recs), len(jobs), pr.fed.Load(), countsText(rejected))
	// Nothing submitted these lines before enqueue-1: none is a duplicate,
	// even when a claim's answer was lost and the claim was made again.
	if n := duplicates(recs); n > 0 {
		d.problem("%d lines of the first submission came back as duplicates of themselves", n)
	}
	if code != 0 {
		d.note("enqueue-1 across the strike: exit %d, %d records for %d lines (rejected: %s); its last words: %s",
			code, len(recs), len(jobs), countsText(rejected), lastLine(filepath.Join(d.logDir, "enqueue-1.log")))
	}
	for run := 2; len(d.order) < len(jobs) && run <= 4; run++ {
		name := fmt.Sprintf("enqueue-%d", run)
		pr, err := d.startProducer(name, file, false)
		if err != nil {
			return err
		}
		recs, code, err := pr.finish(ctx)
		if err != nil {
			return err
		}
		d.accept(recs)
		d.logf("%s (the same file again) exited with status %d: %d records, %d duplicates; %d of %d lines accepted so far",
			name, code, len(recs), duplicates(recs), len(d.order), len(jobs))
	}
	if len(d.order) < len(jobs) {
		d.problem("%d of %d lines were never accepted, even after running the file again", len(jobs)-len(d.order), len(jobs))
	}
	if err := d.awaitAll(ctx, up.Add(leaseRecovery+time.Minute)); err != nil {
		return err
	}
	if last := d.lastUpdate(); last.After(up) {
		d.note("the last job finished %s after the strike ended; %d jobs finished more than 30s after it (tasks asynq could not mark done or retry while Redis was down wait for lease recovery, 60–120s)",
			last.Sub(up).Round(time.Second), d.lateJobs(up, 30*time.Second))
	} else {
		d.note("every job had finished by the time the strike ended")
	}
	return nil
}

// duplicates counts the records marked duplicate.
func duplicates(recs []*zhimaq.Submission) int {
	n := 0
	for _, r := range recs {
		if r.Duplicate {
			n++
		}
	}
	return n
}

// lastLine is the last non-empty line of a file.
func lastLine(path string) string {
	s := strings.TrimSpace(procs.Tail(path, 1))
	if s == "" {
		return "(nothing)"
	}
	return s
}

// 3. gateway-outage
func drillGatewayOutage(ctx context.Context, d *drill) error {
	base, maxDelay := outageBackoff(d.outage, d.wcfg.Attempts)
	d.wcfg.BaseDelay, d.wcfg.MaxDelay = base, maxDelay
	span := minRetrySpan(base, maxDelay, d.wcfg.Attempts)
	d.note("backoff chosen: RETRY_MAX_ATTEMPTS=%d RETRY_BASE_DELAY=%s RETRY_MAX_DELAY=%s: %d failing calls take at least %s (each delay is at least half of base·2ⁿ capped at the max), longer than the %s outage; after it a job waits at most %s",
		d.wcfg.Attempts, base, maxDelay, d.wcfg.Attempts, span, d.outage, maxDelay)
	if err := d.startProcesses(ctx, 2, "--latency", "20ms"); err != nil {
		return err
	}
	d.logf("sandbox latency 20ms; 2 workers, %s (≥ %s of retries before a job can run out)", d.wcfg, span)
	pr, jobs, err := d.startBatch()
	if err != nil {
		return err
	}
	refs := refsOf(jobs)
	done, err := d.waitProgress(ctx, refs, 0.10, 3*time.Minute)
	if err != nil {
		return err
	}
	if err := d.gw.sb.SetFaults(ctx, sandbox.Faults{UnavailableRate: 1, Latency: sandbox.Duration(20 * time.Millisecond)}); err != nil {
		return err
	}
	d.logf("gateway outage: every call answers 20000 for %s (%d of %d jobs finished)", d.outage, done, len(refs))
	end := time.Now().Add(d.outage)
	for time.Until(end) > 0 {
		if err := launch.Sleep(ctx, min(20*time.Second, time.Until(end))); err != nil {
			return err
		}
		if n, _, err := d.finished(ctx, refs); err == nil && time.Until(end) > time.Second {
			d.logf("outage: %d of %d jobs finished, %s to go", n, len(refs), time.Until(end).Round(time.Second))
		}
	}
	if err := d.gw.sb.SetFaults(ctx, sandbox.Faults{Latency: sandbox.Duration(20 * time.Millisecond)}); err != nil {
		return err
	}
	recovered := time.Now()
	done, _, _ = d.finished(ctx, refs)
	d.logf("gateway recovered (%d of %d jobs finished)", done, len(refs))
	if _, err := d.submitted(ctx, pr, len(jobs)); err != nil {
		return err
	}
	if err := d.awaitAll(ctx, recovered.Add(maxDelay+2*time.Minute)); err != nil {
		return err
	}
	most := 0
	for _, r := range d.final {
		if r != nil {
			most = max(most, r.Attempts)
		}
	}
	d.note("the last job finished %s after the gateway recovered; the most attempts any job needed: %d of %d",
		d.lastUpdate().Sub(recovered).Round(time.Second), most, d.wcfg.Attempts)
	return nil
}

// 4. gateway-hang
func drillGatewayHang(ctx context.Context, d *drill) error {
	d.wcfg.Concurrency, d.wcfg.Timeout = 8, 2*time.Second
	if err := d.startProcesses(ctx, 2, "--hang-rate", "0.05"); err != nil {
		return err
	}
	d.logf("sandbox hang rate 5%%; 2 workers, %s", d.wcfg)
	pr, jobs, err := d.startBatch()
	if err != nil {
		return err
	}
	if _, err := d.submitted(ctx, pr, len(jobs)); err != nil {
		return err
	}
	if err := d.awaitAll(ctx, time.Now().Add(6*time.Minute)); err != nil {
		return err
	}
	ps := d.gw.proxy.stats()
	if limit := d.wcfg.Timeout + time.Second; ps.Slowest > limit {
		d.problem("a gateway request lasted %s, longer than ZHIMA_TIMEOUT=%s allows", ps.Slowest.Round(time.Millisecond), d.wcfg.Timeout)
	}
	return nil
}

// 5. racing-producers
func drillRacingProducers(ctx context.Context, d *drill) error {
	if err := d.startProcesses(ctx, 2); err != nil {
		return err
	}
	d.logf("no faults; 2 workers, %s", d.wcfg)
	// Each file holds size lines, 60% of them in both: size + 0.4·size = jobs.
	shared := (d.jobs*3 + 3) / 7
	own := (d.jobs - shared) / 2
	size := shared + own
	all := d.gen.batch(d.txPre, 0, shared+2*own)
	fileA := append(append([]job{}, all[:shared]...), all[shared:shared+own]...)
	fileB := append([]job{}, all[:shared]...)
	conflict := map[string]bool{}
	for i := 0; i < shared; i += 10 {
		fileB[i] = d.gen.conflicting(fileB[i])
		conflict[fileB[i].TxID] = true
	}
	fileB = append(fileB, all[shared+own:]...)
	pathA, pathB := filepath.Join(d.dir, "a.jsonl"), filepath.Join(d.dir, "b.jsonl")
	if err := writeJobs(pathA, fileA); err != nil {
		return err
	}
	if err := writeJobs(pathB, fileB); err != nil {
		return err
	}
	d.logf("a.jsonl and b.jsonl: %d lines each, the first %d in both (%d of them with other parameters in b), %d distinct transactions",
		size, shared, len(conflict), len(all))
	prA, err := d.startProducer("enqueue-a", pathA, true)
	if err != nil {
		return err
	}
	prB, err := d.startProducer("enqueue-b", pathB, true)
	if err != nil {
		return err
	}
	recsA, codeA, errA := prA.finish(ctx)
	recsB, codeB, errB := prB.finish(ctx)
	if errA != nil {
		return errA
	}
	if errB != nil {
		return errB
	}
	d.logf("enqueue-a exited with status %d, enqueue-b with %d", codeA, codeB)
	if len(recsA) != len(fileA) || len(recsB) != len(fileB) {
		d.problem("enqueue printed %d and %d records for %d and %d lines", len(recsA), len(recsB), len(fileA), len(fileB))
		return nil
	}
	d.accept(recsA)
	d.accept(recsB)

	// What each pair of lines must show.
	type pair struct{ a, b *zhimaq.Submission }
	pairs := map[string]*pair{}
	for i, r := range recsA {
		pairs[fileA[i].TxID] = &pair{a: r}
	}
	for i, r := range recsB {
		if p := pairs[fileB[i].TxID]; p != nil {
			p.b = r
		} else {
			pairs[fileB[i].TxID] = &pair{b: r}
		}
	}
	isRepeat := func(r *zhimaq.Submission) bool {
		return r.State == zhimaq.Rejected && r.Error != nil && r.Error.Source == "local" && r.Error.SubCode == "TRANSACTION_ID_REPEAT"
	}
	var badConflict, badDup, badSingle int
	wonA := 0
	badHow := map[string]int{}
	for tx, p := range pairs {
		switch {
		case conflict[tx]:
			// One line wins the claim, the other is refused locally.
			if p.a == nil || p.b == nil || isRepeat(p.a) == isRepeat(p.b) ||
				(!isRepeat(p.a) && p.a.State == zhimaq.Rejected) || (!isRepeat(p.b) && p.b.State == zhimaq.Rejected) {
				badConflict++
				badHow["conflict: "+pairText(p.a, p.b)]++
			} else if isRepeat(p.b) {
				wonA++
			}
		case p.a != nil && p.b != nil:
			// Both accepted, exactly one of them as the first.
			if p.a.State == zhimaq.Rejected || p.b.State == zhimaq.Rejected || p.a.Duplicate == p.b.Duplicate {
				badDup++
				badHow["same parameters: "+pairText(p.a, p.b)]++
			}
		default:
			r := p.a
			if r == nil {
				r = p.b
			}
			if r.State == zhimaq.Rejected || r.Duplicate {
				badSingle++
				badHow["one file only: "+pairText(r, nil)]++
			}
		}
	}
	d.logf("conflicting parameters: %d refused with TRANSACTION_ID_REPEAT (%d times a's line won, %d times b's)",
		len(conflict)-badConflict, wonA, len(conflict)-badConflict-wonA)
	if badConflict > 0 {
		d.problem("%d of %d transaction_ids with conflicting parameters did not end with one line accepted and the other rejected TRANSACTION_ID_REPEAT", badConflict, len(conflict))
	}
	if badDup > 0 {
		d.problem("%d of %d transaction_ids shared with the same parameters were not accepted once plus once as a duplicate", badDup, shared-len(conflict))
	}
	if badSingle > 0 {
		d.problem("%d transaction_ids in one file only were rejected or marked duplicate", badSingle)
	}
	if len(badHow) > 0 {
		d.note("the unexpected outcomes (a's record, b's record): %s", countsText(badHow))
	}
	// Every accepted transaction must still hold its claim, or the next
	// submission with other parameters is not refused as a repeat.
	if missing, err := d.missingClaims(ctx); err != nil {
		d.note("cannot check the claims: %v", err)
	} else if missing > 0 {
		d.problem("%d accepted transaction_ids have no claim left in Redis: a later submission of them is not de-duplicated", missing)
	}
	if err := d.awaitAll(ctx, time.Now().Add(3*time.Minute)); err != nil {
		return err
	}
	d.oneCallEach = true

	// Running a file again is safe, the README says: its accepted lines come
	// back as duplicates, the refused ones are refused again.
	prA2, err := d.startProducer("enqueue-a-again", pathA, false)
	if err != nil {
		return err
	}
	again, _, err := prA2.finish(ctx)
	if err != nil {
		return err
	}
	if len(again) != len(fileA) {
		d.problem("enqueue-a-again printed %d records for %d lines", len(again), len(fileA))
		return nil
	}
	wrong := map[string]int{}
	for i, r := range again {
		first := recsA[i]
		if p := pairs[fileA[i].TxID]; conflict[fileA[i].TxID] && isRepeat(p.a) {
			if !isRepeat(r) {
				wrong["was "+pairText(first, nil)+", now "+pairText(r, nil)]++
			}
		} else if r.State == zhimaq.Rejected || !r.Duplicate {
			wrong["was "+pairText(first, nil)+", now "+pairText(r, nil)]++
		}
	}
	if len(wrong) > 0 {
		n := 0
		for _, v := range wrong {
			n += v
		}
		d.problem("running a.jsonl again: %d of %d lines did not come back as before: %s", n, len(fileA), countsText(wrong))
	} else {
		d.logf("a.jsonl again: every line came back as a duplicate or refused again")
	}
	return nil
}

// pairText describes the records of one transaction_id in a and b.
func pairText(a, b *zhimaq.Submission) string {
	one := func(r *zhimaq.Submission) string {
		switch {
		case r == nil:
			return "none"
		case r.State == zhimaq.Rejected:
			return "rejected " + errorKey(r.Error)
		case r.Duplicate:
			return string(r.State) + " duplicate"
		}
		return string(r.State) + " first"
	}
	if b == nil {
		return one(a)
	}
	return one(a) + " / " + one(b)
}

// missingClaims counts the accepted jobs whose transaction claim is gone
// or over (it lives in the record: results.Store.ClaimUntil).
func (d *drill) missingClaims(ctx context.Context) (int, error) {
	store := results.New(d.rdb, d.prefix, 0)
	n := 0
	for _, ref := range d.order {
		until, err := store.ClaimUntil(ctx, idempotency.Key{AppID: appID, Method: ref.Method, TransactionID: ref.TransactionID})
		if err != nil && !errors.Is(err, results.ErrNotFound) {
			return 0, err
		}
		if !until.After(time.Now()) {
			n++
		}
	}
	return n, nil
}

// 6. graceful-stop
func drillGracefulStop(ctx context.Context, d *drill) error {
	d.wcfg.Concurrency = 24
	if err := d.startProcesses(ctx, 1, "--latency", "100ms", "--hang-rate", "0.02"); err != nil {
		return err
	}
	d.logf("sandbox latency 100ms, hang rate 2%%; 1 worker, %s; its shutdown timeout is %s", d.wcfg, d.wcfg.shutdownTimeout())
	pr, jobs, err := d.startBatch()
	if err != nil {
		return err
	}
	refs := refsOf(jobs)
	if _, err := d.waitProgress(ctx, refs, 0.30, 3*time.Minute); err != nil {
		return err
	}
	done, recs, _ := d.finished(ctx, refs)
	inflight := d.gw.proxy.stats().InFlight
	pid := d.workers["worker-a"].Pid()
	d.logf("SIGTERM worker-a (pid %d): %d of %d jobs finished, %d records running, %d gateway requests in flight",
		pid, done, len(refs), countRunning(recs), inflight)
	took, stopErr := d.stopWorker("worker-a")
	d.logf("worker-a exited after %s: %s", took.Round(time.Millisecond), procs.DescribeExit(stopErr))
	if stopErr != nil {
		d.problem("worker-a did not exit 0 on SIGTERM: %s", procs.DescribeExit(stopErr))
	}
	if limit := d.wcfg.shutdownTimeout() + 3*time.Second; took > limit {
		d.problem("worker-a took %s to exit, more than its shutdown timeout %s (+3s)", took.Round(time.Millisecond), d.wcfg.shutdownTimeout())
	}
	_, recs, _ = d.finished(ctx, refs)
	if qi, err := d.queueInfo(); err == nil {
		d.note("after the stop: asynq holds %d tasks active (those would wait for lease recovery), %d pending, %d retry; %d records still say running; %d gateway requests in flight",
			qi.Active, qi.Pending, qi.Retry, countRunning(recs), d.gw.proxy.stats().InFlight)
	}
	if err := launch.Sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	if _, err := d.startWorker(ctx, "worker-a"); err != nil {
		return err
	}
	restarted := time.Now()
	d.logf("worker-a started again")
	if _, err := d.submitted(ctx, pr, len(jobs)); err != nil {
		return err
	}
	if err := d.awaitAll(ctx, restarted.Add(leaseRecovery+time.Minute)); err != nil {
		return err
	}
	d.note("the last job finished %s after worker-a started again", d.lastUpdate().Sub(restarted).Round(time.Second))
	return nil
}

// 7. sentinel-failover
func drillSentinelFailover(ctx context.Context, d *drill) error {
	s := d.sentinel
	return d.strikeMidBatch(ctx, func(ctx context.Context) (string, error) {
		old, err := s.Master(ctx)
		if err != nil {
			return "", err
		}
		var m *launch.Redis
		promoted, rejoined, err := failOver(ctx, old,
			func(ctx context.Context) (err error) { m, err = s.WaitFailover(ctx, old, time.Minute); return err },
			func(ctx context.Context) error { return s.WaitReplica(ctx, old, time.Minute) })
		if err != nil {
			return "", err
		}
		d.note("failover: the sentinels promoted the replica %s after %s; the old master, started again empty, was a replica in sync %s after the kill",
			m.Addr(), promoted, rejoined)
		return fmt.Sprintf("kill -9 the master %s; %s promoted after %s; the old master follows it again", old.Addr(), m.Addr(), promoted), nil
	})
}

// failOver kills master old, waits until promoted says a replica has
// taken over, starts old again and waits until rejoined says it follows
// the new master; it returns how long after the kill each came.
func failOver(ctx context.Context, old *launch.Redis, promoted, rejoined func(context.Context) error) (promote, rejoin time.Duration, err error) {
	killed := time.Now()
	since := func() time.Duration { return time.Since(killed).Round(100 * time.Millisecond) }
	if err := old.Kill(); err != nil {
		return 0, 0, err
	}
	if err := promoted(ctx); err != nil {
		return 0, 0, err
	}
	promote = since()
	if err := old.Restart(ctx); err != nil {
		return 0, 0, fmt.Errorf("start the old master again: %w", err)
	}
	if err := rejoined(ctx); err != nil {
		return 0, 0, err
	}
	return promote, since(), nil
}

// queueMaster is the cluster master that holds the drill's queue (asynq
// keeps a queue's keys in one slot), and its replica.
func (d *drill) queueMaster(ctx context.Context) (master, replica *launch.Redis, err error) {
	slot, err := d.rdb.ClusterKeySlot(ctx, "asynq:{"+d.queue+"}:pending").Result()
	if err != nil {
		return nil, nil, err
	}
	return d.cluster.MasterOf(ctx, int(slot))
}

// 8. cluster-failover
func drillClusterFailover(ctx context.Context, d *drill) error {
	c := d.cluster
	return d.strikeMidBatch(ctx, func(ctx context.Context) (string, error) {
		old, heir, err := d.queueMaster(ctx)
		if err != nil {
			return "", err
		}
		if heir == nil {
			return "", fmt.Errorf("the queue's master %s has no replica", old.Addr())
		}
		promoted, rejoined, err := failOver(ctx, old,
			func(ctx context.Context) error { return c.WaitPromoted(ctx, heir, time.Minute) },
			func(ctx context.Context) error { return c.WaitHealthy(ctx, time.Minute) })
		if err != nil {
			return "", err
		}
		d.note("failover: the cluster promoted %s after %s (cluster-node-timeout 2s); the old master, started again empty, was a replica in sync %s after the kill",
			heir.Addr(), promoted, rejoined)
		return fmt.Sprintf("kill -9 the queue's master %s; its replica %s promoted after %s; the old master follows it again",
			old.Addr(), heir.Addr(), promoted), nil
	})
}

// 9. cluster-reshard
func drillClusterReshard(ctx context.Context, d *drill) error {
	c := d.cluster
	return d.strikeMidBatch(ctx, func(ctx context.Context) (string, error) {
		from, _, err := d.queueMaster(ctx)
		if err != nil {
			return "", err
		}
		to := c.Masters[0]
		if to == from {
			to = c.Masters[1]
		}
		slots, err := c.Slots(ctx, from)
		if err != nil {
			return "", err
		}
		start := time.Now()
		moved, err := c.MoveSlots(ctx, from, to, slots)
		if err != nil {
			return "", fmt.Errorf("move slots from %s to %s: %w", from.Addr(), to.Addr(), err)
		}
		took := time.Since(start)
		d.note("reshard: %d slots and %d keys moved from %s to %s in %s while jobs flowed, the queue's slot among them",
			len(slots), moved, from.Addr(), to.Addr(), took.Round(100*time.Millisecond))
		return fmt.Sprintf("moved all %d slots (%d keys) of the queue's master %s to %s in %s", len(slots), moved, from.Addr(), to.Addr(),
			took.Round(100*time.Millisecond)), nil
	})
}
