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

// SentinelMaster is the name the sentinels of StartRedisSentinel know the
// master by (REDIS_URL's ?master=).
const SentinelMaster = "zhimaq"

// RedisSentinel is a replicated Redis of the run's own watched by
// sentinels: a master, its replicas and the sentinels, every one a
// redis-server child on 127.0.0.1. After a failover any node may be the
// master: ask Master.
type RedisSentinel struct {
	Nodes     []*Redis // Nodes[0] started as the master, the rest as its replicas
	Sentinels []*Redis
}

// URL is REDIS_URL for it: redis-sentinel:// with every sentinel, database 0.
func (s *RedisSentinel) URL() string {
	addrs := make([]string, len(s.Sentinels))
	for i, r := range s.Sentinels {
		addrs[i] = r.Addr()
	}
	return "redis-sentinel://" + strings.Join(addrs, ",") + "/0?master=" + SentinelMaster
}

// StartRedisSentinel starts a master with replicas replicas and sentinels
// sentinels (quorum: a majority of them; a master that answers nothing for
// 1 s is down; 0 sentinels: the master and its replicas alone). It returns
// once every replica is in sync and every sentinel knows every replica and
// the other sentinels, so that a failover can happen.
func (l *Launcher) StartRedisSentinel(ctx context.Context, program, dir string, replicas, sentinels int) (*RedisSentinel, error) {
	s := &RedisSentinel{}
	for i := range 1 + replicas {
		d := filepath.Join(dir, "node"+strconv.Itoa(i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		srv := RedisServer{Program: program, Dir: d, Log: filepath.Join(d, "redis.log")}
		if i > 0 {
			host, port := splitAddr(s.Nodes[0].Addr())
			srv.Args = []string{"--replicaof", host, port}
		}
		r, err := l.StartRedisServer(ctx, srv)
		if err != nil {
			return nil, fmt.Errorf("start redis node %d: %w", i, err)
		}
		s.Nodes = append(s.Nodes, r)
	}
	host, port := splitAddr(s.Nodes[0].Addr())
	conf := fmt.Sprintf("sentinel monitor %s %s %s %d\nsentinel down-after-milliseconds %[1]s 1000\nsentinel failover-timeout %[1]s 10000\n",
		SentinelMaster, host, port, sentinels/2+1)
	for i := range sentinels {
		d := filepath.Join(dir, "sentinel"+strconv.Itoa(i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		file := filepath.Join(d, "sentinel.conf")
		if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		r, err := l.StartRedisServer(ctx, RedisServer{Program: program, Dir: d, Log: filepath.Join(d, "sentinel.log"),
			Config: file, Args: []string{"--sentinel"}})
		if err != nil {
			return nil, fmt.Errorf("start sentinel %d: %w", i, err)
		}
		s.Sentinels = append(s.Sentinels, r)
	}
	for _, r := range s.Nodes[1:] {
		if err := waitReplicaInSync(ctx, r); err != nil {
			return nil, err
		}
	}
	err := until(ctx, clusterTimeout, "the sentinels did not find every replica and each other", func() (bool, error) {
		for _, r := range s.Sentinels {
			sc := redis.NewSentinelClient(&redis.Options{Addr: r.Addr()})
			m, err := sc.Master(ctx, SentinelMaster).Result()
			sc.Close()
			if err != nil {
				return false, err
			}
			if m["num-slaves"] != strconv.Itoa(replicas) || m["num-other-sentinels"] != strconv.Itoa(sentinels-1) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Master is the node the sentinels' majority name as master now.
func (s *RedisSentinel) Master(ctx context.Context) (*Redis, error) {
	votes := map[string]int{}
	for _, r := range s.Sentinels {
		if r.child.Exited() {
			continue
		}
		sc := redis.NewSentinelClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
		hp, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
		sc.Close()
		if err == nil && len(hp) == 2 {
			votes[hp[0]+":"+hp[1]]++
		}
	}
	for _, n := range s.Nodes {
		if votes[n.Addr()] > len(s.Sentinels)/2 {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no master named by a majority of the sentinels: %v", votes)
}

// WaitFailover waits until the sentinels name a master other than old
// and it answers as a master; it returns the new master.
func (s *RedisSentinel) WaitFailover(ctx context.Context, old *Redis, timeout time.Duration) (*Redis, error) {
	var m *Redis
	err := until(ctx, timeout, "no failover", func() (bool, error) {
		var err error
		if m, err = s.Master(ctx); err != nil || m == old {
			return false, err
		}
		return role(ctx, m) == "master", nil
	})
	return m, err
}

// WaitReplica waits until r, started again after a failover, follows the
// current master and is in sync with it.
func (s *RedisSentinel) WaitReplica(ctx context.Context, r *Redis, timeout time.Duration) error {
	return until(ctx, timeout, r.Addr()+" did not become a replica in sync", func() (bool, error) {
		return inSync(replication(ctx, r)), nil
	})
}

// replication is r's INFO replication as fields (role, master_port,
// master_link_status, …); empty when r does not answer.
func replication(ctx context.Context, r *Redis) map[string]string {
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	fields := map[string]string{}
	info, _ := c.Info(ctx, "replication").Result()
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	return fields
}

// role is r's role: master, slave, or "" when it does not answer.
func role(ctx context.Context, r *Redis) string { return replication(ctx, r)["role"] }

// inSync reports whether info is a replica's whose link to its master is
// up: WAIT before then finds no replica.
func inSync(info map[string]string) bool {
	return info["role"] == "slave" && info["master_link_status"] == "up"
}

// waitReplicaInSync waits until replica r's link to its master is up.
func waitReplicaInSync(ctx context.Context, r *Redis) error {
	return until(ctx, clusterTimeout, "replica "+r.Addr()+" not in sync", func() (bool, error) {
		return inSync(replication(ctx, r)), nil
	})
}

// until calls ready every 100 ms until it says true, ctx ends or timeout
// passes; then the error is what, with ready's last error.
func until(ctx context.Context, timeout time.Duration, what string, ready func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := ready()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("%s within %s: %w", what, timeout, err)
			}
			return fmt.Errorf("%s within %s", what, timeout)
		}
		if err := Sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// splitAddr is net.SplitHostPort of an address the run made itself.
func splitAddr(addr string) (host, port string) {
	host, port, _ = net.SplitHostPort(addr)
	return host, port
}

// Stop ends the sentinels, then the nodes, for good.
func (s *RedisSentinel) Stop() {
	for _, r := range append(append([]*Redis(nil), s.Sentinels...), s.Nodes...) {
		r.stop()
	}
}
