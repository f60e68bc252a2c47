package zhimaq

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"sync"
	"time"

	"github.com/zhimaq/zhimaq/internal/jsonl"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// SubmitOptions tune how a Batch submits many jobs (SubmitJSONL, SubmitJobs,
// Producer.SubmitBatch); the zero value means the defaults. enqueue batch,
// the HTTP API and the Go API all submit through it, so they answer a Redis
// outage alike.
type SubmitOptions struct {
	// Parallel is how many round trips to Redis are in flight at once;
	// default 16. Each carries the claims (and tasks) of up to 32 jobs, or
	// of the lines read so far when fewer are waiting. Jobs with the same
	// method and transaction_id go one after the other, the earlier first,
	// so the earlier line is the one that counts.
	Parallel int
	// RedisPatience is how long one job keeps being tried again, with
	// backoff, while Redis fails (a restart or a failover goes unnoticed);
	// 0 means 30s, a negative value no retry. When it runs out the job's
	// line gets a Rejected record with error source "local" naming the
	// failure, and if Redis does not answer a ping either the submission
	// stops with ErrRedisUnreachable: no later line is read or submitted.
	RedisPatience time.Duration
	// Lane is the lane of the jobs that name none (Job.Lane): "" or
	// "batch", or "interactive".
	Lane string
	// Emit, when set, is handed each line's submission once the batch
	// holds it, in input order, from one goroutine. Its error stops the
	// submission, and is returned.
	Emit func(*Submission) error
	// Flush, when set, is called before waiting for a line that is not
	// submitted yet, so that a caller writing what Emit hands it can let
	// the lines so far out first. Its error stops the submission.
	Flush func() error
}

// DefaultParallel and DefaultRedisPatience are SubmitOptions' defaults.
const (
	DefaultParallel      = 16
	DefaultRedisPatience = 30 * time.Second
)

// ReadError is returned by SubmitJSONL when reading its input fails; the
// lines read before stay submitted. Err is the reader's error (an
// *http.MaxBytesError, say): errors.As reaches it through ReadError.
type ReadError struct{ Err error }

func (e *ReadError) Error() string { return "zhimaq: read the jobs: " + e.Err.Error() }
func (e *ReadError) Unwrap() error { return e.Err }

// ErrRedisUnreachable is returned, wrapped with Redis's error, when a job
// could not be submitted within RedisPatience and Redis did not answer a
// ping either: the submission stops there.
var ErrRedisUnreachable = errors.New("Redis is unreachable")

// submitTryTimeout bounds one try at submitting a job, a few Redis round
// trips: it guards against a Redis that accepts connections but never answers.
const submitTryTimeout = 30 * time.Second

// pingTimeout bounds the check made after a job could not be submitted.
const pingTimeout = 3 * time.Second

// SubmitJSONL reads jobs from r, one JSON object a line (blank lines are
// skipped and get no record), submits them as SubmitOptions says and adds
// each line to the batch, in input order. A line that is not a valid job
// gets a Rejected record and the lines after it go on; a line longer than
// MaxJobBytes is rejected without being held whole. It does not Close the
// batch.
//
// It returns the number of the last line it read (blank lines counted)
// and, when it stopped before the end of r, why: reading r failed (a
// *ReadError), ctx
// ended (the lines read before are still submitted and added: a line read
// is always answered), ErrRedisUnreachable, Emit's or Flush's error, Redis
// failing to store the batch, or a line beyond MaxLines (ErrTooManyLines;
// the last line read is then the one before it). The lines added before
// the stop stay in the batch.
func (b *Batch) SubmitJSONL(ctx context.Context, r io.Reader, opts SubmitOptions) (lastLine int, err error) {
	lines := func(yield func(batchItem, error) bool) {
		lr := jsonl.NewReader(r, MaxJobBytes)
		for {
			line, n, err := lr.Next()
			switch {
			case err == io.EOF:
				return
			case err != nil:
				yield(batchItem{}, &ReadError{Err: err})
				return
			case jsonl.Blank(line):
				if !yield(batchItem{line: n, blank: true}, nil) {
					return
				}
				continue
			}
			job, rej := ParseJob(line)
			if !yield(batchItem{line: n, job: job, rejected: rej}, nil) {
				return
			}
		}
	}
	return b.p.submitAll(ctx, b, lines, opts)
}

// SubmitJobs is SubmitJSONL for jobs already parsed: line i+1 is jobs[i].
func (b *Batch) SubmitJobs(ctx context.Context, jobs []Job, opts SubmitOptions) (lastLine int, err error) {
	return b.p.submitAll(ctx, b, jobItems(jobs), opts)
}

