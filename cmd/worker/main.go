// Command worker runs zhimaq jobs: it takes them from Redis, calls Alipay's
// gateway and stores each job's record. It is configured by the environment
// (see README.md) and runs until SIGINT or SIGTERM.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/api"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/logging"
	"github.com/zhimaq/zhimaq/internal/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stderr))
}

// run is the command without the process: 0 after a clean stop, 2 on a
// usage or configuration error, 1 on any other failure.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	if len(args) > 0 {
		if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			fmt.Fprint(stderr, usage)
			return 0
		}
		fmt.Fprintf(stderr, "worker: unexpected argument %q; it is configured by the environment (see --help)\n", args[0])
		return 2
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return 2
	}
	log, err := logging.New(cfg.LogFormat, cfg.LogLevel, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return 2
	}
	defer log.Sync()
	redis.SetLogger(logging.RedisLogger(log))
	w, err := worker.New(worker.Options{Config: cfg, Log: log, API: api.FromConfig})
	if err != nil {
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return 2
	}
	if err := w.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return 1
	}
	return 0
}

var usage = `worker — runs zhimaq's verification jobs against Alipay's gateway.

Usage: worker

Configured by the environment (defaults in brackets):
` + config.Help(config.Worker) + `
It stops on SIGINT or SIGTERM: running calls finish (or go back to the queue) and it exits 0.
`
