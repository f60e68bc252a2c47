package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/zhimaq/zhimaq/internal/batches"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/keyspace"
	"github.com/zhimaq/zhimaq/internal/metrics"
	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/results"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/seal"
	"github.com/zhimaq/zhimaq/internal/worker"
	"github.com/zhimaq/zhimaq/internal/workertest"
	"github.com/zhimaq/zhimaq/internal/zhima"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// apiToken passes API_TOKENS' rules; the stub APIs below never check it.
const apiToken = "5f0c2a9e7b41d8e6a3c9b0f27d14e8a6"

// start runs a worker for a test (workertest.Start) against a gateway with
// faults, whose hung calls last up to a minute.
func start(tb testing.TB, faults sandbox.Faults, opts workertest.Options) *workertest.Stack {
	tb.Helper()
	opts.Gateway = sandbox.Config{Faults: faults, MaxHang: time.Minute}
	return workertest.Start(tb, opts)
}

// enqueue puts a job for transaction tx on the worker's queue, as a
// producer would, sealed with keys, with asynq's MaxRetry maxRetry.
func enqueue(tb testing.TB, s *workertest.Stack, tx string, keys *seal.Keyring, maxRetry int) *payload.Payload {
	tb.Helper()
	p := &payload.Payload{AppID: zhimatest.AppID, Method: zhima.MethodScoreBriefGet, TransactionID: tx, BizContent: json.RawMessage(
		`{"transaction_id":"` + tx + `","product_code":"w1010100000000002733","cert_type":"IDENTITY_CARD","cert_no":"11010519491231002X","name":"张三","admittance_score":650}`)}
	if err := p.Seal(keys); err != nil {
		tb.Fatal(err)
	}
	task, err := payload.NewTask(p, asynq.Queue(s.Config.Queue), asynq.MaxRetry(maxRetry))
	if err != nil {
		tb.Fatal(err)
	}
	q := asynq.NewClientFromRedisClient(s.RDB)
	if _, err := q.Enqueue(task); err != nil {
		tb.Fatal(err)
	}
	return p
}

// waitRecord polls p's record until done says so, for up to 20s.
func waitRecord(tb testing.TB, s *workertest.Stack, p *payload.Payload, done func(*results.Record) bool) *results.Record {
	tb.Helper()
	store := results.New(s.RDB, s.Config.KeyPrefix, 0)
	var rec *results.Record
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var err error
		if rec, err = store.Get(context.Background(), p.Key()); err == nil && done(rec) {
			return rec
		}
	}
	tb.Fatalf("record of %s never came to the state wanted; last %+v", p.TransactionID, rec)
	return nil
}

func taskInfo(tb testing.TB, s *workertest.Stack, p *payload.Payload) (*asynq.TaskInfo, error) {
	tb.Helper()
	return asynq.NewInspectorFromRedisClient(s.RDB).GetTaskInfo(s.Config.Queue, payload.TaskID(p.Key()))
}

func dataKeys(tb testing.TB, s string) *seal.Keyring {
	tb.Helper()
	keys, err := seal.Parse(s)
	if err != nil {
		tb.Fatal(err)
	}
	return keys
}

func get(tb testing.TB, url string) (int, string) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// stubAPI is an APIFunc whose handler counts a de-duplication hit per
// request in the metrics it is given, and whose closer records what the
// worker had stopped and what it had not when it closed it.
type stubAPI struct {
	built  atomic.Int32
	closed atomic.Int32
	addr   func() string // the worker's listener

	listenerUp bool  // at Close: the listener still took connections
	redisErr   error // at Close: the worker's Redis answered PING with this
}

func (s *stubAPI) build(rdb redis.UniversalClient, _ config.Config, m *metrics.Metrics, _ *zap.Logger, _ func() time.Time) (http.Handler, io.Closer, error) {
	s.built.Add(1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.Dedup(zhima.MethodScoreBriefGet, metrics.DedupDuplicate)
		io.WriteString(w, "stub api "+r.URL.Path)
	})
	return h, closerFunc(func() error {
		s.closed.Add(1)
		if conn, err := net.DialTimeout("tcp", s.addr(), time.Second); err == nil {
			conn.Close()
			s.listenerUp = true
		}
		s.redisErr = rdb.Ping(context.Background()).Err()
		return nil
	}), nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