// SubmitJobs submits jobs outside any batch, as SubmitOptions says, and
// hands each job's submission to opts.Emit in the order of jobs. It stops
// as Batch.SubmitJobs does, and returns the number of the last job it
// took up (jobs[lastLine-1]).
func (p *Producer) SubmitJobs(ctx context.Context, jobs []Job, opts SubmitOptions) (lastLine int, err error) {
	return p.submitAll(ctx, nil, jobItems(jobs), opts)
}

// jobItems are jobs as the engine's lines: line i+1 is jobs[i].
func jobItems(jobs []Job) iter.Seq2[batchItem, error] {
	return func(yield func(batchItem, error) bool) {
		for i, j := range jobs {
			if !yield(batchItem{line: i + 1, job: j}, nil) {
				return
			}
		}
	}
}

// batchItem is one line to submit: a job, the record of a line rejected
// before (ParseJob's), or a blank line, which only counts.
type batchItem struct {
	line     int
	job      Job
	rejected *Record
	blank    bool
}

// slot is one line on its way; sub is set before done closes.
type slot struct {
	sub   *Submission
	done  chan struct{}
	chunk int // the number of the chunk its job went in
}

// work is one job of a chunk: its line's slot, the job decoded, and the
// line of the same transaction before it in an earlier chunk, to wait for.
type work struct {
	s    *slot
	pj   preparedJob
	prev *slot
}

// pipelineJobs is the most jobs whose claims go to Redis in one round trip.
const pipelineJobs = 32

// push hands s to the emitter; when the emitter has no room (it waits for
// a line of the chunk being filled), the chunk goes first.
func push(slots chan<- *slot, s *slot, send func()) {
	select {
	case slots <- s:
	default:
		send()
		slots <- s
	}
}

// submitAll is the engine: it reads items in a goroutine of their own (a
// read that blocks never holds up ctx's end), decodes and validates each
// job once, submits up to opts.Parallel at once and hands the submissions
// to opts.Emit in input order; with a batch b it reserves each line before
// its job is submitted and adds it before Emit.
func (p *Producer) submitAll(ctx context.Context, b *Batch, items iter.Seq2[batchItem, error], opts SubmitOptions) (lastLine int, err error) {
	parallel := opts.Parallel
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	stopCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)

	type read struct {
		item batchItem
		err  error
	}
	reads := make(chan read, pipelineJobs) // lines read ahead fill the next chunk
	quit := make(chan struct{})
	defer close(quit)
	go func() {
		defer close(reads)
		for it, err := range items {
			select {
			case reads <- read{it, err}:
			case <-quit:
				return
			}
		}
	}()

	slots := make(chan *slot, parallel*pipelineJobs) // the jobs of every chunk in flight
	readAll := false                                 // written before slots closes, read after
	go func() {
		var wg sync.WaitGroup
		defer close(slots)
		defer wg.Wait()
		sem := make(chan struct{}, parallel)
		chain := map[string]*slot{} // the last line of each transaction
		var chunk []work            // the jobs whose claims go to Redis together
		seq := 1                    // the number of chunk
		send := func() {
			if len(chunk) == 0 {
				return
			}
			c := chunk
			chunk, seq = nil, seq+1
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				p.submitChunk(ctx, stopCtx, b, c, opts.RedisPatience, stop)
			})
		}
		defer send() // every line read is answered
		for stopCtx.Err() == nil {
			var r read
			var ok bool
			select {
			case r, ok = <-reads:
			default:
				send() // nothing more to read at once: the chunk goes now
				select {
				case <-stopCtx.Done():
					return
				case r, ok = <-reads:
				}
			}
			switch {
			case !ok:
				readAll = true
				return
			case r.err != nil:
				stop(r.err)
				return
			}
			if r.item.blank {
				lastLine = r.item.line
				continue
			}
			// Room in the batch first: a line beyond MaxLines is not
			// submitted, and no later line is read.
			if b != nil {
				if err := b.Reserve(); err != nil {
					stop(err)
					return
				}
			}
			lastLine = r.item.line
			s := &slot{done: make(chan struct{})}
			if r.item.rejected != nil {
				s.sub = &Submission{Record: r.item.rejected}
				close(s.done)
				push(slots, s, send)
				continue
			}
			// The push may send the chunk being filled: the job goes in
			// the chunk filled after it.
			push(slots, s, send)
			s.chunk = seq
			job := r.item.job
			job.Lane = cmp.Or(job.Lane, opts.Lane)
			w := work{s: s, pj: prepare(job)}
			w.pj.at = p.now() // the same on every try (submitPatiently)
			if tid := w.pj.transaction(); tid != "" {
				key := cmp.Or(job.AppID, p.cfg.AppID) + "\x00" + job.Method + "\x00" + tid
				w.prev, chain[key] = chain[key], s
				if w.prev != nil && w.prev.chunk == seq {
					w.prev = nil // the same pipeline runs it first
				}
				if len(chain) >= 4096+4*parallel*pipelineJobs {
					pruneDone(chain)
				}
			}
			chunk = append(chunk, w)
			if len(chunk) == pipelineJobs {
				send()
			}
		}
	}()

	// A line read is answered: it is added and emitted whatever stopped
	// the lines after it. Once the batch fails to store a line its later
	// lines are counted all the same (Add fails for each); once Emit or
	// Flush fails, nothing more is emitted.
	addFailed, broken := false, false
	for s := range slots {
		select {
		case <-s.done:
		default:
			if opts.Flush != nil && !broken {
				if err := opts.Flush(); err != nil {
					broken = true
					stop(err)
				}
			}
			<-s.done
		}
		if b != nil {
			if err := b.Add(context.WithoutCancel(ctx), s.sub); err != nil && !addFailed {
				addFailed = true
				stop(err)
			}
		}
		if opts.Emit != nil && !broken {
			if err := opts.Emit(s.sub); err != nil {
				broken = true
				stop(err)
			}
		}
	}
	// slots is closed after the reader's last write to lastLine and readAll.
	switch cause := context.Cause(stopCtx); {
	case cause == nil, ctx.Err() != nil && readAll:
		return lastLine, nil
	case ctx.Err() != nil:
		return lastLine, fmt.Errorf("zhimaq: submit: interrupted: %w", context.Cause(ctx))
	default:
		return lastLine, cause
	}
}

