package main

import (
	"context"
	"fmt"

	"github.com/zhimaq/zhimaq"
)

// tally counts the accepted jobs of a batch by how they stand.
type tally struct {
	total, succeeded, failed, unfinished int
}

func (t tally) done() int { return t.succeeded + t.failed }

// await waits with Producer.Wait until every accepted line's job (b.refs)
// has finished, keeping each line's submission with its job's latest
// record. It returns the final tally and, when it gave up, why: --timeout,
// an interrupt, or Redis failing poll after poll. Progress goes to stderr
// when stderr is a terminal.
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
	t := b.tally()
	bar.draw(t)
	refs := make([]zhimaq.Ref, len(b.refs))
	for j, i := range b.refs {
		refs[j] = zhimaq.Ref{Method: b.subs[i].Method, TransactionID: b.subs[i].TransactionID}
	}
	_, err := b.p.Wait(ctx, refs, zhimaq.WaitOptions{Progress: func(recs []*zhimaq.Record) {
		for j, rec := range recs {
			if rec != nil {
				b.subs[b.refs[j]].Record = rec
			}
		}
		t = b.tally()
		bar.draw(t)
	}})
	switch {
	case err == nil:
		return &t, nil
	case parent.Err() != nil:
		return &t, fmt.Errorf("interrupted with %d of %d jobs unfinished", t.unfinished, t.total)
	case ctx.Err() != nil:
		return &t, fmt.Errorf("--timeout %v passed with %d of %d jobs unfinished", b.flags.timeout, t.unfinished, t.total)
	}
	return &t, fmt.Errorf("waiting: %w", err)
}

// tally counts the accepted lines' records.
func (b *batch) tally() tally {
	t := tally{total: len(b.refs)}
	for _, i := range b.refs {
		switch b.subs[i].State {
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
