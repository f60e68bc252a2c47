package launch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
	host, port := splitAddr(all[0].Addr())
	for _, cl := range clients[1:] {
		if err := cl.ClusterMeet(ctx, host, port).Err(); err != nil {
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
	for i, cl := range clients[masters:] {
		// A replica can follow its master once it has heard of it.
		err := until(ctx, clusterTimeout, "cluster replicate", func() (bool, error) {
			err := cl.ClusterReplicate(ctx, ids[i%masters]).Err()
			return err == nil, err
		})
		if err != nil {
			return nil, err
		}
	}
	if err := c.WaitHealthy(ctx, clusterTimeout); err != nil {
		return nil, err
	}
	return c, nil
}

// Nodes are its masters and replicas as started; after a failover a
// replica may be a master and the other way round.
func (c *RedisCluster) Nodes() []*Redis {
	return append(append([]*Redis(nil), c.Masters...), c.Replicas...)
}

// WaitHealthy waits until every node that runs reports cluster_state:ok
// and every one that is a replica has its link to its master up.
func (c *RedisCluster) WaitHealthy(ctx context.Context, timeout time.Duration) error {
	return until(ctx, timeout, "the cluster did not come up", func() (bool, error) {
		for _, r := range c.Nodes() {
			if r.child.Exited() {
				continue
			}
			cl := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, DialTimeout: time.Second})
			info, err := cl.ClusterInfo(ctx).Result()
			cl.Close()
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				return false, err
			}
			if info := replication(ctx, r); info["role"] == "slave" && !inSync(info) {
				return false, fmt.Errorf("replica %s not in sync yet", r.Addr())
			}
		}
		return true, nil
	})
}

// WaitPromoted waits until replica r answers as a master and the nodes
// still running agree the cluster is whole again: after its master died,
// the cluster has failed its slots over to it.
func (c *RedisCluster) WaitPromoted(ctx context.Context, r *Redis, timeout time.Duration) error {
	if err := until(ctx, timeout, r.Addr()+" was not promoted", func() (bool, error) {
		return role(ctx, r) == "master", nil
	}); err != nil {
		return err
	}
	return c.WaitHealthy(ctx, timeout)
}

// MoveSlots moves slots from master from to master to while clients use
// them, as redis-cli --cluster reshard does: each slot is marked importing
// on to and migrating on from, its keys are MIGRATEd in batches, then
// every master is told its new owner. Clients meanwhile follow ASK and
// MOVED redirections (and TRYAGAIN for a multi-key command whose keys are
// split between the two for a moment). It returns how many keys moved.
func (c *RedisCluster) MoveSlots(ctx context.Context, from, to *Redis, slots []int) (moved int, err error) {
	src := redis.NewClient(&redis.Options{Addr: from.Addr()})
	defer src.Close()
	dst := redis.NewClient(&redis.Options{Addr: to.Addr()})
	defer dst.Close()
	srcID, err := src.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		return moved, fmt.Errorf("cluster myid: %w", err)
	}
	dstID, err := dst.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		return moved, fmt.Errorf("cluster myid: %w", err)
	}
	// The other masters learn of each move too.
	var others []*redis.Client
	for _, m := range c.Nodes() {
		if m != from && m != to && !m.child.Exited() && role(ctx, m) == "master" {
			cl := redis.NewClient(&redis.Options{Addr: m.Addr()})
			defer cl.Close()
			others = append(others, cl)
		}
	}
	host, port := splitAddr(to.Addr())
	for _, slot := range slots {
		if err := dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err(); err != nil {
			return moved, fmt.Errorf("slot %d importing: %w", slot, err)
		}
		if err := src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID).Err(); err != nil {
			return moved, fmt.Errorf("slot %d migrating: %w", slot, err)
		}
		for {
			keys, err := src.ClusterGetKeysInSlot(ctx, slot, 100).Result()
			if err != nil {
				return moved, fmt.Errorf("slot %d keys: %w", slot, err)
			}
			if len(keys) == 0 {
				break
			}
			args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
			for _, k := range keys {
				args = append(args, k)
			}
			if err := src.Do(ctx, args...).Err(); err != nil && err.Error() != "NOKEY" {
				return moved, fmt.Errorf("slot %d migrate: %w", slot, err)
			}
			moved += len(keys)
		}
		// The new owner first, then the old, then the rest (as redis-cli).
		for _, cl := range append([]*redis.Client{dst, src}, others...) {
			if err := cl.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err(); err != nil {
				return moved, fmt.Errorf("slot %d node on %s: %w", slot, cl.Options().Addr, err)
			}
		}
	}
	return moved, nil
}

// Slots are the slots master m serves now (CLUSTER SLOTS as m sees it).
func (c *RedisCluster) Slots(ctx context.Context, m *Redis) ([]int, error) {
	cl := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer cl.Close()
	ranges, err := cl.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, err
	}
	var out []int
	for _, r := range ranges {
		if len(r.Nodes) > 0 && r.Nodes[0].Addr == m.Addr() {
			for s := r.Start; s <= r.End; s++ {
				out = append(out, int(s))
			}
		}
	}
	return out, nil
}

// Stop ends every node for good.
func (c *RedisCluster) Stop() {
	for _, r := range c.Nodes() {
		r.stop()
	}
}

// MasterOf is the master that serves slot now, and the replica that
// follows it.
func (c *RedisCluster) MasterOf(ctx context.Context, slot int) (master, replica *Redis, err error) {
	for _, r := range c.Nodes() {
		if r.child.Exited() || role(ctx, r) != "master" {
			continue
		}
		slots, err := c.Slots(ctx, r)
		if err != nil {
			return nil, nil, err
		}
		if slices.Contains(slots, slot) {
			master = r
		}
	}
	if master == nil {
		return nil, nil, fmt.Errorf("no master serves slot %d", slot)
	}
	_, port := splitAddr(master.Addr())
	for _, r := range c.Nodes() {
		if !r.child.Exited() && replication(ctx, r)["master_port"] == port {
			replica = r
		}
	}
	return master, replica, nil
}
