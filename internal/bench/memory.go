package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/idempotency"
	"github.com/zhimaq/zhimaq/internal/keyspace"
	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// memRun is the Redis memory n queued jobs took.
type memRun struct {
	perJob float64 // bytes, INFO memory used_memory delta / n
	// MEMORY USAGE of one job's keys (zhimaq: record, task hash; asynq:
	// task hash), and of the pending list per job.
	record, task, pending int64
	keys                  int64 // keys per job
}

// runMemory queues n jobs on the bench's private Redis, with zhimaq's
// Producer or bare asynq, and reads what they took.
func (e *env) runMemory(ctx context.Context, n int, useZhimaq bool) (memRun, error) {
	ns, rdb, end, err := e.fresh(ctx)
	if err != nil {
		return memRun{}, err
	}
	defer end()
	var submit func(txs []string) error
	var taskID func(tx string) string
	if useZhimaq {
		p, err := newProducer(rdb, e.workerEnv(ns, nil))
		if err != nil {
			return memRun{}, err
		}
		defer p.Close()
		submit = submitter(ctx, p)
		taskID = func(tx string) string { return payload.TaskID(key(tx)) }
	} else {
		c := asynq.NewClientFromRedisClient(rdb)
		defer c.Close()
		var first string
		submit = func(txs []string) error {
			return parallel(len(txs), enqueueParallel, func(i int) error {
				t, opts := referenceTask(txs[i], ns.queue)
				info, err := c.EnqueueContext(ctx, t, opts...)
				if err == nil && i == 0 {
					first = info.ID
				}
				return err
			})
		}
		taskID = func(string) string { return first }
	}
	// Open the pool's connections first, so their buffers are in the baseline.
	if err := parallel(enqueueParallel*4, enqueueParallel, func(int) error { return rdb.Ping(ctx).Err() }); err != nil {
		return memRun{}, err
	}
	tx0 := nextTx()
	if err := submit([]string{tx0}); err != nil { // the queue's own keys, and one job to look at
		return memRun{}, err
	}
	txs := make([]string, n)
	for i := range txs {
		txs[i] = nextTx()
	}
	keys0, _ := e.rdb.DBSize(ctx).Result()
	grew, err := e.memoryGrowth(ctx, func() error { return submit(txs) })
	if err != nil {
		return memRun{}, err
	}
	keys1, _ := e.rdb.DBSize(ctx).Result()
	r := memRun{perJob: float64(grew) / float64(n), keys: (keys1 - keys0) / int64(n)}
	usage := func(k string) int64 {
		v, _ := e.rdb.MemoryUsage(ctx, k, 0).Result()
		return v
	}
	r.task = usage("asynq:{" + ns.queue + "}:t:" + taskID(tx0))
	r.pending = usage("asynq:{"+ns.queue+"}:pending") / int64(n+1)
	if useZhimaq {
		k, keys := key(tx0), keyspace.New(ns.prefix)
		r.record = usage(keys.Result(k.AppID, k.Method, k.TransactionID))
	}
	return r, nil
}

func key(tx string) idempotency.Key {
	return idempotency.Key{AppID: zhimatest.AppID, Method: jobMethod, TransactionID: tx}
}

// memoryGrowth is how much Redis's used_memory grew while do ran, each
// reading taken once Redis has settled for a moment.
func (e *env) memoryGrowth(ctx context.Context, do func() error) (int64, error) {
	time.Sleep(50 * time.Millisecond)
	used0, err := usedMemory(ctx, e.rdb)
	if err != nil {
		return 0, err
	}
	if err := do(); err != nil {
		return 0, err
	}
	time.Sleep(50 * time.Millisecond)
	used1, err := usedMemory(ctx, e.rdb)
	if err != nil {
		return 0, err
	}
	return used1 - used0, nil
}

func usedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := redisInfo(ctx, rdb, "memory")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(info["used_memory"], 10, 64)
}

// figMemory is figure 4: Redis memory per queued job, zhimaq against bare
// asynq with the same payloads.
func (e *env) figMemory(ctx context.Context) (*figure, error) {
	n := e.opts.scaled(5000, 500)
	f := &figure{ID: "4", Name: fmt.Sprintf("Redis memory per queued job, %d jobs (bytes)", n), Target: "≤ 1.35×"}
	if e.redis == nil {
		f.Skip = "needs the bench's private redis-server (none on PATH)"
		return f, nil
	}
	var z, r []float64
	var zr, rr []memRun
	for round := range e.opts.Rounds {
		order := []bool{round%2 == 0, round%2 != 0}
		for _, useZ := range order {
			run, err := e.runMemory(ctx, n, useZ)
			if err != nil {
				return nil, err
			}
			if useZ {
				z, zr = append(z, run.perJob), append(zr, run)
			} else {
				r, rr = append(r, run.perJob), append(rr, run)
			}
		}
		e.logf("  round %d: zhimaq %.0f B/job, asynq %.0f B/job", round+1, z[round], r[round])
	}
	f.Zhimaq, f.Reference = fmt.Sprintf("%.0f B", median(z)), fmt.Sprintf("%.0f B (asynq)", median(r))
	f.Ratio = median(ratios(z, r))
	f.check(f.Ratio <= 1.35)
	f.rawf("zhimaq bytes per job per round: %s", list("%.0f", z))
	f.rawf("asynq  bytes per job per round: %s", list("%.0f", r))
	zj, rj := zr[0], rr[0]
	f.rawf("zhimaq keys per job: %d — MEMORY USAGE of one job: task hash %d B, record %d B; pending list %d B per job",
		zj.keys, zj.task, zj.record, zj.pending)
	f.rawf("asynq keys per job: %d — MEMORY USAGE of one job: task hash %d B; pending list %d B per job", rj.keys, rj.task, rj.pending)
	f.How = fmt.Sprintf("On the bench's own redis-server (--save \"\" --appendonly no), flushed before each run: one job first (the queue's own keys), "+
		"INFO memory used_memory, then %d more jobs submitted on %d goroutines (zhimaq.Producer.Submit, or asynq Client.Enqueue of the same payload bytes), "+
		"used_memory again; bytes per job = delta / %d. %d rounds interleaved; ratio = median of per-round ratios. Beyond asynq's task, zhimaq keeps per job a "+
		"record key (<prefix>result:<app_id>:<method>:<transaction_id>: a header of the state, the claim's fingerprint and its end, the times, then the error "+
		"and the response, for RESULT_TTL or the claim's end if later); its task id (22 characters) is shorter than asynq's UUID.", n, enqueueParallel, n, e.opts.Rounds)
	if !*f.Met {
		f.whyf("zhimaq stores %d keys per job against asynq's %d: a record of %d B on top of a task hash of %d B (asynq's: %d B).",
			zj.keys, rj.keys, zj.record, zj.task, rj.task)
	}
	return f, nil
}
