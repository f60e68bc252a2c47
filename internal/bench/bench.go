// Package bench measures zhimaq against its references on this machine and
// writes the table of ratios to bench/RESULTS.md. Run it with `make bench`
// (cmd/bench). Every figure is measured beside its reference in the same
// run, the two interleaved round by round, and reported as the median of
// the per-round ratios:
//
//  1. enqueue rate: zhimaq.Producer.Submit on 16 goroutines (enqueue batch's
//     default --parallel) against asynq Client.Enqueue of the same payloads;
//  2. worker CPU per job (a real worker in this process, the sandbox in its
//     own) against a bare asynq no-op server's plus one RSA2 sign and verify;
//  3. drain time with 100 ms latency and 10% SYSTEM_ERROR against
//     N / 0.9 × latency / concurrency;
//  4. Redis memory per queued job against bare asynq's;
//  5. gateway calls per second with ZHIMA_QPS and two bin/worker processes
//     against the quota, the most in any one-second window, and the
//     limiter's Redis calls per gateway call (from the workers' metrics);
//  6. Redis memory per rejected batch line (100,000 lines of {} through
//     Batch.SubmitJSONL) against a budget of 64 bytes;
//
// plus the gateway connections per 1,000 calls, RSA2 signing cost in pure
// Go, with GOEXPERIMENT=boringcrypto, and in OpenSSL, and that of the
// OpenSSL build (-tags openssl) against `openssl speed` ("sign-openssl").
//
// The bench starts and stops its own redis-server (no persistence) on a
// free loopback port, and bin/zhima-sandbox; it needs redis-server and
// openssl on PATH, gcc for the boringcrypto build and libcrypto's headers
// for the OpenSSL build.
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Options are the settings of a run. Zero values mean the defaults.
type Options struct {
	// Root is the module's directory; default ".".
	Root string
	// Bin holds worker and zhima-sandbox; default Root/bin. They are built
	// there when missing.
	Bin string
	// Out is the Markdown report; default Root/bench/RESULTS.md; "-" for none.
	Out string
	// Scale multiplies every job count and benchmark time (BENCH_SCALE);
	// default 1, about 6 minutes on 2 cores.
	Scale float64
	// Rounds per figure; default 5.
	Rounds int
	// Only lists the figures to run ("1,2,3,4,5,6,lanes,sign,sign-openssl");
	// default all.
	Only string
	// BenchTime is testing.Benchmark's time; default 1s × Scale.
	BenchTime time.Duration
	// NoProfile skips the CPU profiles taken when a target is missed.
	NoProfile bool
	// ProfileDir keeps those profiles; default a scratch directory.
	ProfileDir string
	// KeepTmp keeps the scratch directory (logs of Redis, sandbox, workers).
	KeepTmp bool
	// Log receives progress; default os.Stderr.
	Log io.Writer
}

func (o *Options) defaults() error {
	if o.Root == "" {
		o.Root = "."
	}
	if _, err := os.Stat(filepath.Join(o.Root, "go.mod")); err != nil {
		return fmt.Errorf("bench: %s is not the module's directory (no go.mod)", o.Root)
	}
	if o.Bin == "" {
		o.Bin = filepath.Join(o.Root, "bin")
	}
	if o.Out == "" {
		o.Out = filepath.Join(o.Root, "bench", "RESULTS.md")
	}
	if o.Scale <= 0 {
		o.Scale = 1
	}
	if o.Rounds <= 0 {
		o.Rounds = 5
	}
	if o.BenchTime <= 0 {
		o.BenchTime = time.Duration(float64(time.Second) * o.Scale).Round(time.Millisecond)
		o.BenchTime = max(o.BenchTime, 50*time.Millisecond)
	}
	if o.Log == nil {
		o.Log = os.Stderr
	}
	return nil
}

// scaled is n × Scale, at least least.
func (o *Options) scaled(n, least int) int {
	return max(least, int(math.Round(float64(n)*o.Scale)))
}

func (o *Options) wants(id string) bool {
	if o.Only == "" {
		return true
	}
	for _, f := range strings.Split(o.Only, ",") {
		if strings.TrimSpace(f) == id {
			return true
		}
	}
	return false
}

// Run measures every figure, prints the table on w and writes the report.
// Figures that fail are reported as such and the others go on; the error
// names the failures.
func Run(ctx context.Context, opts Options, w io.Writer) error {
	if err := opts.defaults(); err != nil {
		return err
	}
	testing.Init()
	if err := flag.Set("test.benchtime", opts.BenchTime.String()); err != nil {
		return err
	}
	started := time.Now()
	machine := describeMachine(ctx)
	e, err := newEnv(ctx, opts)
	if err != nil {
		return err
	}
	defer e.close()
	machine.redis = e.redisDescription(ctx)
	e.logf("bench: scale %g, %d rounds, benchtime %s; Redis %s; sandbox %s", opts.Scale, opts.Rounds, opts.BenchTime, e.redisURL, e.sb.AdminURL)

	var figs []*figure
	var failures []string
	step := func(id, title string, run func() ([]*figure, error)) {
		if !opts.wants(id) || ctx.Err() != nil {
			return
		}
		e.logf("bench: %s", title)
		t := time.Now()
		err := e.ensureSandbox(ctx)
		var fs []*figure
		if err == nil {
			fs, err = run()
		}
		if err != nil {
			e.keep = true
			e.logf("bench: %s failed: %v", title, err)
			failures = append(failures, fmt.Sprintf("%s: %v", title, err))
			figs = append(figs, &figure{ID: id, Name: title, Skip: "failed: " + firstLine(err.Error()), Target: "—"})
			return
		}
		figs = append(figs, fs...)
		e.logf("bench: %s took %s", title, time.Since(t).Round(time.Second))
	}
	one := func(f *figure, err error) ([]*figure, error) { return []*figure{f}, err }
	step("1", "figure 1, enqueue rate", func() ([]*figure, error) { return e.figEnqueue(ctx) })
	step("2", "figure 2, worker CPU per job", func() ([]*figure, error) { return e.figCPU(ctx) })
	step("3", "figure 3, drain time with latency and errors", func() ([]*figure, error) { return one(e.figDrain(ctx)) })
	step("4", "figure 4, Redis memory per job", func() ([]*figure, error) { return one(e.figMemory(ctx)) })
	step("5", "figure 5, calls per second under ZHIMA_QPS", func() ([]*figure, error) { return e.figQuota(ctx) })
	step("6", "figure 6, Redis memory per rejected batch line", func() ([]*figure, error) { return one(e.figLines(ctx)) })
	step("lanes", "lanes, interactive jobs behind a batch", func() ([]*figure, error) { return e.figLanes(ctx) })
	step("sign", "signing cost", func() ([]*figure, error) { return e.figSign(ctx) })
	step("sign-openssl", "signing cost, OpenSSL build", func() ([]*figure, error) { return one(e.figSignOpenSSL(ctx)) })
	if ctx.Err() != nil {
		failures = append(failures, "interrupted")
	}

	machine.elapsed = time.Since(started)
	machine.loadEnd = loadAvg()
	fmt.Fprintln(w)
	fmt.Fprint(w, table(figs))
	if opts.Out != "-" {
		if err := os.WriteFile(opts.Out, []byte(report(opts, machine, figs)), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(w, "\nwritten to %s\n", opts.Out)
	}
	if len(failures) > 0 {
		return errors.New("bench: " + strings.Join(failures, "; "))
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
