package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/hosts"
)

var batchUsage = `enqueue batch — submits jobs from a JSON Lines file and prints their result records.

Usage: enqueue batch [--wait] [--timeout D] [--parallel N] [--redis-patience D] [--callback URL] [--lane L] FILE|-

Reads FILE, or standard input when FILE is "-", one job per line:
  {"method":"zhima.credit.score.brief.get","biz_content":{"transaction_id":"T1",
   "product_code":"w1010100000000002733","cert_type":"IDENTITY_CARD",
   "cert_no":"...","name":"...","admittance_score":650}}
with field names as in Alipay's pages and optional top-level
"app_auth_token", "app_id" (one of ZHIMA_APPS_FILE's apps; default: its
first, or ZHIMA_APP_ID) and "lane" ("interactive" or "batch"). Lines that hold only whitespace are skipped and get no
record. A line may hold up to ` + maxJobBytesText + ` bytes (room for a 1 MiB
face_contrast_picture); a longer one is rejected without being read whole.

For every other line it prints one result record (one JSON object a line) on
standard output, in the order of the lines, as soon as that line is
submitted. A line that is not a valid job gets a "rejected" record naming
the problem, and the lines after it go on. A transaction_id submitted again
with the same parameters within DEDUP_WINDOW is not run twice: its line gets
the first job's record with "duplicate": true. With other parameters it is
rejected with sub_code TRANSACTION_ID_REPEAT; within one file the earlier
line is the one that counts.

The lines form a batch with a new id, b_<UTC time>_<6 random characters>:
every record carries it as "batch_id" (a duplicate's too, though the job's
stored record keeps the batch it was first submitted in), the summary names
it, and "enqueue status --batch ID" and "enqueue results --batch ID" read
the batch later, for RESULT_TTL after its last line.

A batch holds at most BATCH_MAX_LINES lines [100000], blank lines not
counted. At the limit enqueue stops: the lines after it are not read and get
no record, standard error says after which line it stopped, and the exit
status is 1. Split a longer file (split -l) and submit each part as a batch
of its own.

Flags:
  --wait         wait until every accepted job has succeeded or failed, then
                 print the final records instead (rejected lines keep their
                 record). Progress is drawn on standard error when it is a
                 terminal.
  --timeout D    with --wait: stop waiting after D (a Go duration such as 90s
                 or 10m, counted from the end of submitting), print the
                 records as they stand and exit 1. Default: no limit.
  --parallel N   keep up to N round trips to Redis in flight at once [16],
                 each with up to 32 lines; the output keeps the order of
                 the lines.
  --redis-patience D  how long a line keeps being retried while Redis fails
                 [30s]; see below.
  --callback URL once every accepted job has succeeded or failed, a worker
                 POSTs the batch's summary to URL (http or https), as JSON
                 {"batch_id","lines","succeeded","failed","rejected",
                 "finished_at"}, signed with the workers' CALLBACK_SECRET in
                 the X-Zhimaq-Signature header, and retries with backoff
                 until URL answers 2xx. enqueue itself needs no secret.
  --lane L       the lane of the lines that name none: "batch" [default], or
                 "interactive" for jobs an applicant waits for: they go
                 before batch jobs in the queue and at the rate limiter.

If Redis fails while a line is submitted, enqueue tries again for
--redis-patience (default 30s: a Redis restart or failover goes unnoticed);
then that line gets a "rejected"
record with error {"source":"local","msg":"..."}. If Redis then stays unreachable,
enqueue stops: the lines it had read ahead (at most 32 × (--parallel + 2))
get such a record too, it reads no further lines (they get no record) and says on
standard error after which line it stopped. Running the same file again is
safe: lines already accepted come back as duplicates.

On SIGINT or SIGTERM it stops reading (or waiting), prints the records it
has and exits 1. At the end it prints a summary on standard error, e.g.
  enqueue: batch b_20261126T031500Z_K3QF7A: 1000 lines: 998 accepted (3 duplicates), 2 rejected · 990 succeeded, 8 failed

Exit status: 0 when every line was accepted (and, with --wait, every job
finished, succeeded or failed); 1 otherwise; 2 on a usage or configuration
error.

` + environment

