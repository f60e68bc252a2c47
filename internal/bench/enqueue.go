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

// runEnqueue benchmarks submitting new jobs on enqueueParallel goroutines:
// with zhimaq's Producer.Submit (validate, claim, record, enqueue), or with
// a bare asynq Client.Enqueue of the same payloads.
func (e *env) runEnqueue(ctx context.Context, useZhimaq bool) (enqueueRun, error) {
	ns, rdb, end, err := e.fresh(ctx)
	if err != nil {
		return enqueueRun{}, err
	}
	defer end()
	trips := new(roundTrips)
	rdb.AddHook(trips)
	var submit func(txs []string) error
	if useZhimaq {
		p, err := newProducer(rdb, e.workerEnv(ns, nil))
		if err != nil {
			return enqueueRun{}, err
		}
		defer p.Close()
		submit = submitter(ctx, p)
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

// figEnqueue is figure 1: zhimaq's enqueue rate against bare asynq's, the
// two interleaved round by round.
func (e *env) figEnqueue(ctx context.Context) (*figure, error) {
	f := &figure{ID: "1", Name: fmt.Sprintf("enqueue rate, %d in parallel (jobs/s)", enqueueParallel), Target: "≥ 0.50×"}
	var z, r []float64
	var zr, rr []enqueueRun
	for round := range e.opts.Rounds {
		order := []bool{true, false}
		if round%2 == 1 {
			order = []bool{false, true}
		}
		for _, useZ := range order {
			run, err := e.runEnqueue(ctx, useZ)
			if err != nil {
				return nil, err
			}
			if useZ {
				z, zr = append(z, run.rate), append(zr, run)
			} else {
				r, rr = append(r, run.rate), append(rr, run)
			}
		}
		e.logf("  round %d: zhimaq %.0f jobs/s, asynq %.0f jobs/s", round+1, z[round], r[round])
	}
	f.Zhimaq, f.Reference = fmt.Sprintf("%.0f/s", median(z)), fmt.Sprintf("%.0f/s (asynq Enqueue)", median(r))
	f.Ratio = median(ratios(z, r))
	f.check(f.Ratio >= 0.5)
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
	f.How = fmt.Sprintf("testing.Benchmark (benchtime %s) of submitting b.N new jobs (zhima.credit.score.brief.get) on %d goroutines, one go-redis client "+
		"(default pool) on the bench's own Redis: zhimaq.Producer.Submit (validate, claim transaction_id, create record, enqueue with task id) "+
		"against asynq Client.Enqueue of the same payload bytes (same type, queue, MaxRetry; asynq's own task id); rate = b.N / T of the final run. "+
		"%d rounds, the two sides interleaved (ABBA), Redis flushed before each; ratio = median of the per-round ratios. CPU from getrusage (this process) "+
		"and /proc/PID/task/*/schedstat (redis-server) over all of testing.Benchmark's runs.",
		e.opts.BenchTime, enqueueParallel, e.opts.Rounds)
	if !*f.Met {
		mz, mr := median(zc), median(rc)
		f.whyf("Submit makes %.1f sequential Redis round trips per job (the claim script, which also writes the record, and asynq's enqueue script) against Enqueue's %.1f, "+
			"%.1f commands against %.1f, and costs Redis %.1f µs of CPU per job against %.1f µs and the client %.1f µs against %.1f µs. "+
			"Client and Redis share the 2 cores, so the rate follows the sum, %.0f µs against %.0f µs (%.2f×).",
			zr[0].trips, rr[0].trips, zr[0].cmdsTotal, rr[0].cmdsTotal, mz, mr, median(zs), median(rs), median(zs)+mz, median(rs)+mr,
			(median(rs)+mr)/(median(zs)+mz))
		if top, err := e.profile(ctx, "enqueue", func(start, stop func()) error {
			start()
			defer stop()
			for t := time.Now(); time.Since(t) < 2*time.Second; {
				if _, err := e.runEnqueue(ctx, true); err != nil {
					return err
				}
			}
			return nil
		}); err == nil {
			f.Why = append(f.Why, top.lines...)
		} else {
			f.whyf("(profile failed: %v)", err)
		}
	}
	return f, nil
}