// submitChunk submits the jobs of one chunk (of batch b, when not nil)
// with their claims in one round trip, once the lines before them of the
// same transactions are in. A job whose claim met a Redis failure is tried
// again alone, patiently (submitPatiently), unless Redis was found down.
func (p *Producer) submitChunk(ctx, stopCtx context.Context, b *Batch, works []work, patience time.Duration, stop context.CancelCauseFunc) {
	for _, w := range works {
		if w.prev != nil {
			<-w.prev.done
		}
	}
	batchID := ""
	if b != nil {
		batchID = b.id
	}
	var subs []*Submission
	var errs []error
	if !redisDown(stopCtx) {
		pjs := make([]preparedJob, len(works))
		for i, w := range works {
			pjs[i] = w.pj
		}
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), submitTryTimeout)
		subs, errs = p.submitMany(tctx, pjs, batchID)
		cancel()
	}
	for i, w := range works {
		switch {
		case subs != nil && errs[i] == nil:
			w.s.sub = subs[i]
		case redisDown(stopCtx):
			// Another line found Redis down: don't try.
			w.s.sub = &Submission{Record: localRejection(w.pj, "not submitted: "+context.Cause(stopCtx).Error()), BatchID: batchID}
		default:
			w.pj.retried = true
			w.s.sub = p.submitPatiently(ctx, b, w.pj, patience, stop)
		}
		close(w.s.done)
	}
}

// redisDown reports whether the submission stopped for ErrRedisUnreachable.
func redisDown(stopCtx context.Context) bool {
	return errors.Is(context.Cause(stopCtx), ErrRedisUnreachable)
}

// submitPatiently submits one job (of batch b, when not nil). Its tries are not cut
// short by ctx's end, so a line read is answered with a true record. While
// Redis fails it tries again with backoff for up to patience: a submission
// is idempotent, so a retry of one that did reach Redis answers as the
// first did. Then it returns a Rejected record naming the failure and, if
// Redis does not answer a ping either, calls stop with ErrRedisUnreachable.
func (p *Producer) submitPatiently(ctx context.Context, b *Batch, pj preparedJob, patience time.Duration, stop context.CancelCauseFunc) *Submission {
	batchID := ""
	if b != nil {
		batchID = b.id
	}
	if patience == 0 {
		patience = DefaultRedisPatience
	}
	deadline := time.Now().Add(patience)
	var err error
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 4*time.Second) {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), submitTryTimeout)
		var sub *Submission
		sub, err = p.submit(tctx, pj, batchID)
		cancel()
		if err == nil {
			return sub
		}
		pj.retried = true
		if time.Now().Add(wait).After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
	defer cancel()
	if perr := p.ping(pctx); perr != nil {
		stop(fmt.Errorf("%w (%w)", ErrRedisUnreachable, perr))
	}
	return &Submission{Record: localRejection(pj, err.Error()), BatchID: batchID}
}

// localRejection is the record of a job not enqueued for a reason of the
// producer's own, such as Redis failing: a zhima.LocalFailure.
func localRejection(pj preparedJob, msg string) *Record {
	return rejection(pj.job, pj.transaction(), zhima.LocalFailure(pj.job.Method, msg))
}

// pruneDone forgets the lines that are submitted already.
func pruneDone(chain map[string]*slot) {
	for k, s := range chain {
		select {
		case <-s.done:
			delete(chain, k)
		default:
		}
	}
}
