package batches

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/zhimaq/zhimaq/internal/results"
)

// sweeperFor returns a sweeper on f's Redis, enqueueing onto the test's queue.
func sweeperFor(tb testing.TB, f *fixture) *Sweeper {
	tb.Helper()
	q := asynq.NewClientFromRedisClient(f.rdb)
	tb.Cleanup(func() { q.Close() })
	return &Sweeper{Store: f.store, Queue: q, QueueName: f.srv.Queue, Interval: 10 * time.Millisecond}
}

// callbackBatch writes a closed batch with a callback over the jobs tids
// and one rejected line.
func callbackBatch(tb testing.TB, f *fixture, tids ...string) string {
	tb.Helper()
	ctx := context.Background()
	id := NewID(time.Now())
	w := f.store.Writer(Meta{ID: id, AppID: testApp, CreatedAt: time.Now(), CallbackURL: "https://example.com/hook"})
	for _, tid := range tids {
		if err := w.Add(ctx, Line{Method: testMethod, TransactionID: tid}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Add(ctx, Line{Rejected: rejected("name: bad")}); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		tb.Fatal(err)
	}
	return id
}

func TestSweeperEnqueuesTheCallbackOnceFinished(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	s := sweeperFor(t, f)
	at := time.Now().UTC().Truncate(time.Second)
	f.putRecord(t, "S1", results.Succeeded, "", at)
	f.putRecord(t, "S2", results.Running, "", at)
	f.putRecord(t, "S3", results.Queued, "", at)
	id := callbackBatch(t, f, "S1", "S2", "S3")

	if sent, err := s.Sweep(ctx); err != nil || sent != 0 {
		t.Fatalf("Sweep while running = %d, %v; want 0", sent, err)
	}
	m, _ := f.store.Meta(ctx, id)
	if m.cursor != 1 {
		t.Errorf("cursor = %d, want 1 (S1 finished)", m.cursor)
	}
	if sent, _ := s.Sweep(ctx); sent != 0 {
		t.Fatal("a batch was checked again before its interval")
	}

	f.putRecord(t, "S2", results.Failed, "", at.Add(time.Second))
	f.putRecord(t, "S3", results.Succeeded, "", at.Add(2*time.Second))
	time.Sleep(20 * time.Millisecond) // the batch's next check is due
	sent, err := s.Sweep(ctx)
	if err != nil || sent != 1 {
		t.Fatalf("Sweep once finished = %d, %v; want 1", sent, err)
	}
	if n := f.rdb.ZCard(ctx, f.store.pendingKey()).Val(); n != 0 {
		t.Errorf("%d batches still pending", n)
	}
	info, err := asynq.NewInspectorFromRedisClient(f.rdb).GetTaskInfo(f.srv.Queue, CallbackTaskType+":"+id)
	if err != nil {
		t.Fatal(err)
	}
	var p callbackPayload
	var sum Summary
	if err := json.Unmarshal(info.Payload, &p); err != nil || json.Unmarshal(p.Body, &sum) != nil {
		t.Fatalf("payload %s: %v", info.Payload, err)
	}
	want := Summary{BatchID: id, Lines: 4, Succeeded: 2, Failed: 1, Rejected: 1, FinishedAt: at.Add(2 * time.Second)}
	if sum != want || p.URL != "https://example.com/hook" || info.MaxRetry != CallbackMaxRetry {
		t.Errorf("summary %+v to %s (max retry %d), want %+v", sum, p.URL, info.MaxRetry, want)
	}
}

func TestSweepersRaceOneCallback(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.putRecord(t, "R1", results.Succeeded, "", time.Now())
	ids := map[string]bool{}
	for range 5 {
		ids[callbackBatch(t, f, "R1")] = true
	}
	const n = 8
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
		start = make(chan struct{})
	)
	for range n {
		s := sweeperFor(t, f) // one client each, as on separate workers
		wg.Go(func() {
			<-start
			sent, err := s.Sweep(context.Background())
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			total += sent
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	if total != len(ids) {
		t.Errorf("%d callbacks enqueued by %d sweepers for %d batches, want one each", total, n, len(ids))
	}
}

func TestSweeperDropsExpiredBatches(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	id := callbackBatch(t, f, "E1")
	f.rdb.Del(ctx, f.store.metaKey(id), f.store.linesKey(id))
	if sent, err := sweeperFor(t, f).Sweep(ctx); err != nil || sent != 0 {
		t.Fatalf("Sweep = %d, %v", sent, err)
	}
	if n := f.rdb.ZCard(ctx, f.store.pendingKey()).Val(); n != 0 {
		t.Errorf("%d batches still pending after their batch expired", n)
	}
}
