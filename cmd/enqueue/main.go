// Command enqueue is zhimaq's producer CLI: it submits verification jobs from
// a JSON Lines file to Redis as a batch and prints each job's result record,
// reads the record of one job, shows where a batch stands and exports its
// records. It is configured by the environment (see usage).
//
// Exit status: 0 on success, 1 when a job or the command failed (a rejected
// line, Redis unreachable, a timeout, an interrupt, no such record), 2 on a
// usage or configuration error, always with one line on stderr naming it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/wire"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go backstop(sigs, cancel, signalGrace, os.Stderr, os.Exit)
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// signalGrace is how long enqueue may take to stop after SIGINT or SIGTERM.
const signalGrace = 3 * time.Second

// backstop makes signals always stop the command: the first cancels its
// context, and if the command has not exited grace later, or on a second
// signal, backstop prints one line to stderr and calls exit(exitFailed).
func backstop(sigs <-chan os.Signal, cancel context.CancelFunc, grace time.Duration, stderr io.Writer, exit func(int)) {
	<-sigs
	cancel()
	select {
	case <-sigs:
		fmt.Fprintln(stderr, "enqueue: interrupted again; exiting at once")
	case <-time.After(grace):
		fmt.Fprintf(stderr, "enqueue: still not done %s after the interrupt; exiting\n", grace)
	}
	exit(exitFailed)
}

// quietLogger drops go-redis's log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// run is the command without the process, so tests can run it in-process.
// Cancelling ctx works like SIGINT.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	// go-redis logs each failed dial on stderr; enqueue reports Redis
	// failures itself, once.
	redis.SetLogger(quietLogger{})
	if len(args) == 0 {
		fmt.Fprintln(stderr, "enqueue: no command given; want "+commands+" (see enqueue --help)")
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if args[0] == "help" && len(args) > 1 {
			if help, ok := helps[args[1]]; ok {
				fmt.Fprint(stdout, help)
				return exitOK
			}
			fmt.Fprintf(stderr, "enqueue: help: unknown command %q; want %s\n", args[1], commands)
			return exitUsage
		}
		fmt.Fprint(stdout, usage)
		return exitOK
	case "batch":
		return runBatch(ctx, args[1:], stdin, stdout, stderr, getenv)
	case "get":
		return runGet(ctx, args[1:], stdout, stderr, getenv)
	case "status":
		return runStatus(ctx, args[1:], stdout, stderr, getenv)
	case "results":
		return runResults(ctx, args[1:], stdout, stderr, getenv)
	}
	fmt.Fprintf(stderr, "enqueue: unknown command %q; want %s (see enqueue --help)\n", args[0], commands)
	return exitUsage
}

// commands names the commands for messages.
const commands = "batch, get, status or results"

// helps are the commands' help texts.
var helps = map[string]string{"batch": batchUsage, "get": getUsage, "status": statusUsage, "results": resultsUsage}

// parseArgs parses fs's flags wherever they stand among the positional
// arguments (so `batch jobs.jsonl --wait` works too) and returns the
// positional ones. Everything after "--" is positional. On -h or --help it
// prints help to stdout and returns flag.ErrHelp; on any other error it
// prints one line to stderr. Either way the caller returns the given code.
func parseArgs(fs *flag.FlagSet, args []string, help string, stdout, stderr io.Writer) ([]string, int, error) {
	fs.SetOutput(io.Discard)
	var positional []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, help)
			return nil, exitOK, err
		}
		if err != nil {
			fmt.Fprintf(stderr, "enqueue %s: %v (see enqueue %s --help)\n", fs.Name(), err, fs.Name())
			return nil, exitUsage, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, exitOK, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), exitOK, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// usageError prints a usage problem of command cmd and returns exitUsage.
func usageError(stderr io.Writer, cmd, format string, a ...any) int {
	fmt.Fprintf(stderr, "enqueue %s: %s (see enqueue %s --help)\n", cmd, fmt.Sprintf(format, a...), cmd)
	return exitUsage
}

// producer is a Producer with the Redis client it was built on.
type producer struct {
	*zhimaq.Producer
	rdb redis.UniversalClient
}

// Close closes the producer and its Redis client.
func (p *producer) Close() {
	p.Producer.Close()
	p.rdb.Close()
}

// connect reads the configuration and builds a producer. It does not reach
// Redis yet, so only a malformed or missing setting fails it; then it says
// so on stderr and returns nil, and the caller exits with exitUsage.
func connect(getenv func(string) string, stderr io.Writer) *producer {
	p, err := newProducer(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "enqueue: %v\n", err)
		return nil
	}
	return p
}

// newProducer is connect without the report.
func newProducer(getenv func(string) string) (*producer, error) {
	cfg, err := config.Load(getenv)
	if err != nil {
		return nil, err
	}
	if len(cfg.AppIDs()) == 0 {
		return nil, errors.New("config: ZHIMA_APP_ID or ZHIMA_APPS_FILE is required")
	}
	if _, err := cfg.Keyring(); err != nil {
		return nil, err
	}
	rdb, err := config.RedisClient(cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	p, err := zhimaq.NewProducer(rdb, wire.ProducerConfig(cfg))
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return &producer{Producer: p, rdb: rdb}, nil
}

var environment = "Environment (defaults in brackets):\n" + config.Help(config.Enqueue) + `They must match the workers' settings. Other zhimaq variables (see worker
--help) are checked for form when set but not used by enqueue.
`

var usage = `enqueue — submits zhimaq verification jobs and reads their results.

Usage:
  enqueue batch [--wait] [--timeout D] [--parallel N] [--callback URL] [--lane L] FILE|-
      submit one job per line of FILE (or standard input) as a batch and
      print one result record per line
  enqueue get --method M --transaction-id T [--app-id A]
      print the result record of one job
  enqueue status --batch ID [--watch]
      show where the jobs of a batch stand, and the time left
  enqueue results --batch ID [--format jsonl|csv]
      export the records of a batch, in the order of its lines
  enqueue help [batch|get|status|results]
      print this help, or a command's

Jobs run in the background on zhimaq's workers; a result record says where a
job stands ("queued", "running", "retrying", "held" until Beijing midnight
when its app's daily budget is spent, "succeeded", "failed", or "rejected"
when it was never enqueued).

` + environment + `
Exit status: 0 on success; 1 when a line was rejected, a job did not finish,
Redis failed, or no record or batch exists; 2 on a usage or configuration
error.
`
