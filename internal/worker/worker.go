// Package worker assembles a zhimaq worker: the gateway client, the task
// handler, the asynq server and the HTTP listener, from one Config.
package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/api"
	"github.com/zhimaq/zhimaq/internal/batches"
	"github.com/zhimaq/zhimaq/internal/breaker"
	"github.com/zhimaq/zhimaq/internal/callback"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/hosts"
	"github.com/zhimaq/zhimaq/internal/idempotency"
	"github.com/zhimaq/zhimaq/internal/metrics"
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
	// PollInterval is how often retries that are due are moved back to the
	// queue (asynq's DelayedTaskCheckInterval), and how long an idle worker
	// waits before looking at the queue again; default 200ms, so the last
	// retries of a batch do not wait a second each.
	PollInterval time.Duration
	// ShutdownTimeout is how long running calls may finish on shutdown
	// before their tasks are handed back; default: the gateway timeout + 2s.
	ShutdownTimeout time.Duration
	// Now is the clock of the handler and the gateway timestamps; default time.Now.
	Now func() time.Time
	// SweepInterval is how often the worker looks for finished batches
	// whose callback is due; default 2s.
	SweepInterval time.Duration
}

// Worker runs jobs until its context ends.
type Worker struct {
	opts      Options
	log       *zap.Logger
	rdb       redis.UniversalClient
	ownsRedis bool
	server    *asynq.Server
	handler   *tasks.Handler
	http      *http.Server
	listener  net.Listener
	producer  *zhimaq.Producer // the API's; nil without API_TOKENS
	callbacks *callback.Deliverer
	sweeper   *callback.Sweeper
	stop      context.CancelFunc // stops the sweeper
	swept     chan struct{}      // closed when the sweeper has stopped
}

// New checks the configuration and builds a worker; nothing runs until Run.
// A bad key or setting fails here, with an error naming it.
func New(opts Options) (*Worker, error) {
	cfg := opts.Config
	if err := cfg.RequireGateway(); err != nil {
		return nil, err
	}
	keys, err := cfg.Keyring()
	if err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = zap.NewNop()
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	gateway, err := zhima.NewClient(zhima.Config{
		GatewayURL:      cfg.GatewayURL,
		AppID:           cfg.AppID,
		AppPrivateKey:   cfg.AppPrivateKey,
		AlipayPublicKey: cfg.AlipayPublicKey,
		SignType:        cfg.SignType,
		Timeout:         cfg.GatewayTimeout,
	}, zhima.WithHTTPClient(HTTPClient(cfg.WorkerConcurrency)), zhima.WithClock(now))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	w := &Worker{opts: opts, log: log, rdb: opts.Redis}
	if w.rdb == nil {
		if w.rdb, err = config.RedisClient(cfg.RedisURL); err != nil {
			return nil, err
		}
		w.ownsRedis = true
	}
	queue := cfg.Queue
	if queue == "" {
		queue = config.Defaults.Queue
	}
	reg := metrics.NewRegistry()
	m := metrics.New(reg)
	w.handler = &tasks.Handler{
		Metrics:     m,
		Gateway:     gateway,
		Results:     results.New(w.rdb, cfg.KeyPrefix, cfg.ResultTTL),
		Claims:      idempotency.New(w.rdb, cfg.KeyPrefix),
		Log:         log,
		MaxAttempts: cfg.RetryMaxAttempts,
		Window:      cfg.DedupWindow,
		Now:         now,
		Limiter:     ratelimit.New(w.rdb, cfg.KeyPrefix, cfg.AppID, cfg.QPS),
		Keys:        keys,
		Breaker: breaker.New(breaker.Config{Failures: cfg.BreakerFailures, Cooldown: cfg.BreakerCooldown,
			OnChange: func(from, to string) {
				log.Warn("gateway breaker changed state", zap.String("from", from), zap.String("to", to))
				m.BreakerChanged(to)
			}}),
	}
	poll := opts.PollInterval
	if poll == 0 {
		poll = 200 * time.Millisecond
	}
	shutdown := opts.ShutdownTimeout
	if shutdown == 0 {
		shutdown = cfg.GatewayTimeout + 2*time.Second
	}
	w.server = asynq.NewServerFromRedisClient(w.rdb, asynq.Config{
		Concurrency:              cfg.WorkerConcurrency,
		Queues:                   map[string]int{queue: 1},
		RetryDelayFunc:           tasks.RetryDelay(cfg.RetryBaseDelay, cfg.RetryMaxDelay),
		IsFailure:                tasks.IsFailure,
		ErrorHandler:             asynq.ErrorHandlerFunc(w.exhausted),
		Logger:                   log.Named("asynq").Sugar(),
		LogLevel:                 asynq.WarnLevel,
		ShutdownTimeout:          shutdown,
		DelayedTaskCheckInterval: poll,
		TaskCheckInterval:        min(poll, time.Second),
	})
	hosts, err := hosts.Parse(cfg.CallbackHosts)
	if err != nil {
		return nil, fmt.Errorf("config: CALLBACK_HOSTS: %w", err)
	}
	w.callbacks = &callback.Deliverer{Secret: []byte(cfg.CallbackSecret), Hosts: hosts, Keys: keys, Log: log.Named("callback"), Now: now}
	w.sweeper = &callback.Sweeper{Store: batches.New(w.rdb, cfg.KeyPrefix, cfg.ResultTTL), Queue: asynq.NewClientFromRedisClient(w.rdb),
		QueueName: queue, Interval: opts.SweepInterval, Log: log.Named("batches"), Now: now}
	if cfg.HTTPAddr != "" && cfg.HTTPAddr != "off" {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, r *http.Request) { rw.Write([]byte("ok\n")) })
		mux.HandleFunc("GET /readyz", w.ready)
		mux.Handle("GET /metrics", metrics.Handler(reg, asynq.NewInspectorFromRedisClient(w.rdb), []string{queue}))
		if len(cfg.APITokens) > 0 {
			w.producer, err = zhimaq.NewProducer(w.rdb, zhimaq.ProducerConfig{AppID: cfg.AppID, DataKeys: cfg.DataKeys, Queue: queue,
				DedupWindow: cfg.DedupWindow, ResultTTL: cfg.ResultTTL, MaxAttempts: cfg.RetryMaxAttempts, KeyPrefix: cfg.KeyPrefix,
				CallbackHosts: cfg.CallbackHosts, MaxBatchLines: cfg.BatchMaxLines, Now: now, OnDedup: m.Dedup})
			if err != nil {
				w.closeRedis()
				return nil, fmt.Errorf("worker: API: %w", err)
			}
			mux.Handle("/v1/", api.New(w.producer, api.Options{Tokens: cfg.APITokens, MaxRequests: cfg.APIMaxRequests,
				Metrics: m, Log: log.Named("api"), Now: now}))
		}
		stall := cmp.Or(cfg.HTTPStallTimeout, config.Defaults.HTTPStallTimeout)
		w.http = &http.Server{
			Addr:              cfg.HTTPAddr,
			Handler:           api.StallHandler(mux, stall, log.Named("http")),
			ReadHeaderTimeout: min(headerTimeout, stall),
			IdleTimeout:       cmp.Or(cfg.HTTPIdleTimeout, config.Defaults.HTTPIdleTimeout),
			MaxHeaderBytes:    cmp.Or(cfg.HTTPMaxHeaderBytes, config.Defaults.HTTPMaxHeaderBytes),
			ErrorLog:          zap.NewStdLog(log.Named("http")),
		}
	}
	return w, nil
}

