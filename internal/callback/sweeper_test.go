package callback

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/zhimaq/zhimaq/internal/batches"
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
	id := batches.NewID(time.Now())
	writeCallbackBatch(tb, f, id, "https://example.com/hook", tids...)
	return id
}

// writeCallbackBatch writes batch id, closed, with callbackURL as its
// metadata is to hold it, over the jobs tids and one rejected line.
func writeCallbackBatch(tb testing.TB, f *fixture, id, callbackURL string, tids ...string) {
	tb.Helper()
	ctx := context.Background()
	w := f.store.Writer(batches.Meta{ID: id, AppID: testApp, CreatedAt: time.Now(), CallbackURL: callbackURL})
	for _, tid := range tids {
		if err := w.Add(ctx, batches.Line{Method: testMethod, TransactionID: tid}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Add(ctx, batches.Line{Rejected: rejected("name: bad")}); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		tb.Fatal(err)
	}
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
	if m.Cursor != 1 {
		t.Errorf("cursor = %d, want 1 (S1 finished)", m.Cursor)
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
	if n := f.rdb.ZCard(ctx, f.keys.BatchCallbacks()).Val(); n != 0 {
		t.Errorf("%d batches still pending", n)
	}
	info, err := asynq.NewInspectorFromRedisClient(f.rdb).GetTaskInfo(f.srv.Queue, TaskType+":"+id)
	if err != nil {
		t.Fatal(err)
	}
	var p callbackPayload
	var sum Summary
	if err := json.Unmarshal(info.Payload, &p); err != nil || json.Unmarshal(p.Body, &sum) != nil {
		t.Fatalf("payload %s: %v", info.Payload, err)
	}
	want := Summary{BatchID: id, Lines: 4, Succeeded: 2, Failed: 1, Rejected: 1, FinishedAt: at.Add(2 * time.Second)}
	if sum != want || p.URL != "https://example.com/hook" || info.MaxRetry != MaxRetry {
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
	f.rdb.Del(ctx, f.keys.Batch(id), f.keys.BatchLines(id))
	if sent, err := sweeperFor(t, f).Sweep(ctx); err != nil || sent != 0 {
		t.Fatalf("Sweep = %d, %v", sent, err)
	}
	if n := f.rdb.ZCard(ctx, f.keys.BatchCallbacks()).Val(); n != 0 {
		t.Errorf("%d batches still pending after their batch expired", n)
	}
}

// redisText is every key and value under f's prefix and asynq queue.
func redisText(tb testing.TB, f *fixture) string {
	tb.Helper()
	ctx := context.Background()
	var all strings.Builder
	for _, k := range f.srv.Keys(tb, f.srv.Prefix+"*", "asynq:{"+f.srv.Queue+"}:*") {
		var v any
		var err error
		switch typ := f.rdb.Type(ctx, k).Val(); typ {
		case "string":
			v, err = f.rdb.Get(ctx, k).Result()
		case "hash":
			v, err = f.rdb.HGetAll(ctx, k).Result()
		case "list":
			v, err = f.rdb.LRange(ctx, k, 0, -1).Result()
		case "set":
			v, err = f.rdb.SMembers(ctx, k).Result()
		case "zset":
			v, err = f.rdb.ZRange(ctx, k, 0, -1).Result()
		default:
			tb.Fatalf("key %s has type %s", k, typ)
		}
		if err != nil {
			tb.Fatal(err)
		}
		fmt.Fprintf(&all, "%s=%v\n", k, v)
	}
	return all.String()
}

// TestSealedCallbackURLStaysSealedInRedis: a callback URL sealed at
// submission stays sealed in the batch and in the callback task, and the
// worker that holds the key delivers it, token included.
func TestSealedCallbackURLStaysSealedInRedis(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	var gotQuery atomic.Value
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { gotQuery.Store(r.URL.RawQuery) }))
	t.Cleanup(recv.Close)
	const token = "tok-in-redis-0123456789"
	hookURL := recv.URL + "/hook/lender-42?token=" + token
	keys := keyring(t, dataKey(t, "k1"))
	id := batches.NewID(time.Now())
	stored := sealed(t, keys, id, hookURL)
	f.putRecord(t, "SEALED1", results.Succeeded, "", time.Now())
	writeCallbackBatch(t, f, id, stored, "SEALED1")

	if sent, err := sweeperFor(t, f).Sweep(ctx); err != nil || sent != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", sent, err)
	}
	info, err := asynq.NewInspectorFromRedisClient(f.rdb).GetTaskInfo(f.srv.Queue, TaskType+":"+id)
	if err != nil {
		t.Fatal(err)
	}
	var p callbackPayload
	if err := json.Unmarshal(info.Payload, &p); err != nil || p.URL != stored {
		t.Fatalf("the task carries %q (%v), want the sealed URL as the batch holds it", p.URL, err)
	}
	dump := redisText(t, f)
	if !strings.Contains(dump, stored) {
		t.Fatalf("the sealed URL is not in Redis:\n%s", dump)
	}
	for _, clear := range []string{token, "lender-42", recv.Listener.Addr().String()} {
		if strings.Contains(dump, clear) {
			t.Errorf("Redis holds %q in clear:\n%s", clear, dump)
		}
	}
	d := &Deliverer{Secret: secret, Keys: keys, Hosts: mustHosts(t, "127.0.0.1")}
	if err := d.ProcessTask(ctx, asynq.NewTask(TaskType, info.Payload)); err != nil {
		t.Fatalf("ProcessTask = %v", err)
	}
	if gotQuery.Load() != "token="+token {
		t.Errorf("the receiver got query %v, want the token", gotQuery.Load())
	}
}
