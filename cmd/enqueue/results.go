package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/zhimaq/zhimaq/internal/export"
)

var resultsUsage = `enqueue results — exports the records of a batch.

Usage: enqueue results --batch ID [--format jsonl|csv]

Prints the record of every line of the batch ID that "enqueue batch" named
(b_…), in the order of its lines, on standard output: a rejected line's
record as it was printed, an accepted line's job record as it stands now,
each with "batch_id" ID.

Flags:
  --batch ID      the batch (required)
  --format F      jsonl: one JSON record a line, as "enqueue batch" prints
                  them [default]
                  csv: a header, then one row a line with the columns
                  line, batch_id, method, transaction_id, state, attempts,
                  duplicate, error_source, error_sub_code, error_sub_msg (the
                  error's msg when it has no sub_msg), is_admittance,
                  relation_rank, relation_score, biz_no, enqueued_at,
                  updated_at, app_id; "line" counts the batch's records from 1
                  (blank input lines have none). Records hold no personal
                  data, so neither does the export.

Batches stay readable for RESULT_TTL after their last line went in.

Exit status: 0 when every record was printed; 1 when there is no such batch
or Redis failed; 2 on a usage or configuration error.

` + environment

// runResults is `enqueue results`.
func runResults(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("results", flag.ContinueOnError)
	var id, format string
	fs.StringVar(&id, "batch", "", "")
	fs.StringVar(&format, "format", "jsonl", "")
	rest, code, err := parseArgs(fs, args, resultsUsage, stdout, stderr)
	switch {
	case err != nil:
		return code
	case len(rest) > 0:
		return usageError(stderr, "results", "unexpected argument %q", rest[0])
	case !slices.Contains(export.Formats, format):
		return usageError(stderr, "results", "--format must be jsonl or csv")
	}
	if code := batchFlag("results", id, stderr); code != exitOK {
		return code
	}
	p := connect(getenv, stderr)
	if p == nil {
		return exitUsage
	}
	defer p.Close()
	recs, err := p.BatchRecords(ctx, id)
	if err != nil {
		return batchError(stderr, "results", id, err)
	}
	out := bufio.NewWriterSize(stdout, 64<<10)
	exp, _ := export.New(out, format)
	line := 0
	for rec, err := range recs {
		if err == nil {
			line++
			err = exp.Write(line, rec)
		}
		if err != nil {
			exp.Close()
			out.Flush()
			fmt.Fprintf(stderr, "enqueue results: %v; stopped after record %d\n", err, line)
			return exitFailed
		}
	}
	err = exp.Close()
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		fmt.Fprintf(stderr, "enqueue results: write output: %v\n", err)
		return exitFailed
	}
	return exitOK
}