var maxJobBytesText = fmt.Sprint(zhimaq.MaxJobBytes)

// closeTimeout bounds the write that closes the batch.
const closeTimeout = 30 * time.Second

// batchFlags are the settings of one batch run.
type batchFlags struct {
	wait     bool
	timeout  time.Duration
	parallel int
	patience time.Duration
	callback string
	lane     string
}

// runBatch is `enqueue batch`: it checks the arguments and the
// configuration (exit 2 on a problem), then runs the batch.
func runBatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("batch", flag.ContinueOnError)
	var f batchFlags
	fs.BoolVar(&f.wait, "wait", false, "")
	fs.DurationVar(&f.timeout, "timeout", 0, "")
	fs.IntVar(&f.parallel, "parallel", zhimaq.DefaultParallel, "")
	fs.DurationVar(&f.patience, "redis-patience", zhimaq.DefaultRedisPatience, "")
	fs.StringVar(&f.callback, "callback", "", "")
	fs.StringVar(&f.lane, "lane", "", "")
	files, code, err := parseArgs(fs, args, batchUsage, stdout, stderr)
	if err != nil {
		return code
	}
	switch {
	case len(files) == 0:
		return usageError(stderr, "batch", "no input; give a FILE, or - for standard input")
	case len(files) > 1:
		return usageError(stderr, "batch", "one FILE only, got %d", len(files))
	case f.parallel < 1:
		return usageError(stderr, "batch", "--parallel must be at least 1")
	case f.patience < 0:
		return usageError(stderr, "batch", "--redis-patience must not be negative")
	case f.timeout < 0:
		return usageError(stderr, "batch", "--timeout must not be negative")
	case f.timeout > 0 && !f.wait:
		return usageError(stderr, "batch", "--timeout only applies with --wait")
	case f.lane != "" && f.lane != "batch" && f.lane != "interactive":
		return usageError(stderr, "batch", "--lane must be interactive or batch")
	case f.callback != "" && !hosts.ValidURL(f.callback):
		return usageError(stderr, "batch", "--callback must be an absolute http or https URL without user info, its host a plain DNS name or an IP address without a zone")
	}
	in := stdin
	if files[0] != "-" {
		// Opening a FIFO blocks until a writer opens it too: open aside,
		// so that an interrupt still ends the command.
		type opened struct {
			file *os.File
			err  error
		}
		done := make(chan opened, 1)
		go func() {
			file, err := os.Open(files[0])
			if err == nil {
				if st, serr := file.Stat(); serr == nil && st.IsDir() {
					file.Close()
					file, err = nil, fmt.Errorf("%s is a directory", files[0])
				}
			}
			done <- opened{file, err}
		}()
		var o opened
		select {
		case o = <-done:
		case <-ctx.Done():
			go func() { // a writer may still come: close what it opens
				if o := <-done; o.file != nil {
					o.file.Close()
				}
			}()
			fmt.Fprintf(stderr, "enqueue batch: interrupted while opening %s (a FIFO nothing writes to?)\n", files[0])
			return exitFailed
		}
		if o.err != nil {
			fmt.Fprintf(stderr, "enqueue batch: %v\n", o.err)
			return exitUsage
		}
		defer o.file.Close()
		in = o.file
	}
	p := connect(getenv, stderr)
	if p == nil {
		return exitUsage
	}
	defer p.Close()
	bt, err := p.NewBatch(zhimaq.BatchOptions{CallbackURL: f.callback})
	if err != nil {
		return usageError(stderr, "batch", "%v", err)
	}
	b := &batch{p: p, batch: bt, flags: f, stderr: stderr, now: time.Now}
	return b.run(ctx, in, stdout)
}

// batch is one run of `enqueue batch`.
type batch struct {
	p      *producer
	batch  *zhimaq.Batch
	flags  batchFlags
	stderr io.Writer
	now    func() time.Time

	// With --wait: every line's submission, and which of them were accepted.
	subs []*zhimaq.Submission
	refs []int
}

