package zhimaq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"sync"

	"github.com/zhimaq/zhimaq/internal/batches"
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
// CallbackURL that is not an absolute http or https URL.
var ErrInvalidCallbackURL = errors.New("zhimaq: batch: the callback URL must be an absolute http or https URL")

// ErrCallbackHostNotAllowed is returned by NewBatch and SubmitBatch for a
// CallbackURL whose host ProducerConfig's CallbackHosts does not allow.
var ErrCallbackHostNotAllowed = errors.New("zhimaq: batch: the callback URL's host is not one CALLBACK_HOSTS allows")

// batchParallel is how many jobs SubmitBatch and SubmitJSONL submit at once.
const batchParallel = 16

// Batch is a batch being submitted: jobs whose records can be read back
// together, in input order (BatchRecords), counted (BatchStatus) and, with
// a CallbackURL, reported to the producer when they have finished.
//
// Submit the jobs with Submit, from as many goroutines as suits; hand each
// line's record to Add in input order, from one goroutine; then Close.
// SubmitJSONL and Producer.SubmitBatch do all of it.
type Batch struct {
	p  *Producer
	id string
	w  *batches.Writer

	mu     sync.Mutex
	counts BatchCounts
}

// BatchCounts count the lines added to a batch.
type BatchCounts struct {
	// Lines = Accepted + Rejected; Duplicates are among the Accepted.
	Lines, Accepted, Duplicates, Rejected int
}

// NewBatch starts a batch with a new id (b_<UTC time>_<6 random base32
// characters>). Nothing is written to Redis before its first line or its
// Close. It fails only with ErrInvalidCallbackURL or ErrCallbackHostNotAllowed.
func (p *Producer) NewBatch(opts BatchOptions) (*Batch, error) {
	if opts.CallbackURL != "" && !batches.ValidCallbackURL(opts.CallbackURL) {
		return nil, ErrInvalidCallbackURL
	}
	if opts.CallbackURL != "" && !p.callbackHosts.Allow(opts.CallbackURL) {
		return nil, ErrCallbackHostNotAllowed
	}
	now := p.cfg.Now()
	id := batches.NewID(now)
	w := p.batches.Writer(batches.Meta{ID: id, AppID: p.cfg.AppID, CreatedAt: now, CallbackURL: opts.CallbackURL})
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

// Add appends a line to the batch: rec is the line's record, from Submit,
// or a Rejected record (from ParseJob, say), which the batch keeps as it
// is. It sets rec.BatchID to the batch's id. Lines are written in chunks of
// 1,000 in one round trip each; the error is Redis's, and after one every
// later Add and Close fail. Call Add in input order from one goroutine.
func (b *Batch) Add(ctx context.Context, rec *Record) error {
	rec.BatchID = b.id
	b.mu.Lock()
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
// It stops at the first error: reading r, Redis failing, ctx ending, or
// emit's error, which it returns; the lines added before it stay in the batch.
func (b *Batch) SubmitJSONL(ctx context.Context, r io.Reader, emit func(*Record) error) error {
	var readErr error
	items := func(yield func(batchItem) bool) {
		lr := batches.NewLineReader(r, MaxJobBytes)
		for {
			line, _, err := lr.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				readErr = fmt.Errorf("zhimaq: batch %s: read: %w", b.id, err)
				return
			}
			if batches.Blank(line) {
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
// just those. A bad CallbackURL returns ErrInvalidCallbackURL or ErrCallbackHostNotAllowed.
func (p *Producer) SubmitBatch(ctx context.Context, jobs []Job, opts BatchOptions) (string, []*Record, error) {
	b, err := p.NewBatch(opts)
	if err != nil {
		return "", nil, err
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
// in order, then calls emit with each. It returns the first error.
func (b *Batch) submitAll(ctx context.Context, items iter.Seq[batchItem], emit func(*Record) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queue := make(chan *inFlight, batchParallel)
	cut := false // set when items were left unread; read after queue closes
	go func() {
		defer close(queue)
		chain := map[string]*inFlight{} // the last item of each transaction
		for it := range items {
			if ctx.Err() != nil {
				cut = true
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
	if first == nil && cut {
		first = fmt.Errorf("zhimaq: batch %s: %w", b.id, context.Cause(ctx))
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
