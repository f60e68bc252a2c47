// Package clustertest gives tests a real local Redis Cluster: 3 masters
// with a replica each, redis-server processes started once per test binary
// (the kernel kills them with it). It is redistest's counterpart for
// cluster mode; it lives apart because it starts processes with package
// launch, whose own tests use redistest.
package clustertest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/launch"
)

var seq atomic.Int64

// Server is one test's share of a local Redis Cluster: 3 masters
// with a replica each, redis-server processes started once per test binary
// (they die with it), and a key prefix and queue of the test's own.
type Server struct {
	// URL is a redis-cluster:// URL for it.
	URL string
	// Addrs are the masters' addresses.
	Addrs []string
	// Prefix and Queue are unique to this test, as redistest.Server's.
	Prefix, Queue string
}

var cluster struct {
	once sync.Once
	c    *launch.RedisCluster
	err  error
}

// New returns the test binary's Redis Cluster for tb, starting it on
// first use from redis-server on PATH. Without redis-server it skips tb
// (fails it with ZHIMAQ_REQUIRE_REDIS=1).
func New(tb testing.TB) *Server {
	tb.Helper()
	program, err := launch.FindRedisServer("")
	if err != nil {
		if os.Getenv("ZHIMAQ_REQUIRE_REDIS") == "1" {
			tb.Fatalf("clustertest: no redis-server for a cluster and ZHIMAQ_REQUIRE_REDIS=1: %v", err)
		}
		tb.Skip("clustertest: no redis-server on PATH to run a cluster")
	}
	cluster.once.Do(func() {
		dir, err := os.MkdirTemp("", "zhimaq-cluster-")
		if err != nil {
			cluster.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cluster.c, cluster.err = new(launch.Launcher).StartRedisCluster(ctx, program, dir, 3, 1)
	})
	if cluster.err != nil {
		tb.Fatalf("clustertest: start a Redis Cluster: %v", cluster.err)
	}
	prefix := fmt.Sprintf("zqcluster%d_%d:", os.Getpid(), seq.Add(1))
	s := &Server{URL: cluster.c.URL(), Prefix: prefix, Queue: strings.TrimSuffix(prefix, ":")}
	for _, m := range cluster.c.Masters {
		s.Addrs = append(s.Addrs, m.Addr())
	}
	return s
}

// Client returns a cluster client for it, closed when tb ends.
func (s *Server) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: s.Addrs})
	tb.Cleanup(func() { c.Close() })
	return c
}
