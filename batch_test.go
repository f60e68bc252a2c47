package zhimaq_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// waitBatch polls BatchStatus until the batch is done, at most 60s.
func (p *pipeline) waitBatch(tb testing.TB, id string) *zhimaq.BatchStatus {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := p.producer.BatchStatus(context.Background(), id)
		if err != nil {
			tb.Fatal(err)
		}
		if st.Done {
			return st
		}
		if time.Now().After(deadline) {
			tb.Fatalf("batch %s not done after 60s: %+v", id, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// batchRecords reads every record of a batch.
func (p *pipeline) batchRecords(tb testing.TB, id string) []*zhimaq.Record {
	tb.Helper()
	seq, err := p.producer.BatchRecords(context.Background(), id)
	if err != nil {
		tb.Fatal(err)
	}
	var out []*zhimaq.Record
	for rec, err := range seq {
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, rec)
	}
	return out
}

func TestSubmitBatchRunsAndReadsBackInOrder(t *testing.T) {
	p := startPipeline(t, sandbox.Faults{SystemErrorRate: 0.3}, nil)
	ctx := context.Background()
	bad := scoreJob("SB_BAD", 200) // admittance_score below 350
	jobs := []zhimaq.Job{scoreJob("SB_1", 600), relationJob("SB_2"), bad, scoreJob("SB_1", 600), certificationJob("SB_3"), scoreJob("SB_1", 700)}
	id, recs, err := p.producer.SubmitBatch(ctx, jobs, zhimaq.BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(id, "b_") || len(recs) != len(jobs) {
		t.Fatalf("SubmitBatch = %q, %d records", id, len(recs))
	}
	// A duplicate reports its job as it stands, which the workers may
	// already have moved on from queued.
	const accepted zhimaq.State = "accepted (queued, running, retrying or succeeded)"
	type want struct {
		tid   string
		state zhimaq.State
		dup   bool
	}
	check := func(name string, recs []*zhimaq.Record, wants []want) {
		t.Helper()
		if len(recs) != len(wants) {
			t.Fatalf("%s: %d records, want %d", name, len(recs), len(wants))
		}
		for i, w := range wants {
			r := recs[i]
			state := r.State
			if w.state == accepted && slices.Contains([]zhimaq.State{zhimaq.Queued, zhimaq.Running, zhimaq.Retrying, zhimaq.Succeeded}, state) {
				state = accepted
			}
			if r.TransactionID != w.tid || state != w.state || r.Duplicate != w.dup || r.BatchID != id {
				t.Errorf("%s: record %d = %s %s dup %v batch %s; want %s %s dup %v batch %s", name, i+1,
					r.TransactionID, r.State, r.Duplicate, r.BatchID, w.tid, w.state, w.dup, id)
			}
		}
	}
	check("submitted", recs, []want{{"SB_1", zhimaq.Queued, false}, {"SB_2", zhimaq.Queued, false}, {"SB_BAD", zhimaq.Rejected, false},
		{"SB_1", accepted, true}, {"SB_3", zhimaq.Queued, false}, {"SB_1", zhimaq.Rejected, false}})

	st := p.waitBatch(t, id)
	if st.Lines != 6 || st.Total != 4 || st.Finished != 4 || st.Counts[zhimaq.Succeeded] != 4 || st.Counts[zhimaq.Rejected] != 2 ||
		st.Counts[zhimaq.Queued] != 0 || len(st.Counts) != 6 || !st.Complete || st.ETA != 0 || st.FinishedAt.Before(st.CreatedAt) {
		t.Errorf("status = %+v", st)
	}
	check("read back", p.batchRecords(t, id), []want{{"SB_1", zhimaq.Succeeded, false}, {"SB_2", zhimaq.Succeeded, false},
		{"SB_BAD", zhimaq.Rejected, false}, {"SB_1", zhimaq.Succeeded, true}, {"SB_3", zhimaq.Succeeded, false}, {"SB_1", zhimaq.Rejected, false}})

	// The same job in a second batch: read through that batch it names it;
	// its stored record keeps the first.
	id2, recs2, err := p.producer.SubmitBatch(ctx, jobs[:1], zhimaq.BatchOptions{})
	if err != nil || id2 == id || len(recs2) != 1 || recs2[0].BatchID != id2 || !recs2[0].Duplicate || recs2[0].State != zhimaq.Succeeded {
		t.Fatalf("second batch %s: %+v, %v", id2, recs2, err)
	}
	if got := p.batchRecords(t, id2); len(got) != 1 || got[0].BatchID != id2 || !got[0].Duplicate {
		t.Errorf("second batch read back: %+v", got)
	}
	stored, err := p.producer.Result(ctx, zhimaq.Ref{Method: zhimaq.MethodScoreBriefGet, TransactionID: "SB_1"})
	if err != nil || stored.BatchID != id || stored.Duplicate {
		t.Errorf("stored record: %+v, %v; want batch %s", stored, err, id)
	}
	if st := p.waitBatch(t, id2); st.Total != 1 || st.Finished != 1 {
		t.Errorf("second batch status = %+v", st)
	}
}

func TestSubmitJSONL(t *testing.T) {
	p := startPipeline(t, sandbox.Faults{}, nil)
	ctx := context.Background()
	line := func(j zhimaq.Job) string { b, _ := json.Marshal(j); return string(b) }
	input := line(scoreJob("JL_1", 600)) + "\n\n  \r\n{not json\n" + line(relationJob("JL_2")) + "\r\n" + line(scoreJob("JL_1", 600))
	b, err := p.producer.NewBatch(zhimaq.BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var emitted []*zhimaq.Record
	if err := b.SubmitJSONL(ctx, strings.NewReader(input), func(r *zhimaq.Record) error { emitted = append(emitted, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if c := b.Counts(); c != (zhimaq.BatchCounts{Lines: 4, Accepted: 3, Duplicates: 1, Rejected: 1}) {
		t.Errorf("counts = %+v", c)
	}
	if len(emitted) != 4 || emitted[0].TransactionID != "JL_1" || emitted[1].State != zhimaq.Rejected || emitted[2].TransactionID != "JL_2" ||
		!emitted[3].Duplicate || emitted[1].BatchID != b.ID() {
		t.Errorf("emitted %+v", emitted)
	}
	p.waitBatch(t, b.ID())
	if got := p.batchRecords(t, b.ID()); len(got) != 4 || got[1].Error == nil || got[1].Error.SubCode != "INVALID_PARAMETER" {
		t.Errorf("read back %+v", got)
	}

	boom := errors.New("stop here")
	b2, _ := p.producer.NewBatch(zhimaq.BatchOptions{})
	if err := b2.SubmitJSONL(ctx, strings.NewReader(input), func(*zhimaq.Record) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("SubmitJSONL = %v, want emit's error", err)
	}
}

func TestBatchNotFoundAndBadCallback(t *testing.T) {
	p := startPipeline(t, sandbox.Faults{}, nil)
	ctx := context.Background()
	if _, err := p.producer.NewBatch(zhimaq.BatchOptions{CallbackURL: "hook.example.com/x"}); !errors.Is(err, zhimaq.ErrInvalidCallbackURL) {
		t.Errorf("NewBatch with a relative callback = %v", err)
	}
	if _, _, err := p.producer.SubmitBatch(ctx, nil, zhimaq.BatchOptions{CallbackURL: "ftp://x/y"}); !errors.Is(err, zhimaq.ErrInvalidCallbackURL) {
		t.Errorf("SubmitBatch with an ftp callback = %v", err)
	}
	id, _, err := p.producer.SubmitBatch(ctx, []zhimaq.Job{scoreJob("NF_1", 600)}, zhimaq.BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := zhimaq.NewProducer(p.rdb, zhimaq.ProducerConfig{AppID: "2021000000000999", DataKeys: zhimatest.DataKeys,
		Queue: p.redis.Queue, KeyPrefix: p.redis.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for name, read := range map[string]func() error{
		"unknown":         func() error { _, err := p.producer.BatchStatus(ctx, "b_20260101T000000Z_AAAAAA"); return err },
		"malformed":       func() error { _, err := p.producer.BatchRecords(ctx, "b_x:*"); return err },
		"another_apps":    func() error { _, err := other.BatchStatus(ctx, id); return err },
		"another_apps_rs": func() error { _, err := other.BatchRecords(ctx, id); return err },
	} {
		if err := read(); !errors.Is(err, zhimaq.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
}
