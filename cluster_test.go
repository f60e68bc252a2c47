package zhimaq_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/clustertest"
	"github.com/zhimaq/zhimaq/internal/redistest"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/worker"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// TestJobsRunOnACluster: jobs submitted one by one and along the batch
// path, through a Redis Cluster (REDIS_URL=redis-cluster://), run on a
// worker that shares it, each billed once, their records read back
// across every slot.
func TestJobsRunOnACluster(t *testing.T) {
	srv := clustertest.New(t)
	gw, url := zhimatest.StartGateway(t, sandbox.Config{Seed: 9, Faults: sandbox.Faults{SystemErrorRate: 0.1}})
	cfg := zhimatest.WorkerConfig(t, redistest.New(t), gw, url)
	cfg.RedisURL, cfg.Queue, cfg.KeyPrefix, cfg.QueueShards = srv.URL, srv.Queue, srv.Prefix, 3
	w, err := worker.New(worker.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close(); w.Close() })
	rdb := srv.Client(t)
	p, err := zhimaq.NewProducer(rdb, zhimaq.ProducerConfig{AppID: zhimatest.AppID, DataKeys: cfg.DataKeys, Queue: cfg.Queue, KeyPrefix: cfg.KeyPrefix,
		QueueShards: cfg.QueueShards})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	const n = 60
	var jobs []zhimaq.Job
	var refs []zhimaq.Ref
	for i := range n {
		jobs = append(jobs, scoreJob(fmt.Sprintf("CLUSTER_%03d", i), 600))
		refs = append(refs, zhimaq.Ref{Method: zhimaq.MethodScoreBriefGet, TransactionID: fmt.Sprintf("CLUSTER_%03d", i)})
	}
	for _, j := range jobs[:n/2] {
		if sub, err := p.Submit(ctx, j); err != nil || sub.State != zhimaq.Queued {
			t.Fatalf("submit: %+v, %v", sub, err)
		}
	}
	if _, err := p.SubmitJobs(ctx, jobs[n/2:], zhimaq.SubmitOptions{Emit: func(s *zhimaq.Submission) error {
		if s.State != zhimaq.Queued {
			return fmt.Errorf("%s: %s %+v", s.TransactionID, s.State, s.Error)
		}
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	// A batch, its lines and its callback bookkeeping span slots too.
	b, err := p.NewBatch(zhimaq.BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.SubmitJobs(ctx, jobs[:5], zhimaq.SubmitOptions{Emit: func(s *zhimaq.Submission) error {
		if !s.Duplicate {
			return fmt.Errorf("batch line %s: %+v, want a duplicate", s.TransactionID, s)
		}
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// A resubmission is a duplicate, and calls the gateway no more.
	if sub, err := p.Submit(ctx, jobs[0]); err != nil || !sub.Duplicate {
		t.Fatalf("resubmit: %+v, %v", sub, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	recs, err := p.Wait(wctx, refs, zhimaq.WaitOptions{Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if rec.State != zhimaq.Succeeded {
			t.Fatalf("%s: %s %+v", rec.TransactionID, rec.State, rec.Error)
		}
	}
	st, err := p.BatchStatus(ctx, b.ID())
	if err != nil || st.Lines != 5 || !st.Done || st.Counts[zhimaq.Succeeded] != 5 {
		t.Fatalf("batch status %+v, %v", st, err)
	}
	// The jobs were spread over the three shards' queues.
	queues, err := rdb.SMembers(ctx, "asynq:queues").Result()
	if err != nil {
		t.Fatal(err)
	}
	shards := 0
	for _, q := range queues {
		if q == cfg.Queue || strings.HasPrefix(q, cfg.Queue+":"+zhimatest.AppID+":") {
			shards++
		}
	}
	if shards != 3 {
		t.Errorf("jobs went to %d of the 3 shards' queues (%v)", shards, queues)
	}
	if st := gw.Stats(); st.Billed != n {
		t.Fatalf("billed %d calls for %d jobs", st.Billed, n)
	}
}
