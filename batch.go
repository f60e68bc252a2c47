package zhimaq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"sync"

	"github.com/zhimaq/zhimaq/internal/batches"
	"github.com/zhimaq/zhimaq/internal/callback"
	"github.com/zhimaq/zhimaq/internal/hosts"
	"github.com/zhimaq/zhimaq/internal/jsonl"
)

// BatchOptions are the settings of a new batch; the zero value is a batch
// without a callback.
type BatchOptions struct {
	// CallbackURL, when set, is POSTed a signed summary of the batch (see
	// CallbackSummary and VerifyCallback) by a worker once the batch is
	// closed and every accepted job has succeeded or failed. It must be an
	// absolute http or https URL, on a host that ProducerConfig's
	// CallbackHosts allows. The workers sign with their CALLBACK_SECRET;
	// the producer needs no secret.
	CallbackURL string
}

// ErrInvalidCallbackURL is returned by NewBatch and SubmitBatch for a
// CallbackURL that is not an absolute http or https URL, that holds user
// info, or whose host is not a plain DNS name or an IP address without a
// zone identifier.
var ErrInvalidCallbackURL = errors.New("zhimaq: batch: the callback URL must be an absolute http or https URL")

// ErrCallbackHostNotAllowed is returned by NewBatch and SubmitBatch for a
// CallbackURL whose host ProducerConfig's CallbackHosts does not allow, or,
// with no CallbackHosts, an internal IP address or localhost.
var ErrCallbackHostNotAllowed = errors.New("zhimaq: batch: the callback URL's host is not one CALLBACK_HOSTS allows")

// ErrTooManyLines is returned, wrapped with the batch's id and its limit
// (ProducerConfig.MaxBatchLines, BATCH_MAX_LINES), for a line beyond the
// most lines a batch may hold: by Reserve and Add; by SubmitJSONL, which
// has then added the lines before the limit and submits no later one; and
// by SubmitBatch, which then submits nothing. Test for it with errors.Is.
var ErrTooManyLines = errors.New("zhimaq: batch: more lines than a batch may hold (BATCH_MAX_LINES)")

// batchParallel is how many jobs SubmitBatch and SubmitJSONL submit at once.
const batchParallel = 16

// Batch is a batch being submitted: jobs whose records can be read back
// together, in input order (BatchRecords), counted (BatchStatus) and, with
// a CallbackURL, reported to the producer when they have finished.
//
// A batch holds at most MaxLines lines. Reserve each line, in input order,
// before submitting its job; submit the jobs with Submit, from as many
// goroutines as suits; hand each line's record to Add in input order, from
// one goroutine; then Close. SubmitJSONL and Producer.SubmitBatch do all of it.
type Batch struct {
	p  *Producer
	id string
	w  *batches.Writer

	mu       sync.Mutex
	counts   BatchCounts
	reserved int // lines reserved, added or not; counts.Lines <= reserved <= MaxLines
}

// BatchCounts count the lines added to a batch.
type BatchCounts struct {
	// Lines = Accepted + Rejected; Duplicates are among the Accepted.
	Lines, Accepted, Duplicates, Rejected int
}

// NewBatch starts a batch with a new id (b_<UTC time>_<6 random base32
// characters>). Nothing is written to Redis before its first line or its
// Close. The CallbackURL is sealed with the producer's DataKeys, bound to
// the batch, before it enters Redis (it often carries a token); with
// "plaintext" it is kept in clear.
//
// It fails with ErrInvalidCallbackURL for a CallbackURL that is not an
// absolute http or https URL, holds user info, or whose host is not a
// plain DNS name or an IP address without a zone identifier; with
// ErrCallbackHostNotAllowed for a host CallbackHosts does not allow, or,
// when CallbackHosts is "", an internal IP address or "localhost".
func (p *Producer) NewBatch(opts BatchOptions) (*Batch, error) {
	if opts.CallbackURL != "" && !hosts.ValidURL(opts.CallbackURL) {
		return nil, ErrInvalidCallbackURL
	}
	if opts.CallbackURL != "" && !p.callbackHosts.Allow(opts.CallbackURL) {
		return nil, ErrCallbackHostNotAllowed
	}
	now := p.cfg.Now()
	id := batches.NewID(now)
	callback, err := callback.SealURL(p.keys, id, opts.CallbackURL)
	if err != nil {
		return nil, fmt.Errorf("zhimaq: batch %s: %w", id, err)
	}
	w := p.batches.Writer(batches.Meta{ID: id, AppID: p.cfg.AppID, CreatedAt: now, CallbackURL: callback})
	return &Batch{p: p, id: id, w: w}, nil
}

