package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/procs"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// env is what every figure shares: a Redis, the sandbox gateway in its own
// process, the built programs and a scratch directory.
type env struct {
	opts Options
	tmp  string

	// Redis: a private redis-server of our own (private true), or the one
	// at REDIS_URL shared with others, used under unique names only.
	private   bool
	redisURL  string
	redisProc *procs.Child // nil when Redis is shared
	rdb       *redis.Client

	procs         procs.Group // each child in its own process group: a Ctrl-C reaches the bench only
	sandboxProc   *procs.Child
	sandboxStarts int
	// keep is set when something failed: the scratch directory, with the
	// logs of Redis, the sandbox and the workers, is then kept.
	keep       bool
	gatewayURL string // http://host:port/gateway.do
	adminURL   string // http://host:port
	admin      *http.Client
	alipayKey  string // file holding the sandbox's Alipay public key
	appKey     string // file holding the test app's private key

	seq atomic.Int64

	// drainHooks, when set, run around the measured part of drainZhimaq
	// (the CPU profiler).
	drainHooks struct{ start, stop func() }
}

// baseEnv is a child's environment: PATH and HOME only, so the caller's
// REDIS_URL, ZHIMA_* and the like cannot leak in.
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
	e := &env{opts: opts, admin: &http.Client{Timeout: 10 * time.Second}}
	if e.tmp, err = os.MkdirTemp("", "zhimaq-bench-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if err := e.ensureBinaries(ctx); err != nil {
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

// ensureBinaries builds bin/worker and bin/zhima-sandbox when they are missing.
func (e *env) ensureBinaries(ctx context.Context) error {
	missing := false
	for _, name := range []string{"worker", "zhima-sandbox"} {
		if _, err := os.Stat(filepath.Join(e.opts.Bin, name)); err != nil {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	e.logf("building %s/worker and %s/zhima-sandbox", e.opts.Bin, e.opts.Bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", e.opts.Bin+string(filepath.Separator), "./cmd/worker", "./cmd/zhima-sandbox")
	cmd.Dir = e.opts.Root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	return nil
}

// startRedis starts a private redis-server on a free port, with no
// persistence; without redis-server it falls back to REDIS_URL.
func (e *env) startRedis(ctx context.Context) error {
	path, err := exec.LookPath("redis-server")
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
	port, err := freePort()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(e.tmp, "redis.log"))
	if err != nil {
		return err
	}
	e.redisProc, err = e.procs.Start("redis-server", path, []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--dir", e.tmp,
		"--maxclients", "10000"}, baseEnv(), logf, logf)
	if err != nil {
		return err
	}
	e.private = true
	e.redisURL = fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	e.rdb = redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := e.rdb.Ping(ctx).Err(); err == nil {
			break
		} else if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer on port %d: %v (log: %s)", port, err, logf.Name())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

var sandboxAddr = regexp.MustCompile(`\baddr=(\S+)`)

// startSandbox runs bin/zhima-sandbox on a free port with the test app's
// public key, and reads the port from its first log line.
func (e *env) startSandbox(ctx context.Context) error {
	e.alipayKey = filepath.Join(e.tmp, "alipay_public.pem")
	pr, pw := io.Pipe()
	e.sandboxStarts++
	logf, err := os.Create(filepath.Join(e.tmp, fmt.Sprintf("sandbox%d.log", e.sandboxStarts)))
	if err != nil {
		return err
	}
	e.sandboxProc, err = e.procs.Start("zhima-sandbox", filepath.Join(e.opts.Bin, "zhima-sandbox"), []string{
		"--addr", "127.0.0.1:0", "--app-id", zhimatest.AppID,
		"--app-public-key-file", zhimatest.KeyFile("app_public.pem"),
		"--write-alipay-public-key", e.alipayKey, "--seed", "7"}, baseEnv(), pw, pw)
	if err != nil {
		return err
	}
	// procs closes pw when the sandbox exits; its last lines still reach logf.
	found := make(chan string, 1)
	go func() {
		defer logf.Close()
		sc := bufio.NewScanner(pr)
		sent := false
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			if m := sandboxAddr.FindStringSubmatch(sc.Text()); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
	}()
	select {
	case addr := <-found:
		e.adminURL = "http://" + addr
		e.gatewayURL = e.adminURL + "/gateway.do"
	case <-e.sandboxProc.Done():
		return fmt.Errorf("zhima-sandbox exited at start (log: %s)", logf.Name())
	case <-time.After(30 * time.Second):
		return errors.New("zhima-sandbox did not say where it listens within 30s")
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// ensureSandbox starts a new sandbox when the one before has exited, so
// one crash costs one figure, not the rest of the run.
func (e *env) ensureSandbox(ctx context.Context) error {
	if !e.sandboxProc.Exited() {
		return nil
	}
	e.keep = true
	e.logf("bench: zhima-sandbox had exited (%s; log in %s); starting another", procs.DescribeExit(e.sandboxProc.Err()), e.tmp)
	return e.startSandbox(ctx)
}

func (e *env) close() {
	if e.rdb != nil {
		e.rdb.Close()
	}
	e.procs.StopAll(5 * time.Second)
	switch {
	case e.tmp == "":
	case e.opts.KeepTmp || e.keep:
		e.logf("bench: logs of Redis, the sandbox and the workers kept in %s", e.tmp)
	default:
		os.RemoveAll(e.tmp)
	}
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
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
	if e.private {
		return e.rdb.FlushAll(ctx).Err()
	}
	for _, pattern := range []string{ns.prefix + "*", "asynq:{" + ns.queue + "}:*"} {
		iter := e.rdb.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			e.rdb.Del(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return err
		}
	}
	return e.rdb.SRem(ctx, "asynq:queues", ns.queue).Err()
}

// workerEnv is the environment of a worker (in-process through
// config.Load, or bin/worker) for namespace ns against the sandbox.
func (e *env) workerEnv(ns namespace, extra map[string]string) map[string]string {
	m := map[string]string{
		"REDIS_URL":                    e.redisURL,
		"ZHIMA_GATEWAY_URL":            e.gatewayURL,
		"ZHIMA_APP_ID":                 zhimatest.AppID,
		"ZHIMA_APP_PRIVATE_KEY_FILE":   e.appKey,
		"ZHIMA_ALIPAY_PUBLIC_KEY_FILE": e.alipayKey,
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

func envList(m map[string]string) []string {
	out := baseEnv()
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// setFaults replaces the sandbox's faults and zeroes its counters.
func (e *env) setFaults(ctx context.Context, f sandbox.Faults) error {
	b, _ := json.Marshal(f)
	if err := e.adminDo(ctx, http.MethodPut, "/admin/faults", string(b), nil); err != nil {
		return err
	}
	return e.adminDo(ctx, http.MethodPost, "/admin/reset", "", nil)
}

// stats reads the sandbox's counters.
func (e *env) stats(ctx context.Context) (sandbox.Stats, error) {
	var st sandbox.Stats
	err := e.adminDo(ctx, http.MethodGet, "/admin/stats", "", &st)
	return st, err
}

func (e *env) adminDo(ctx context.Context, method, path, body string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, e.adminURL+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := e.admin.Do(req)
	if err != nil {
		return fmt.Errorf("sandbox %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("sandbox %s %s: HTTP %d: %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}
