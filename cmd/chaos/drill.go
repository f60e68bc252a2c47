package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/launch"
	"github.com/zhimaq/zhimaq/internal/procs"
)

// appID is the fake app every drill uses; the sandbox accepts only it.
const appID = "2021000000000001"

// leaseRecovery is how long asynq v0.26 may take to hand back a task whose
// worker died: the lease (rdb.LeaseDuration, 30s, extended by the 5s
// heartbeat) must have been expired for 30s (the recoverer's clock-skew
// cutoff) when the recoverer runs, which it does once at each server's
// start and then every minute (server.go). So 60–120s after the crash.
const leaseRecovery = 2 * time.Minute

// env is what every drill shares: programs, keys, Redis, directories.
type env struct {
	bins      map[string]string
	l         *launch.Launcher
	work      string // removed at the end
	logs      string // kept
	appPriv   string
	appPub    string
	dataKeys  string
	redis     *launch.Redis // the Redis the drills share
	sharedRDB *redis.Client
	program   string // redis-server, for the drills that run a Redis of their own
	jobs      int
	seed      uint64
	runID     string
	outage    time.Duration
	// waitReplicas is REDIS_WAIT_REPLICAS on the drills with replicas.
	waitReplicas int
	out          io.Writer
}

// workerConfig is the part of a worker's environment a drill chooses.
type workerConfig struct {
	Concurrency int
	Timeout     time.Duration // ZHIMA_TIMEOUT
	BaseDelay   time.Duration // RETRY_BASE_DELAY
	MaxDelay    time.Duration // RETRY_MAX_DELAY
	Attempts    int           // RETRY_MAX_ATTEMPTS
}

// shutdownTimeout is the worker's: running calls get the gateway timeout
// plus 2s after SIGTERM (internal/worker).
func (w workerConfig) shutdownTimeout() time.Duration { return w.Timeout + 2*time.Second }

func (w workerConfig) String() string {
	return fmt.Sprintf("WORKER_CONCURRENCY=%d ZHIMA_TIMEOUT=%s RETRY_MAX_ATTEMPTS=%d RETRY_BASE_DELAY=%s RETRY_MAX_DELAY=%s",
		w.Concurrency, w.Timeout, w.Attempts, w.BaseDelay, w.MaxDelay)
}

// drill is one drill's run: its own queue and key prefix in the shared
// Redis, its own sandbox, workers and producers, and its tally.
type drill struct {
	*env
	*topology
	name   string
	dir    string // inside env.work
	logDir string // inside env.logs
	queue  string
	prefix string
	txPre  string
	gen    *jobGen
	wcfg   workerConfig
	start  time.Time
	mu     sync.Mutex // guards res's notes and problems
	res    *result

	gw       *gateway
	producer *zhimaq.Producer

	workers    map[string]*procs.Child // the latest process of each worker name
	allWorkers []*procs.Child
	starts     map[string]int

	// oneCallEach: no faults, so the sandbox must see exactly one call per transaction.
	oneCallEach bool

	accepted map[zhimaq.Ref]bool
	order    []zhimaq.Ref
	final    map[zhimaq.Ref]*zhimaq.Record
}