// ID is the batch's id: letters, digits and '_' only.
func (b *Batch) ID() string { return b.id }

// Submit is Producer.Submit for a job of this batch: a record it creates
// carries the batch's id, and the record it returns, whatever batch the job
// was first submitted in, carries this one's. It does not add the line to
// the batch: give the record to Add. It is safe for concurrent use.
func (b *Batch) Submit(ctx context.Context, job Job) (*Record, error) {
	return b.p.submit(ctx, job, b.id)
}

// MaxLines is the most lines the batch may hold: ProducerConfig's
// MaxBatchLines (BATCH_MAX_LINES).
func (b *Batch) MaxLines() int { return b.p.cfg.MaxBatchLines }

// Reserve makes room for one more line before its job is submitted, so that
// no job beyond the limit runs without being in the batch. Once MaxLines
// lines are reserved or added it returns ErrTooManyLines (wrapped), and the
// line's job must not be submitted. Call it for every line, rejected ones
// too, in input order; Add uses the line's reservation. It is safe for
// concurrent use.
func (b *Batch) Reserve() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reserve()
}

// reserve is Reserve with b.mu held.
func (b *Batch) reserve() error {
	if b.reserved >= b.MaxLines() {
		return fmt.Errorf("%w: batch %s is full at %d lines", ErrTooManyLines, b.id, b.MaxLines())
	}
	b.reserved++
	return nil
}

// Add appends a line to the batch: rec is the line's record, from Submit,
// or a Rejected record (from ParseJob, say). It sets rec.BatchID to the
// batch's id. A line not reserved before is reserved by Add, which returns
// ErrTooManyLines (wrapped) and adds nothing beyond MaxLines.
//
// The batch keeps an accepted line as its method and transaction_id, and
// a rejected line's record as it is, but for updated_at: a record that
// holds only a rejection's fields (those of ParseJob's and Submit's
// rejections) reads back with updated_at as the batch's creation time plus
// the whole seconds between the two, less than a second earlier than
// written, so that a rejected line costs Redis a few dozen bytes.
//
// Lines are written in chunks of 1,000 in one round trip each; the error is
// Redis's, and after one every later Add and Close fail. Call Add in input
// order from one goroutine.
func (b *Batch) Add(ctx context.Context, rec *Record) error {
	b.mu.Lock()
	if b.counts.Lines == b.reserved {
		if err := b.reserve(); err != nil {
			b.mu.Unlock()
			return err
		}
	}
	rec.BatchID = b.id
	b.counts.Lines++
	switch {
	case rec.State == Rejected:
		b.counts.Rejected++
	case rec.Duplicate:
		b.counts.Accepted++
		b.counts.Duplicates++
	default:
		b.counts.Accepted++
	}
	b.mu.Unlock()
	if err := b.w.Add(ctx, batches.LineOf(rec)); err != nil {
		return fmt.Errorf("zhimaq: batch %s: %w", b.id, err)
	}
	return nil
}

// Counts returns the counts of the lines added so far.
func (b *Batch) Counts() BatchCounts {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.counts
}

// Close writes the lines still buffered and marks the batch complete: no
// line comes after. The batch's callback, if any, waits for this.
func (b *Batch) Close(ctx context.Context) error {
	if err := b.w.Close(ctx); err != nil {
		return fmt.Errorf("zhimaq: batch %s: %w", b.id, err)
	}
	return nil
}

// SubmitJSONL reads jobs from r, one JSON object a line (blank lines are
// skipped), submits them, up to 16 at once (lines with the same method and
// transaction_id one after the other, the earlier first), and adds each
// line's record to the batch and then hands it to emit (when not nil), in
// input order. A line that is not a valid job gets a Rejected record and
// the lines after it go on; a line longer than MaxJobBytes is rejected
// without being held whole. It does not Close the batch.
//
// It stops at the first error: reading r, Redis failing, ctx ending, emit's
// error, or a line beyond MaxLines (ErrTooManyLines: that line's job is not
// submitted and no later line is read), which it returns; the lines added
// before it stay in the batch.
func (b *Batch) SubmitJSONL(ctx context.Context, r io.Reader, emit func(*Record) error) error {
	var readErr error
	items := func(yield func(batchItem) bool) {
		lr := jsonl.NewReader(r, MaxJobBytes)
		for {
			line, _, err := lr.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				readErr = fmt.Errorf("zhimaq: batch %s: read: %w", b.id, err)
				return
			}
			if jsonl.Blank(line) {
				continue
			}
			job, rej := ParseJob(line)
			if !yield(batchItem{job: job, rec: rej}) {
				return
			}
		}
	}
	err := b.submitAll(ctx, items, emit)
	if err == nil {
		err = readErr // submitAll has returned: the reader is done
	}
	return err
}

