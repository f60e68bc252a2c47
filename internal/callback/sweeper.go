package callback

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/zhimaq/zhimaq/internal/batches"
	"github.com/zhimaq/zhimaq/internal/results"
)

// Sweeper finds the batches with a callback that have finished and enqueues
// their callbacks. Every worker runs one; each batch awaiting its callback
// is checked by one sweeper at a time (Store.ClaimDue leases it), so no two
// workers check (or enqueue the callback of) one batch at once, and a
// worker that dies mid-check only delays the batch by the lease.
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
	Store *batches.Store
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
	ids, err := s.Store.ClaimDue(ctx, now, lease, sweepLimit)
	if err != nil {
		return 0, fmt.Errorf("callback: sweep: claim: %w", err)
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
	m, err := s.Store.Meta(ctx, id)
	if errors.Is(err, batches.ErrNotFound) {
		return false, s.Store.Settle(ctx, id) // expired
	}
	if err != nil {
		return false, err
	}
	cursor := m.Cursor
	for e, err := range s.Store.Entries(ctx, m, m.Cursor) {
		if err != nil {
			return false, err
		}
		if !e.Record.State.Terminal() {
			break
		}
		cursor = e.Index + 1
	}
	if cursor < m.Lines || !m.Complete {
		if err := s.Store.Postpone(ctx, m, cursor, s.now().Add(s.interval())); err != nil {
			return false, fmt.Errorf("callback: sweep %s: %w", id, err)
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
	task, err := Task(m.CallbackURL, sum, s.QueueName, s.Store.TTL())
	if err != nil {
		return false, err
	}
	if _, err := s.Queue.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return false, fmt.Errorf("callback: sweep %s: enqueue callback: %w", id, err)
	}
	if err := s.Store.Settle(ctx, id); err != nil {
		return false, fmt.Errorf("callback: sweep %s: %w", id, err)
	}
	s.log().Info("batch finished; callback enqueued", zap.String("batch_id", id), zap.Int("lines", sum.Lines),
		zap.Int("succeeded", sum.Succeeded), zap.Int("failed", sum.Failed), zap.Int("rejected", sum.Rejected))
	return true, nil
}
