package launch

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster is a Redis Cluster of the run's own: masters each with its
// replicas, every node a redis-server child on 127.0.0.1.
type RedisCluster struct {
	Masters, Replicas []*Redis // Replicas[i] replicates Masters[i % len(Masters)]
}

// URL is REDIS_URL for it: redis-cluster:// with every master as a seed.
func (c *RedisCluster) URL() string {
	addrs := make([]string, len(c.Masters))
	for i, m := range c.Masters {
		addrs[i] = m.Addr()
	}
	return "redis-cluster://" + strings.Join(addrs, ",")
}

// clusterTimeout bounds how long the nodes take to agree on the slots.
const clusterTimeout = 30 * time.Second

// StartRedisCluster starts masters redis-server nodes with replicas each
// (program is FindRedisServer's, dir holds a directory per node) and joins
// them into one cluster: the 16384 slots split evenly over the masters. It
// returns once every node reports cluster_state:ok and every replica's link
// to its master is up.
func (l *Launcher) StartRedisCluster(ctx context.Context, program, dir string, masters, replicas int) (*RedisCluster, error) {
	c := &RedisCluster{}
	for i := range masters * (1 + replicas) {
		d := filepath.Join(dir, "node"+strconv.Itoa(i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		r, err := l.StartRedisServer(ctx, RedisServer{Program: program, Dir: d, Log: filepath.Join(d, "redis.log"),
			Args: []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"}})
		if err != nil {
			return nil, fmt.Errorf("start cluster node %d: %w", i, err)
		}
		if i < masters {
			c.Masters = append(c.Masters, r)
		} else {
			c.Replicas = append(c.Replicas, r)
		}
	}
	all := append(append([]*Redis(nil), c.Masters...), c.Replicas...)
	clients := make([]*redis.Client, len(all))
	for i, r := range all {
		clients[i] = redis.NewClient(&redis.Options{Addr: r.Addr()})
		defer clients[i].Close()
	}
	host, port, _ := net.SplitHostPort(all[0].Addr())
	p, _ := strconv.Atoi(port)
	for _, cl := range clients[1:] {
		if err := cl.ClusterMeet(ctx, host, strconv.Itoa(p)).Err(); err != nil {
			return nil, fmt.Errorf("cluster meet: %w", err)
		}
	}
	per := 16384 / masters
	for i, cl := range clients[:masters] {
		last := (i+1)*per - 1
		if i == masters-1 {
			last = 16383
		}
		if err := cl.ClusterAddSlotsRange(ctx, i*per, last).Err(); err != nil {
			return nil, fmt.Errorf("cluster addslots: %w", err)
		}
	}
	ids := make([]string, masters)
	for i, cl := range clients[:masters] {
		id, err := cl.Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			return nil, fmt.Errorf("cluster myid: %w", err)
		}
		ids[i] = id
	}
	deadline := time.Now().Add(clusterTimeout)
	for i, cl := range clients[masters:] {
		// A replica can follow its master once it has heard of it.
		for {
			err := cl.ClusterReplicate(ctx, ids[i%masters]).Err()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("cluster replicate: %w", err)
			}
			if err := Sleep(ctx, 100*time.Millisecond); err != nil {
				return nil, err
			}
		}
	}
	for i, cl := range clients {
		for {
			info, err := cl.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && i >= masters {
				// A replica counts once its link to the master is up: WAIT
				// before then finds no replica.
				repl, rerr := cl.Info(ctx, "replication").Result()
				err = rerr
				if rerr == nil && !strings.Contains(repl, "master_link_status:up") {
					err = fmt.Errorf("replica %s not in sync yet", all[i].Addr())
				}
			}
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("the cluster did not come up within %s", clusterTimeout)
			}
			if err := Sleep(ctx, 100*time.Millisecond); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}
