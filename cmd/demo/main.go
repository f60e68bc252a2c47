// Command demo runs zhimaq end to end on a machine with only Go (`make demo`).
//
// It starts, each in its own process, the real programs built next to it:
//
//   - an embedded Redis (miniredis) inside the demo itself, on a free port of
//     127.0.0.1 — never a Redis that already runs on the machine;
//   - zhima-sandbox, the local stand-in for Alipay's gateway, with a throwaway
//     app key pair and faults switched on (30% 40004 SYSTEM_ERROR, 10% 20000
//     isp.unknow-error) so that retries show;
//   - worker, configured through the environment only (a clean one: PATH and
//     HOME plus the settings of DESIGN.md's contract, so a user's own
//     REDIS_URL cannot leak in), with short backoff (200ms..1s);
//   - enqueue batch --wait on demo/jobs.jsonl: successes of all three methods,
//     a repeat of a job (duplicate, not billed again), a transaction_id reused
//     with other parameters (rejected TRANSACTION_ID_REPEAT), an ID number
//     with a wrong check digit (rejected INVALID_PARAMETER), a malformed line
//     (rejected) and a wrong product_code (failed API_PRODUCT_NOT_MATCH, not
//     retried).
//
// It prints one row per job — method, transaction_id, state, attempts,
// duplicate and the answer or error — then counts, the sandbox's own call
// and billing counters, and checks that billed calls equal the distinct
// succeeded transactions. Then it stops the worker with SIGTERM and the
// sandbox, closes Redis and removes its keys. The logs of the worker and the
// sandbox stay in a log directory whose paths it prints.
//
// Exit status: 0 when every step worked (enqueue's own exit 1 for the
// rejected lines is expected); 1 with a one-line reason otherwise; 130 when
// interrupted. Children are stopped on every path, Ctrl-C included.
//
// With --mode cert (or DEMO_MODE=cert) the same demo runs in certificate
// mode with AES content encryption: the sandbox makes the three certificate
// files and an AES key, the worker is given them in place of the Alipay
// public key, and the sandbox rotates its Alipay certificate in the middle of
// the batch; the demo checks that the worker downloaded the new certificate
// once.
//
// With --redis cluster (or DEMO_REDIS=cluster) Redis is a local Redis
// Cluster of 3 masters with a replica each, redis-server processes started
// from PATH on free loopback ports, in place of the embedded Redis; the
// worker and enqueue are given its redis-cluster:// URL.
//
// Usage: demo [--mode key|cert] [--redis embedded|cluster] [--jobs FILE] [--bin DIR] [--log-dir DIR] [--seed N] [--timeout D]
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/launch"
	"github.com/zhimaq/zhimaq/internal/procs"
	"github.com/zhimaq/zhimaq/internal/seal"
)

const (
	demoAppID       = "2021000000000001" // fake; the sandbox accepts only this one
	systemErrorRate = "0.3"
	unavailableRate = "0.1"
	stopGrace       = 15 * time.Second
	workerStartup   = 15 * time.Second
)

var errInterrupted = errors.New("interrupted")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errInterrupted):
		fmt.Fprintln(os.Stderr, "demo: interrupted; children stopped")
		os.Exit(130)
	}
	fmt.Fprintf(os.Stderr, "demo: %v\n", err)
	os.Exit(1)
}

type options struct {
	mode    string
	redis   string
	jobs    string
	binDir  string
	logDir  string
	seed    int64
	timeout time.Duration
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.mode, "mode", cmp.Or(os.Getenv("DEMO_MODE"), "key"), "`key` (public-key mode) or cert (certificate mode with AES and a certificate rotation mid-batch); default $DEMO_MODE or key")
	fs.StringVar(&o.redis, "redis", cmp.Or(os.Getenv("DEMO_REDIS"), "embedded"), "`embedded` (miniredis in the demo) or cluster (3 masters with a replica each, from redis-server on PATH); default $DEMO_REDIS or embedded")
	fs.StringVar(&o.jobs, "jobs", "", "JSONL `file` of jobs (default demo/jobs.jsonl here or next to bin/)")
	fs.StringVar(&o.binDir, "bin", "", "`dir` holding worker, enqueue and zhima-sandbox (default: next to this program, then PATH)")
	fs.StringVar(&o.logDir, "log-dir", "", "`dir` for the worker's and sandbox's logs, kept after the run (default: a new temp dir)")
	fs.Int64Var(&o.seed, "seed", 0, "`seed` of the sandbox's fault draws, to repeat a run; 0 picks one at random")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "how long enqueue waits for the jobs")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.mode != "key" && o.mode != "cert" {
		return o, fmt.Errorf("--mode (DEMO_MODE) %q: want key or cert", o.mode)
	}
	if o.redis != "embedded" && o.redis != "cluster" {
		return o, fmt.Errorf("--redis (DEMO_REDIS) %q: want embedded or cluster", o.redis)
	}
	return o, nil
}

