package zhimaq_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/clustertest"
	"github.com/zhimaq/zhimaq/internal/redistest"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// BenchmarkSubmitJobs is the batch path (SubmitJobs, as enqueue batch and
// the API) on a single Redis and on the local Redis Cluster, with and
// without REDIS_WAIT_REPLICAS=1 on the cluster:
//
//	go test -run '^$' -bench SubmitJobs -benchtime 20000x .
func BenchmarkSubmitJobs(b *testing.B) {
	for n, c := range []struct {
		name    string
		cluster bool
		wait    int
	}{{"redis", false, 0}, {"cluster", true, 0}, {"cluster-wait1", true, 1}} {
		b.Run(c.name, func(b *testing.B) {
			var srv *redistest.Server
			if c.cluster {
				srv = clustertest.New(b)
			} else if srv = redistest.New(b); srv.Embedded || srv.Cluster {
				b.Skip("needs a single real Redis")
			}
			p, err := zhimaq.NewProducer(srv.Client(b), zhimaq.ProducerConfig{AppID: zhimatest.AppID, DataKeys: zhimatest.DataKeys,
				Queue: srv.Queue, KeyPrefix: srv.Prefix, WaitReplicas: c.wait})
			if err != nil {
				b.Fatal(err)
			}
			jobs := make([]zhimaq.Job, b.N)
			for i := range jobs {
				jobs[i] = scoreJob(fmt.Sprintf("BSJ%d_%d_%d", n, b.N, i), 600)
			}
			b.ResetTimer()
			rejected := 0
			opts := zhimaq.SubmitOptions{Emit: func(s *zhimaq.Submission) error {
				if s.State == zhimaq.Rejected {
					rejected++
				}
				return nil
			}}
			if _, err := p.SubmitJobs(context.Background(), jobs, opts); err != nil {
				b.Fatal(err)
			}
			if rejected > 0 {
				b.Fatalf("%d of %d jobs rejected", rejected, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}
