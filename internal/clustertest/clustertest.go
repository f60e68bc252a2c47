// Package clustertest gives tests a real Redis Cluster: the one at
// REDIS_URL when that is a redis-cluster:// URL (make test-cluster), else
// a local one of 3 masters with a replica each, redis-server processes
// started once per test binary (the kernel kills them with it). It lives
// apart from redistest because it starts processes with package launch,
// whose own tests use redistest.
package clustertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/launch"
	"github.com/zhimaq/zhimaq/internal/redistest"
)

var cluster struct {
	once sync.Once
	url  string
	err  error
}

// New returns a share of a Redis Cluster for tb, as redistest.New returns
// one of a Redis: a key prefix and queue of its own, deleted when tb ends.
// Every master has one replica. Unless REDIS_URL names a cluster, the
// cluster is started on first use from redis-server on PATH; without
// redis-server New skips tb (fails it with ZHIMAQ_REQUIRE_REDIS=1).
func New(tb testing.TB) *redistest.Server {
	tb.Helper()
	if url := os.Getenv("REDIS_URL"); strings.HasPrefix(url, "redis-cluster://") {
		return redistest.At(tb, url)
	}
	program, err := launch.FindRedisServer("")
	if err != nil {
		if os.Getenv("ZHIMAQ_REQUIRE_REDIS") == "1" {
			tb.Fatalf("clustertest: no redis-server for a cluster and ZHIMAQ_REQUIRE_REDIS=1: %v", err)
		}
		tb.Skip("clustertest: no redis-server on PATH to run a cluster")
	}
	cluster.once.Do(func() {
		removeStale()
		dir, err := os.MkdirTemp("", fmt.Sprintf("zhimaq-cluster-%d-", os.Getpid()))
		if err != nil {
			cluster.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := new(launch.Launcher).StartRedisCluster(ctx, program, dir, 3, 1)
		if err != nil {
			cluster.err = err
			return
		}
		cluster.url = c.URL()
	})
	if cluster.err != nil {
		tb.Fatalf("clustertest: start a Redis Cluster: %v", cluster.err)
	}
	return redistest.At(tb, cluster.url)
}

// removeStale removes the node directories of test binaries that have
// ended: nothing else outlives a binary's cluster, whose processes die
// with it.
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "zhimaq-cluster-*-*"))
	for _, dir := range dirs {
		pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(filepath.Base(dir), "zhimaq-cluster-"), "-", 2)[0])
		if err != nil || pid == os.Getpid() || alive(pid) {
			continue
		}
		os.RemoveAll(dir)
	}
}

// alive reports whether process pid runs: signal 0 reaches it, or it is
// another user's.
func alive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}
