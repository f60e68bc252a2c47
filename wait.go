package zhimaq

import (
	"context"
	"fmt"
	"time"

	"github.com/zhimaq/zhimaq/internal/idempotency"
)

// WaitOptions tune Wait; the zero value means the defaults.
type WaitOptions struct {
	// Interval is the time between polls. 0 means 200ms, longer for many
	// unfinished jobs, so that Redis reads about 10,000 records a second,
	// but at most 2s.
	Interval time.Duration
	// MaxFailures is how many polls in a row may fail (Redis failing)
	// before Wait gives up; 0 means 5.
	MaxFailures int
	// Progress, when set, is called after each poll that succeeded with
	// the records read so far, in the order of refs (nil for a job with
	// none yet). It must not keep the slice.
	Progress func(recs []*Record)
}

// Polling: every pollMin, slower for many jobs so that Redis reads about
// pollRate records a second, at most every pollMax.
const (
	pollMin  = 200 * time.Millisecond
	pollMax  = 2 * time.Second
	pollRate = 10000
)

// Wait polls until every job in refs has finished (succeeded, failed or
// rejected) or ctx ends, reading only the jobs not finished yet. It returns
// the last records read; on ctx's end, them with ctx's error; after
// MaxFailures failed polls in a row, them with the last failure. A job with
// no record counts as unfinished.
func (p *Producer) Wait(ctx context.Context, refs []Ref, opts WaitOptions) ([]*Record, error) {
	maxFailures := opts.MaxFailures
	if maxFailures <= 0 {
		maxFailures = 5
	}
	recs := make([]*Record, len(refs))
	pending := make([]int, len(refs))
	for i := range refs {
		pending[i] = i
	}
	all, err := p.refKeys(refs)
	if err != nil {
		return recs, err
	}
	failures := 0
	for {
		keys := make([]idempotency.Key, len(pending))
		for j, i := range pending {
			keys[j] = all[i]
		}
		got, err := p.results.GetMany(ctx, keys)
		switch {
		case err != nil && ctx.Err() != nil:
			return recs, ctx.Err()
		case err != nil:
			if failures++; failures >= maxFailures {
				return recs, fmt.Errorf("zhimaq: wait: reading records failed %d times in a row: %w", failures, err)
			}
		default:
			failures = 0
			still := pending[:0]
			for j, i := range pending {
				if got[j] != nil {
					recs[i] = recordOf(got[j])
				}
				if recs[i] == nil || !recs[i].State.Terminal() {
					still = append(still, i)
				}
			}
			pending = still
			if opts.Progress != nil {
				opts.Progress(recs)
			}
		}
		if len(pending) == 0 {
			return recs, nil
		}
		interval := opts.Interval
		if interval <= 0 {
			interval = min(max(time.Duration(len(pending))*time.Second/pollRate, pollMin), pollMax)
		}
		timer := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return recs, ctx.Err()
		case <-timer.C:
		}
	}
}
