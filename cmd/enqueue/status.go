package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/batches"
	"github.com/zhimaq/zhimaq/internal/results"
)

var statusUsage = `enqueue status — shows where the jobs of a batch stand.

Usage: enqueue status --batch ID [--watch]

Prints, for the batch ID that "enqueue batch" named (b_…), how many lines it
holds, its lines by state (queued, running, retrying, held, succeeded,
failed, rejected; "held" jobs wait for Beijing midnight, their app's daily
budget spent), its accepted lines by app, the jobs finished so far and an
estimate of the time left, from the rate at which its jobs have finished
since the batch started:
  batch b_20261126T031500Z_K3QF7A: 1000 lines, all in, started 2026-11-26T03:15:00Z
  queued 3 · running 2 · retrying 5 · held 0 · succeeded 950 · failed 30 · rejected 10
  by app: 2021000000000001 700 · 2021000000000002 290
  [###################.] 980/990 jobs finished · 950 succeeded · 30 failed · 12s left

Flags:
  --batch ID   the batch (required)
  --watch      keep watching until every accepted job has finished: a live
               progress bar when standard output is a terminal (redrawn
               every second, up to every 10 seconds for big batches), else
               one line every 5 seconds; then the status as above.

Batches stay readable for RESULT_TTL after their last line went in.

Exit status: 0 when the status was printed (with --watch: and the batch is
done); 1 when there is no such batch, Redis failed or watching was
interrupted; 2 on a usage or configuration error.

` + environment

// Watch pacing: a redraw a second at a terminal (slower for batches over
// 10,000 lines, at most every 10s), a line every 5 seconds elsewhere.
// Each poll reads every record of the batch, about watchRate a second; a
// watch gives up after watchFailures failed polls in a row.
const (
	watchRate     = 10000
	watchMax      = 10 * time.Second
	watchFailures = 5
)

var (
	watchTerminal = time.Second
	watchLines    = 5 * time.Second
)

// batchFlag reads --batch: required, of the form of a batch id.
func batchFlag(cmd, id string, stderr io.Writer) int {
	switch {
	case id == "":
		return usageError(stderr, cmd, "--batch is required")
	case !batches.ValidID(id):
		return usageError(stderr, cmd, "--batch is not a batch id (b_ then letters, digits and '_')")
	}
	return exitOK
}

// runStatus is `enqueue status`.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	var id string
	var watch bool
	fs.StringVar(&id, "batch", "", "")
	fs.BoolVar(&watch, "watch", false, "")
	rest, code, err := parseArgs(fs, args, statusUsage, stdout, stderr)
	switch {
	case err != nil:
		return code
	case len(rest) > 0:
		return usageError(stderr, "status", "unexpected argument %q", rest[0])
	}
	if code := batchFlag("status", id, stderr); code != exitOK {
		return code
	}
	p := connect(getenv, stderr)
	if p == nil {
		return exitUsage
	}
	defer p.Close()
	st, err := p.BatchStatus(ctx, id)
	if err != nil {
		return batchError(stderr, "status", id, err)
	}
	if watch && !st.Done {
		if st, err = watchBatch(ctx, p, st, stdout); err != nil {
			if st != nil {
				writeStatus(stdout, st)
			}
			return batchError(stderr, "status", id, err)
		}
	}
	writeStatus(stdout, st)
	return exitOK
}

// batchError reports command cmd's failed read of batch id and returns
// exitFailed.
func batchError(stderr io.Writer, cmd, id string, err error) int {
	if errors.Is(err, zhimaq.ErrNotFound) {
		fmt.Fprintf(stderr, "enqueue %s: no batch %s (never submitted for this ZHIMA_APP_ID, or expired)\n", cmd, id)
	} else {
		fmt.Fprintf(stderr, "enqueue %s: %v\n", cmd, err)
	}
	return exitFailed
}

// watchBatch polls the batch until it is done, drawing progress on out. It
// returns the last status read and, when it gave up, why.
func watchBatch(ctx context.Context, p *producer, st *zhimaq.BatchStatus, out io.Writer) (*zhimaq.BatchStatus, error) {
	every := watchLines
	var bar *progressLine
	if isTerminal(out) {
		// Each poll reads every record of the batch: big ones more slowly.
		every = min(max(watchTerminal, time.Duration(st.Lines)*time.Second/watchRate), watchMax)
		bar = newProgressLine(out, time.Now)
		defer bar.end()
	}
	show := func(st *zhimaq.BatchStatus) {
		if bar != nil {
			bar.drawLeft(tallyOf(st), st.ETA)
		} else {
			fmt.Fprintln(out, time.Now().UTC().Format(time.TimeOnly)+" "+renderProgress(tallyOf(st), st.ETA))
		}
	}
	show(st)
	failures := 0
	tick := time.NewTicker(every)
	defer tick.Stop()
	for !st.Done {
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("interrupted with %d of %d jobs unfinished", st.Total-st.Finished, st.Total)
		case <-tick.C:
		}
		next, err := p.BatchStatus(ctx, st.ID)
		switch {
		case ctx.Err() != nil:
			continue
		case errors.Is(err, zhimaq.ErrNotFound):
			return st, err
		case err != nil:
			if failures++; failures >= watchFailures {
				return st, fmt.Errorf("watching: reading the batch failed %d times in a row: %w", failures, err)
			}
			continue
		}
		failures, st = 0, next
		show(st)
	}
	return st, nil
}

// tallyOf is the progress bar's view of a batch's accepted jobs.
func tallyOf(st *zhimaq.BatchStatus) tally {
	return tally{total: st.Total, succeeded: st.Counts[zhimaq.Succeeded], failed: st.Counts[zhimaq.Failed],
		unfinished: st.Total - st.Finished}
}

// writeStatus prints the status: the batch, its lines by state, progress.
func writeStatus(w io.Writer, st *zhimaq.BatchStatus) {
	var s strings.Builder
	fmt.Fprintf(&s, "batch %s: %d %s", st.ID, st.Lines, plural(st.Lines, "line", "lines"))
	if st.Complete {
		s.WriteString(", all in")
	} else {
		s.WriteString(" so far, more to come")
	}
	fmt.Fprintf(&s, ", started %s", st.CreatedAt.UTC().Format(time.RFC3339))
	if st.Done {
		fmt.Fprintf(&s, ", done %s", st.FinishedAt.UTC().Format(time.RFC3339))
	}
	s.WriteByte('\n')
	for i, state := range results.States {
		if i > 0 {
			s.WriteString(" · ")
		}
		fmt.Fprintf(&s, "%s %d", state, st.Counts[zhimaq.State(state)])
	}
	s.WriteByte('\n')
	for i, app := range slices.Sorted(maps.Keys(st.Apps)) {
		if i == 0 {
			s.WriteString("by app: ")
		} else {
			s.WriteString(" · ")
		}
		fmt.Fprintf(&s, "%s %d", app, st.Apps[app])
	}
	if len(st.Apps) > 0 {
		s.WriteByte('\n')
	}
	s.WriteString(renderProgress(tallyOf(st), st.ETA))
	s.WriteByte('\n')
	io.WriteString(w, s.String())
}