func (b *batch) run(ctx context.Context, in io.Reader, stdout io.Writer) int {
	out := bufio.NewWriterSize(stdout, 64<<10)
	lastLine, stopErr := b.batch.SubmitJSONL(ctx, in, zhimaq.SubmitOptions{
		Parallel:      b.flags.parallel,
		RedisPatience: b.patience(),
		Lane:          b.flags.lane,
		Emit:          func(sub *zhimaq.Submission) error { return b.emit(out, sub) },
		Flush:         out.Flush,
	})
	if err := out.Flush(); err != nil && stopErr == nil {
		stopErr = fmt.Errorf("write output: %w", err)
	}
	readAll := stopErr == nil
	// The batch is complete with the lines read, whatever stopped it.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	if err := b.batch.Close(cctx); err != nil && stopErr == nil {
		stopErr = fmt.Errorf("store the batch: %w", err)
		readAll = true // every line was read; the batch is what failed
	}
	cancel()
	code := exitOK
	if b.batch.Counts().Rejected > 0 {
		code = exitFailed
	}
	if stopErr != nil {
		code = exitFailed
		if readAll {
			fmt.Fprintf(b.stderr, "enqueue: %v\n", stopErr)
		} else {
			fmt.Fprintf(b.stderr, "enqueue: %s; stopped after line %d, later lines were not read\n", b.why(stopErr), lastLine)
		}
	}
	if !b.flags.wait {
		b.summary(nil)
		return code
	}
	var t *tally
	if stopErr == nil {
		var err error
		t, err = b.await(ctx)
		if err != nil {
			fmt.Fprintf(b.stderr, "enqueue: %v; printing the records as they stand\n", err)
			code = exitFailed
		}
		if t.unfinished > 0 {
			code = exitFailed
		}
	}
	for _, sub := range b.subs {
		if err := writeRecord(out, sub); err != nil {
			break
		}
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(b.stderr, "enqueue: write output: %v\n", err)
		code = exitFailed
	}
	b.summary(t)
	return code
}

// patience is --redis-patience as SubmitOptions takes it: 0 means no retry.
func (b *batch) patience() time.Duration {
	if b.flags.patience == 0 {
		return -1
	}
	return b.flags.patience
}

// emit hands one line's submission on: written at once, or kept with --wait.
func (b *batch) emit(out io.Writer, sub *zhimaq.Submission) error {
	if !b.flags.wait {
		if err := writeRecord(out, sub); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
		return nil
	}
	b.subs = append(b.subs, sub)
	if sub.State != zhimaq.Rejected {
		b.refs = append(b.refs, len(b.subs)-1)
	}
	return nil
}

// why says in enqueue's words what stopped the submission before the end
// of the input.
func (b *batch) why(err error) string {
	var re *zhimaq.ReadError
	switch {
	case errors.As(err, &re):
		return "read input: " + re.Err.Error()
	case errors.Is(err, zhimaq.ErrTooManyLines):
		return fmt.Sprintf("batch holds BATCH_MAX_LINES=%d lines", b.batch.MaxLines())
	case errors.Is(err, context.Canceled):
		return "interrupted"
	}
	return err.Error()
}

// writeRecord writes rec as one JSON line. It calls MarshalJSON directly:
// json.Marshal would re-escape <, > and & inside the gateway's response,
// which must reach the caller byte for byte.
func writeRecord(w io.Writer, rec json.Marshaler) error {
	line, err := rec.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	_, err = w.Write(append(line, '\n'))
	return err
}

// summary prints the closing line on stderr; t is nil without --wait.
func (b *batch) summary(t *tally) {
	c := b.batch.Counts()
	var s strings.Builder
	fmt.Fprintf(&s, "enqueue: batch %s: %d %s: %d accepted (%d %s), %d rejected", b.batch.ID(), c.Lines, plural(c.Lines, "line", "lines"),
		c.Accepted, c.Duplicates, plural(c.Duplicates, "duplicate", "duplicates"), c.Rejected)
	if t != nil {
		fmt.Fprintf(&s, " · %d succeeded, %d failed", t.succeeded, t.failed)
		if t.unfinished > 0 {
			fmt.Fprintf(&s, ", %d unfinished", t.unfinished)
		}
	}
	fmt.Fprintln(b.stderr, s.String())
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
