package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/keyspace"
	"github.com/zhimaq/zhimaq/internal/launch"
	"github.com/zhimaq/zhimaq/internal/procs"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// env is what every figure shares: a Redis, the sandbox gateway in its own
// process, the built programs and a scratch directory.
type env struct {
	opts Options
	tmp  string
	bins map[string]string // worker and zhima-sandbox

	l launch.Launcher // each child in its own process group: a Ctrl-C reaches the bench only
	// Redis: a private redis-server of our own (redis set), or the one at
	// REDIS_URL shared with others, used under unique names only.
	redis    *launch.Redis
	redisURL string
	rdb      *redis.Client

	sb            *launch.Sandbox
	sandboxStarts int
	// keep is set when something failed: the scratch directory, with the
	// logs of Redis, the sandbox and the workers, is then kept.
	keep   bool
	appKey string // file holding the test app's private key

	seq atomic.Int64

	// drainHooks, when set, run around the measured part of drainZhimaq
	// (the CPU profiler).
	drainHooks struct{ start, stop func() }
}

// baseEnv is the environment of the go tool and openssl: PATH, HOME and
// the go tool's own settings, so the caller's REDIS_URL, ZHIMA_* and the
// like cannot leak in.
func baseEnv() []string {
	var out []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "GOCACHE", "GOPATH", "GOMODCACHE", "GOFLAGS", "GOPROXY", "GOTOOLCHAIN"} {
		if v, ok := os.LookupEnv(k); ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// newEnv builds the programs if needed, starts Redis and the sandbox.
func newEnv(ctx context.Context, opts Options) (_ *env, err error) {
	e := &env{opts: opts}
	if e.tmp, err = os.MkdirTemp("", "zhimaq-bench-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.bins, err = launch.Build(ctx, opts.Root, opts.Bin, opts.Log, "worker", "zhima-sandbox"); err != nil {
		return nil, err
	}
	e.appKey = zhimatest.KeyFile("app_private_pkcs1.pem")
	if _, err := os.Stat(e.appKey); err != nil {
		return nil, fmt.Errorf("test app key: %w", err)
	}
	if err := e.startRedis(ctx); err != nil {
		return nil, err
	}
	if err := e.startSandbox(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *env) logf(format string, a ...any) {
	fmt.Fprintf(e.opts.Log, format+"\n", a...)
}

// startRedis starts a private redis-server on a free port, with no
// persistence; without redis-server it falls back to REDIS_URL.
func (e *env) startRedis(ctx context.Context) error {
	path, err := launch.FindRedisServer("")
	if err != nil {
		url := os.Getenv("REDIS_URL")
		if url == "" {
			url = "redis://127.0.0.1:6379/0"
		}
		e.logf("bench: redis-server not found on PATH (apt-get install redis-server for a private one);\n" +
			"  falling back to the shared Redis at REDIS_URL under unique queue and key names; figure 4 (memory) needs a private one and is skipped")
		rdb, err := config.RedisClient(url)
		if err != nil {
			return err
		}
		e.rdb = rdb.(*redis.Client)
		e.redisURL = url
		return e.rdb.Ping(ctx).Err()
	}
	e.redis, err = e.l.StartRedisServer(ctx, launch.RedisServer{Program: path, Dir: e.tmp,
		Log: filepath.Join(e.tmp, "redis.log"), Args: []string{"--maxclients", "10000"}})
	if err != nil {
		return err
	}
	e.redisURL = e.redis.URL()
	e.rdb = redis.NewClient(&redis.Options{Addr: e.redis.Addr()})
	return nil
}

// startSandbox runs bin/zhima-sandbox on a free port with the test app's
// public key.
func (e *env) startSandbox(ctx context.Context) (err error) {
	e.sandboxStarts++
	e.sb, err = e.l.StartSandbox(ctx, launch.SandboxConfig{
		Program: e.bins["zhima-sandbox"], AppID: zhimatest.AppID, AppPublicKey: zhimatest.KeyFile("app_public.pem"),
		AlipayPublicKey: filepath.Join(e.tmp, "alipay_public.pem"),
		Log:             filepath.Join(e.tmp, fmt.Sprintf("sandbox%d.log", e.sandboxStarts)), Seed: 7,
	})
	return err
}

// ensureSandbox starts a new sandbox when the one before has exited, so
// one crash costs one figure, not the rest of the run.
func (e *env) ensureSandbox(ctx context.Context) error {
	if !e.sb.Child.Exited() {
		return nil
	}
	e.keep = true
	e.logf("bench: zhima-sandbox had exited (%s; log in %s); starting another", procs.DescribeExit(e.sb.Child.Err()), e.tmp)
	return e.startSandbox(ctx)
}

func (e *env) close() {
	if e.rdb != nil {
		e.rdb.Close()
	}
	e.l.Close(5 * time.Second)
	switch {
	case e.tmp == "":
	case e.opts.KeepTmp || e.keep:
		e.logf("bench: logs of Redis, the sandbox and the workers kept in %s", e.tmp)
	default:
		os.RemoveAll(e.tmp)
	}
}

// namespace is one measurement's asynq queue and zhimaq key prefix.
type namespace struct{ queue, prefix string }

func (e *env) namespace() namespace {
	q := fmt.Sprintf("zqbench%d_%d", os.Getpid(), e.seq.Add(1))
	return namespace{queue: q, prefix: q + ":"}
}

// fresh opens a measurement: a namespace of its own in an emptied Redis and
// a client of its own; end closes the client and empties Redis again.
func (e *env) fresh(ctx context.Context) (ns namespace, rdb *redis.Client, end func(), err error) {
	ns = e.namespace()
	if err := e.reset(ctx, ns); err != nil {
		return namespace{}, nil, nil, err
	}
	rdb = redis.NewClient(e.rdb.Options())
	return ns, rdb, func() { rdb.Close(); e.reset(ctx, ns) }, nil
}

// reset empties Redis between measurements: FLUSHALL on the private one,
// else the keys of ns only.
func (e *env) reset(ctx context.Context, ns namespace) error {
	if e.redis != nil {
		return e.rdb.FlushAll(ctx).Err()
	}
	for _, pattern := range []string{ns.prefix + "*", keyspace.Queue(ns.queue), keyspace.Queues(ns.queue)} {
		iter := e.rdb.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			e.rdb.Del(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return err
		}
	}
	queues := []any{ns.queue}
	for _, q := range e.rdb.SMembers(ctx, "asynq:queues").Val() {
		if strings.HasPrefix(q, ns.queue+":") {
			queues = append(queues, q)
		}
	}
	return e.rdb.SRem(ctx, "asynq:queues", queues...).Err()
}

// workerEnv is the environment of a worker (in-process through
// config.Load, or bin/worker) for namespace ns against the sandbox.
func (e *env) workerEnv(ns namespace, extra map[string]string) map[string]string {
	m := map[string]string{
		"REDIS_URL":                    e.redisURL,
		"ZHIMA_GATEWAY_URL":            e.sb.URL,
		"ZHIMA_APP_ID":                 zhimatest.AppID,
		"ZHIMA_APP_PRIVATE_KEY_FILE":   e.appKey,
		"ZHIMA_ALIPAY_PUBLIC_KEY_FILE": e.sb.AlipayPublicKey,
		"ZHIMA_TIMEOUT":                "15s",
		"HTTP_ADDR":                    "off",
		"ZHIMAQ_QUEUE":                 ns.queue,
		"ZHIMAQ_KEY_PREFIX":            ns.prefix,
		"DATA_KEYS":                    "plaintext",
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// loadConfig reads a worker configuration from m as the worker command does.
func loadConfig(m map[string]string) (config.Config, error) {
	return config.Load(func(k string) string { return m[k] })
}

// envList is procs.CleanEnv with m.
func envList(m map[string]string) []string {
	out := procs.CleanEnv()
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// setFaults replaces the sandbox's faults and zeroes its counters.
func (e *env) setFaults(ctx context.Context, f sandbox.Faults) error {
	if err := e.sb.SetFaults(ctx, f); err != nil {
		return err
	}
	return e.sb.Reset(ctx)
}
