package worker

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/metrics"
	"github.com/zhimaq/zhimaq/internal/payload"
)

// headerTimeout bounds the read of a request's header (HTTP_STALL_TIMEOUT
// when that is shorter).
const headerTimeout = 5 * time.Second

// httpShutdownTimeout is how long Close waits for requests under way
// before it closes their connections.
const httpShutdownTimeout = 2 * time.Second

// listenerServer builds the HTTP listener's server: /healthz, /readyz,
// /metrics from reg and asynq's queue, and w.api under /v1/ when there is
// one, all behind the stall deadlines.
func (w *Worker) listenerServer(cfg config.Config, reg *prometheus.Registry) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, r *http.Request) { rw.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", w.ready)
	mux.Handle("GET /metrics", metrics.Handler(reg, asynq.NewInspectorFromRedisClient(w.rdb),
		slices.Concat(slices.Sorted(maps.Keys(w.queues().Weights(payload.LaneBatch))),
			slices.Sorted(maps.Keys(w.queues().Weights(payload.LaneInteractive))))))
	if w.api != nil {
		mux.Handle("/v1/", w.api)
	}
	stall := cmp.Or(cfg.HTTPStallTimeout, config.Defaults.HTTPStallTimeout)
	return &http.Server{
		Addr:              cfg.HTTPAddr,
		Handler:           stallHandler(mux, stall, w.log.Named("http")),
		ReadHeaderTimeout: min(headerTimeout, stall),
		IdleTimeout:       cmp.Or(cfg.HTTPIdleTimeout, config.Defaults.HTTPIdleTimeout),
		MaxHeaderBytes:    cmp.Or(cfg.HTTPMaxHeaderBytes, config.Defaults.HTTPMaxHeaderBytes),
		ErrorLog:          zap.NewStdLog(w.log.Named("http")),
	}
}

// serve serves the listener ln in the background, after a warning when it
// listens beyond loopback.
func (w *Worker) serve(ln net.Listener) {
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
		w.log.Warn("HTTP listener on a non-loopback address: /metrics, /healthz and /readyz are served there without authentication to anyone who can reach it",
			zap.String("http", ln.Addr().String()))
	}
	go func() {
		if err := w.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			w.log.Error("http listener stopped", zap.Error(err))
		}
	}()
}

// ready answers /readyz: ready while Redis answers.
func (w *Worker) ready(rw http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := w.rdb.Ping(ctx).Err(); err != nil {
		http.Error(rw, "redis unreachable", http.StatusServiceUnavailable)
		return
	}
	rw.Write([]byte("ready\n"))
}
