package zhimaq

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/zhimaq/zhimaq/internal/batches"
	"github.com/zhimaq/zhimaq/internal/callback"
	"github.com/zhimaq/zhimaq/internal/hosts"
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

// Batch is a batch being submitted: jobs whose records can be read back
// together, in input order (BatchRecords), counted (BatchStatus) and, with
// a CallbackURL, reported to the producer when they have finished.
//
// A batch holds at most MaxLines lines. Reserve each line, in input order,
// before submitting its job; submit the jobs with Submit, from as many
// goroutines as suits; hand each line's record to Add in input order, from
// one goroutine; then Close. SubmitJSONL, SubmitJobs and Producer.SubmitBatch
// do all of it.
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
// carries the batch's id, and so does the submission, whatever batch the
// job was first submitted in. It does not add the line to the batch: give
// the submission to Add. It is safe for concurrent use.
func (b *Batch) Submit(ctx context.Context, job Job) (*Submission, error) {
	return b.p.submit(ctx, prepare(job), b.id)
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

// Add appends a line to the batch: sub is the line's submission, from
// Submit, or one holding a Rejected record (from ParseJob, say); Add sets
// its BatchID to the batch's id. A line not reserved before is reserved by
// Add, which returns ErrTooManyLines (wrapped) and adds nothing beyond
// MaxLines.
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
func (b *Batch) Add(ctx context.Context, sub *Submission) error {
	b.mu.Lock()
	if b.counts.Lines == b.reserved {
		if err := b.reserve(); err != nil {
			b.mu.Unlock()
			return err
		}
	}
	sub.BatchID = b.id
	b.counts.Lines++
	switch {
	case sub.Record.State == Rejected:
		b.counts.Rejected++
	case sub.Duplicate:
		b.counts.Accepted++
		b.counts.Duplicates++
	default:
		b.counts.Accepted++
	}
	b.mu.Unlock()
	if err := b.w.Add(ctx, batches.LineOf(sub.Record.stored(false, b.id), sub.Duplicate)); err != nil {
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

// SubmitBatch submits jobs as one new batch with SubmitJobs and closes it.
// It returns the batch's id and each job's submission, in the order of
// jobs, all carrying the id. On an error (ErrRedisUnreachable, ctx ending,
// Redis failing to store the batch) it returns the submissions of the jobs
// taken up before it, each answered as SubmitJobs says. A bad CallbackURL
// returns ErrInvalidCallbackURL or ErrCallbackHostNotAllowed; more jobs
// than MaxBatchLines, ErrTooManyLines (wrapped); in these cases nothing is
// submitted or written. opts.Emit, when set, is called as well.
func (p *Producer) SubmitBatch(ctx context.Context, jobs []Job, batch BatchOptions, opts SubmitOptions) (string, []*Submission, error) {
	b, err := p.NewBatch(batch)
	if err != nil {
		return "", nil, err
	}
	if len(jobs) > b.MaxLines() {
		return "", nil, fmt.Errorf("%w: %d jobs for at most %d lines", ErrTooManyLines, len(jobs), b.MaxLines())
	}
	subs := make([]*Submission, 0, len(jobs))
	emit := opts.Emit
	opts.Emit = func(s *Submission) error {
		subs = append(subs, s)
		if emit != nil {
			return emit(s)
		}
		return nil
	}
	_, err = b.SubmitJobs(ctx, jobs, opts)
	if cerr := b.Close(context.WithoutCancel(ctx)); err == nil {
		err = cerr
	}
	return b.id, subs, err
}
