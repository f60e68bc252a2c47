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
	w, err := worker.New(worker.Options{Config: cfg, Log: log})
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

const usage = `worker — runs zhimaq's verification jobs against Alipay's gateway.

Usage: worker

Configured by the environment (defaults in brackets):
  REDIS_URL                      redis://, rediss:// or redis-sentinel:// [redis://127.0.0.1:6379/0]
  ZHIMA_GATEWAY_URL              gateway endpoint [https://openapi.alipay.com/gateway.do]
  ZHIMA_APP_ID                   app id (required)
  ZHIMA_APP_PRIVATE_KEY[_FILE]   app private key, PEM or bare base64 (required)
  ZHIMA_ALIPAY_PUBLIC_KEY[_FILE] Alipay public key, PEM or bare base64 (required)
  ZHIMA_SIGN_TYPE                RSA2 or RSA [RSA2]
  ZHIMA_TIMEOUT                  one gateway call [15s]
  WORKER_CONCURRENCY             handlers at once [50]
  RETRY_MAX_ATTEMPTS             gateway calls per job, first included [12]
  RETRY_BASE_DELAY, RETRY_MAX_DELAY  backoff with jitter [2s, 10m]
  DEDUP_WINDOW                   transaction_id window [24h]
  RESULT_TTL                     how long records stay readable [168h]
  ZHIMA_QPS                      gateway calls per second per app, all workers together; 0 = no limit [0]
  BREAKER_FAILURES, BREAKER_COOLDOWN  transient failures in a row that stop calls; pause before a probe [20, 10s]
  DATA_KEYS[_FILE]               keys that seal personal data in Redis: id:base64-32-bytes,… the first seals
                                 (required; "plaintext" opts out)
  CALLBACK_SECRET[_FILE]         signs batch callbacks (HMAC-SHA256)
  CALLBACK_HOSTS                 hosts batch callbacks may go to: host[:port], *.domain[:port], comma-separated;
                                 others are refused at submission and never called [any public address]
  API_TOKENS[_FILE]              bearer tokens of the HTTP API (/v1/…), strong (openssl rand -hex 32);
                                 unset = no API
  HTTP_ADDR                      /healthz, /readyz, /metrics and the API; "off" for none;
                                 ":8080" listens on every interface [127.0.0.1:8080]
  HTTP_IDLE_TIMEOUT              close a keep-alive connection idle this long [60s]
  HTTP_STALL_TIMEOUT             drop a client that sends or takes nothing this long [30s]
  HTTP_MAX_HEADER_BYTES          largest request header [16384]
  API_MAX_REQUESTS               API requests served at once; more get 503 [32]
  BATCH_MAX_LINES                most lines one batch may hold [100000]
  ZHIMAQ_QUEUE, ZHIMAQ_KEY_PREFIX  asynq queue; prefix of zhimaq's Redis keys [zhimaq, zhimaq:]
  LOG_FORMAT, LOG_LEVEL          json or console; debug..error [json, info]

It stops on SIGINT or SIGTERM: running calls finish (or go back to the queue) and it exits 0.
`
