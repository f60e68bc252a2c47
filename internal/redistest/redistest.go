// Package redistest gives tests a real Redis: the server at REDIS_URL when
// one answers, else an embedded one (miniredis). REDIS_URL may name a Redis
// Cluster (redis-cluster://, as make test-cluster sets it): every test then
// runs on the cluster. With ZHIMAQ_REQUIRE_REDIS=1, as CI sets it, a missing
// server fails the test instead.
package redistest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/keyspace"
)

// DefaultURL is the server tried when REDIS_URL is unset.
const DefaultURL = "redis://127.0.0.1:6379/0"

// Server is one test's Redis and the key prefix that keeps it apart from
// other tests sharing the same server.
type Server struct {
	// URL is REDIS_URL for the server: redis://, or redis-cluster:// when
	// Cluster.
	URL string
	// Embedded is true when the server is miniredis.
	Embedded bool
	// Cluster is true when the server is a Redis Cluster.
	Cluster bool
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
	s, err := open(url)
	if err == nil {
		tb.Cleanup(s.clean)
		return s
	}
	if os.Getenv("ZHIMAQ_REQUIRE_REDIS") == "1" {
		tb.Fatalf("redistest: no Redis answers at %s and ZHIMAQ_REQUIRE_REDIS=1: %v", url, err)
	}
	m := miniredis.RunT(tb)
	s = newServer("redis://" + m.Addr() + "/0")
	s.Embedded = true
	return s
}

// At returns a share of the Redis or Redis Cluster at url for tb (a
// namespace of its own, deleted when tb ends), failing tb when it does not
// answer. Package clustertest hands out its cluster with it.
func At(tb testing.TB, url string) *Server {
	tb.Helper()
	s, err := open(url)
	if err != nil {
		tb.Fatalf("redistest: no Redis answers at %s: %v", url, err)
	}
	tb.Cleanup(s.clean)
	return s
}

// open returns a Server at url once it answers PING.
func open(url string) (*Server, error) {
	s := newServer(url)
	c, err := s.dial(300*time.Millisecond, -1)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_, s.Cluster = c.(*redis.ClusterClient)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("PING: %w", err)
	}
	return s, nil
}

func newServer(url string) *Server {
	prefix := fmt.Sprintf("zqtest%d_%d:", os.Getpid(), seq.Add(1))
	return &Server{URL: url, Prefix: prefix, Queue: strings.TrimSuffix(prefix, ":")}
}

// dial opens a client for s.URL as production does (config.RedisClient),
// with dialTimeout and maxRetries when not 0.
func (s *Server) dial(dialTimeout time.Duration, maxRetries int) (redis.UniversalClient, error) {
	c, err := config.RedisClient(s.URL)
	if err != nil {
		return nil, err
	}
	if dialTimeout == 0 && maxRetries == 0 {
		return c, nil
	}
	c.Close()
	switch c := c.(type) {
	case *redis.ClusterClient:
		o := c.Options()
		o.DialTimeout, o.MaxRetries = dialTimeout, maxRetries
		return redis.NewClusterClient(o), nil
	case *redis.Client:
		o := c.Options()
		o.DialTimeout, o.MaxRetries = dialTimeout, maxRetries
		return redis.NewClient(o), nil
	}
	return nil, fmt.Errorf("redistest: unexpected client %T", c)
}

// clean deletes what the test left in a shared server: its prefixed keys
// and its asynq queues (both lanes), on every master of a cluster.
func (s *Server) clean() {
	c, err := s.dial(0, 0)
	if err != nil {
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = scan(ctx, c, []string{s.Prefix + "*", keyspace.Queue(s.Queue), keyspace.Queues(s.Queue)},
		func(node *redis.Client, key string) { node.Del(ctx, key) })
	c.SRem(ctx, "asynq:queues", s.Queue)
	for _, q := range c.SMembers(ctx, "asynq:queues").Val() {
		if strings.HasPrefix(q, s.Queue+":") {
			c.SRem(ctx, "asynq:queues", q)
		}
	}
}

// Keys returns the keys that match any of patterns, sorted: on a cluster
// those of every master (a SCAN or KEYS through a cluster client reaches
// one node).
func (s *Server) Keys(tb testing.TB, patterns ...string) []string {
	tb.Helper()
	c := s.Client(tb)
	var (
		mu   sync.Mutex
		keys []string
	)
	err := scan(context.Background(), c, patterns, func(_ *redis.Client, key string) {
		mu.Lock()
		keys = append(keys, key)
		mu.Unlock()
	})
	if err != nil {
		tb.Fatalf("redistest: scan: %v", err)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// scan calls fn with each key matching patterns and the node that holds it
// (fn may run on several nodes at once).
func scan(ctx context.Context, c redis.UniversalClient, patterns []string, fn func(node *redis.Client, key string)) error {
	each := func(ctx context.Context, node *redis.Client) error {
		for _, pattern := range patterns {
			iter := node.Scan(ctx, 0, pattern, 1000).Iterator()
			for iter.Next(ctx) {
				fn(node, iter.Val())
			}
			if err := iter.Err(); err != nil {
				return err
			}
		}
		return nil
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, each)
	}
	return each(ctx, c.(*redis.Client))
}

// Client returns a go-redis client for the server, closed when tb ends: a
// *redis.ClusterClient on a cluster, else a *redis.Client.
func (s *Server) Client(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	c, err := s.dial(0, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}
