// Package wire maps the settings of the environment (config.Config) onto the
// root package's, once for every command that builds a producer: enqueue,
// the worker's API and the benchmarks.
package wire

import (
	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/config"
)

// ProducerConfig is the producer that cfg describes: its app, data keys,
// queue, key prefix, windows, callback hosts and batch limit.
func ProducerConfig(cfg config.Config) zhimaq.ProducerConfig {
	return zhimaq.ProducerConfig{
		AppID:         cfg.AppID,
		DataKeys:      cfg.DataKeys,
		Queue:         cfg.Queue,
		KeyPrefix:     cfg.KeyPrefix,
		DedupWindow:   cfg.DedupWindow,
		ResultTTL:     cfg.ResultTTL,
		CallbackHosts: cfg.CallbackHosts,
		MaxBatchLines: cfg.BatchMaxLines,
	}
}