func TestWorkerServesTheAPIItIsGivenAndStopsInOrder(t *testing.T) {
	stub := new(stubAPI)
	s := start(t, sandbox.Faults{}, workertest.Options{
		Change:  func(c *config.Config) { c.HTTPAddr, c.APITokens = "127.0.0.1:0", []string{apiToken} },
		Worker:  worker.Options{API: stub.build}, // its own Redis: Close closes it
		NoStart: true,
	})
	w := s.Worker
	stub.addr = w.Addr
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	base := "http://" + w.Addr()
	if code, body := get(t, base+"/v1/jobs/x"); code != http.StatusOK || body != "stub api /v1/jobs/x" {
		t.Fatalf("GET /v1/jobs/x: %d %q, want the API's answer", code, body)
	}
	_, body := get(t, base+"/metrics")
	if want := `zhimaq_dedup_hits_total{method="zhima.credit.score.brief.get",outcome="duplicate"} 1`; !strings.Contains(body, want) {
		t.Errorf("/metrics lacks the API's count %q: the API does not share the worker's metrics", want)
	}
	w.Close()
	if stub.built.Load() != 1 || stub.closed.Load() != 1 {
		t.Fatalf("API built %d times, closed %d times; want 1 and 1", stub.built.Load(), stub.closed.Load())
	}
	if stub.listenerUp {
		t.Error("the API was closed while the listener still took connections")
	}
	if stub.redisErr != nil {
		t.Errorf("the API was closed after Redis: PING said %v", stub.redisErr)
	}
	w.Close() // a second Close does nothing
	if stub.closed.Load() != 1 {
		t.Errorf("a second Close closed the API again")
	}
}

func TestWorkerWithoutTokensServesNoAPI(t *testing.T) {
	stub := new(stubAPI)
	s := start(t, sandbox.Faults{}, workertest.Options{
		Change: func(c *config.Config) { c.HTTPAddr, c.APITokens = "127.0.0.1:0", nil },
		Worker: worker.Options{API: stub.build},
	})
	w := s.Worker
	if code, _ := get(t, "http://"+w.Addr()+"/v1/jobs/x"); code != http.StatusNotFound {
		t.Errorf("GET /v1/jobs/x = %d, want 404", code)
	}
	if code, _ := get(t, "http://"+w.Addr()+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz = %d, want 200", code)
	}
	if n := stub.built.Load(); n != 0 {
		t.Errorf("the API was built %d times without API_TOKENS", n)
	}
	// No state says why there is no API: the log line does.
	if !strings.Contains(s.Logs.String(), "HTTP API not served: API_TOKENS is not set") {
		t.Errorf("no line saying the API is not served:\n%s", s.Logs.String())
	}
}