// run is the whole demo; every process and file it starts is cleaned up by
// the time it returns.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	interrupted := func(err error) error {
		if ctx.Err() != nil {
			return errInterrupted
		}
		return err
	}

	bins, err := launch.Programs(o.binDir, "zhima-sandbox", "worker", "enqueue")
	if err != nil {
		return err
	}
	jobsPath, nJobs, err := findJobs(o.jobs)
	if err != nil {
		return err
	}
	var redisServer string
	if o.redis == "cluster" {
		if redisServer, err = launch.FindRedisServer(""); err != nil {
			return fmt.Errorf("DEMO_REDIS=cluster needs redis-server on PATH (Debian: apt-get install redis-server): %w", err)
		}
	}

	// Keys and runtime files: removed at the end. Logs: kept, for reading.
	work, err := os.MkdirTemp("", "zhimaq-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	logDir := o.logDir
	if logDir == "" {
		if logDir, err = os.MkdirTemp("", "zhimaq-demo-logs-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	workerLog := filepath.Join(logDir, "worker.log")
	sandboxLog := filepath.Join(logDir, "sandbox.log")
	defer func() {
		if err != nil && !errors.Is(err, errInterrupted) {
			fmt.Fprintf(stderr, "demo: logs of the worker and the sandbox: %s\n", logDir)
		}
	}()
	var l launch.Launcher
	defer l.Close(stopGrace)

	// 1. Redis: embedded, in this process, on a free loopback port; or a
	// local cluster.
	redisURL, redisText, err := startRedis(ctx, &l, redisServer, work)
	if err != nil {
		return interrupted(err)
	}

	// 2. A throwaway app key pair.
	appPriv, appPub, err := procs.WriteAppKeys(work)
	if err != nil {
		return err
	}

	// 3. The sandbox gateway; in certificate mode with an AES key and a
	// rotation of its Alipay certificate half-way through the jobs.
	sbc := launch.SandboxConfig{
		Program: bins["zhima-sandbox"], AppID: demoAppID, AppPublicKey: appPub,
		AlipayPublicKey: filepath.Join(work, "alipay_public.pem"), Log: sandboxLog, Seed: o.seed,
		Args: []string{"--system-error-rate", systemErrorRate, "--unavailable-rate", unavailableRate},
	}
	var aesKeyFile string
	if o.mode == "cert" {
		if aesKeyFile, err = writeAESKey(work); err != nil {
			return err
		}
		sbc.CertDir, sbc.EncryptKeyFile = filepath.Join(work, "certs"), aesKeyFile
		sbc.Args = append(sbc.Args, "--rotate-cert-after", strconv.Itoa(nJobs/2))
	}
	sb, err := l.StartSandbox(ctx, sbc)
	if err != nil {
		return interrupted(err)
	}

	// 4. The worker.
	// A throwaway data key: personal data is sealed in Redis as in production.
	dataKeys, err := seal.Generate("demo")
	if err != nil {
		return err
	}
	env := append(procs.CleanEnv(),
		"DATA_KEYS="+dataKeys,
		"REDIS_URL="+redisURL,
		"ZHIMA_APP_ID="+demoAppID,
		"ZHIMA_APP_PRIVATE_KEY_FILE="+appPriv,
		"LOG_FORMAT=console",
	)
	env = append(env, sb.GatewayEnv()...)
	if aesKeyFile != "" {
		env = append(env, "ZHIMA_ENCRYPT_KEY_FILE="+aesKeyFile)
	}
	workerEnv := append(env[:len(env):len(env)],
		"RETRY_BASE_DELAY=200ms",
		"RETRY_MAX_DELAY=1s",
		"WORKER_CONCURRENCY=8",
		"HTTP_ADDR=off",
	)
	wLog, err := os.Create(workerLog)
	if err != nil {
		return err
	}
	worker, err := l.Children.Start("worker", bins["worker"], nil, workerEnv, wLog, wLog)
	if err != nil {
		wLog.Close()
		return err
	}
	if err := waitWorker(ctx, worker, redisURL); err != nil {
		return interrupted(fmt.Errorf("%w\n%s", err, procs.Tail(workerLog, 10)))
	}

	fmt.Fprintf(stdout, "zhimaq demo: %s · sandbox %s (faults: %s%% SYSTEM_ERROR, %s%% 20000) · worker up\n",
		redisText, sb.URL, percent(systemErrorRate), percent(unavailableRate))
	if o.mode == "cert" {
		fmt.Fprintf(stdout, "certificate mode with AES content encryption; the sandbox rotates its Alipay certificate after %d answers\n", nJobs/2)
	}
	fmt.Fprintf(stdout, "enqueue batch --wait %s (%d lines)…\n", jobsPath, nJobs)

	// 5. The producer, waiting for every job.
	out, code, err := runEnqueue(ctx, bins["enqueue"], jobsPath, o.timeout, env, worker, stderr)
	if err != nil {
		if worker.Exited() {
			return interrupted(fmt.Errorf("%w; the worker exited early (%s):\n%s", err, procs.DescribeExit(worker.Err()), procs.Tail(workerLog, 10)))
		}
		return interrupted(err)
	}
	recs, err := parseRecords(out, nJobs)
	if err != nil {
		return fmt.Errorf("%w (enqueue exit status %d)", err, code)
	}
	s := summarize(recs)
	st, err := sb.Stats(ctx)
	if err != nil {
		return interrupted(err)
	}

	// 6. The table.
	fmt.Fprintln(stdout)
	if err := printTable(stdout, recs); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	billedOK := printSummary(stdout, s, st)
	rotatedOK := true
	if o.mode == "cert" {
		rotatedOK = st.CertRotations == 1 && st.CertDownloads == 1
		fmt.Fprintf(stdout, "certificate rotations: %d · downloads of the new certificate by the worker: %d (want 1 and 1)\n",
			st.CertRotations, st.CertDownloads)
	}

	// 7. Stop everything, in order.
	werr := stop(worker, stopGrace)
	serr := stop(sb.Child, stopGrace)
	fmt.Fprintf(stdout, "worker log: %s\nsandbox log: %s\n", workerLog, sandboxLog)
	switch {
	case s.unfinished > 0:
		return fmt.Errorf("%d jobs did not finish within %s", s.unfinished, o.timeout)
	case code != 0 && s.rejected == 0:
		return fmt.Errorf("enqueue exited with status %d although no line was rejected", code)
	case !billedOK:
		return fmt.Errorf("the sandbox billed %d calls for %d distinct succeeded transactions", st.Billed, s.distinctSucceeded)
	case !rotatedOK:
		return fmt.Errorf("the sandbox rotated its certificate %d times and the worker downloaded %d certificates; want 1 and 1", st.CertRotations, st.CertDownloads)
	case werr != nil:
		return werr
	case serr != nil:
		return serr
	}
	return nil
}

// findJobs returns the jobs file and its count of non-blank lines: path
// when set, else demo/jobs.jsonl in the working directory or beside the
// directory holding this program (bin/../demo).
func findJobs(path string) (string, int, error) {
	candidates := []string{path}
	if path == "" {
		candidates = []string{filepath.Join("demo", "jobs.jsonl")}
		if exe, err := os.Executable(); err == nil {
			if real, err := filepath.EvalSymlinks(exe); err == nil {
				exe = real
			}
			candidates = append(candidates, filepath.Join(filepath.Dir(exe), "..", "demo", "jobs.jsonl"))
		}
	}
	for _, c := range candidates {
		b, err := os.ReadFile(c)
		if err != nil {
			if path != "" || !errors.Is(err, os.ErrNotExist) {
				return "", 0, fmt.Errorf("jobs file: %w", err)
			}
			continue
		}
		n := 0
		for _, line := range bytes.Split(b, []byte("\n")) {
			if len(bytes.TrimSpace(line)) > 0 {
				n++
			}
		}
		if n == 0 {
			return "", 0, fmt.Errorf("jobs file %s holds no jobs", c)
		}
		return c, n, nil
	}
	return "", 0, errors.New("cannot find demo/jobs.jsonl; run from the module root or pass --jobs")
}

// stop asks c to end with SIGTERM, kills it after grace, and reports
// anything but a clean exit 0 after SIGTERM. A child that had already ended
// is reported as having exited early.
func stop(c *procs.Child, grace time.Duration) error {
	if c.Exited() {
		return fmt.Errorf("%s exited early: %s", c.Name(), procs.DescribeExit(c.Err()))
	}
	err := c.Stop(grace)
	if err != nil && !errors.Is(err, procs.ErrKilled) {
		return fmt.Errorf("%s stopped badly after SIGTERM: %s", c.Name(), procs.DescribeExit(err))
	}
	return err
}

// startRedis starts the demo's Redis and returns its REDIS_URL and how to
// name it: an embedded one without redisServer, else a cluster of that
// program, its nodes' files under dir.
func startRedis(ctx context.Context, l *launch.Launcher, redisServer, dir string) (url, text string, err error) {
	if redisServer == "" {
		rds, err := l.StartEmbeddedRedis()
		if err != nil {
			return "", "", err
		}
		return rds.URL(), "embedded Redis " + rds.Addr(), nil
	}
	c, err := l.StartRedisCluster(ctx, redisServer, filepath.Join(dir, "redis-cluster"), 3, 1)
	if err != nil {
		return "", "", fmt.Errorf("start a local Redis Cluster: %w", err)
	}
	return c.URL(), fmt.Sprintf("Redis Cluster %s (%d masters, %d replicas)", strings.TrimPrefix(c.URL(), "redis-cluster://"), len(c.Masters), len(c.Replicas)), nil
}

// waitWorker waits until the worker has registered with asynq in the Redis
// at url. A worker that exits fails the demo; one not seen within
// workerStartup is given the benefit of the doubt (enqueue --wait still
// watches it).
func waitWorker(ctx context.Context, w *procs.Child, url string) error {
	rdb, err := config.RedisClient(url)
	if err != nil {
		return err
	}
	defer rdb.Close()
	deadline := time.Now().Add(workerStartup)
	for rdb.Exists(ctx, "asynq:servers").Val() == 0 && time.Now().Before(deadline) {
		select {
		case <-w.Done():
			return fmt.Errorf("worker exited at start-up (%s)", procs.DescribeExit(w.Err()))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if w.Exited() {
		return fmt.Errorf("worker exited at start-up (%s)", procs.DescribeExit(w.Err()))
	}
	return nil
}

// runEnqueue runs `enqueue batch --wait` and returns its stdout and exit
// status. Exit 1 (some line rejected) is not an error here; 2, a signal or
// a worker that dies meanwhile is.
func runEnqueue(ctx context.Context, path, jobs string, timeout time.Duration, env []string, w *procs.Child, stderr io.Writer) ([]byte, int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-w.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	var out bytes.Buffer
	cmd := procs.Command(ctx, path, "batch", "--wait", "--timeout", timeout.String(), jobs)
	cmd.Env = env
	cmd.Stdout = &out
	cmd.Stderr = stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	code := procs.ExitCode(err)
	switch {
	case ctx.Err() != nil:
		return nil, code, fmt.Errorf("enqueue stopped: %w", context.Cause(ctx))
	case code == 0 || code == 1:
		return out.Bytes(), code, nil
	case code < 0:
		return nil, code, fmt.Errorf("enqueue: %w", err)
	}
	return nil, code, fmt.Errorf("enqueue exited with status %d (usage or configuration error)", code)
}

// writeAESKey writes a new AES content-encryption key, base64 as Alipay's
// console shows it, to a file only the owner reads.
func writeAESKey(dir string) (string, error) {
	key := make([]byte, 16)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "aes.key")
	return path, os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
}

func percent(rate string) string {
	f, err := strconv.ParseFloat(rate, 64)
	if err != nil {
		return rate
	}
	return strings.TrimSuffix(strconv.FormatFloat(f*100, 'f', 1, 64), ".0")
}
