package config_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/clustertest"
	"github.com/zhimaq/zhimaq/internal/config"
)

// TestRedisClusterClientReachesEveryNode: a client for a real cluster's
// redis-cluster:// URL is a cluster client, and keys in every slot range
// reach their node. (An external test: clustertest imports config.)
func TestRedisClusterClientReachesEveryNode(t *testing.T) {
	s := clustertest.New(t)
	rdb, err := config.RedisClient(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		t.Fatalf("client %T, want a cluster client", rdb)
	}
	ctx := context.Background()
	for i := range 30 {
		k := fmt.Sprintf("%skey%d", s.Prefix, i)
		if err := rdb.Set(ctx, k, i, time.Minute).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
}
