package metrics_test

import (
	"fmt"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zhimaq/zhimaq/internal/metrics"
	"github.com/zhimaq/zhimaq/internal/redistest"
)

// queueRegistry returns a registry holding zhimaq's metrics, driven once,
// and a /metrics server over it that also reports srv.Queue, which holds
// one pending task.
func queueRegistry(t *testing.T) (*prometheus.Registry, *redistest.Server, string) {
	t.Helper()
	srv := redistest.New(t)
	rdb := srv.Client(t)
	client := asynq.NewClientFromRedisClient(rdb)
	if _, err := client.Enqueue(asynq.NewTask(score, []byte(`{}`)), asynq.Queue(srv.Queue)); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	drive(metrics.New(reg, app))
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	_ = metrics.Handler(reg, inspector, []string{srv.Queue})
	// A second Handler on the same registry must not register the queue
	// collector again (its series would be duplicated and the scrape fail).
	web := httptest.NewServer(metrics.Handler(reg, inspector, []string{srv.Queue}))
	t.Cleanup(web.Close)
	return reg, srv, web.URL
}

func TestQueueCollectorReportsPendingTask(t *testing.T) {
	_, srv, url := queueRegistry(t)
	want := []string{
		fmt.Sprintf(`asynq_tasks_enqueued_total{queue=%q,state="pending"} 1`, srv.Queue),
		fmt.Sprintf(`asynq_tasks_enqueued_total{queue=%q,state="active"} 0`, srv.Queue),
		fmt.Sprintf(`asynq_queue_size{queue=%q} 1`, srv.Queue),
		fmt.Sprintf(`asynq_tasks_processed_total{queue=%q} 0`, srv.Queue),
		`zhimaq_jobs_finished_total{app="2021000000000001",method="zhima.credit.score.brief.get",state="succeeded"} 1`,
	}
	// asynq's collector reports nothing for a scrape in which any queue of
	// the Redis vanished under it (other tests share a real Redis and drop
	// their queues): scrape again until our queue shows.
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; {
		body = scrape(t, url)
		if strings.Contains(body, "asynq_queue_size{") || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, line := range want {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("scrape lacks %s", line)
		}
	}
	if m := regexp.MustCompile(`asynq_queue_latency_seconds\{queue="[^"]+"\} (\S+)`).FindStringSubmatch(body); m == nil {
		t.Error("scrape lacks asynq_queue_latency_seconds")
	}
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "asynq_") && !strings.Contains(line, `queue="`+srv.Queue+`"`) {
			t.Errorf("series of another queue: %s", line)
		}
	}
	if t.Failed() {
		t.Logf("scraped:\n%s", body)
	}
}

// fakeQueues emits asynq-shaped series for two queues and one series
// without a queue label.
type fakeQueues struct{}

var fakeDesc = prometheus.NewDesc("asynq_queue_size", "size", []string{"queue"}, nil)
var fakeBare = prometheus.NewDesc("asynq_fake_bare", "no queue label", nil, nil)

func (fakeQueues) Describe(ch chan<- *prometheus.Desc) { ch <- fakeDesc; ch <- fakeBare }
func (fakeQueues) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(fakeDesc, prometheus.GaugeValue, 3, "zhimaq")
	ch <- prometheus.MustNewConstMetric(fakeDesc, prometheus.GaugeValue, 5, "someone-else")
	ch <- prometheus.MustNewConstMetric(fakeBare, prometheus.GaugeValue, 1)
}

func TestQueueFilter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		queues []string
		want   []string
		absent []string
	}{
		{"only the worker's queues", []string{"zhimaq"},
			[]string{`asynq_queue_size{queue="zhimaq"} 3`, `asynq_fake_bare 1`}, []string{`someone-else`}},
		{"every queue when none named", nil,
			[]string{`asynq_queue_size{queue="zhimaq"} 3`, `asynq_queue_size{queue="someone-else"} 5`}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			reg.MustRegister(metrics.QueueFilter(fakeQueues{}, tc.queues))
			web := httptest.NewServer(metrics.Handler(reg, nil, nil))
			defer web.Close()
			body := scrape(t, web.URL)
			for _, line := range tc.want {
				if !strings.Contains(body, line+"\n") {
					t.Errorf("scrape lacks %s", line)
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(body, s) {
					t.Errorf("scrape holds %s", s)
				}
			}
		})
	}
}
