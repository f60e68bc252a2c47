// Package wire maps the settings of the environment (config.Config) onto the
// root package's, once for every command that builds a producer: enqueue,
// the worker's API and the benchmarks.
package wire

import (
	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/config"
)

// ProducerConfig is the producer that cfg describes: its apps (the first of
// ZHIMA_APPS_FILE, or ZHIMA_APP_ID, is a job's default), data keys,
// queue, key prefix, windows, callback hosts and batch limit.
func ProducerConfig(cfg config.Config) zhimaq.ProducerConfig {
	var first string
	ids := cfg.AppIDs()
	if len(ids) > 0 {
		first, ids = ids[0], ids[1:]
	}
	return zhimaq.ProducerConfig{
		AppID:         first,
		OtherAppIDs:   ids,
		DataKeys:      cfg.DataKeys,
		Queue:         cfg.Queue,
		WaitReplicas:  cfg.RedisWaitReplicas,
		WaitTimeout:   cfg.RedisWaitTimeout,
		QueueShards:   cfg.QueueShards,
		KeyPrefix:     cfg.KeyPrefix,
		DedupWindow:   cfg.DedupWindow,
		ResultTTL:     cfg.ResultTTL,
		CallbackHosts: cfg.CallbackHosts,
		MaxBatchLines: cfg.BatchMaxLines,
	}
}
