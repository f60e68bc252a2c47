// Package workertest runs a real zhimaq worker in-process for a test,
// against the sandbox gateway, on a Redis namespace of the test's own.
//
// It builds on zhimatest (the test keys, StartGateway, WorkerConfig) and
// redistest. It cannot live in zhimatest: internal/tasks and internal/worker
// have internal tests that import zhimatest, which must therefore not
// import internal/worker.
package workertest

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/logging"
	"github.com/zhimaq/zhimaq/internal/redistest"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/worker"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// Options are what a test changes in its Stack.
type Options struct {
	// Gateway configures the sandbox gateway (faults, seed, clock, MaxHang…);
	// zhimatest.StartGateway fills in the test keys, and AppID defaults to
	// zhimatest.AppID.
	Gateway sandbox.Config
	// Change, when set, adjusts the worker's configuration, which starts as
	// zhimatest.WorkerConfig's (HTTP listener off, fast retries, the
	// namespace's queue and key prefix). What it sets is Stack.Config.
	Change func(*config.Config)
	// Worker are the worker's options: Config and Log are filled in from the
	// Stack.
	Worker worker.Options
	// NoStart builds Stack.Worker without starting it, for tests of Start
	// itself (or of a configuration that New is given).
	NoStart bool
}

// Stack is one test's Redis, gateway and worker.
type Stack struct {
	// Redis is the test's namespace: its own key prefix and queue.
	Redis *redistest.Server
	// RDB is a client of the test's own on Redis, open until the test ends.
	RDB redis.UniversalClient
	// Gateway is the sandbox; GatewayURL its /gateway.do.
	Gateway    *sandbox.Server
	GatewayURL string
	// Config is the worker's configuration, after Options.Change.
	Config config.Config
	// Worker is the worker Start built (started unless Options.NoStart).
	Worker *worker.Worker
	// Logs holds what the worker logged, JSON lines at debug level; Log
	// writes there.
	Logs *zhimatest.SyncBuffer
	Log  *zap.Logger
}

// Start runs a worker in-process for a test: a Redis namespace of its own
// (redistest), the sandbox gateway that really checks signatures, and the
// worker, its log kept at debug level in JSON (logging.New, as the worker
// command's). The test's cleanup closes them, the gateway first so that hung
// calls end and the worker's shutdown does not wait for them.
//
// Start fails the test when the worker cannot be built or started.
func Start(tb testing.TB, opts Options) *Stack {
	tb.Helper()
	srv := redistest.New(tb)
	gw, url := zhimatest.StartGateway(tb, opts.Gateway)
	cfg := zhimatest.WorkerConfig(tb, srv, gw, url)
	if opts.Change != nil {
		opts.Change(&cfg)
	}
	logs := new(zhimatest.SyncBuffer)
	log, err := logging.New("json", "debug", logs)
	if err != nil {
		tb.Fatal(err)
	}
	s := &Stack{Redis: srv, RDB: srv.Client(tb), Gateway: gw, GatewayURL: url, Config: cfg, Logs: logs, Log: log}
	if opts.NoStart {
		s.Worker = s.NewWorker(tb, opts.Worker)
	} else {
		s.Worker = s.StartWorker(tb, opts.Worker)
	}
	return s
}

// NewWorker builds another worker on the stack, not started, with opts as
// Options.Worker is taken. The test's cleanup closes it after the gateway.
func (s *Stack) NewWorker(tb testing.TB, opts worker.Options) *worker.Worker {
	tb.Helper()
	opts.Config, opts.Log = s.Config, s.Log
	w, err := worker.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.Gateway.Close() // hung calls end, so Close does not wait for them
		w.Close()
	})
	return w
}

// StartWorker builds and starts another worker on the stack (a second
// worker on the same queue, one after a Close…), as NewWorker does.
func (s *Stack) StartWorker(tb testing.TB, opts worker.Options) *worker.Worker {
	tb.Helper()
	w := s.NewWorker(tb, opts)
	if err := w.Start(); err != nil {
		tb.Fatal(err)
	}
	return w
}
