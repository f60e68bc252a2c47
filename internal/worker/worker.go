// Package worker assembles a zhimaq worker from its components and runs
// them in a fixed order. New builds every component and starts none:
//
//   - Redis: one client that every component shares (Options.Redis, or a
//     client for REDIS_URL that the worker opens and closes);
//   - metrics: one registry, served at /metrics and shared with the API;
//   - per app (ZHIMA_APP_ID, or each of ZHIMA_APPS_FILE): its gateway
//     client (zhima.Client), rate limiter, breaker and daily budget;
//   - the task handler (tasks.Handler), which calls as those apps;
//   - two asynq servers that run the handler: one for the batch lane (and
//     the callback deliverer, callback.Deliverer), WORKER_CONCURRENCY
//     handlers; one for the interactive lane, INTERACTIVE_CONCURRENCY;
//   - the callback sweeper (callback.Sweeper), which enqueues the
//     callbacks of finished batches;
//   - the HTTP listener: /healthz, /readyz, /metrics and, when Options.API
//     builds it (API_TOKENS set), the API under /v1/.
//
// Start binds the listener's address first, so that a bad HTTP_ADDR starts
// nothing, then starts the asynq servers and the sweeper, and serves HTTP
// last. Close stops them in the reverse order: the listener stops taking
// requests (those under way get 2s), the sweeper stops, the asynq servers
// shut down, together (running calls get ShutdownTimeout to finish, then their tasks
// go back to the queue), the API's closer and the sweeper's queue client
// close, and Redis closes last, when the worker opened it.
package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/zhimaq/zhimaq/internal/batches"
	"github.com/zhimaq/zhimaq/internal/breaker"
	"github.com/zhimaq/zhimaq/internal/budget"
	"github.com/zhimaq/zhimaq/internal/callback"
	"github.com/zhimaq/zhimaq/internal/certcache"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/hosts"
	"github.com/zhimaq/zhimaq/internal/metrics"
	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/ratelimit"
	"github.com/zhimaq/zhimaq/internal/results"
	"github.com/zhimaq/zhimaq/internal/tasks"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// Options are a worker's settings and optional dependencies.
type Options struct {
	// Config holds the settings of DESIGN.md's contract; the gateway ones are required.
	Config config.Config
	// Log defaults to a no-op logger.
	Log *zap.Logger
	// Redis defaults to a client for Config.RedisURL, closed by Close.
	Redis redis.UniversalClient
	// ShutdownTimeout is how long running calls may finish on shutdown
	// before their tasks are handed back; default: the gateway timeout + 2s.
	ShutdownTimeout time.Duration
	// Now is the clock of the handler and the gateway timestamps; default time.Now.
	Now func() time.Time
	// SweepInterval is how often the worker looks for finished batches
	// whose callback is due; default 2s.
	SweepInterval time.Duration
	// API builds the HTTP API that the listener serves under /v1/
	// (cmd/worker passes api.FromConfig). New calls it when the listener is
	// on and API_TOKENS is set; nil serves no API.
	API APIFunc
}

// APIFunc builds a worker's HTTP API on the worker's Redis, sharing its
// metrics; log is named "api" and now is the worker's clock. The worker
// closes the closer after its listener has stopped, before Redis. An error
// fails New.
type APIFunc func(rdb redis.UniversalClient, cfg config.Config, m *metrics.Metrics, log *zap.Logger, now func() time.Time) (http.Handler, io.Closer, error)

// Worker runs jobs until its context ends.
type Worker struct {
	opts        Options
	apps        []config.App // with their keys read
	log         *zap.Logger
	rdb         redis.UniversalClient
	ownsRedis   bool
	metrics     *metrics.Metrics
	handler     *tasks.Handler
	server      *asynq.Server // batch-lane jobs and batch callbacks
	interactive *asynq.Server // interactive-lane jobs
	callbacks   *callback.Deliverer
	sweeper     *callback.Sweeper
	http        *http.Server // nil with HTTP_ADDR off
	api         http.Handler // nil when no API is served
	apiCloser   io.Closer
	listener    net.Listener

	stop      context.CancelFunc // stops the sweeper
	swept     chan struct{}      // closed when the sweeper has stopped
	closeOnce sync.Once
}

