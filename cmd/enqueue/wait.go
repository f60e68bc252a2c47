package main

import (
	"context"
	"fmt"
	"time"

	"github.com/zhimaq/zhimaq"
)

// Polling while waiting: every pollMin, slower for big batches so that
// Redis reads about pollRate records a second, at most every pollMax.
const (
	pollMin  = 200 * time.Millisecond
	pollMax  = 2 * time.Second
	pollRate = 10000
)

// pollFailures is how many polls in a row may fail before waiting gives up.
const pollFailures = 5

// tally counts the accepted jobs of a batch by how they stand.
type tally struct {
	total, succeeded, failed, unfinished int
}

func (t tally) done() int { return t.succeeded + t.failed }

// await polls the records of the accepted lines (b.refs) until every job has
// finished, replacing b.recs with the latest records (a line that was a
// duplicate stays marked as one, and every record names this batch). It
// returns the final tally and, when it gave up, why: --timeout, an
// interrupt, or Redis failing poll after poll.
// Progress goes to stderr when stderr is a terminal.
func (b *batch) await(ctx context.Context) (*tally, error) {
	parent := ctx
	if b.flags.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.flags.timeout)
		defer cancel()
	}
	var bar *progressLine
	if isTerminal(b.stderr) {
		bar = newProgressLine(b.stderr, b.now)
		defer bar.end()
	}
	pending := make([]int, 0, len(b.refs))
	for _, i := range b.refs {
		if !b.recs[i].State.Terminal() {
			pending = append(pending, i)
		}
	}
	t := b.tally()
	bar.draw(t)
	failures := 0
	for len(pending) > 0 {
		timer := time.NewTimer(min(max(time.Duration(len(pending))*time.Second/pollRate, pollMin), pollMax))
		select {
		case <-ctx.Done():
			timer.Stop()
			return &t, b.waitError(parent, t)
		case <-timer.C:
		}
		refs := make([]zhimaq.Ref, len(pending))
		for j, i := range pending {
			refs[j] = zhimaq.Ref{Method: b.recs[i].Method, TransactionID: b.recs[i].TransactionID}
		}
		got, err := b.p.Results(ctx, refs)
		if err != nil {
			if ctx.Err() != nil {
				return &t, b.waitError(parent, t)
			}
			if failures++; failures >= pollFailures {
				return &t, fmt.Errorf("waiting: reading records failed %d times in a row: %w", failures, err)
			}
			continue
		}
		failures = 0
		still := pending[:0]
		for j, i := range pending {
			if j < len(got) && got[j] != nil {
				got[j].Duplicate, got[j].BatchID = b.recs[i].Duplicate, b.batch.ID()
				b.recs[i] = got[j]
			}
			if !b.recs[i].State.Terminal() {
				still = append(still, i)
			}
		}
		pending = still
		t = b.tally()
		bar.draw(t)
	}
	return &t, nil
}

// waitError says why waiting ended early: parent, the command's context,
// ended (an interrupt), or else --timeout passed.
func (b *batch) waitError(parent context.Context, t tally) error {
	if parent.Err() != nil {
		return fmt.Errorf("interrupted with %d of %d jobs unfinished", t.unfinished, t.total)
	}
	return fmt.Errorf("--timeout %v passed with %d of %d jobs unfinished", b.flags.timeout, t.unfinished, t.total)
}

// tally counts the accepted lines' records.
func (b *batch) tally() tally {
	t := tally{total: len(b.refs)}
	for _, i := range b.refs {
		switch b.recs[i].State {
		case zhimaq.Succeeded:
			t.succeeded++
		case zhimaq.Failed, zhimaq.Rejected:
			t.failed++
		default:
			t.unfinished++
		}
	}
	return t
}
