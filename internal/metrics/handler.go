package metrics

import (
	"net/http"
	"sync"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// queueCollectors remembers the registries Handler has added a queue
// collector to, so a second Handler on the same registry adds none.
var queueCollectors sync.Map // *prometheus.Registry → struct{}

// Handler serves reg in the Prometheus exposition format. With an
// inspector, the first call for reg also registers asynq's queue collector
// (github.com/hibiken/asynq/x/metrics) on reg, limited to queues (all queues
// in Redis when empty); later calls for the same reg register nothing more.
// Its series, labelled by queue, query Redis at each scrape:
//
//	asynq_tasks_enqueued_total{queue,state}  tasks by state (a gauge: pending, active, scheduled, retry, archived, completed)
//	asynq_queue_size{queue}                  all tasks in the queue
//	asynq_queue_latency_seconds{queue}       age of the oldest pending task
//	asynq_queue_memory_usage_approx_bytes{queue}
//	asynq_tasks_processed_total{queue}       tasks processed, succeeded or failed
//	asynq_tasks_failed_total{queue}          tasks whose handler returned a failure
//	asynq_queue_paused_total{queue}          1 if the queue is paused
//
// When Redis cannot be read the scrape carries no asynq series (asynq's
// collector logs the error with the standard logger); zhimaq's own metrics
// are still served. A nil reg serves an empty registry.
func Handler(reg *prometheus.Registry, inspector *asynq.Inspector, queues []string) http.Handler {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if inspector != nil {
		if _, loaded := queueCollectors.LoadOrStore(reg, struct{}{}); !loaded {
			reg.MustRegister(newQueueCollector(asynqmetrics.NewQueueMetricsCollector(inspector), queues))
		}
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// queueCollector passes on the series of inner whose queue label is one of
// queues (every series when queues is empty).
type queueCollector struct {
	inner  prometheus.Collector
	queues map[string]bool
}

func newQueueCollector(inner prometheus.Collector, queues []string) *queueCollector {
	c := &queueCollector{inner: inner}
	if len(queues) > 0 {
		c.queues = make(map[string]bool, len(queues))
		for _, q := range queues {
			c.queues[q] = true
		}
	}
	return c
}

// Describe describes nothing: the collector is unchecked. Describing asynq's
// collector would query Redis at registration.
func (c *queueCollector) Describe(chan<- *prometheus.Desc) {}

// Collect collects the inner collector's series of the chosen queues.
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	if c.queues == nil {
		c.inner.Collect(ch)
		return
	}
	inner := make(chan prometheus.Metric)
	go func() {
		defer close(inner)
		c.inner.Collect(inner)
	}()
	for m := range inner {
		if c.keep(m) {
			ch <- m
		}
	}
}

func (c *queueCollector) keep(m prometheus.Metric) bool {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return true // let the registry report it
	}
	for _, l := range d.GetLabel() {
		if l.GetName() == "queue" {
			return c.queues[l.GetValue()]
		}
	}
	return true
}
