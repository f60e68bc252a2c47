package batches

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"time"

	"github.com/zhimaq/zhimaq/internal/idempotency"
	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/results"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// readChunk is how many lines Entries reads at once: one LRANGE and one
// MGET of the records, two round trips per chunk.
const readChunk = 1000

// Entry is one line of a batch with the record it stands for.
type Entry struct {
	// Index is the line's 0-based position in the batch.
	Index int
	Line  Line
	// Record is the line's record, never nil: a rejected line's own record
	// (its updated_at to the whole second after created_at, see Line), or
	// the job's record as it stands (Line says whether this line was a
	// duplicate). The record of a job that has expired from the results
	// store (a duplicate of a job from an older batch can outlive it) comes
	// back failed, with error source "local" saying so.
	Record *results.Record
}

// Expired is the Msg of the error of a record that Entries makes up for a
// job whose record has expired.
const Expired = "the job's record has expired (RESULT_TTL)"

// Entries yields m's lines from index from on, in order, with their records.
// It stops at the first error, which it yields with a zero Entry: Redis
// failing, or a corrupt line or record.
func (s *Store) Entries(ctx context.Context, m *Meta, from int) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		for start := from; ; start += readChunk {
			lines, err := s.lines(ctx, m, start, readChunk)
			if err != nil {
				yield(Entry{}, err)
				return
			}
			if len(lines) == 0 {
				return
			}
			recs, err := s.records(ctx, m, lines)
			if err != nil {
				yield(Entry{}, err)
				return
			}
			for i, l := range lines {
				if !yield(Entry{Index: start + i, Line: l, Record: recs[i]}, nil) {
					return
				}
			}
			if len(lines) < readChunk {
				return
			}
		}
	}
}

// records resolves lines to their records in one MGET round trip.
func (s *Store) records(ctx context.Context, m *Meta, lines []Line) ([]*results.Record, error) {
	var keys []idempotency.Key
	for _, l := range lines {
		if l.Rejected == nil {
			keys = append(keys, idempotency.Key{AppID: cmp.Or(l.AppID, m.AppID), Method: l.Method, TransactionID: l.TransactionID})
		}
	}
	got, err := s.results.GetMany(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("batches: read records of %s: %w", m.ID, err)
	}
	out := make([]*results.Record, len(lines))
	j := 0
	for i, l := range lines {
		var rec results.Record
		switch {
		case l.Rejected != nil:
			rec = *l.Rejected
		case got[j] != nil:
			rec = *got[j]
			j++
		default:
			j++
			rec = results.Record{Method: l.Method, TransactionID: l.TransactionID, State: results.Failed, UpdatedAt: m.CreatedAt,
				Error: payload.ErrorInfo(zhima.LocalFailure(l.Method, Expired))}
		}
		out[i] = &rec
	}
	return out, nil
}

// Tally counts a batch's lines by where their jobs stand.
type Tally struct {
	// Lines is how many lines were read.
	Lines int
	// Counts holds every state, zero or not: rejected lines under
	// Rejected, accepted lines under their job's state.
	Counts map[results.State]int
	// Total is the accepted lines; Finished, those whose job has
	// succeeded or failed.
	Total, Finished int
	// LastUpdate is the latest UpdatedAt of the records read.
	LastUpdate time.Time
	// Apps counts the accepted lines by their job's app.
	Apps map[string]int
}

// NewTally returns an empty Tally with every state in Counts.
func NewTally() Tally {
	c := map[results.State]int{}
	for _, st := range results.States {
		c[st] = 0
	}
	return Tally{Counts: c, Apps: map[string]int{}}
}

// Add counts one line's record.
func (t *Tally) Add(rec *results.Record) {
	t.Lines++
	t.Counts[rec.State]++
	if rec.State != results.Rejected {
		t.Total++
		t.Apps[rec.AppID]++
		if rec.State.Terminal() {
			t.Finished++
		}
	}
	if rec.UpdatedAt.After(t.LastUpdate) {
		t.LastUpdate = rec.UpdatedAt
	}
}

// Tally reads every line of m and counts them: two round trips per 1,000
// lines.
func (s *Store) Tally(ctx context.Context, m *Meta) (Tally, error) {
	t := NewTally()
	for e, err := range s.Entries(ctx, m, 0) {
		if err != nil {
			return t, err
		}
		t.Add(e.Record)
	}
	return t, nil
}