func newDrill(e *env, top *topology, name, short string, n int) (*drill, error) {
	d := &drill{
		env:      e,
		topology: top,
		name:     name,
		dir:      filepath.Join(e.work, name),
		logDir:   filepath.Join(e.logs, name),
		queue:    "chaos-" + name + "-" + e.runID,
		prefix:   "chaos:" + e.runID + ":" + name + ":",
		txPre:    short + e.runID,
		gen:      newJobGen(e.seed + uint64(n)*7919),
		wcfg:     workerConfig{Concurrency: 16, Timeout: 5 * time.Second, BaseDelay: 200 * time.Millisecond, MaxDelay: 2 * time.Second, Attempts: 12},
		start:    time.Now(),
		res:      &result{Name: name},
		workers:  map[string]*procs.Child{},
		starts:   map[string]int{},
		accepted: map[zhimaq.Ref]bool{},
		final:    map[zhimaq.Ref]*zhimaq.Record{},
	}
	for _, dir := range []string{d.dir, d.logDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	p, err := zhimaq.NewProducer(d.rdb, zhimaq.ProducerConfig{AppID: appID, Queue: d.queue, KeyPrefix: d.prefix, DataKeys: e.dataKeys})
	if err != nil {
		return nil, err
	}
	d.producer = p
	return d, nil
}

// logf prints one line of the drill's story.
func (d *drill) logf(format string, args ...any) {
	fmt.Fprintf(d.out, "  %-16s +%5.1fs  %s\n", d.name, time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

// note keeps a line for the drill's summary; problem also fails the drill.
func (d *drill) note(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.res.Notes = append(d.res.Notes, fmt.Sprintf(format, args...))
}

func (d *drill) problem(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.res.Problems = append(d.res.Problems, fmt.Sprintf(format, args...))
}

// startGateway starts the drill's sandbox with the given extra flags.
func (d *drill) startGateway(ctx context.Context, args ...string) error {
	g, err := startGateway(ctx, d.env, d.dir, d.logDir, int64(d.seed%1e9)+int64(len(d.name)), args)
	if err != nil {
		return err
	}
	d.gw = g
	d.watch(g.sb.Child)
	return nil
}

// watch says at once when c ends although chaos did not ask it to.
func (d *drill) watch(c *procs.Child) {
	go func() {
		<-c.Done()
		if c.UnexpectedExit() {
			d.logf("%s (pid %d) exited by itself: %s", c.Name(), c.Pid(), procs.DescribeExit(c.Err()))
		}
	}()
}

func (d *drill) commonEnv() []string {
	env := procs.CleanEnv()
	if d.replicated() {
		env = append(env, "REDIS_WAIT_REPLICAS="+strconv.Itoa(d.waitReplicas))
	}
	return append(env,
		"REDIS_URL="+d.url,
		"ZHIMA_APP_ID="+appID,
		"ZHIMAQ_QUEUE="+d.queue,
		"ZHIMAQ_KEY_PREFIX="+d.prefix,
		"DATA_KEYS="+d.dataKeys,
		"RETRY_MAX_ATTEMPTS="+strconv.Itoa(d.wcfg.Attempts),
		"LOG_FORMAT=json",
	)
}

func (d *drill) workerEnv() []string {
	return append(d.commonEnv(),
		"ZHIMA_GATEWAY_URL="+d.gw.URL(),
		"ZHIMA_APP_PRIVATE_KEY_FILE="+d.appPriv,
		"ZHIMA_ALIPAY_PUBLIC_KEY_FILE="+d.gw.sb.AlipayPublicKey,
		"ZHIMA_TIMEOUT="+d.wcfg.Timeout.String(),
		"WORKER_CONCURRENCY="+strconv.Itoa(d.wcfg.Concurrency),
		"RETRY_BASE_DELAY="+d.wcfg.BaseDelay.String(),
		"RETRY_MAX_DELAY="+d.wcfg.MaxDelay.String(),
		"HTTP_ADDR=off",
	)
}

// startWorker starts (or starts again) the worker called name and waits
// until it says it has started.
func (d *drill) startWorker(ctx context.Context, name string) (*procs.Child, error) {
	d.starts[name]++
	logPath := filepath.Join(d.logDir, fmt.Sprintf("%s.%d.log", name, d.starts[name]))
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	up := make(chan struct{})
	var once sync.Once
	tap := procs.NewLineTap(f, func(line []byte) {
		if bytes.Contains(line, []byte(`"worker started"`)) {
			once.Do(func() { close(up) })
		}
	})
	c, err := d.l.Children.Start(name, d.bins["worker"], nil, d.workerEnv(), tap, tap)
	if err != nil {
		f.Close()
		return nil, err
	}
	d.workers[name] = c
	d.allWorkers = append(d.allWorkers, c)
	d.watch(c)
	select {
	case <-up:
		return c, nil
	case <-c.Done():
		return nil, fmt.Errorf("%s exited at start-up (%s):\n%s", name, procs.DescribeExit(c.Err()), procs.Tail(logPath, 8))
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("%s did not start within 30s:\n%s", name, procs.Tail(logPath, 8))
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// startWorkers starts workers a, b, … .
func (d *drill) startWorkers(ctx context.Context, n int) error {
	for i := range n {
		if _, err := d.startWorker(ctx, "worker-"+string(rune('a'+i))); err != nil {
			return err
		}
	}
	d.res.InFlightLimit = int64(n * d.wcfg.Concurrency)
	return nil
}

// stopWorker sends SIGTERM to a worker and waits for it; it returns how
// long it took and how the worker ended.
func (d *drill) stopWorker(name string) (time.Duration, error) {
	c := d.workers[name]
	start := time.Now()
	err := c.Stop(d.wcfg.shutdownTimeout() + 20*time.Second)
	return time.Since(start), err
}

// producerRun is one `enqueue batch` process.
type producerRun struct {
	name    string
	child   *procs.Child
	outPath string
	lines   atomic.Int64 // records printed so far
	fed     atomic.Int64 // lines written to its standard input, when paced
}

// newProducerRun creates the files of the producer called name: its records
// go to <name>.jsonl and its stderr to <name>.log in the log dir.
func (d *drill) newProducerRun(name string) (pr *producerRun, out, errLog *os.File, err error) {
	pr = &producerRun{name: name, outPath: filepath.Join(d.logDir, name+".jsonl")}
	if out, err = os.Create(pr.outPath); err != nil {
		return nil, nil, nil, err
	}
	if errLog, err = os.Create(filepath.Join(d.logDir, name+".log")); err != nil {
		out.Close()
		return nil, nil, nil, err
	}
	return pr, out, errLog, nil
}

// startProducer starts `enqueue batch [--wait --timeout T] [flags] file`; its
// records go to <name>.jsonl and its stderr to <name>.log in the log dir.
func (d *drill) startProducer(name, file string, wait bool, flags ...string) (*producerRun, error) {
	pr, out, errLog, err := d.newProducerRun(name)
	if err != nil {
		return nil, err
	}
	tap := procs.NewLineTap(out, func([]byte) { pr.lines.Add(1) })
	args := []string{"batch"}
	if wait {
		args = append(args, "--wait", "--timeout", "8m")
	}
	args = append(append(args, flags...), file)
	c, err := d.l.Children.Start(name, d.bins["enqueue"], args, d.commonEnv(), tap, errLog)
	if err != nil {
		out.Close()
		errLog.Close()
		return nil, err
	}
	pr.child = c
	return pr, nil
}

// startPacedProducer starts `enqueue batch [flags] -` and feeds it jobs on
// its standard input at rate lines a second, as a pipeline streaming jobs
// would; feeding stops when enqueue stops reading.
func (d *drill) startPacedProducer(ctx context.Context, name string, jobs []job, rate int, flags ...string) (*producerRun, error) {
	pr, out, errLog, err := d.newProducerRun(name)
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		out.Close()
		errLog.Close()
		return nil, err
	}
	tap := procs.NewLineTap(out, func([]byte) { pr.lines.Add(1) })
	args := append(append([]string{"batch"}, flags...), "-")
	c, err := d.l.Children.StartIn(name, d.bins["enqueue"], args, d.commonEnv(), r, tap, errLog)
	r.Close()
	if err != nil {
		w.Close()
		out.Close()
		errLog.Close()
		return nil, err
	}
	pr.child = c
	go func() {
		<-ctx.Done()
		w.Close() // unblocks a write that waits for a reader
	}()
	go func() {
		defer w.Close()
		const tick = 10 * time.Millisecond
		t := time.NewTicker(tick)
		defer t.Stop()
		start := time.Now()
		sent := 0
		for sent < len(jobs) {
			<-t.C
			due := min(len(jobs), int(time.Since(start)*time.Duration(rate)/time.Second))
			var buf bytes.Buffer
			for ; sent < due; sent++ {
				buf.Write(jobs[sent].Line)
				buf.WriteByte('\n')
			}
			if _, err := w.Write(buf.Bytes()); err != nil {
				return // enqueue stopped reading
			}
			pr.fed.Store(int64(sent))
		}
	}()
	return pr, nil
}

// finish waits for the producer to exit and returns its records and exit
// status. The status is not an error: 1 means some line was rejected.
func (pr *producerRun) finish(ctx context.Context) ([]*zhimaq.Submission, int, error) {
	select {
	case <-pr.child.Done():
	case <-ctx.Done():
		return nil, -1, ctx.Err()
	}
	code := procs.ExitCode(pr.child.Err())
	recs, err := readRecords(pr.outPath)
	if err != nil {
		return nil, code, fmt.Errorf("%s: %w", pr.name, err)
	}
	if code != 0 && code != 1 {
		return recs, code, fmt.Errorf("%s exited with %s: %s", pr.name, procs.DescribeExit(pr.child.Err()), procs.Tail(filepath.Join(filepath.Dir(pr.outPath), pr.name+".log"), 3))
	}
	return recs, code, nil
}

// readRecords reads enqueue's JSONL output.
func readRecords(path string) ([]*zhimaq.Submission, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseRecords(f)
}

// parseRecords reads result records, one JSON object a line; blank lines
// are skipped.
func parseRecords(r io.Reader) ([]*zhimaq.Submission, error) {
	var recs []*zhimaq.Submission
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		rec := new(zhimaq.Submission)
		if err := json.Unmarshal(line, rec); err != nil {
			return recs, fmt.Errorf("output line %d is not a result record: %v", n, err)
		}
		if rec.State == "" {
			return recs, fmt.Errorf("output line %d has no state", n)
		}
		recs = append(recs, rec)
	}
	return recs, sc.Err()
}

// accept adds the jobs the records say were accepted (not rejected) to the
// drill's jobs in.
func (d *drill) accept(recs []*zhimaq.Submission) {
	for _, r := range recs {
		if r.State == zhimaq.Rejected {
			continue
		}
		ref := zhimaq.Ref{Method: r.Method, TransactionID: r.TransactionID}
		if !d.accepted[ref] {
			d.accepted[ref] = true
			d.order = append(d.order, ref)
		}
	}
}

// finished counts the refs whose records are terminal.
func (d *drill) finished(ctx context.Context, refs []zhimaq.Ref) (int, []*zhimaq.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	recs, err := d.producer.Results(ctx, refs)
	if err != nil {
		return 0, nil, err
	}
	n := 0
	for _, r := range recs {
		if r != nil && r.State.Terminal() {
			n++
		}
	}
	return n, recs, nil
}

// waitProgress waits until at least frac of refs have finished, or limit
// passes; it returns how many had.
func (d *drill) waitProgress(ctx context.Context, refs []zhimaq.Ref, frac float64, limit time.Duration) (int, error) {
	want := int(frac * float64(len(refs)))
	deadline := time.Now().Add(limit)
	for {
		n, _, err := d.finished(ctx, refs)
		if err == nil && n >= want {
			return n, nil
		}
		if time.Now().After(deadline) {
			return n, fmt.Errorf("only %d of %d jobs finished within %s", n, len(refs), limit)
		}
		if err := launch.Sleep(ctx, 100*time.Millisecond); err != nil {
			return n, err
		}
	}
}

// awaitAll polls the accepted jobs until all have succeeded or failed, or
// the deadline passes; the records read last become the drill's final ones.
func (d *drill) awaitAll(ctx context.Context, deadline time.Time) error {
	refs := d.order
	lastNote := time.Now()
	for {
		n, recs, err := d.finished(ctx, refs)
		if err == nil {
			for i, r := range recs {
				d.final[refs[i]] = r
			}
			if n == len(refs) {
				d.logf("all %d accepted jobs finished", n)
				return nil
			}
		}
		if time.Now().After(deadline) {
			d.logf("deadline: %d of %d accepted jobs finished", n, len(refs))
			return nil
		}
		if time.Since(lastNote) >= 20*time.Second {
			d.logf("%d of %d accepted jobs finished", n, len(refs))
			lastNote = time.Now()
		}
		if err := launch.Sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}

// queueInfo reads asynq's view of the drill's queue.
func (d *drill) queueInfo() (*asynq.QueueInfo, error) {
	insp := asynq.NewInspectorFromRedisClient(d.rdb)
	defer insp.Close()
	return insp.GetQueueInfo(d.queue)
}

// close stops the drill's workers (each must exit 0 on SIGTERM) and its
// gateway; a process that ended by itself is a problem.
func (d *drill) close() {
	for _, c := range d.allWorkers {
		if c.UnexpectedExit() {
			d.problem("%s (pid %d) exited by itself: %s", c.Name(), c.Pid(), procs.DescribeExit(c.Err()))
		}
	}
	var wg sync.WaitGroup
	for name, c := range d.workers {
		if c.Exited() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			took, err := d.stopWorker(name)
			if err != nil {
				d.problem("%s did not stop cleanly on SIGTERM after %s: %s", name, took.Round(time.Millisecond), procs.DescribeExit(err))
			}
		}()
	}
	wg.Wait()
	if d.gw != nil {
		if d.gw.sb.Child.UnexpectedExit() {
			d.problem("zhima-sandbox exited by itself: %s", procs.DescribeExit(d.gw.sb.Child.Err()))
		}
		_ = d.gw.close()
	}
	d.producer.Close()
}

var errSkipped = errors.New("skipped")
