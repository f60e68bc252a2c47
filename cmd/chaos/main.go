// Command chaos runs drills against real zhimaq processes (`make chaos`) and
// checks that nothing is lost and nothing is billed twice.
//
// It starts, each in its own process group, the programs built next to it
// (worker, enqueue, zhima-sandbox) and a redis-server of its own: a free port
// on 127.0.0.1, its own directory, --appendonly yes as docker-compose runs
// it, --save "". It never uses a Redis that already runs on the machine.
// Without redis-server it uses an embedded miniredis and skips the drills that
// restart Redis or run one of their own. Each drill has its own queue, key prefix and sandbox; the
// workers call the sandbox through a small counting proxy inside chaos.
//
// The drills, each on a batch of --jobs fake jobs (valid resident ID
// numbers, phones, names; all three methods):
//
//   - kill-worker: two workers, kill -9 one in mid-batch, start it again;
//   - restart-redis: SHUTDOWN Redis in mid-batch, start it again on the same
//     port and directory; the file is submitted again where enqueue stopped;
//   - gateway-outage: every call answers 20000 for --outage, then recovers;
//   - gateway-hang: 5% of calls hang until ZHIMA_TIMEOUT (2s) ends them;
//   - racing-producers: two enqueue batch --wait on overlapping files, with
//     conflicting parameters for some shared transaction_ids;
//   - graceful-stop: SIGTERM the worker in mid-batch, start it again;
//   - sentinel-failover: on a master, a replica and 3 sentinels of the
//     drill's own, kill -9 the master in mid-batch; the sentinels promote
//     the replica; the old master, started again, follows it;
//   - cluster-failover: on a Redis Cluster of 3 masters with a replica each,
//     kill -9 the master of the queue's slot in mid-batch; its replica takes
//     over; the old master, started again, follows it;
//   - cluster-reshard: on such a cluster, move every slot of the queue's
//     master to another master in mid-batch.
//
// The last three run with REDIS_WAIT_REPLICAS=--wait-replicas (1); with 0
// they measure what a failover loses without it.
//
// After each drill it prints one line: jobs in, finished (succeeded /
// failed), lost (accepted but not finished by the drill's deadline),
// transaction_ids billed twice (TRANSACTION_ID_REPEAT answered by the
// gateway, or more billed calls than transactions called), the sandbox's
// calls and billed calls (which must equal the succeeded jobs), the highest
// count of gateway requests in flight against the workers' handlers, and the
// time it took; then notes on what it saw. Logs of every process stay in a
// directory printed at the end.
//
// Exit status: 0 when every drill that ran passed; 1 when one failed; 2 on
// a usage error; 130 when interrupted. Children are stopped on every path.
//
// Usage: chaos [--jobs N] [--drill NAME[,NAME…]] [--outage D] [--bin DIR]
// [--log-dir DIR] [--redis-server PATH] [--seed N] [--wait-replicas 0|1]
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/launch"
	"github.com/zhimaq/zhimaq/internal/procs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	redis.SetLogger(quietLogger{})
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// quietLogger drops go-redis's log lines: a Redis restart is on purpose.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

type options struct {
	jobs        int
	drills      []drillSpec
	outage      time.Duration
	binDir      string
	logDir      string
	redisServer string
	seed        uint64
	wait        int
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var names string
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.jobs, "jobs", 3000, "jobs per drill")
	fs.StringVar(&names, "drill", "", "run only these drills, comma-separated: "+strings.Join(drillNames(), ", "))
	fs.DurationVar(&o.outage, "outage", time.Minute, "how long the gateway-outage drill's outage lasts")
	fs.StringVar(&o.binDir, "bin", "", "`dir` holding worker, enqueue and zhima-sandbox (default: next to this program, then PATH)")
	fs.StringVar(&o.logDir, "log-dir", "", "`dir` for every process's log, kept after the run (default: a new temp dir)")
	fs.StringVar(&o.redisServer, "redis-server", "", "the redis-server `program` (default: redis-server on PATH)")
	fs.IntVar(&o.wait, "wait-replicas", 1, "REDIS_WAIT_REPLICAS of the drills with replicas (0: measure what a failover loses without it)")
	fs.Uint64Var(&o.seed, "seed", 0, "`seed` of the job data and the sandbox's fault draws; 0 picks one")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.jobs < 10 {
		return o, fmt.Errorf("--jobs must be at least 10, got %d", o.jobs)
	}
	if o.wait < 0 || o.wait > 1 {
		return o, fmt.Errorf("--wait-replicas must be 0 or 1 (each master has one replica), got %d", o.wait)
	}
	if o.outage < time.Second {
		return o, fmt.Errorf("--outage must be at least 1s, got %s", o.outage)
	}
	var err error
	if o.drills, err = selectDrills(names); err != nil {
		return o, err
	}
	if o.seed == 0 {
		o.seed = mrand.Uint64N(1<<31) + 1
	}
	return o, nil
}

