package batches

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/zhimaq/zhimaq/internal/results"
)

// Sweeper finds the batches with a callback that have finished and enqueues
// their callbacks. Every worker runs one; each batch awaiting its callback
// is checked by one sweeper at a time: a sweep claims the batches that are
// due with one Lua script that pushes their next check a lease into the
// future, so no two workers check (or enqueue the callback of) one batch at
// once, and a worker that dies mid-check only delays the batch by the lease.
//
// A check reads the batch's lines from its cursor, the first line whose job
// had not finished at the last check, in chunks, and stops at the first
// unfinished job: a batch costs a few round trips per check, not one per
// line. Jobs submitted again in another batch (duplicates) are read from
// the same record, so each batch sees them finish.
//
// The callback URL goes into the task as the batch's metadata holds it,
// sealed by the producer (SealCallbackURL) or in clear: a sweeper never
// opens it, only the Deliverer does.
type Sweeper struct {
	Store *Store
	// Queue enqueues the callback tasks onto QueueName.
	Queue     *asynq.Client
	QueueName string
	// Interval is the time between sweeps and between checks of one
	// unfinished batch; default 2s.
	Interval time.Duration
	// Log defaults to a no-op logger.
	Log *zap.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// sweepLimit bounds the batches one sweep claims.
const sweepLimit = 100

// lease is how long a claimed batch is left to its sweeper before another may check it.
const lease = time.Minute

// claimScript: KEYS[1] the pending set; ARGV[1] now (ms), ARGV[2] lease
// (ms), ARGV[3] limit. Returns the ids that were due, now claimed.
var claimScript = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local due = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], 'XX', due, id)
end
return ids
`)

func (s *Sweeper) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Sweeper) interval() time.Duration {
	if s.Interval > 0 {
		return s.Interval
	}
	return 2 * time.Second
}

func (s *Sweeper) log() *zap.Logger {
	if s.Log != nil {
		return s.Log
	}
	return zap.NewNop()
}

// Run sweeps every Interval until ctx ends; failures are logged.
func (s *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(s.interval())
	defer t.Stop()
	for {
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log().Warn("batch sweep failed", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep claims the batches due for a check and checks each; it returns how
// many callbacks it enqueued, and the errors of the checks that failed.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	now := s.now()
	ids, err := claimScript.Run(ctx, s.Store.rdb, []string{s.Store.pendingKey()},
		now.UnixMilli(), lease.Milliseconds(), sweepLimit).StringSlice()
	if err != nil {
		return 0, fmt.Errorf("batches: sweep: claim: %w", err)
	}
	sent := 0
	var errs []error
	for _, id := range ids {
		done, err := s.check(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if done {
			sent++
		}
	}
	return sent, errors.Join(errs...)
}

// check checks one claimed batch: it enqueues its callback and drops it from
// the set when it has finished, else moves its cursor and its next check.
func (s *Sweeper) check(ctx context.Context, id string) (bool, error) {
	pending := s.Store.pendingKey()
	m, err := s.Store.Meta(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return false, s.Store.rdb.ZRem(ctx, pending, id).Err() // expired
	}
	if err != nil {
		return false, err
	}
	cursor := m.cursor
	for e, err := range s.Store.Entries(ctx, m, m.cursor) {
		if err != nil {
			return false, err
		}
		if !e.Record.State.Terminal() {
			break
		}
		cursor = e.Index + 1
	}
	if cursor < m.Lines || !m.Complete {
		// HSET keeps the batch's expiry: the sweeper's bookkeeping does not
		// keep an abandoned batch alive.
		_, err := s.Store.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			if cursor > m.cursor {
				p.HSet(ctx, s.Store.metaKey(id), "cursor", strconv.Itoa(cursor))
			}
			p.ZAddXX(ctx, pending, redis.Z{Score: float64(s.now().Add(s.interval()).UnixMilli()), Member: id})
			return nil
		})
		if err != nil {
			return false, fmt.Errorf("batches: sweep %s: %w", id, err)
		}
		return false, nil
	}
	t, err := s.Store.Tally(ctx, m)
	if err != nil {
		return false, err
	}
	finished := t.LastUpdate
	if finished.IsZero() {
		finished = s.now()
	}
	sum := Summary{BatchID: id, Lines: t.Lines, Succeeded: t.Counts[results.Succeeded], Failed: t.Counts[results.Failed],
		Rejected: t.Counts[results.Rejected], FinishedAt: finished.UTC()}
	task, err := CallbackTask(m.CallbackURL, sum, s.QueueName, s.Store.ttl)
	if err != nil {
		return false, err
	}
	if _, err := s.Queue.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return false, fmt.Errorf("batches: sweep %s: enqueue callback: %w", id, err)
	}
	if err := s.Store.rdb.ZRem(ctx, pending, id).Err(); err != nil {
		return false, fmt.Errorf("batches: sweep %s: %w", id, err)
	}
	s.log().Info("batch finished; callback enqueued", zap.String("batch_id", id), zap.Int("lines", sum.Lines),
		zap.Int("succeeded", sum.Succeeded), zap.Int("failed", sum.Failed), zap.Int("rejected", sum.Rejected))
	return true, nil
}
