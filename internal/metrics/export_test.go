package metrics

import "github.com/prometheus/client_golang/prometheus"

// QueueFilter exposes the queue filter of Handler's asynq collector to tests.
func QueueFilter(inner prometheus.Collector, queues []string) prometheus.Collector {
	return newQueueCollector(inner, queues)
}
