package workertest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/results"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/seal"
	"github.com/zhimaq/zhimaq/internal/workertest"
	"github.com/zhimaq/zhimaq/internal/zhima"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// enqueue puts a score job for tx on s's queue, as a producer would.
func enqueue(tb testing.TB, s *workertest.Stack, tx string) *payload.Payload {
	tb.Helper()
	keys, err := seal.Parse(s.Config.DataKeys)
	if err != nil {
		tb.Fatal(err)
	}
	p := &payload.Payload{AppID: zhimatest.AppID, Method: zhima.MethodScoreBriefGet, TransactionID: tx,
		BizContent: zhimatest.ScoreBiz(tx, zhimatest.ResidentID("11010519491231002"), "张三", 650)}
	if err := p.Seal(keys); err != nil {
		tb.Fatal(err)
	}
	task, err := payload.NewTask(p, asynq.Queue(s.Config.Queue))
	if err != nil {
		tb.Fatal(err)
	}
	q := asynq.NewClientFromRedisClient(s.RDB)
	defer q.Close()
	if _, err := q.Enqueue(task); err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestStartRunsAJobOnTheChangedConfig(t *testing.T) {
	s := workertest.Start(t, workertest.Options{Change: func(c *config.Config) { c.WorkerConcurrency = 3 }})
	if s.Config.WorkerConcurrency != 3 || s.Config.Queue != s.Redis.Queue || s.Config.GatewayURL != s.GatewayURL {
		t.Fatalf("config %+v: Change not applied or not on the stack's Redis and gateway", s.Config)
	}
	p := enqueue(t, s, "WT_1")
	store := results.New(s.RDB, s.Config.KeyPrefix, 0)
	var rec *results.Record
	for deadline := time.Now().Add(20 * time.Second); rec == nil || !rec.State.Terminal(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the job never finished; last record %+v", rec)
		}
		rec, _ = store.Get(context.Background(), p.Key())
	}
	if rec.State != results.Succeeded || s.Gateway.Calls(p.Method, p.TransactionID) != 1 {
		t.Fatalf("record %+v after %d calls, want succeeded after 1", rec, s.Gateway.Calls(p.Method, p.TransactionID))
	}
	if logs := s.Logs.String(); !strings.Contains(logs, `"msg":"worker started"`) || !strings.Contains(logs, `"concurrency":3`) {
		t.Errorf("the worker's start-up line is not in Logs:\n%s", logs)
	}
}

func TestCleanupEndsHungCallsFirst(t *testing.T) {
	var start time.Time
	t.Run("hung", func(t *testing.T) {
		s := workertest.Start(t, workertest.Options{Gateway: sandbox.Config{Faults: sandbox.Faults{HangRate: 1}, MaxHang: time.Minute}})
		p := enqueue(t, s, "WT_HUNG")
		for deadline := time.Now().Add(10 * time.Second); s.Gateway.Calls(p.Method, p.TransactionID) == 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the job's call never reached the gateway")
			}
		}
		start = time.Now() // what remains is the stack's cleanup
	})
	took := time.Since(start)
	// Closing the worker first would wait for the hung call until ZHIMA_TIMEOUT (5s) ends it.
	if took > 3*time.Second {
		t.Errorf("the cleanup took %v behind a hung call", took)
	}
}

func TestNoStartBuildsOnly(t *testing.T) {
	s := workertest.Start(t, workertest.Options{NoStart: true, Change: func(c *config.Config) { c.HTTPAddr = "127.0.0.1:0" }})
	if s.Worker == nil || s.Worker.Addr() != "" {
		t.Fatalf("worker %v listens at %q before Start", s.Worker, s.Worker.Addr())
	}
	if err := s.Worker.Start(); err != nil {
		t.Fatal(err)
	}
	if s.Worker.Addr() == "" {
		t.Error("no listener after Start")
	}
}