// New checks the configuration and builds a worker; nothing runs until
// Start. A bad key or setting fails here, with an error naming it.
func New(opts Options) (_ *Worker, err error) {
	cfg := opts.Config
	apps, err := cfg.Apps()
	if err != nil {
		return nil, err
	}
	keys, err := cfg.Keyring()
	if err != nil {
		return nil, err
	}
	allowed, err := hosts.Parse(cfg.CallbackHosts)
	if err != nil {
		return nil, fmt.Errorf("config: CALLBACK_HOSTS: %w", err)
	}
	if cfg.Queue == "" {
		cfg.Queue = config.Defaults.Queue
	}
	log := opts.Log
	if log == nil {
		log = zap.NewNop()
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	w := &Worker{opts: opts, log: log, rdb: opts.Redis, apps: apps}
	if w.rdb == nil {
		if w.rdb, err = config.RedisClient(cfg.RedisURL); err != nil {
			return nil, err
		}
		w.ownsRedis = true
		defer func() {
			if err != nil {
				w.rdb.Close()
			}
		}()
	}
	reg := metrics.NewRegistry()
	m := metrics.New(reg, cfg.AppIDs()...)
	w.metrics = m
	w.handler = &tasks.Handler{
		Apps:        map[string]*tasks.App{},
		Metrics:     m,
		Results:     results.New(w.rdb, cfg.KeyPrefix, cfg.ResultTTL).Durable(cfg.RedisWaitReplicas, cfg.RedisWaitTimeout),
		Log:         log,
		MaxAttempts: cfg.RetryMaxAttempts,
		Window:      cfg.DedupWindow,
		Now:         now,
		Keys:        keys,
	}
	httpClient := HTTPClient(cfg.WorkerConcurrency + cfg.InteractiveConcurrency)
	for _, app := range apps {
		a, err := w.app(cfg, app, httpClient, now)
		if err != nil {
			return nil, err
		}
		w.handler.Apps[app.AppID] = a
	}
	// POLL_INTERVAL is how often due retries are moved back to the queue
	// (asynq's DelayedTaskCheckInterval) and how long an idle processor
	// waits before it looks again; a retry due within two of them is made in
	// the handler, which would otherwise wait for the next poll.
	poll := cmp.Or(cfg.PollInterval, config.Defaults.PollInterval)
	backoff := tasks.RetryDelay(cfg.RetryBaseDelay, cfg.RetryMaxDelay)
	w.handler.Backoff, w.handler.InlineBelow = backoff, 2*poll
	shutdown := opts.ShutdownTimeout
	if shutdown == 0 {
		shutdown = cfg.GatewayTimeout + 2*time.Second
	}
	server := func(lane string, concurrency int, check time.Duration) *asynq.Server {
		return asynq.NewServerFromRedisClient(w.rdb, asynq.Config{
			Concurrency:              concurrency,
			Queues:                   w.queues().Weights(lane), // the apps (and shards) side by side
			RetryDelayFunc:           backoff,
			IsFailure:                tasks.IsFailure,
			ErrorHandler:             asynq.ErrorHandlerFunc(w.exhausted),
			Logger:                   log.Named("asynq").Sugar(),
			LogLevel:                 asynq.WarnLevel,
			ShutdownTimeout:          shutdown,
			DelayedTaskCheckInterval: poll,
			TaskCheckInterval:        check,
		})
	}
	// Interactive jobs have handlers of their own, which look for a new
	// one twice a poll when idle: they never wait for a batch job to end,
	// and batch handlers never spend a round trip on their empty queue.
	w.server = server(payload.LaneBatch, cfg.WorkerConcurrency, min(poll, time.Second))
	w.interactive = server(payload.LaneInteractive, cmp.Or(cfg.InteractiveConcurrency, config.Defaults.InteractiveConcurrency), min(poll, time.Second)/2)
	w.callbacks = &callback.Deliverer{Secret: []byte(cfg.CallbackSecret), Hosts: allowed, Keys: keys, Log: log.Named("callback"), Now: now}
	w.sweeper = &callback.Sweeper{Store: batches.New(w.rdb, cfg.KeyPrefix, cfg.ResultTTL), Queue: asynq.NewClientFromRedisClient(w.rdb),
		QueueName: cfg.Queue, Interval: opts.SweepInterval, Log: log.Named("batches"), Now: now}
	if cfg.HTTPAddr == "" || cfg.HTTPAddr == "off" {
		return w, nil
	}
	if opts.API != nil && len(cfg.APITokens) > 0 {
		if w.api, w.apiCloser, err = opts.API(w.rdb, cfg, m, log.Named("api"), now); err != nil {
			return nil, fmt.Errorf("worker: API: %w", err)
		}
	}
	w.http = w.listenerServer(cfg, reg)
	return w, nil
}

// app builds what the handler needs to call as app: its gateway client,
// rate limiter, breaker and daily budget. A bad key fails it, naming the
// app when there are several.
func (w *Worker) app(cfg config.Config, app config.App, httpClient *http.Client, now func() time.Time) (*tasks.App, error) {
	log := w.log.With(zap.String("app_id", app.AppID))
	gateway, err := zhima.NewClient(zhima.Config{
		GatewayURL:      app.GatewayURL,
		AppID:           app.AppID,
		AppPrivateKey:   app.AppPrivateKey,
		AlipayPublicKey: app.AlipayPublicKey,
		AppCert:         app.AppCert,
		AlipayCert:      app.AlipayCert,
		AlipayRootCert:  app.AlipayRootCert,
		AESKey:          app.EncryptKey,
		SignType:        app.SignType,
		Charset:         app.Charset,
		Timeout:         cfg.GatewayTimeout,
	}, zhima.WithHTTPClient(httpClient), zhima.WithClock(now),
		zhima.WithCertCache(certcache.New(w.rdb, cfg.KeyPrefix, app.AppID)), zhima.WithCertEvents(func(sn string, err error) {
			if err != nil {
				log.Warn("Alipay certificate not trusted; answers signed with it fail verification and are retried", zap.String("alipay_cert_sn", sn), zap.Error(err))
				return
			}
			log.Info("Alipay certificate rotated: the new one chains to the root file and is trusted", zap.String("alipay_cert_sn", sn))
		}))
	if err != nil {
		if cfg.AppsFile != "" {
			return nil, fmt.Errorf("config: ZHIMA_APPS_FILE: app %s: %w", app.AppID, err)
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	limiter := ratelimit.New(w.rdb, cfg.KeyPrefix, app.AppID, app.QPS)
	if limiter != nil {
		w.metrics.WatchLimiter(app.AppID, limiter.Calls)
	}
	return &tasks.App{
		ID:      app.AppID,
		Gateway: gateway,
		Limiter: limiter,
		Budget:  budget.New(w.rdb, cfg.KeyPrefix, app.AppID, app.DailyBudget),
		Breaker: breaker.New(breaker.Config{Failures: cfg.BreakerFailures, Cooldown: cfg.BreakerCooldown,
			OnChange: func(from, to string) {
				log.Warn("gateway breaker changed state", zap.String("from", from), zap.String("to", to))
				w.metrics.BreakerChanged(app.AppID, to)
			}}),
	}, nil
}

// queues are the deployment's queue names.
func (w *Worker) queues() payload.QueueNames {
	cfg := w.opts.Config
	return payload.QueueNames{Base: cmp.Or(cfg.Queue, config.Defaults.Queue), Apps: cfg.AppIDs(), Shards: cfg.QueueShards}
}

// exhausted is asynq's ErrorHandler: the job handler's, and a log line
// when a batch callback is given up.
func (w *Worker) exhausted(ctx context.Context, t *asynq.Task, err error) {
	if t.Type() != callback.TaskType {
		w.handler.Exhausted(ctx, t, err)
		return
	}
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	if retried >= maxRetry || errors.Is(err, asynq.SkipRetry) {
		w.log.Error("batch callback given up; its task is archived", zap.Int("retried", retried), zap.Error(err))
	}
}

// HTTPClient is the gateway's HTTP client for concurrency handlers: it keeps
// as many idle connections as calls can run at once, so a batch reuses them
// instead of opening one per call.
func HTTPClient(concurrency int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = max(concurrency, 100)
	t.MaxIdleConnsPerHost = max(concurrency, 2)
	t.IdleConnTimeout = 90 * time.Second
	return &http.Client{Transport: t}
}

// Addr is the HTTP listener's address once Start has bound it ("" if none).
func (w *Worker) Addr() string {
	if w.listener == nil {
		return ""
	}
	return w.listener.Addr().String()
}

// Start starts the components in their order (see the package comment)
// and returns. When one fails to start, those started before it are
// stopped again.
func (w *Worker) Start() error {
	if w.http != nil {
		ln, err := net.Listen("tcp", w.http.Addr)
		if err != nil {
			return fmt.Errorf("worker: HTTP_ADDR: %w", err)
		}
		w.listener = ln
	}
	mux := asynq.NewServeMux()
	w.handler.Register(mux)
	mux.Handle(callback.TaskType, w.callbacks)
	err := w.server.Start(mux)
	if err == nil {
		if err = w.interactive.Start(mux); err != nil {
			w.server.Shutdown()
		}
	}
	if err != nil {
		if w.listener != nil {
			w.listener.Close()
			w.listener = nil
		}
		return fmt.Errorf("worker: start: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	w.stop, w.swept = stop, make(chan struct{})
	go func() {
		defer close(w.swept)
		w.sweeper.Run(ctx)
	}()
	if w.listener != nil {
		w.serve(w.listener)
	}
	w.logStarted()
	return nil
}

// logStarted writes the start-up line and the warnings about settings that
// leave something open or unserved.
func (w *Worker) logStarted() {
	cfg := w.opts.Config
	w.log.Info("worker started", zap.Int("concurrency", cfg.WorkerConcurrency), zap.Strings("apps", cfg.AppIDs()),
		zap.String("signer", zhima.SignBackend), zap.Stringer("callback_hosts", w.callbacks.Hosts), zap.String("http", w.Addr()))
	for _, app := range w.apps {
		mode := "public key"
		if app.CertMode() {
			mode = "certificate"
		}
		a := w.handler.Apps[app.AppID]
		w.log.Info("app ready", zap.String("app_id", app.AppID), zap.String("gateway", app.GatewayURL), zap.String("mode", mode),
			zap.Bool("encrypt", app.EncryptKey != ""), zap.String("charset", app.Charset),
			zap.Stringer("rate_limit", a.Limiter), zap.Any("daily_budget", a.Budget.Limits()))
	}
	switch {
	case w.http != nil && w.api == nil && len(cfg.APITokens) == 0:
		w.log.Info("HTTP API not served: API_TOKENS is not set")
	case w.http != nil && w.api == nil:
		w.log.Info("HTTP API not served: this worker was built without one")
	}
	if len(w.callbacks.Secret) == 0 {
		w.log.Info("batch callbacks cannot be signed on this worker: CALLBACK_SECRET is not set")
	}
	if w.api != nil && w.callbacks.Hosts == nil {
		w.log.Warn("batch callbacks may go to any host with a public address (internal addresses are refused): set CALLBACK_HOSTS to the hosts API clients may name")
	}
	if cfg.RetryMaxAttempts > payload.MaxDeliveries {
		w.log.Warn("RETRY_MAX_ATTEMPTS is above what asynq retries a job's task: a job whose calls keep failing ends after about as many attempts as the backstop",
			zap.Int("retry_max_attempts", cfg.RetryMaxAttempts), zap.Int("backstop", payload.MaxDeliveries))
	}
	if cfg.RedisWaitReplicas > 0 {
		if fewest, err := w.fewestReplicas(); err == nil && fewest < cfg.RedisWaitReplicas {
			w.log.Warn("REDIS_WAIT_REPLICAS is above the replicas a Redis master has: every final record will wait REDIS_WAIT_TIMEOUT, fail and be tried again",
				zap.Int("redis_wait_replicas", cfg.RedisWaitReplicas), zap.Int("connected_replicas", fewest))
		}
	}
}

// fewestReplicas is the fewest replicas connected to a master: the one
// master, or each master of a Redis Cluster (INFO replication).
func (w *Worker) fewestReplicas() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	fewest := -1
	var mu sync.Mutex
	count := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		n := 0
		for line := range strings.SplitSeq(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
				n, _ = strconv.Atoi(v)
			}
		}
		mu.Lock()
		if fewest < 0 || n < fewest {
			fewest = n
		}
		mu.Unlock()
		return nil
	}
	var err error
	switch c := w.rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, count)
	case *redis.Client:
		err = count(ctx, c)
	default:
		return 0, errors.New("unknown Redis client")
	}
	return fewest, err
}

// Run starts the worker and blocks until ctx ends, then shuts down: running
// calls get ShutdownTimeout to finish, the rest go back to the queue.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	w.Close()
	return nil
}

// Close stops the components in their order (see the package comment) and
// releases what New opened. It may be called without Start, and more than
// once.
func (w *Worker) Close() {
	w.closeOnce.Do(w.close)
}

func (w *Worker) close() {
	w.log.Info("worker stopping")
	if w.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
		if err := w.http.Shutdown(ctx); err != nil {
			w.http.Close() // drops the connections still held, stalled clients' too
		}
		cancel()
	}
	if w.stop != nil {
		w.stop()
		<-w.swept
	}
	var both sync.WaitGroup // each lane's running calls get ShutdownTimeout, at the same time
	both.Go(w.interactive.Shutdown)
	w.server.Shutdown()
	both.Wait()
	if w.apiCloser != nil {
		w.apiCloser.Close()
	}
	w.sweeper.Queue.Close()
	if w.ownsRedis {
		w.rdb.Close()
	}
	w.log.Info("worker stopped")
}