// headerTimeout bounds the read of a request's header (HTTP_STALL_TIMEOUT
// when that is shorter).
const headerTimeout = 5 * time.Second

// httpShutdownTimeout is how long Close waits for requests under way
// before it closes their connections.
const httpShutdownTimeout = 2 * time.Second

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

func (w *Worker) closeRedis() {
	if w.ownsRedis {
		w.rdb.Close()
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

func (w *Worker) ready(rw http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := w.rdb.Ping(ctx).Err(); err != nil {
		http.Error(rw, "redis unreachable", http.StatusServiceUnavailable)
		return
	}
	rw.Write([]byte("ready\n"))
}

// Addr is the HTTP listener's address once Run has started it ("" if none).
func (w *Worker) Addr() string {
	if w.listener == nil {
		return ""
	}
	return w.listener.Addr().String()
}

// Start starts processing and the HTTP listener, and returns.
func (w *Worker) Start() error {
	if w.http != nil {
		ln, err := net.Listen("tcp", w.http.Addr)
		if err != nil {
			return fmt.Errorf("worker: HTTP_ADDR: %w", err)
		}
		w.listener = ln
		if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
			w.log.Warn("HTTP listener on a non-loopback address: /metrics, /healthz and /readyz are served there without authentication to anyone who can reach it",
				zap.String("http", ln.Addr().String()))
		}
		go func() {
			if err := w.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				w.log.Error("http listener stopped", zap.Error(err))
			}
		}()
	}
	mux := asynq.NewServeMux()
	w.handler.Register(mux)
	mux.Handle(callback.TaskType, w.callbacks)
	if err := w.server.Start(mux); err != nil {
		return fmt.Errorf("worker: start: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	w.stop, w.swept = stop, make(chan struct{})
	go func() {
		defer close(w.swept)
		w.sweeper.Run(ctx)
	}()
	w.log.Info("worker started", zap.Int("concurrency", w.opts.Config.WorkerConcurrency), zap.String("gateway", w.opts.Config.GatewayURL),
		zap.Stringer("rate_limit", w.handler.Limiter), zap.Stringer("callback_hosts", w.callbacks.Hosts), zap.String("http", w.Addr()))
	if w.http != nil && w.producer == nil {
		w.log.Info("HTTP API not served: API_TOKENS is not set")
	}
	if len(w.callbacks.Secret) == 0 {
		w.log.Info("batch callbacks cannot be signed on this worker: CALLBACK_SECRET is not set")
	}
	if w.producer != nil && w.callbacks.Hosts == nil {
		w.log.Warn("batch callbacks may go to any host with a public address (internal addresses are refused): set CALLBACK_HOSTS to the hosts API clients may name")
	}
	return nil
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

// Close stops taking jobs, lets running calls finish or hands them back, and
// releases what New opened.
func (w *Worker) Close() {
	w.log.Info("worker stopping")
	if w.stop != nil {
		w.stop()
		<-w.swept
	}
	w.server.Shutdown()
	if w.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
		defer cancel()
		if err := w.http.Shutdown(ctx); err != nil {
			w.http.Close() // drops the connections still held, stalled clients' too
		}
	}
	if w.producer != nil {
		w.producer.Close()
	}
	w.sweeper.Queue.Close()
	w.closeRedis()
	w.log.Info("worker stopped")
}
