package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/launch"
)

// Redis topologies a drill can run on (drillSpec.redis).
const (
	shared   = ""         // the run's one redis-server
	sentinel = "sentinel" // a master, a replica and 3 sentinels of the drill's own
	cluster  = "cluster"  // a Redis Cluster of 3 masters with a replica each, the drill's own
)

// topology is the Redis a drill runs on, and how its processes reach it.
type topology struct {
	kind     string
	url      string // REDIS_URL
	rdb      redis.UniversalClient
	sentinel *launch.RedisSentinel // when kind is sentinel
	cluster  *launch.RedisCluster  // when kind is cluster
}

// replicated reports whether the drill's Redis has replicas to wait for.
func (t *topology) replicated() bool { return t.kind != shared }

// startTopology starts what spec runs on; the nodes' logs go to the drill's
// log dir, under redis/.
func (e *env) startTopology(ctx context.Context, spec drillSpec) (*topology, error) {
	t := &topology{kind: spec.redis}
	dir := filepath.Join(e.logs, spec.name, "redis")
	var err error
	switch spec.redis {
	case shared:
		t.url, t.rdb = e.redis.URL(), e.sharedRDB
		return t, nil
	case sentinel:
		if t.sentinel, err = e.l.StartRedisSentinel(ctx, e.program, dir, 1, 3); err != nil {
			return nil, fmt.Errorf("start a master, a replica and 3 sentinels: %w", err)
		}
		t.url = t.sentinel.URL()
	case cluster:
		if t.cluster, err = e.l.StartRedisCluster(ctx, e.program, dir, 3, 1); err != nil {
			return nil, fmt.Errorf("start a Redis Cluster of 3 masters with a replica each: %w", err)
		}
		t.url = t.cluster.URL()
	}
	if t.rdb, err = config.RedisClient(t.url); err != nil {
		t.stop()
		return nil, err
	}
	return t, nil
}

// stop ends a Redis of the drill's own; the shared one stays.
func (t *topology) stop() {
	if t.kind == shared {
		return
	}
	if t.rdb != nil {
		t.rdb.Close()
	}
	if t.sentinel != nil {
		t.sentinel.Stop()
	}
	if t.cluster != nil {
		t.cluster.Stop()
	}
}

// describe says what the drill's Redis is, for its story.
func (t *topology) describe() string {
	switch t.kind {
	case sentinel:
		return fmt.Sprintf("master %s, replica %s, sentinels %s %s %s", t.sentinel.Nodes[0].Addr(), t.sentinel.Nodes[1].Addr(),
			t.sentinel.Sentinels[0].Addr(), t.sentinel.Sentinels[1].Addr(), t.sentinel.Sentinels[2].Addr())
	case cluster:
		return fmt.Sprintf("Redis Cluster, masters %s %s %s, each with a replica",
			t.cluster.Masters[0].Addr(), t.cluster.Masters[1].Addr(), t.cluster.Masters[2].Addr())
	}
	return "the shared redis-server"
}
