package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/wire"
	"github.com/zhimaq/zhimaq/internal/zhima"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// The job every figure runs: zhima.credit.score.brief.get for a fake
// applicant with a valid-format ID number, as in the project's tests.
const jobMethod = zhima.MethodScoreBriefGet

var applicantID = zhimatest.ResidentID("11010519491231002")

// bizContent is a job's biz_content for transaction tx.
func bizContent(tx string) json.RawMessage {
	return zhimatest.ScoreBiz(tx, applicantID, "张三", 650)
}

// job is the zhimaq job for transaction tx.
func job(tx string) zhimaq.Job {
	return zhimaq.Job{Method: jobMethod, BizContent: bizContent(tx)}
}

// taskPayload is the asynq payload zhimaq enqueues for tx: the bare asynq
// reference enqueues exactly these bytes.
func taskPayload(tx string) []byte {
	b, err := json.Marshal(&payload.Payload{AppID: zhimatest.AppID, Method: jobMethod, TransactionID: tx, BizContent: bizContent(tx)})
	if err != nil {
		panic(err)
	}
	return b
}

// referenceTask is the bare asynq task for tx: the same type, payload,
// queue and retry budget as zhimaq's, with no task id of its own.
func referenceTask(tx, queue string) (*asynq.Task, []asynq.Option) {
	return asynq.NewTask(jobMethod, taskPayload(tx)), []asynq.Option{asynq.Queue(queue), asynq.MaxRetry(payload.MaxDeliveries)}
}

// txSeq makes transaction ids unique across the whole run.
var txSeq atomic.Int64

func nextTx() string { return "BENCH_" + strconv.FormatInt(txSeq.Add(1), 10) }

// parallel runs do(i) for i in [0, n) on par goroutines and returns the
// first error.
func parallel(n, par int, do func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(par, max(n, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := do(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n)) // stop the others
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// submitter returns a function that submits one new job per transaction
// id with p through the engine users run (Producer.SubmitJobs,
// enqueueParallel at once) and checks that each was queued.
func submitter(ctx context.Context, p *zhimaq.Producer) func(txs []string) error {
	return func(txs []string) error {
		jobs := make([]zhimaq.Job, len(txs))
		for i, tx := range txs {
			jobs[i] = job(tx)
		}
		_, err := p.SubmitJobs(ctx, jobs, zhimaq.SubmitOptions{Parallel: enqueueParallel, Emit: func(s *zhimaq.Submission) error {
			if s.State != zhimaq.Queued || s.Duplicate {
				return fmt.Errorf("bench: job %s came back %s (duplicate %v, error %+v)", s.TransactionID, s.State, s.Duplicate, s.Error)
			}
			return nil
		}})
		return err
	}
}

// singleSubmitter returns a function that submits the jobs of the given
// transaction ids with p.Submit, enqueueParallel at once.
func singleSubmitter(ctx context.Context, p *zhimaq.Producer) func(txs []string) error {
	return func(txs []string) error {
		return parallel(len(txs), enqueueParallel, func(i int) error {
			s, err := p.Submit(ctx, job(txs[i]))
			if err == nil && (s.State != zhimaq.Queued || s.Duplicate) {
				err = fmt.Errorf("bench: job %s came back %s (duplicate %v, error %+v)", s.TransactionID, s.State, s.Duplicate, s.Error)
			}
			return err
		})
	}
}

// enqueuer returns a function that enqueues one bare asynq task per
// transaction id with c, enqueueParallel at once.
func enqueuer(ctx context.Context, c *asynq.Client, queue string) func(txs []string) error {
	return func(txs []string) error {
		return parallel(len(txs), enqueueParallel, func(i int) error {
			t, opts := referenceTask(txs[i], queue)
			_, err := c.EnqueueContext(ctx, t, opts...)
			return err
		})
	}
}

// queueKeys are asynq v0.26's per-queue keys that hold unfinished tasks:
// the pending and active lists, the scheduled and retry sets.
func queueKeys(queue string) []string {
	p := "asynq:{" + queue + "}:"
	return []string{p + "pending", p + "active", p + "scheduled", p + "retry"}
}

// progress is how many tasks were still unfinished at a moment.
type progress struct {
	at        time.Duration // since the poll started
	remaining int64
}

// drainPoll is what waitDrained saw.
type drainPoll struct {
	polls    int64 // rounds of LLEN, LLEN, ZCARD, ZCARD
	timeline []progress
}

// waitDrained polls queue's unfinished tasks every 10ms (one pipeline of
// LLEN pending, LLEN active, ZCARD scheduled, ZCARD retry) until there are
// none, or timeout, or until dead closes (the sandbox exited).
func waitDrained(ctx context.Context, rdb *redis.Client, queue string, timeout time.Duration, dead <-chan struct{}) (drainPoll, error) {
	keys := queueKeys(queue)
	start := time.Now()
	var d drainPoll
	for {
		pipe := rdb.Pipeline()
		cmds := []*redis.IntCmd{pipe.LLen(ctx, keys[0]), pipe.LLen(ctx, keys[1]), pipe.ZCard(ctx, keys[2]), pipe.ZCard(ctx, keys[3])}
		_, err := pipe.Exec(ctx)
		d.polls++
		if err != nil {
			return d, err
		}
		var n int64
		for _, c := range cmds {
			n += c.Val()
		}
		d.timeline = append(d.timeline, progress{at: time.Since(start), remaining: n})
		if n == 0 {
			return d, nil
		}
		if time.Since(start) > timeout {
			return d, fmt.Errorf("bench: queue %s not drained after %s", queue, timeout)
		}
		select {
		case <-ctx.Done():
			return d, ctx.Err()
		case <-dead:
			return d, fmt.Errorf("bench: zhima-sandbox exited while queue %s was draining", queue)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// own is the Redis commands the polls made, to leave out of the counts.
func (d drainPoll) own() map[string]int64 {
	return map[string]int64{"llen": 2 * d.polls, "zcard": 2 * d.polls}
}

// when is the first time at most remaining tasks were left.
func (d drainPoll) when(remaining int64) time.Duration {
	for _, p := range d.timeline {
		if p.remaining <= remaining {
			return p.at
		}
	}
	return -1
}

// countStates reads the records of txs and counts them by state.
func countStates(ctx context.Context, p *zhimaq.Producer, txs []string) (map[zhimaq.State]int, error) {
	out := map[zhimaq.State]int{}
	for start := 0; start < len(txs); start += 500 {
		refs := make([]zhimaq.Ref, 0, 500)
		for _, tx := range txs[start:min(start+500, len(txs))] {
			refs = append(refs, zhimaq.Ref{Method: jobMethod, TransactionID: tx})
		}
		recs, err := p.Results(ctx, refs)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if r == nil {
				out["missing"]++
			} else {
				out[r.State]++
			}
		}
	}
	return out, nil
}

// newProducer builds a Producer from the configuration an enqueue process
// with the environment m would load, as cmd/enqueue does (DATA_KEYS=plaintext).
func newProducer(rdb redis.UniversalClient, m map[string]string) (*zhimaq.Producer, error) {
	cfg, err := loadConfig(m)
	if err != nil {
		return nil, err
	}
	return zhimaq.NewProducer(rdb, wire.ProducerConfig(cfg))
}
