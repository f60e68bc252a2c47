package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// enqueueParallel is `enqueue batch`'s default --parallel.
const enqueueParallel = 16

// enqueueRun is one testing.Benchmark of submitting jobs.
type enqueueRun struct {
	rate            float64 // jobs per second (b.N / T of the final run)
	jobs            int64   // jobs submitted over all of testing.Benchmark's runs
	selfCPU, redCPU float64 // seconds of CPU per job: this process, Redis
	cmds            string  // Redis commands per job
	cmdsTotal       float64
	trips           float64 // client round trips per job
}

// enqueuePath is how a run submits its jobs.
type enqueuePath int

const (
	viaAsynq  enqueuePath = iota // bare asynq Client.Enqueue on enqueueParallel goroutines
	viaSubmit                    // zhimaq Producer.Submit on enqueueParallel goroutines
	viaBatch                     // zhimaq's batch path: Producer.SubmitJobs, Parallel enqueueParallel
)

// runEnqueue benchmarks submitting new jobs along path: zhimaq's Producer
// (validate, claim, record, enqueue) one Submit at a time or through the
// engine behind enqueue batch and the API, or a bare asynq Client.Enqueue
// of the same payloads.
func (e *env) runEnqueue(ctx context.Context, path enqueuePath) (enqueueRun, error) {
	ns, rdb, end, err := e.fresh(ctx)
	if err != nil {
		return enqueueRun{}, err
	}
	defer end()
	trips := new(roundTrips)
	rdb.AddHook(trips)
	var submit func(txs []string) error
	if path != viaAsynq {
		p, err := newProducer(rdb, e.workerEnv(ns, nil))
		if err != nil {
			return enqueueRun{}, err
		}
		defer p.Close()
		submit = submitter(ctx, p)
		if path == viaSubmit {
			submit = singleSubmitter(ctx, p)
		}
	} else {
		c := asynq.NewClientFromRedisClient(rdb)
		defer c.Close()
		submit = enqueuer(ctx, c, ns.queue)
	}
	var (
		mu    sync.Mutex
		total int64
		fail  error
	)
	cmds0, err := commandCounts(ctx, e.rdb)
	if err != nil {
		return enqueueRun{}, err
	}
	meter := e.cpuStart()
	res := testing.Benchmark(func(b *testing.B) {
		txs := make([]string, b.N)
		for i := range txs {
			txs[i] = nextTx()
		}
		b.ResetTimer()
		err := submit(txs)
		b.StopTimer()
		mu.Lock()
		total += int64(b.N)
		if err != nil && fail == nil {
			fail = err
		}
		mu.Unlock()
	})
	use := meter.stop()
	if fail != nil {
		return enqueueRun{}, fail
	}
	if res.N == 0 || res.T == 0 {
		return enqueueRun{}, fmt.Errorf("bench: enqueue benchmark did not run")
	}
	cmds1, err := commandCounts(ctx, e.rdb)
	if err != nil {
		return enqueueRun{}, err
	}
	r := enqueueRun{rate: float64(res.N) / res.T.Seconds(), jobs: total,
		selfCPU: use.self.Seconds() / float64(total), redCPU: use.redis.Seconds() / float64(total)}
	r.cmds, r.cmdsTotal = commandsPerJob(cmds0, cmds1, nil, int(total))
	r.trips = float64(trips.n.Load()) / float64(total)
	return r, nil
}

// roundTrips is a go-redis hook that counts round trips: each command,
// pipeline or transaction sent.
type roundTrips struct{ n atomic.Int64 }

