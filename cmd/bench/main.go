// Command bench measures zhimaq against its references on this machine,
// prints a table of ratios and writes bench/RESULTS.md (package internal/bench).
// Run it from the module's directory: `make bench`, or
// `go run ./cmd/bench [-scale F] [-rounds N] [-only 1,2,3,4,5,6,lanes,sign,sign-openssl]`.
// BENCH_SCALE, when set, is the default of -scale.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/zhimaq/zhimaq/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string) int {
	var o bench.Options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	scale := 1.0
	if v := os.Getenv("BENCH_SCALE"); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || s <= 0 {
			fmt.Fprintf(os.Stderr, "bench: BENCH_SCALE=%q: want a number > 0\n", v)
			return 2
		}
		scale = s
	}
	fs.Float64Var(&o.Scale, "scale", scale, "multiply job counts and benchmark times (env BENCH_SCALE); 1 takes about 6 minutes")
	fs.IntVar(&o.Rounds, "rounds", 5, "rounds per figure; the median is reported")
	fs.StringVar(&o.Only, "only", "", "comma-separated figures to run: 1,2,3,4,5,6,lanes,sign,sign-openssl (default all)")
	fs.StringVar(&o.Root, "root", ".", "the module's directory")
	fs.StringVar(&o.Bin, "bin", "", "directory of worker and zhima-sandbox (default ROOT/bin; built when missing)")
	fs.StringVar(&o.Out, "out", "", `Markdown report (default ROOT/bench/RESULTS.md; "-" for none)`)
	fs.DurationVar(&o.BenchTime, "benchtime", 0, "testing.Benchmark time (default 1s × scale)")
	fs.BoolVar(&o.NoProfile, "no-profile", false, "skip the CPU profiles taken when a target is missed")
	fs.StringVar(&o.ProfileDir, "profiles", "", "keep those profiles in this directory")
	fs.BoolVar(&o.KeepTmp, "keep", false, "keep the scratch directory (Redis, sandbox and worker logs)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := bench.Run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
