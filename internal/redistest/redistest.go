// Package redistest gives tests a real Redis: the server at REDIS_URL when
// one answers, else an embedded one (miniredis). With ZHIMAQ_REQUIRE_REDIS=1,
// as CI sets it, a missing server fails the test instead.
package redistest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/keyspace"
)

// DefaultURL is the server tried when REDIS_URL is unset.
const DefaultURL = "redis://127.0.0.1:6379/0"

// Server is one test's Redis and the key prefix that keeps it apart from
// other tests sharing the same server.
type Server struct {
	// URL is a redis:// URL for the server.
	URL string
	// Opts are go-redis options for the server.
	Opts *redis.Options
	// Embedded is true when the server is miniredis.
	Embedded bool
	// Prefix is unique to this test; prefix every key with it.
	Prefix string
	// Queue is an asynq queue name unique to this test.
	Queue string
}

var seq atomic.Int64

// New returns a Redis for tb, closing what it started when tb ends.
func New(tb testing.TB) *Server {
	tb.Helper()
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = DefaultURL
	}
	prefix := fmt.Sprintf("zqtest%d_%d:", os.Getpid(), seq.Add(1))
	if opts, err := redis.ParseURL(url); err == nil && ping(opts) == nil {
		s := &Server{URL: url, Opts: opts, Prefix: prefix, Queue: strings.TrimSuffix(prefix, ":")}
		tb.Cleanup(s.clean)
		return s
	} else if os.Getenv("ZHIMAQ_REQUIRE_REDIS") == "1" {
		tb.Fatalf("redistest: no Redis answers at %s and ZHIMAQ_REQUIRE_REDIS=1: %v", url, err)
	}
	m := miniredis.RunT(tb)
	return &Server{URL: "redis://" + m.Addr() + "/0", Opts: &redis.Options{Addr: m.Addr()}, Embedded: true,
		Prefix: prefix, Queue: strings.TrimSuffix(prefix, ":")}
}

// clean deletes what the test left in a shared server: its prefixed keys
// and its asynq queues (both lanes).
func (s *Server) clean() {
	c := redis.NewClient(s.Opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, pattern := range []string{s.Prefix + "*", keyspace.Queue(s.Queue), keyspace.Queues(s.Queue)} {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	}
	c.SRem(ctx, "asynq:queues", s.Queue)
	for _, q := range c.SMembers(ctx, "asynq:queues").Val() {
		if strings.HasPrefix(q, s.Queue+":") {
			c.SRem(ctx, "asynq:queues", q)
		}
	}
}

// Client returns a go-redis client for the server, closed when tb ends.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(s.Opts)
	tb.Cleanup(func() { c.Close() })
	return c
}

func ping(opts *redis.Options) error {
	o := *opts
	o.DialTimeout, o.MaxRetries = 300*time.Millisecond, -1
	c := redis.NewClient(&o)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}
