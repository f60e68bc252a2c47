package results

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/clustertest"
	"github.com/zhimaq/zhimaq/internal/idempotency"
)

// BenchmarkClaimOnACluster is what REDIS_WAIT_REPLICAS=1 costs a claim on
// the local test cluster (every master with one replica): one claim at a
// time, and 16 at once.
//
//	go test -run '^$' -bench ClaimOnACluster ./internal/results/
func BenchmarkClaimOnACluster(b *testing.B) {
	srv := clustertest.New(b)
	rdb := srv.Client(b)
	ctx := context.Background()
	for _, wait := range []int{0, 1} {
		s := New(rdb, srv.Prefix, time.Minute).Durable(wait, time.Second)
		var n atomic.Int64
		claim := func(b *testing.B) {
			k := idempotency.Key{AppID: "2021000000000001", Method: "zhima.credit.score.brief.get", TransactionID: fmt.Sprintf("BW%d_%d", wait, n.Add(1))}
			if _, _, err := s.Claim(ctx, k, queued(k), Claim{Fingerprint: fpA, Window: time.Minute, Now: time.Now()}); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("wait%d/one", wait), func(b *testing.B) {
			for b.Loop() {
				claim(b)
			}
		})
		b.Run(fmt.Sprintf("wait%d/16", wait), func(b *testing.B) {
			b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					claim(b)
				}
			})
		})
	}
}