func TestNewFailsNamingTheSetting(t *testing.T) {
	s := start(t, sandbox.Faults{}, workertest.Options{NoStart: true}) // its configuration and log; its worker is unused
	var apiRedis redis.UniversalClient
	failingAPI := func(rdb redis.UniversalClient, _ config.Config, _ *metrics.Metrics, _ *zap.Logger, _ func() time.Time) (http.Handler, io.Closer, error) {
		apiRedis = rdb
		return nil, nil, errors.New("DATA_KEYS: no good")
	}
	for _, tt := range []struct {
		name   string
		change func(*config.Config)
		api    worker.APIFunc
		want   string
	}{
		{"no app id", func(c *config.Config) { c.AppID = "" }, nil, "ZHIMA_APP_ID"},
		{"no data keys", func(c *config.Config) { c.DataKeys = "" }, nil, "DATA_KEYS"},
		{"bad callback hosts", func(c *config.Config) { c.CallbackHosts = "hooks.example.com/path" }, nil, "CALLBACK_HOSTS"},
		{"alipay key is the app's", func(c *config.Config) { c.AlipayPublicKey = string(mustRead(t, zhimatest.KeyFile("app_public.pem"))) }, nil, "app's own public key"},
		{"the API fails", func(c *config.Config) { c.HTTPAddr, c.APITokens = "127.0.0.1:0", []string{apiToken} }, failingAPI, "worker: API: DATA_KEYS"},
		{"one app's key is the app's public key", func(c *config.Config) {
			// The second app of an apps file: the line names it.
			dir := t.TempDir()
			key, pub := filepath.Join(dir, "app.pem"), zhimatest.KeyFile("app_public.pem")
			alipay := filepath.Join(dir, "alipay.pem")
			for path, content := range map[string]string{key: c.AppPrivateKey, alipay: c.AlipayPublicKey} {
				if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			apps := filepath.Join(dir, "apps.yaml")
			yaml := "apps:\n  - app_id: " + zhimatest.AppID + "\n    app_private_key_file: " + key + "\n    alipay_public_key_file: " + alipay +
				"\n  - app_id: \"2021000000000002\"\n    app_private_key_file: " + key + "\n    alipay_public_key_file: " + pub + "\n"
			if err := os.WriteFile(apps, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := c.UseAppsFile(apps); err != nil {
				t.Fatal(err)
			}
		}, nil, "config: ZHIMA_APPS_FILE: app 2021000000000002: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := s.Config
			tt.change(&cfg)
			w, err := worker.New(worker.Options{Config: cfg, Log: s.Log, API: tt.api})
			if err == nil {
				w.Close()
				t.Fatalf("New succeeded, want an error naming %s", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want it to name %s", err, tt.want)
			}
		})
	}
	if apiRedis == nil {
		t.Fatal("the failing API was never built")
	}
	if err := apiRedis.Ping(context.Background()).Err(); !errors.Is(err, redis.ErrClosed) {
		t.Errorf("after New failed, the Redis it opened answers PING with %v, want it closed", err)
	}
}

func mustRead(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestStartOnABusyAddressStartsNothing(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s := start(t, sandbox.Faults{}, workertest.Options{Change: func(c *config.Config) { c.HTTPAddr = busy.Addr().String() }, NoStart: true})
	if err := s.Worker.Start(); err == nil || !strings.Contains(err.Error(), "HTTP_ADDR") {
		t.Fatalf("Start: %v, want an error naming HTTP_ADDR", err)
	}
	// An asynq server that started would have written its heartbeat at once.
	time.Sleep(200 * time.Millisecond)
	servers, err := asynq.NewInspectorFromRedisClient(s.RDB).Servers()
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range servers {
		if _, ok := srv.Queues[s.Config.Queue]; ok {
			t.Fatalf("an asynq server runs on the queue after Start failed: %+v", srv)
		}
	}
}

func TestCloseHandsRunningTasksBack(t *testing.T) {
	s := start(t, sandbox.Faults{HangRate: 1}, workertest.Options{Worker: worker.Options{ShutdownTimeout: 300 * time.Millisecond}})
	keys := dataKeys(t, s.Config.DataKeys)
	p := enqueue(t, s, "HANDBACK_1", keys, payload.MaxDeliveries)
	waitRecord(t, s, p, func(r *results.Record) bool { return r.State == results.Running })
	s.Worker.Close()
	info, err := taskInfo(t, s, p)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != asynq.TaskStatePending || info.Retried != 0 {
		t.Fatalf("after Close the task is %s, retried %d; want it pending again, no retry counted", info.State, info.Retried)
	}
	// Another worker finishes it.
	s.Gateway.SetFaults(sandbox.Faults{})
	s.StartWorker(t, worker.Options{})
	waitRecord(t, s, p, func(r *results.Record) bool { return r.State == results.Succeeded })
}

func TestCloseStopsTheSweeper(t *testing.T) {
	// The worker shares the test's client, so that Close leaves Redis open
	// and a sweeper still running would sweep: it is built once the stack,
	// and so the client, exists; the stack's own worker stays unused.
	s := start(t, sandbox.Faults{}, workertest.Options{NoStart: true})
	w := s.StartWorker(t, worker.Options{Redis: s.RDB, SweepInterval: 20 * time.Millisecond})
	store := batches.New(s.RDB, s.Config.KeyPrefix, 0)
	awaiting := keyspace.New(s.Config.KeyPrefix).BatchCallbacks()
	finishBatch := func(id string) {
		t.Helper()
		bw := store.Writer(batches.Meta{ID: id, AppID: zhimatest.AppID, CreatedAt: time.Now(), CallbackURL: "https://hooks.example.com/done"})
		if err := bw.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	isAwaiting := func(id string) bool {
		t.Helper()
		_, err := s.RDB.ZScore(context.Background(), awaiting, id).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		return err == nil
	}

	running := batches.NewID(time.Now())
	finishBatch(running)
	for deadline := time.Now().Add(10 * time.Second); isAwaiting(running); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the running worker's sweeper never took the finished batch")
		}
	}
	w.Close()
	closed := batches.NewID(time.Now().Add(time.Second))
	finishBatch(closed)
	time.Sleep(300 * time.Millisecond) // 15 sweep intervals
	if !isAwaiting(closed) {
		t.Error("a batch finished after Close was swept: the sweeper still runs")
	}
}

func TestAttemptBudget(t *testing.T) {
	t.Run("the handler's budget ends the job before asynq's backstop", func(t *testing.T) {
		s := start(t, sandbox.Faults{UnavailableRate: 1}, workertest.Options{Change: func(c *config.Config) { c.RetryMaxAttempts = 3 }})
		p := enqueue(t, s, "BUDGET_1", dataKeys(t, s.Config.DataKeys), payload.MaxDeliveries)
		rec := waitRecord(t, s, p, func(r *results.Record) bool { return r.State.Terminal() })
		if rec.State != results.Failed || rec.Attempts != 3 || rec.Error == nil || rec.Error.Code != "20000" {
			t.Fatalf("record %+v (error %+v), want failed after 3 attempts with the gateway's 20000", rec, rec.Error)
		}
		if calls := s.Gateway.Calls(p.Method, p.TransactionID); calls != 3 {
			t.Errorf("gateway saw %d calls, want 3", calls)
		}
		// The task ended as done (nothing kept), not archived by asynq.
		deadline := time.Now().Add(5 * time.Second)
		for _, err := taskInfo(t, s, p); !errors.Is(err, asynq.ErrTaskNotFound); _, err = taskInfo(t, s, p) {
			if time.Now().After(deadline) {
				t.Fatalf("the task is still in asynq: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("asynq's backstop ends a job that never reaches a call, failed", func(t *testing.T) {
		s := start(t, sandbox.Faults{}, workertest.Options{})
		other, err := seal.Generate("other")
		if err != nil {
			t.Fatal(err)
		}
		p := enqueue(t, s, "BACKSTOP_1", dataKeys(t, other), 2) // sealed with a key no worker holds
		rec := waitRecord(t, s, p, func(r *results.Record) bool { return r.State.Terminal() })
		if rec.State != results.Failed || rec.Attempts != 0 || rec.Error == nil || rec.Error.Source != string(zhima.SourceLocal) {
			t.Fatalf("record %+v (error %+v), want failed locally without an attempt", rec, rec.Error)
		}
		if st := s.Gateway.Stats(); st.Calls != 0 {
			t.Errorf("gateway saw %d calls", st.Calls)
		}
		var info *asynq.TaskInfo
		for deadline := time.Now().Add(5 * time.Second); info == nil || info.State != asynq.TaskStateArchived; time.Sleep(10 * time.Millisecond) {
			if info, err = taskInfo(t, s, p); err != nil || time.Now().After(deadline) {
				t.Fatalf("task %+v, %v; want it archived", info, err)
			}
		}
		if info.Retried != 2 {
			t.Errorf("archived after %d retries, want MaxRetry 2", info.Retried)
		}
	})
}

// TestStartWarnsOfWaitingForMissingReplicas: a worker told to wait for
// more replicas than its Redis has says so at start (a single Redis here
// has none, a test cluster's masters one each).
func TestStartWarnsOfWaitingForMissingReplicas(t *testing.T) {
	s := workertest.Start(t, workertest.Options{Change: func(c *config.Config) {
		c.RedisWaitReplicas = 1
		if strings.HasPrefix(c.RedisURL, "redis-cluster://") {
			c.RedisWaitReplicas = 2
		}
	}})
	if s.Redis.Embedded {
		t.Skip("miniredis has no replication section")
	}
	if !strings.Contains(s.Logs.String(), "REDIS_WAIT_REPLICAS is above the replicas a Redis master has") {
		t.Fatalf("no warning in the log:\n%s", s.Logs.String())
	}
}
