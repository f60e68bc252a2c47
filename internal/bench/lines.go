package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq"
)

// lineTarget is figure 6's target: Redis bytes per rejected batch line.
const lineTarget = 64

// linesRun is what one batch of rejected lines cost Redis.
type linesRun struct {
	perLine float64 // bytes, INFO memory used_memory delta / lines
	// usage is MEMORY USAGE of the batch's keys per line; stored, the
	// list's first entry as Redis holds it.
	usage  float64
	stored string
	// inline is used_memory per line of the same records kept whole, as
	// every rejected line was before the compact forms.
	inline float64
	took   time.Duration // SubmitJSONL and Close
}

// runLines submits n lines of `{}` as one batch with Batch.SubmitJSONL on
// the bench's private Redis and reads what they took; then it pushes the
// records it was handed, whole, to a list of their own, as the batch
// would have kept them before.
func (e *env) runLines(ctx context.Context, n int) (linesRun, error) {
	ns, rdb, end, err := e.fresh(ctx)
	if err != nil {
		return linesRun{}, err
	}
	defer end()
	p, err := newProducer(rdb, e.workerEnv(ns, map[string]string{"BATCH_MAX_LINES": fmt.Sprint(n)}))
	if err != nil {
		return linesRun{}, err
	}
	defer p.Close()
	if err := rdb.Ping(ctx).Err(); err != nil { // the connection's buffers in the baseline
		return linesRun{}, err
	}
	b, err := p.NewBatch(zhimaq.BatchOptions{})
	if err != nil {
		return linesRun{}, err
	}
	var first *zhimaq.Record
	var r linesRun
	grew, err := e.memoryGrowth(ctx, func() error {
		start := time.Now()
		_, err := b.SubmitJSONL(ctx, strings.NewReader(strings.Repeat("{}\n", n)), zhimaq.SubmitOptions{Emit: func(sub *zhimaq.Submission) error {
			if first == nil {
				first = sub.Record
			}
			return nil
		}})
		if err == nil {
			err = b.Close(ctx)
		}
		r.took = time.Since(start)
		return err
	})
	if err != nil {
		return linesRun{}, err
	}
	if c := b.Counts(); c.Rejected != n || c.Lines != n {
		return linesRun{}, fmt.Errorf("bench: %d lines of {} came back %+v", n, c)
	}
	r.perLine = float64(grew) / float64(n)
	var usage int64
	iter := e.rdb.Scan(ctx, 0, ns.prefix+"batch:*", 100).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		v, _ := e.rdb.MemoryUsage(ctx, k, 0).Result()
		usage += v
		if e.rdb.Type(ctx, k).Val() == "list" {
			r.stored = e.rdb.LIndex(ctx, k, 0).Val()
		}
	}
	if err := iter.Err(); err != nil {
		return linesRun{}, err
	}
	r.usage = float64(usage) / float64(n)
	r.inline, err = e.inlineCost(ctx, rdb, ns.prefix+"bench:inline", first, n)
	return r, err
}

// inlineCost is used_memory per line of n copies of rec kept whole in the
// list key ({"r":record}), pushed 1,000 at a time.
func (e *env) inlineCost(ctx context.Context, rdb *redis.Client, key string, rec *zhimaq.Record, n int) (float64, error) {
	j, err := rec.MarshalJSON()
	if err != nil {
		return 0, err
	}
	line := `{"r":` + string(j) + `}`
	chunk := make([]any, 1000)
	for i := range chunk {
		chunk[i] = line
	}
	grew, err := e.memoryGrowth(ctx, func() error {
		for left := n; left > 0; left -= len(chunk) {
			if err := rdb.RPush(ctx, key, chunk[:min(left, len(chunk))]...).Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return float64(grew) / float64(n), err
}

// figLines is figure 6: the Redis memory a rejected batch line costs,
// against a budget of 64 bytes.
func (e *env) figLines(ctx context.Context) (*figure, error) {
	n := e.opts.scaled(100_000, 10_000)
	f := &figure{ID: "6", Name: fmt.Sprintf("Redis memory per rejected batch line, %d lines of {} (bytes)", n), Target: fmt.Sprintf("≤ 1.00× (%d B)", lineTarget)}
	if e.redis == nil {
		f.Skip = "needs the bench's private redis-server (none on PATH)"
		return f, nil
	}
	var per, usage, inline, took []float64
	var last linesRun
	for round := range e.opts.Rounds {
		run, err := e.runLines(ctx, n)
		if err != nil {
			return nil, err
		}
		per, usage, inline = append(per, run.perLine), append(usage, run.usage), append(inline, run.inline)
		took = append(took, run.took.Seconds())
		last = run
		e.logf("  round %d: %.1f B/line (whole records: %.1f B/line)", round+1, run.perLine, run.inline)
	}
	m := median(per)
	f.Zhimaq, f.Reference = fmt.Sprintf("%.1f B", m), fmt.Sprintf("%d B (target)", lineTarget)
	f.Ratio = m / lineTarget
	f.check(m <= lineTarget)
	f.rawf("used_memory per line per round: %s", list("%.1f", per))
	f.rawf("MEMORY USAGE of the batch's keys per line per round: %s", list("%.1f", usage))
	f.rawf("a line as its list holds it (%d bytes): %s", len(last.stored), last.stored)
	f.rawf("the same records kept whole ({\"r\":record}, the layout before), used_memory per line per round: %s", list("%.1f", inline))
	f.rawf("SubmitJSONL and Close, seconds per round: %s", list("%.2f", took))
	f.How = fmt.Sprintf("On the bench's own redis-server (--save \"\" --appendonly no), flushed before each run: INFO memory used_memory, then one batch of "+
		"%d lines of {} (3 bytes each, every one rejected with INVALID_PARAMETER \"method: is required\") submitted with Producer.NewBatch, "+
		"Batch.SubmitJSONL and Close, as POST /v1/batches does; used_memory again; bytes per line = delta / %d. For comparison the records "+
		"SubmitJSONL returned are then pushed whole to a list of their own, 1,000 per RPUSH, as the batch kept a rejected line before. %d rounds; "+
		"the median is reported.", n, n, e.opts.Rounds)
	if !*f.Met {
		f.whyf("a rejected line is stored as %d bytes (%s); Redis adds its list entry's header and the list's nodes.", len(last.stored), last.stored)
	}
	return f, nil
}
