package zhimaq_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/redistest"
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

// batchRecords reads every line of a batch of p.
func batchRecords(tb testing.TB, p *zhimaq.Producer, id string) []*zhimaq.Submission {
	tb.Helper()
	seq, err := p.BatchRecords(context.Background(), id)
	if err != nil {
		tb.Fatal(err)
	}
	var out []*zhimaq.Submission
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
	id, recs, err := p.producer.SubmitBatch(ctx, jobs, zhimaq.BatchOptions{}, zhimaq.SubmitOptions{})
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
	check := func(name string, recs []*zhimaq.Submission, wants []want) {
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
		st.Counts[zhimaq.Queued] != 0 || len(st.Counts) != 7 || !st.Complete || st.ETA != 0 || st.FinishedAt.Before(st.CreatedAt) {
		t.Errorf("status = %+v", st)
	}
	check("read back", batchRecords(t, p.producer, id), []want{{"SB_1", zhimaq.Succeeded, false}, {"SB_2", zhimaq.Succeeded, false},
		{"SB_BAD", zhimaq.Rejected, false}, {"SB_1", zhimaq.Succeeded, true}, {"SB_3", zhimaq.Succeeded, false}, {"SB_1", zhimaq.Rejected, false}})

	// The same job in a second batch: read through that batch it names it;
	// its stored record keeps the first.
	id2, recs2, err := p.producer.SubmitBatch(ctx, jobs[:1], zhimaq.BatchOptions{}, zhimaq.SubmitOptions{})
	if err != nil || id2 == id || len(recs2) != 1 || recs2[0].BatchID != id2 || !recs2[0].Duplicate || recs2[0].State != zhimaq.Succeeded {
		t.Fatalf("second batch %s: %+v, %v", id2, recs2, err)
	}
	if got := batchRecords(t, p.producer, id2); len(got) != 1 || got[0].BatchID != id2 || !got[0].Duplicate {
		t.Errorf("second batch read back: %+v", got)
	}
	stored, err := p.producer.Result(ctx, zhimaq.Ref{Method: zhimaq.MethodScoreBriefGet, TransactionID: "SB_1"})
	if err != nil || stored.BatchID != id {
		t.Errorf("stored record: %+v, %v; want batch %s", stored, err, id)
	} else if js, err := json.Marshal(stored); err != nil || !strings.Contains(string(js), `"duplicate":false`) {
		t.Errorf("stored record's JSON %s, %v; want \"duplicate\":false", js, err)
	}
	if st := p.waitBatch(t, id2); st.Total != 1 || st.Finished != 1 {
		t.Errorf("second batch status = %+v", st)
	}
}

func TestSubmitJSONL(t *testing.T) {
	p := startPipeline(t, sandbox.Faults{}, nil)
	ctx := context.Background()
	input := jobLine(scoreJob("JL_1", 600)) + "\n\n  \r\n{not json\n" + jobLine(relationJob("JL_2")) + "\r\n" + jobLine(scoreJob("JL_1", 600))
	b, err := p.producer.NewBatch(zhimaq.BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var emitted []*zhimaq.Submission
	last, err := b.SubmitJSONL(ctx, strings.NewReader(input), zhimaq.SubmitOptions{Emit: func(s *zhimaq.Submission) error { emitted = append(emitted, s); return nil }})
	if err != nil || last != 6 {
		t.Fatalf("SubmitJSONL = line %d, %v; want line 6, nil", last, err)
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
	if got := batchRecords(t, p.producer, b.ID()); len(got) != 4 || got[1].Error == nil || got[1].Error.SubCode != "INVALID_PARAMETER" {
		t.Errorf("read back %+v", got)
	}

	boom := errors.New("stop here")
	b2, _ := p.producer.NewBatch(zhimaq.BatchOptions{})
	if _, err := b2.SubmitJSONL(ctx, strings.NewReader(input), zhimaq.SubmitOptions{Emit: func(*zhimaq.Submission) error { return boom }}); !errors.Is(err, boom) {
		t.Errorf("SubmitJSONL = %v, want emit's error", err)
	}
}

func TestBatchNotFoundAndBadCallback(t *testing.T) {
	p := startPipeline(t, sandbox.Faults{}, nil)
	ctx := context.Background()
	if _, err := p.producer.NewBatch(zhimaq.BatchOptions{CallbackURL: "hook.example.com/x"}); !errors.Is(err, zhimaq.ErrInvalidCallbackURL) {
		t.Errorf("NewBatch with a relative callback = %v", err)
	}
	if _, _, err := p.producer.SubmitBatch(ctx, nil, zhimaq.BatchOptions{CallbackURL: "ftp://x/y"}, zhimaq.SubmitOptions{}); !errors.Is(err, zhimaq.ErrInvalidCallbackURL) {
		t.Errorf("SubmitBatch with an ftp callback = %v", err)
	}
	id, _, err := p.producer.SubmitBatch(ctx, []zhimaq.Job{scoreJob("NF_1", 600)}, zhimaq.BatchOptions{}, zhimaq.SubmitOptions{})
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

// jobLine is j as a line of a JSONL batch.
func jobLine(j zhimaq.Job) string {
	b, err := json.Marshal(j)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// batchProducer is a producer, without workers, whose batches hold at most
// maxLines lines (0: the default).
type batchProducer struct {
	*zhimaq.Producer
	redis *redistest.Server
	rdb   redis.UniversalClient
}

func newBatchProducer(tb testing.TB, maxLines int) batchProducer {
	tb.Helper()
	srv := redistest.New(tb)
	rdb := srv.Client(tb)
	p, err := zhimaq.NewProducer(rdb, zhimaq.ProducerConfig{AppID: zhimatest.AppID, DataKeys: zhimatest.DataKeys,
		Queue: srv.Queue, KeyPrefix: srv.Prefix, MaxBatchLines: maxLines})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return batchProducer{Producer: p, redis: srv, rdb: rdb}
}

// notSubmitted fails unless none of tids has a record: no job was submitted.
func (p batchProducer) notSubmitted(tb testing.TB, tids ...string) {
	tb.Helper()
	for _, tid := range tids {
		if _, err := p.Result(context.Background(), zhimaq.Ref{Method: zhimaq.MethodScoreBriefGet, TransactionID: tid}); !errors.Is(err, zhimaq.ErrNotFound) {
			tb.Errorf("job %s beyond the limit was submitted (Result: %v)", tid, err)
		}
	}
}

func TestBatchLineLimit(t *testing.T) {
	ctx := context.Background()
	tooMany := func(t *testing.T, err error, id string) {
		t.Helper()
		if !errors.Is(err, zhimaq.ErrTooManyLines) || !strings.Contains(err.Error(), "3") || (id != "" && !strings.Contains(err.Error(), id)) {
			t.Errorf("error = %v, want ErrTooManyLines naming batch %q and the limit 3", err, id)
		}
	}
	t.Run("default_is_100000", func(t *testing.T) {
		b, err := newBatchProducer(t, 0).NewBatch(zhimaq.BatchOptions{})
		if err != nil || b.MaxLines() != 100_000 {
			t.Fatalf("MaxLines = %d, %v; want 100000", b.MaxLines(), err)
		}
	})
	t.Run("jsonl_keeps_the_lines_before_the_limit", func(t *testing.T) {
		p := newBatchProducer(t, 3)
		input := jobLine(scoreJob("LL_1", 600)) + "\n{}\n\n" + jobLine(scoreJob("LL_2", 600)) + "\n" + jobLine(scoreJob("LL_3", 600)) + "\n" + jobLine(scoreJob("LL_4", 600)) + "\n"
		b, _ := p.NewBatch(zhimaq.BatchOptions{})
		var emitted []string
		_, err := b.SubmitJSONL(ctx, strings.NewReader(input), zhimaq.SubmitOptions{Emit: func(s *zhimaq.Submission) error { emitted = append(emitted, s.TransactionID); return nil }})
		tooMany(t, err, b.ID())
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if c := b.Counts(); c != (zhimaq.BatchCounts{Lines: 3, Accepted: 2, Rejected: 1}) || strings.Join(emitted, ",") != "LL_1,,LL_2" {
			t.Errorf("counts %+v, emitted %q; want the first 3 lines", c, emitted)
		}
		p.notSubmitted(t, "LL_3", "LL_4")
		st, err := p.BatchStatus(ctx, b.ID())
		if err != nil || st.Lines != 3 || !st.Complete {
			t.Errorf("status %+v, %v; want 3 lines, complete", st, err)
		}
	})
	t.Run("jsonl_of_exactly_the_limit_succeeds", func(t *testing.T) {
		p := newBatchProducer(t, 3)
		b, _ := p.NewBatch(zhimaq.BatchOptions{})
		input := jobLine(scoreJob("LE_1", 600)) + "\n{}\n" + jobLine(scoreJob("LE_2", 600)) + "\n\n  \n"
		if _, err := b.SubmitJSONL(ctx, strings.NewReader(input), zhimaq.SubmitOptions{}); err != nil || b.Counts().Lines != 3 {
			t.Errorf("SubmitJSONL = %v with %d lines; want nil with 3", err, b.Counts().Lines)
		}
	})
	t.Run("submit_batch_beyond_the_limit_submits_nothing", func(t *testing.T) {
		p := newBatchProducer(t, 3)
		jobs := []zhimaq.Job{scoreJob("LB_1", 600), scoreJob("LB_2", 600), scoreJob("LB_3", 600), scoreJob("LB_4", 600)}
		id, recs, err := p.SubmitBatch(ctx, jobs, zhimaq.BatchOptions{}, zhimaq.SubmitOptions{})
		tooMany(t, err, "")
		if id != "" || recs != nil {
			t.Errorf("SubmitBatch = %q, %d records; want none", id, len(recs))
		}
		p.notSubmitted(t, "LB_1", "LB_2", "LB_3", "LB_4")
		if id, recs, err := p.SubmitBatch(ctx, jobs[:3], zhimaq.BatchOptions{}, zhimaq.SubmitOptions{}); err != nil || len(recs) != 3 {
			t.Errorf("SubmitBatch of 3 = %q, %d records, %v; want all 3", id, len(recs), err)
		}
	})
	t.Run("add_refuses_a_line_beyond_the_limit", func(t *testing.T) {
		p := newBatchProducer(t, 3)
		b, _ := p.NewBatch(zhimaq.BatchOptions{})
		for i := range 4 {
			_, rec := zhimaq.ParseJob([]byte("{}"))
			err := b.Add(ctx, &zhimaq.Submission{Record: rec})
			switch {
			case i < 3 && err != nil:
				t.Fatalf("Add %d: %v", i+1, err)
			case i == 3:
				tooMany(t, err, b.ID())
			}
		}
		if c := b.Counts(); c.Lines != 3 {
			t.Errorf("counts %+v, want 3 lines", c)
		}
	})
	t.Run("reserve_refuses_beyond_the_limit_and_add_uses_the_reservations", func(t *testing.T) {
		p := newBatchProducer(t, 3)
		b, _ := p.NewBatch(zhimaq.BatchOptions{})
		for range 3 {
			if err := b.Reserve(); err != nil {
				t.Fatal(err)
			}
		}
		tooMany(t, b.Reserve(), b.ID())
		for i := range 3 {
			_, rec := zhimaq.ParseJob([]byte("{}"))
			if err := b.Add(ctx, &zhimaq.Submission{Record: rec}); err != nil {
				t.Fatalf("Add of reserved line %d: %v", i+1, err)
			}
		}
		_, rec := zhimaq.ParseJob([]byte("{}"))
		tooMany(t, b.Add(ctx, &zhimaq.Submission{Record: rec}), b.ID())
	})
}

func TestRejectedLinesReadBackAsSubmitted(t *testing.T) {
	p := newBatchProducer(t, 0)
	ctx := context.Background()
	input := strings.Join([]string{"{}", "{not json", jobLine(scoreJob("RB_1", 600)), jobLine(scoreJob("RB_BAD", 200)), jobLine(scoreJob("RB_1", 700)),
		`{"method":"zhima.credit.score.brief.get","biz_content":[]}`}, "\n")
	b, _ := p.NewBatch(zhimaq.BatchOptions{})
	var submitted []*zhimaq.Submission
	if _, err := b.SubmitJSONL(ctx, strings.NewReader(input), zhimaq.SubmitOptions{Emit: func(s *zhimaq.Submission) error { submitted = append(submitted, s); return nil }}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := p.BatchStatus(ctx, b.ID())
	if err != nil {
		t.Fatal(err)
	}
	var subCodes []string
	for i, rec := range batchRecords(t, p.Producer, b.ID()) {
		sent := submitted[i]
		if sent.State != zhimaq.Rejected {
			continue
		}
		subCodes = append(subCodes, sent.Error.SubCode)
		// Read back, updated_at is the batch's created_at plus the whole
		// seconds to the rejection.
		if late := sent.UpdatedAt.Sub(rec.UpdatedAt); late < 0 || late >= time.Second || rec.UpdatedAt.Before(st.CreatedAt) {
			t.Errorf("line %d: updated_at %s read back as %s (batch created %s)", i+1, sent.UpdatedAt, rec.UpdatedAt, st.CreatedAt)
		}
		wantRec := *sent.Record // a copy: sent's record stays as submitted
		wantRec.UpdatedAt = st.CreatedAt.Add(sent.UpdatedAt.Sub(st.CreatedAt).Truncate(time.Second))
		want := *sent
		want.Record = &wantRec
		wantJSON, _ := want.MarshalJSON()
		gotJSON, _ := rec.MarshalJSON()
		if string(gotJSON) != string(wantJSON) {
			t.Errorf("line %d read back %s\n            want %s", i+1, gotJSON, wantJSON)
		}
	}
	if strings.Join(subCodes, ",") != "INVALID_PARAMETER,INVALID_PARAMETER,INVALID_PARAMETER,TRANSACTION_ID_REPEAT,INVALID_PARAMETER" {
		t.Errorf("rejected lines' sub_codes %q", subCodes)
	}
}

// BenchmarkSubmitJSONLRejectedLines submits b.N lines of `{}` as one batch
// and reports what each rejected line costs Redis (MEMORY USAGE of the
// batch's keys, per line; target at most 64 bytes) and takes to submit.
func BenchmarkSubmitJSONLRejectedLines(b *testing.B) {
	p := newBatchProducer(b, b.N)
	if p.redis.Embedded {
		b.Skip("needs a real Redis for MEMORY USAGE")
	}
	ctx := context.Background()
	input := strings.Repeat("{}\n", b.N)
	bt, _ := p.NewBatch(zhimaq.BatchOptions{})
	b.ResetTimer()
	if _, err := bt.SubmitJSONL(ctx, strings.NewReader(input), zhimaq.SubmitOptions{}); err != nil {
		b.Fatal(err)
	}
	if err := bt.Close(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if c := bt.Counts(); c.Rejected != b.N {
		b.Fatalf("counts %+v, want %d rejected", c, b.N)
	}
	var used int64
	for _, k := range []string{"batch:" + bt.ID(), "batch:" + bt.ID() + ":lines"} { // the keys of internal/batches
		n, err := p.rdb.MemoryUsage(ctx, p.redis.Prefix+k, 0).Result()
		if err != nil {
			b.Fatal(err)
		}
		used += n
	}
	b.ReportMetric(float64(used)/float64(b.N), "redis-B/line")
}
