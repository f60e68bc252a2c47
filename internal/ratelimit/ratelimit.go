// Package ratelimit holds every worker process of an app to one gateway
// call rate (ZHIMA_QPS), with a GCRA limiter kept in Redis.
package ratelimit

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/keyspace"
)

// Limiter spaces the gateway calls of one app across all processes that
// share its Redis key. A nil *Limiter allows everything.
type Limiter struct {
	rl    *redis_rate.Limiter
	key   string
	limit redis_rate.Limit
}

// New returns a limiter of qps calls per second for appID, or nil when qps
// is 0 (no limit). The burst is one call: calls are spaced evenly, so no
// one-second window sees more than the quota.
func New(rdb redis.UniversalClient, prefix, appID string, qps float64) *Limiter {
	if qps <= 0 {
		return nil
	}
	// redis_rate counts whole calls per period: express a fractional rate
	// over a longer period (12.5/s = 125 per 10s) with the same spacing.
	rate, period := qps, time.Second
	for rate != math.Trunc(rate) && period < time.Hour {
		rate, period = rate*10, period*10
	}
	return &Limiter{
		rl:    redis_rate.NewLimiter(rdb),
		key:   keyspace.New(prefix).Rate(appID),
		limit: redis_rate.Limit{Rate: int(math.Round(rate)), Period: period, Burst: 1},
	}
}

// String describes the limit, e.g. "20 req/s (burst 1)".
func (l *Limiter) String() string {
	if l == nil {
		return "no limit"
	}
	return l.limit.String()
}

// Wait blocks until a call may start, for at most maxWait. It reports how
// long it waited, and, when the call may not start yet, how long until it
// may (retryAfter > 0). Redis errors are returned; the caller decides
// whether to call anyway.
func (l *Limiter) Wait(ctx context.Context, maxWait time.Duration) (waited, retryAfter time.Duration, err error) {
	if l == nil {
		return 0, 0, nil
	}
	start := time.Now()
	for {
		res, err := l.rl.Allow(ctx, l.key, l.limit)
		if err != nil {
			return time.Since(start), 0, fmt.Errorf("ratelimit: %w", err)
		}
		if res.Allowed > 0 {
			return time.Since(start), 0, nil
		}
		waited = time.Since(start)
		if waited+res.RetryAfter > maxWait {
			return waited, res.RetryAfter, nil
		}
		t := time.NewTimer(res.RetryAfter)
		select {
		case <-ctx.Done():
			t.Stop()
			return time.Since(start), res.RetryAfter, ctx.Err()
		case <-t.C:
		}
	}
}
