package zhimaq_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// TestSubmitWhenRedisIsDown: with Redis unreachable, the first line's job
// is rejected locally once its patience runs out, and the submission stops
// with ErrRedisUnreachable before the later lines.
func TestSubmitWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	p, err := zhimaq.NewProducer(rdb, zhimaq.ProducerConfig{AppID: zhimatest.AppID, DataKeys: zhimatest.DataKeys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	var jobs []zhimaq.Job
	for i := range 1000 { // more than a submission reads ahead
		jobs = append(jobs, scoreJob(fmt.Sprintf("DOWN%03d", i), 600))
	}
	for _, patience := range []time.Duration{-1, 300 * time.Millisecond} {
		t.Run(fmt.Sprintf("patience_%v", patience), func(t *testing.T) {
			var subs []*zhimaq.Submission
			started := time.Now()
			last, err := p.SubmitJobs(context.Background(), jobs, zhimaq.SubmitOptions{Parallel: 2, RedisPatience: patience,
				Emit: func(s *zhimaq.Submission) error { subs = append(subs, s); return nil }})
			if !errors.Is(err, zhimaq.ErrRedisUnreachable) || !strings.Contains(err.Error(), "connection refused") {
				t.Fatalf("SubmitJobs = %v, want ErrRedisUnreachable naming Redis's error", err)
			}
			if len(subs) == 0 || len(subs) != last || last >= len(jobs) {
				t.Fatalf("%d submissions, last line %d, of %d jobs: want it to stop early with a record per line taken up", len(subs), last, len(jobs))
			}
			for i, s := range subs {
				if s.State != zhimaq.Rejected || s.Error == nil || s.Error.Source != "local" || s.TransactionID != fmt.Sprintf("DOWN%03d", i) {
					t.Errorf("line %d: %+v, error %+v; want rejected locally, naming its transaction", i+1, s.Record, s.Error)
				}
			}
			if patience > 0 && time.Since(started) < patience {
				t.Errorf("gave up after %v, before the patience of %v", time.Since(started), patience)
			}
		})
	}
}

// TestSubmitJobsOutsideABatch: jobs submitted without a batch come back in
// order, a repeat of the same job (same parameters) as a duplicate of the
// first, a conflicting one rejected, and no line names a batch.
func TestSubmitJobsOutsideABatch(t *testing.T) {
	t.Parallel()
	p := newBatchProducer(t, 0)
	jobs := []zhimaq.Job{scoreJob("SJ1", 600), scoreJob("SJ2", 600), scoreJob("SJ1", 600), scoreJob("SJ2", 700), relationJob("SJ3")}
	var subs []*zhimaq.Submission
	last, err := p.SubmitJobs(context.Background(), jobs, zhimaq.SubmitOptions{Parallel: 4,
		Emit: func(s *zhimaq.Submission) error { subs = append(subs, s); return nil }})
	if err != nil || last != len(jobs) || len(subs) != len(jobs) {
		t.Fatalf("SubmitJobs = %d, %v with %d submissions", last, err, len(subs))
	}
	wants := []struct {
		tid       string
		state     zhimaq.State
		duplicate bool
	}{{"SJ1", zhimaq.Queued, false}, {"SJ2", zhimaq.Queued, false}, {"SJ1", zhimaq.Queued, true}, {"SJ2", zhimaq.Rejected, false}, {"SJ3", zhimaq.Queued, false}}
	for i, w := range wants {
		s := subs[i]
		if s.TransactionID != w.tid || s.State != w.state || s.Duplicate != w.duplicate || s.BatchID != "" {
			t.Errorf("line %d: %s %s duplicate %v batch %q, want %s %s duplicate %v outside a batch", i+1, s.TransactionID, s.State, s.Duplicate, s.BatchID, w.tid, w.state, w.duplicate)
		}
	}
	line, err := subs[2].MarshalJSON()
	if err != nil || !strings.Contains(string(line), `"duplicate":true`) {
		t.Errorf("duplicate's line %s (%v) does not say so", line, err)
	}
	stored, err := p.Result(context.Background(), zhimaq.Ref{Method: zhimaq.MethodScoreBriefGet, TransactionID: "SJ1"})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := stored.MarshalJSON(); !strings.Contains(string(b), `"duplicate":false`) {
		t.Errorf("stored record %s: the duplicate is the submission's, not the record's", b)
	}
}

// TestSubmitStopsAtEmitsError: Emit's error stops the submission and is
// returned; nothing is emitted after it.
func TestSubmitStopsAtEmitsError(t *testing.T) {
	t.Parallel()
	p := newBatchProducer(t, 0)
	var jobs []zhimaq.Job
	for i := range 50 {
		jobs = append(jobs, scoreJob(fmt.Sprintf("EM%02d", i), 600))
	}
	full := errors.New("output full")
	emitted := 0
	_, err := p.SubmitJobs(context.Background(), jobs, zhimaq.SubmitOptions{Emit: func(*zhimaq.Submission) error {
		if emitted++; emitted == 3 {
			return full
		}
		return nil
	}})
	if !errors.Is(err, full) || emitted != 3 {
		t.Errorf("SubmitJobs = %v after %d emits, want Emit's error after 3", err, emitted)
	}
}

// TestTheEarlierLineOfATransactionCounts: lines of one transaction spread
// over many pipelines, with an emitter slow enough that the engine must
// send chunks early, still count in input order: the first line of each
// transaction is accepted, a later one with its parameters is a
// duplicate, one with others is refused.
func TestTheEarlierLineOfATransactionCounts(t *testing.T) {
	t.Parallel()
	p := newBatchProducer(t, 0)
	const txs, lines = 7, 700
	var jobs []zhimaq.Job
	for i := range lines {
		score := 600
		if i >= txs && i%3 == 0 {
			score = 700 // other parameters than the transaction's first line
		}
		jobs = append(jobs, scoreJob(fmt.Sprintf("ORD%d", i%txs), score))
	}
	var subs []*zhimaq.Submission
	last, err := p.SubmitJobs(context.Background(), jobs, zhimaq.SubmitOptions{Parallel: 1, Emit: func(s *zhimaq.Submission) error {
		if len(subs) < 100 {
			time.Sleep(time.Millisecond) // the emitter lags: the engine's buffer fills
		}
		subs = append(subs, s)
		return nil
	}})
	if err != nil || last != lines || len(subs) != lines {
		t.Fatalf("SubmitJobs = %d, %v with %d submissions", last, err, len(subs))
	}
	for i, s := range subs {
		first, same := i < txs, i < txs || i%3 != 0
		switch {
		case s.TransactionID != fmt.Sprintf("ORD%d", i%txs):
			t.Fatalf("line %d is for %s", i+1, s.TransactionID)
		case first && (s.State != zhimaq.Queued || s.Duplicate):
			t.Errorf("line %d, the first of its transaction: %s duplicate %v, want accepted", i+1, s.State, s.Duplicate)
		case !first && same && (s.State != zhimaq.Queued || !s.Duplicate):
			t.Errorf("line %d, same parameters: %s duplicate %v, want a duplicate", i+1, s.State, s.Duplicate)
		case !same && (s.State != zhimaq.Rejected || s.Error == nil || s.Error.SubCode != "TRANSACTION_ID_REPEAT"):
			t.Errorf("line %d, other parameters: %s %+v, want refused TRANSACTION_ID_REPEAT", i+1, s.State, s.Error)
		}
	}
}