func (c *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

// figEnqueue is figure 1: zhimaq's enqueue rate, one Submit at a time and
// along the batch path, against bare asynq's, the three interleaved round
// by round.
func (e *env) figEnqueue(ctx context.Context) ([]*figure, error) {
	single := &figure{ID: "1", Name: fmt.Sprintf("enqueue rate, Submit on %d goroutines (jobs/s)", enqueueParallel), Target: "≥ 0.50×"}
	batch := &figure{ID: "1", Name: fmt.Sprintf("enqueue rate, batch path (SubmitJobs, parallel %d; enqueue batch, the API) (jobs/s)", enqueueParallel), Target: "≥ 0.70×"}
	var s, b, r []float64
	var sr, br, rr []enqueueRun
	for round := range e.opts.Rounds {
		order := []enqueuePath{viaSubmit, viaBatch, viaAsynq}
		if round%2 == 1 {
			order = []enqueuePath{viaAsynq, viaBatch, viaSubmit}
		}
		for _, path := range order {
			run, err := e.runEnqueue(ctx, path)
			if err != nil {
				return nil, err
			}
			switch path {
			case viaSubmit:
				s, sr = append(s, run.rate), append(sr, run)
			case viaBatch:
				b, br = append(b, run.rate), append(br, run)
			default:
				r, rr = append(r, run.rate), append(rr, run)
			}
		}
		e.logf("  round %d: Submit %.0f jobs/s, batch path %.0f jobs/s, asynq %.0f jobs/s", round+1, s[round], b[round], r[round])
	}
	for _, f := range []struct {
		fig  *figure
		z    []float64
		zr   []enqueueRun
		path enqueuePath
		min  float64
		what string
	}{{single, s, sr, viaSubmit, 0.5, "zhimaq.Producer.Submit on %d goroutines"}, {batch, b, br, viaBatch, 0.7, "zhimaq.Producer.SubmitJobs with Parallel %d (the engine behind enqueue batch and POST /v1/batches)"}} {
		if err := e.enqueueFigure(ctx, f.fig, f.z, r, f.zr, rr, f.path, f.min, fmt.Sprintf(f.what, enqueueParallel)); err != nil {
			return nil, err
		}
	}
	return []*figure{single, batch}, nil
}

// enqueueFigure fills f with one zhimaq path's runs z (zr) against asynq's
// r (rr), and profiles the path when it misses min.
func (e *env) enqueueFigure(ctx context.Context, f *figure, z, r []float64, zr, rr []enqueueRun, path enqueuePath, minRatio float64, what string) error {
	f.Zhimaq, f.Reference = fmt.Sprintf("%.0f/s", median(z)), fmt.Sprintf("%.0f/s (asynq Enqueue)", median(r))
	f.Ratio = median(ratios(z, r))
	f.check(f.Ratio >= minRatio)
	f.rawf("zhimaq jobs/s per round: %s", list("%.0f", z))
	f.rawf("asynq  jobs/s per round: %s", list("%.0f", r))
	f.rawf("ratio per round: %s", list("%.3f", ratios(z, r)))
	var zs, rs, zc, rc []float64
	for i := range zr {
		zs, rs = append(zs, zr[i].selfCPU*1e6), append(rs, rr[i].selfCPU*1e6)
		zc, rc = append(zc, zr[i].redCPU*1e6), append(rc, rr[i].redCPU*1e6)
	}
	f.rawf("client CPU per job (µs), zhimaq: %s; asynq: %s", list("%.1f", zs), list("%.1f", rs))
	if e.redis != nil {
		f.rawf("Redis CPU per job (µs), zhimaq: %s; asynq: %s", list("%.1f", zc), list("%.1f", rc))
	}
	f.rawf("Redis round trips per job (a go-redis hook), zhimaq: %.2f; asynq: %.2f", zr[0].trips, rr[0].trips)
	f.rawf("Redis commands per job (INFO commandstats, Lua's own calls included), zhimaq: %.1f (%s)", zr[0].cmdsTotal, zr[0].cmds)
	f.rawf("Redis commands per job, asynq: %.1f (%s)", rr[0].cmdsTotal, rr[0].cmds)
	f.How = fmt.Sprintf("testing.Benchmark (benchtime %s) of submitting b.N new jobs (zhima.credit.score.brief.get), one go-redis client "+
		"(default pool) on the bench's own Redis: %s (validate, then one script: claim transaction_id, write the first record, enqueue the task) "+
		"against asynq Client.Enqueue on %d goroutines of the same payload bytes (same type, queue, MaxRetry; asynq's own task id); rate = b.N / T of the final run. "+
		"%d rounds, the sides interleaved, Redis flushed before each; ratio = median of the per-round ratios. CPU from getrusage (this process) "+
		"and /proc/PID/task/*/schedstat (redis-server) over all of testing.Benchmark's runs.",
		e.opts.BenchTime, what, enqueueParallel, e.opts.Rounds)
	if *f.Met {
		return nil
	}
	mz, mr := median(zc), median(rc)
	f.whyf("A job makes %.2f Redis round trips (one script claims the transaction, writes the record and enqueues the task as asynq's script does) against Enqueue's %.2f, "+
		"%.1f commands against %.1f, and costs Redis %.1f µs of CPU against %.1f µs and the client %.1f µs against %.1f µs (decoding and validating the job, its fingerprint, the record, the payload). "+
		"Client and Redis share the 2 cores, so the rate follows the sum, %.0f µs against %.0f µs (%.2f×).",
		zr[0].trips, rr[0].trips, zr[0].cmdsTotal, rr[0].cmdsTotal, mz, mr, median(zs), median(rs), median(zs)+mz, median(rs)+mr,
		(median(rs)+mr)/(median(zs)+mz))
	top, err := e.profile(ctx, "enqueue", func(start, stop func()) error {
		start()
		defer stop()
		for t := time.Now(); time.Since(t) < 2*time.Second; {
			if _, err := e.runEnqueue(ctx, path); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		f.whyf("(profile failed: %v)", err)
		return nil
	}
	f.Why = append(f.Why, top.lines...)
	return nil
}