// SubmitBatch submits jobs as one new batch, up to 16 at once, and closes
// it. It returns the batch's id and each job's record, in the order of
// jobs, all carrying the id. On an error (Redis failing, ctx ending) it
// returns the records of the jobs added before it, and the batch holds
// just those. A bad CallbackURL returns ErrInvalidCallbackURL or
// ErrCallbackHostNotAllowed; more jobs than MaxBatchLines, ErrTooManyLines
// (wrapped); in these cases nothing is submitted or written.
func (p *Producer) SubmitBatch(ctx context.Context, jobs []Job, opts BatchOptions) (string, []*Record, error) {
	b, err := p.NewBatch(opts)
	if err != nil {
		return "", nil, err
	}
	if len(jobs) > b.MaxLines() {
		return "", nil, fmt.Errorf("%w: %d jobs for at most %d lines", ErrTooManyLines, len(jobs), b.MaxLines())
	}
	recs := make([]*Record, 0, len(jobs))
	items := func(yield func(batchItem) bool) {
		for _, j := range jobs {
			if !yield(batchItem{job: j}) {
				return
			}
		}
	}
	err = b.submitAll(ctx, items, func(rec *Record) error { recs = append(recs, rec); return nil })
	if cerr := b.Close(context.WithoutCancel(ctx)); err == nil {
		err = cerr
	}
	return b.id, recs, err
}

// batchItem is a job to submit, or the record of a line rejected before.
type batchItem struct {
	job Job
	rec *Record
}

// inFlight is one item on its way; rec and err are set before done closes.
type inFlight struct {
	rec  *Record
	err  error
	done chan struct{}
}

// submitAll submits items batchParallel at a time and adds their records,
// in order, then calls emit with each. It reserves each item's line before
// submitting it and stops before the first beyond MaxLines. It returns the
// first error.
func (b *Batch) submitAll(ctx context.Context, items iter.Seq[batchItem], emit func(*Record) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queue := make(chan *inFlight, batchParallel)
	cut := false   // set when items were left unread; read after queue closes
	var full error // Reserve's error, when an item found the batch full; likewise
	go func() {
		defer close(queue)
		chain := map[string]*inFlight{} // the last item of each transaction
		for it := range items {
			if ctx.Err() != nil {
				cut = true
				return
			}
			if full = b.Reserve(); full != nil {
				return
			}
			f := &inFlight{done: make(chan struct{})}
			if it.rec != nil {
				f.rec = it.rec
				close(f.done)
			} else {
				var prev *inFlight
				if tid := transactionOf(it.job.BizContent); tid != "" {
					key := it.job.Method + "\x00" + tid
					prev, chain[key] = chain[key], f
					if len(chain) >= 4096 {
						pruneDone(chain)
					}
				}
				go func() {
					if prev != nil {
						<-prev.done
					}
					f.rec, f.err = b.Submit(ctx, it.job)
					close(f.done)
				}()
			}
			select {
			case queue <- f:
			case <-ctx.Done():
				cut = true
				return
			}
		}
	}()
	var first error
	for f := range queue {
		<-f.done
		if first != nil {
			continue
		}
		err := f.err
		if err == nil {
			err = b.Add(ctx, f.rec)
		}
		if err == nil && emit != nil {
			err = emit(f.rec)
		}
		if err != nil {
			first = err
			cancel(err)
		}
	}
	switch {
	case first != nil:
	case cut:
		first = fmt.Errorf("zhimaq: batch %s: %w", b.id, context.Cause(ctx))
	case full != nil:
		first = full
	}
	return first
}

// pruneDone forgets the items that are done.
func pruneDone(chain map[string]*inFlight) {
	for k, f := range chain {
		select {
		case <-f.done:
			delete(chain, k)
		default:
		}
	}
}
