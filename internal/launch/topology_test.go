package launch

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/config"
)

func redisServerOrSkip(t *testing.T) string {
	t.Helper()
	path, err := FindRedisServer("")
	if err != nil {
		t.Skip("redis-server is not installed")
	}
	return path
}

func TestSentinelsFailOverToTheReplicaWhenTheMasterIsKilled(t *testing.T) {
	program := redisServerOrSkip(t)
	var l Launcher
	defer l.Close(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := l.StartRedisSentinel(ctx, program, t.TempDir(), 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: SentinelMaster,
		SentinelAddrs: []string{s.Sentinels[0].Addr(), s.Sentinels[1].Addr(), s.Sentinels[2].Addr()}})
	defer rdb.Close()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Do(ctx, "WAIT", 1, 1000).Int(); n != 1 {
		t.Fatalf("WAIT 1 = %d, %v: the replica is not replicating", n, err)
	}
	old := s.Nodes[0]
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	m, err := s.WaitFailover(ctx, old, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m != s.Nodes[1] {
		t.Fatalf("new master %s, want the replica %s", m.Addr(), s.Nodes[1].Addr())
	}
	if v, err := rdb.Get(ctx, "k").Result(); v != "v" {
		t.Errorf("after the failover GET k = %q, %v; want v", v, err)
	}
	if err := old.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReplica(ctx, old, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestClusterPromotesAReplicaAndMovesSlotsUnderLoad(t *testing.T) {
	program := redisServerOrSkip(t)
	var l Launcher
	defer l.Close(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := l.StartRedisCluster(ctx, program, t.TempDir(), 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The client zhimaq uses: it must follow the failover below in time.
	rdb, err := config.RedisClient(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()

	// Slots move while a writer keeps two keys of one slot in step.
	slots, err := c.Slots(ctx, c.Masters[0])
	if err != nil || len(slots) != 5461 {
		t.Fatalf("master 0 serves %d slots (%v), want 5461", len(slots), err)
	}
	done := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			k := "{t" + string(rune('a'+i%26)) + "}"
			if err := rdb.Eval(ctx, "redis.call('INCR', KEYS[1]); return redis.call('INCR', KEYS[2])", []string{k + "a", k + "b"}).Err(); err != nil {
				done <- err
				return
			}
		}
	}()
	// The first 200 slots, and those of the writer's keys master 0 serves.
	move := slots[:200]
	for i := range 26 {
		s, _ := rdb.ClusterKeySlot(ctx, "{t"+string(rune('a'+i))+"}").Result()
		if int(s) >= 200 && int(s) < len(slots) && !slices.Contains(move, int(s)) {
			move = append(move, int(s))
		}
	}
	if moved, err := c.MoveSlots(ctx, c.Masters[0], c.Masters[2], move); err != nil || moved == 0 {
		t.Fatalf("moved %d keys: %v", moved, err)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("a script failed while slots moved: %v", err)
	}
	if now, _ := c.Slots(ctx, c.Masters[2]); len(now) != 5462+len(move) {
		t.Errorf("master 2 serves %d slots after the move, want %d", len(now), 5462+len(move))
	}
	for i := range 26 {
		k := "{t" + string(rune('a'+i)) + "}"
		a, _ := rdb.Get(ctx, k+"a").Int()
		b, _ := rdb.Get(ctx, k+"b").Int()
		if a != b || a == 0 {
			t.Errorf("%s: a=%d b=%d, want equal and above 0", k, a, b)
		}
	}

	// Kill a master: its replica takes its slots; started again, the old
	// master follows it.
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	slot, _ := rdb.ClusterKeySlot(ctx, "k").Result()
	victim, heir, err := c.MasterOf(ctx, int(slot))
	if err != nil || heir == nil {
		t.Fatalf("master of slot %d: %v, replica %v", slot, err, heir)
	}
	if n, err := redis.NewClient(&redis.Options{Addr: victim.Addr()}).Do(ctx, "WAIT", 1, 1000).Int(); n != 1 {
		t.Fatalf("WAIT 1 = %d, %v", n, err)
	}
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitPromoted(ctx, heir, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if v, err := rdb.Get(ctx, "k").Result(); v != "v" {
		t.Errorf("after the failover GET k = %q, %v; want v", v, err)
	}
	if err := victim.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := until(ctx, 30*time.Second, "the old master did not follow", func() (bool, error) {
		return inSync(replication(ctx, victim)), nil
	}); err != nil {
		t.Fatal(err)
	}
}
