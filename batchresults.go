package zhimaq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"time"

	"github.com/zhimaq/zhimaq/internal/batches"
	"github.com/zhimaq/zhimaq/internal/callback"
)

// BatchStatus is where a batch's jobs stand.
type BatchStatus struct {
	// ID is the batch's id.
	ID string
	// Lines is how many lines the batch holds.
	Lines int
	// Counts has every state, zero or not: rejected lines under Rejected,
	// each accepted line under its job's state (a duplicate line counts
	// the state of the job it repeats).
	Counts map[State]int
	// Total is the accepted lines; Finished, those whose job has succeeded
	// or failed.
	Total, Finished int
	// Apps counts the accepted lines by their job's app id.
	Apps map[string]int
	// CreatedAt is when the batch was started.
	CreatedAt time.Time
	// Complete is true once every line is in (the producer closed the batch).
	Complete bool
	// Done is true when the batch is complete and every accepted job has
	// finished.
	Done bool
	// FinishedAt, once Done, is the last change of the last record; zero before.
	FinishedAt time.Time
	// ETA estimates the time left from the rate at which jobs have finished
	// since CreatedAt: 0 once Done, -1 while no job has finished.
	ETA time.Duration
}

// batchMeta reads a batch of this producer's app, or ErrNotFound.
func (p *Producer) batchMeta(ctx context.Context, id string) (*batches.Meta, error) {
	m, err := p.batches.Meta(ctx, id)
	switch {
	case errors.Is(err, batches.ErrNotFound) && !batches.ValidID(id):
		return nil, fmt.Errorf("zhimaq: batch: %w (not a batch id)", ErrNotFound)
	case errors.Is(err, batches.ErrNotFound):
		return nil, fmt.Errorf("zhimaq: batch %s: %w", id, ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("zhimaq: batch %s: %w", id, err)
	case !p.serves(m.AppID):
		return nil, fmt.Errorf("zhimaq: batch %s: %w", id, ErrNotFound) // another deployment's
	}
	return m, nil
}

// BatchStatus counts the batch's lines by state. It reads every record of
// the batch: two round trips per 1,000 lines. It returns an error wrapping
// ErrNotFound for a batch that does not exist (or has expired, or is
// another app's), and Redis's errors.
func (p *Producer) BatchStatus(ctx context.Context, id string) (*BatchStatus, error) {
	m, err := p.batchMeta(ctx, id)
	if err != nil {
		return nil, err
	}
	t, err := p.batches.Tally(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("zhimaq: batch status: %w", err)
	}
	st := &BatchStatus{ID: m.ID, Lines: t.Lines, Counts: make(map[State]int, len(t.Counts)), Total: t.Total, Finished: t.Finished,
		Apps: t.Apps, CreatedAt: m.CreatedAt, Complete: m.Complete, ETA: -1}
	for s, n := range t.Counts {
		st.Counts[State(s)] = n
	}
	st.Done = m.Complete && t.Finished == t.Total
	switch {
	case st.Done:
		st.ETA, st.FinishedAt = 0, t.LastUpdate
		if st.FinishedAt.IsZero() {
			st.FinishedAt = m.CreatedAt
		}
	case t.Finished > 0:
		if elapsed := p.cfg.Now().Sub(m.CreatedAt); elapsed > 0 {
			st.ETA = time.Duration(float64(elapsed) * float64(t.Total-t.Finished) / float64(t.Finished))
		}
	}
	return st, nil
}

// BatchRecords returns an iterator over the batch's lines, in input order,
// read 1,000 at a time (two round trips each): each line's submission, with
// a rejected line's record as it was and an accepted line's job record as
// it stands now, this batch's id and whether the line was a duplicate. A
// job whose record has expired comes back failed, with error source
// "local" and msg saying so.
//
// The error is ErrNotFound (wrapped) for a batch that does not exist, or
// Redis's; the iterator yields Redis's errors, or a corrupt record's, and
// then stops.
func (p *Producer) BatchRecords(ctx context.Context, id string) (iter.Seq2[*Submission, error], error) {
	m, err := p.batchMeta(ctx, id)
	if err != nil {
		return nil, err
	}
	return func(yield func(*Submission, error) bool) {
		for e, err := range p.batches.Entries(ctx, m, 0) {
			if err != nil {
				yield(nil, fmt.Errorf("zhimaq: batch records: %w", err))
				return
			}
			if !yield(&Submission{Record: recordOf(e.Record), Duplicate: e.Line.Duplicate, BatchID: m.ID}, nil) {
				return
			}
		}
	}, nil
}

// CallbackSummary is the JSON body a worker POSTs to a batch's CallbackURL
// once the batch is complete and every accepted job has finished:
//
//	{"batch_id":"b_…","lines":1000,"succeeded":980,"failed":12,"rejected":8,"finished_at":"<RFC 3339>"}
//
// Delivery is at least once: a receiver should treat a repeated batch_id
// as the same news.
type CallbackSummary = callback.Summary

// CallbackSignatureHeader carries a callback's signature:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under CALLBACK_SECRET>".
const CallbackSignatureHeader = callback.SignatureHeader

// ErrBadSignature is returned, wrapped with the reason, by VerifyCallback
// and ReadCallback for a callback that is not signed with the secret, or
// whose signature is older than the tolerance.
var ErrBadSignature = callback.ErrBadSignature

// VerifyCallback checks a callback's CallbackSignatureHeader value against
// its body, exactly as received: one of its v1 signatures must be the
// HMAC-SHA256 of "t.body" under secret (compared in constant time), and t
// within tolerance of the local clock (0 means 5 minutes) so an old
// callback cannot be replayed. Errors wrap ErrBadSignature.
func VerifyCallback(secret, header string, body []byte, tolerance time.Duration) error {
	return callback.Verify([]byte(secret), header, body, time.Now(), tolerance)
}

// maxCallbackBytes bounds the body ReadCallback reads.
const maxCallbackBytes = 64 << 10

// ReadCallback reads a callback request's body (at most 64 KiB), verifies
// its signature with VerifyCallback and decodes the summary. Errors wrap
// ErrBadSignature when the signature does not verify.
func ReadCallback(r *http.Request, secret string, tolerance time.Duration) (*CallbackSummary, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxCallbackBytes+1))
	if err != nil {
		return nil, fmt.Errorf("zhimaq: read callback: %w", err)
	}
	if len(body) > maxCallbackBytes {
		return nil, fmt.Errorf("zhimaq: read callback: the body is larger than %d bytes", maxCallbackBytes)
	}
	if err := VerifyCallback(secret, r.Header.Get(CallbackSignatureHeader), body, tolerance); err != nil {
		return nil, fmt.Errorf("zhimaq: read callback: %w", err)
	}
	var s CallbackSummary
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("zhimaq: read callback: the body is not a summary: %w", err)
	}
	return &s, nil
}