// selectDrills returns the drills named in a comma-separated list, in
// their usual order; all of them for "".
func selectDrills(names string) ([]drillSpec, error) {
	if strings.TrimSpace(names) == "" {
		return drills, nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		found := false
		for _, s := range drills {
			found = found || s.name == n
		}
		if !found {
			return nil, fmt.Errorf("--drill: unknown drill %q; want one of %s", n, strings.Join(drillNames(), ", "))
		}
		want[n] = true
	}
	var out []drillSpec
	for _, s := range drills {
		if want[s.name] {
			out = append(out, s)
		}
	}
	return out, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "chaos: %v\n", err)
		return 2
	}
	results, logDir, err := runDrills(ctx, o, stdout)
	if logDir != "" {
		fmt.Fprintf(stdout, "logs: %s\n", logDir)
	}
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "chaos: interrupted; children stopped")
		return 130
	case err != nil:
		fmt.Fprintf(stderr, "chaos: %v\n", err)
		return 1
	}
	for _, r := range results {
		if r.Skipped == "" && !r.Pass() {
			return 1
		}
	}
	return 0
}

// runDrills sets up what the drills share, runs them and prints their
// summary; every process it started has ended when it returns.
func runDrills(ctx context.Context, o options, out io.Writer) (results []*result, logDir string, err error) {
	bins, err := launch.Programs(o.binDir, "worker", "enqueue", "zhima-sandbox")
	if err != nil {
		return nil, "", err
	}
	work, err := os.MkdirTemp("", "zhimaq-chaos-")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(work)
	logDir = o.logDir
	if logDir == "" {
		if logDir, err = os.MkdirTemp("", "zhimaq-chaos-logs-"); err != nil {
			return nil, "", err
		}
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, "", err
	}
	l := &launch.Launcher{}
	defer l.Close(10 * time.Second)

	e := &env{bins: bins, l: l, work: work, logs: logDir, jobs: o.jobs, seed: o.seed, outage: o.outage, waitReplicas: o.wait, out: out}
	if e.appPriv, e.appPub, err = procs.WriteAppKeys(work); err != nil {
		return nil, logDir, err
	}
	var key [32]byte
	rand.Read(key[:])
	e.dataKeys = "chaos:" + base64.StdEncoding.EncodeToString(key[:])
	var id [3]byte
	rand.Read(id[:])
	e.runID = hex.EncodeToString(id[:])

	var noRedisServer, redisText string
	if path, lerr := launch.FindRedisServer(o.redisServer); lerr == nil {
		e.program = path
		dir := filepath.Join(work, "redis")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, logDir, err
		}
		if e.redis, err = l.StartRedisServer(ctx, launch.RedisServer{Program: path, Dir: dir, Log: filepath.Join(logDir, "redis-server.log"), AOF: true}); err != nil {
			return nil, logDir, err
		}
		redisText = fmt.Sprintf("private redis-server %s (pid %d, --appendonly yes --save \"\", dir %s)", e.redis.Addr(), e.redis.Child().Pid(), dir)
	} else {
		noRedisServer = "redis-server is not installed (" + lerr.Error() + "); install it with `apt-get install redis-server` (or pass --redis-server PATH)"
		if e.redis, err = l.StartEmbeddedRedis(); err != nil {
			return nil, logDir, err
		}
		redisText = "embedded miniredis " + e.redis.Addr() + " (redis-server is not installed)"
	}
	e.sharedRDB = redis.NewClient(&redis.Options{Addr: e.redis.Addr(), DialTimeout: time.Second, PoolSize: 16})
	defer e.sharedRDB.Close()

	fmt.Fprintf(out, "zhimaq chaos: %d jobs a drill, seed %d, run %s\n", o.jobs, o.seed, e.runID)
	fmt.Fprintf(out, "redis: %s\n", redisText)
	if noRedisServer != "" {
		fmt.Fprintf(out, "note: %s\n", noRedisServer)
	}
	fmt.Fprintf(out, "programs: %s\nlogs: %s\n", filepath.Dir(bins["worker"]), logDir)

	for i, spec := range o.drills {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(out, "\n== %s: %s\n", spec.name, spec.about)
		var r *result
		if spec.needsRedisServer && e.redis.Embedded() {
			r = &result{Name: spec.name, Skipped: noRedisServer}
		} else {
			r = runDrill(ctx, e, spec, i)
		}
		results = append(results, r)
		printResult(out, r)
	}
	if ctx.Err() == nil {
		fmt.Fprintln(out, "\nsummary:")
		for _, r := range results {
			fmt.Fprintln(out, r.Line())
		}
	}
	return results, logDir, nil
}

// runDrill runs one drill, tallies it and stops its processes.
func runDrill(ctx context.Context, e *env, spec drillSpec, n int) *result {
	top, err := e.startTopology(ctx, spec)
	if err != nil {
		return &result{Name: spec.name, Problems: []string{err.Error()}}
	}
	defer top.stop()
	d, err := newDrill(e, top, spec.name, spec.short, n)
	if err != nil {
		return &result{Name: spec.name, Problems: []string{err.Error()}}
	}
	if err := spec.run(ctx, d); err != nil {
		if ctx.Err() != nil {
			d.problem("interrupted")
		} else {
			d.problem("the drill stopped early: %v", err)
		}
	}
	if d.gw != nil && ctx.Err() == nil {
		d.account(ctx)
	}
	d.close()
	d.res.Elapsed = time.Since(d.start)
	return d.res
}

func printResult(w io.Writer, r *result) {
	fmt.Fprintln(w, r.Line())
	for _, n := range r.Notes {
		fmt.Fprintf(w, "    · %s\n", n)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "    ✗ %s\n", p)
	}
}
