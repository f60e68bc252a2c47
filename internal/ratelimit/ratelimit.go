// Package ratelimit holds every worker process of an app to one gateway
// call rate (ZHIMA_QPS), with a reservation limiter kept in Redis.
//
// # How it works
//
// One Redis key per app (keyspace.Rate) holds the time the next free slot
// opens. A call to Wait runs one Lua script that reads Redis's clock
// (TIME, never the caller's) as now, takes next = max(now, stored), and
// either refuses without storing anything, when next − now is more than
// the caller will wait (Wait then pauses for that wait and reports how long
// until the slot), or stores next + interval and returns next − now; the
// caller sleeps that long and goes. Slots are handed out in order, one per call, each
// interval after the one before, so a granted call costs one Redis round
// trip, however many handlers wait: no handler races another for a slot
// that has just opened (as they did under the GCRA limiter with burst 1
// that this replaces, 80–90 scripts per gateway call).
//
// # Spacing margin
//
// The interval is 1 s / qps stretched by Margin (0.8%), rounded up to the
// microsecond: 20.16 ms at 50/s. Slots are exact on Redis's clock, but a
// call starts a little after its slot: the script's reply travels back,
// the timer fires late, the handler is scheduled on a busy core. With
// spacing 1 s / qps exactly, slot i and slot i+qps are exactly 1 s apart,
// and any lateness of call i over call i+qps puts qps+1 calls in some
// 1-second window. With the margin, qps intervals span 1 s + 8 ms, so call
// i may be up to 8 ms later than call i+qps (at any rate: the margin is
// relative) before a window sees qps+1; it costs 0.8% of the quota. On the
// 2-core bench machine (figure 5: two workers, the sandbox, Redis) calls
// reached the gateway a median 0.7–0.9 ms after their slots, 1.6–2.4 ms at
// the 99th percentile and up to 7.2 ms: 0.5% (5 ms) let 51 calls into a
// window in 2 of 5 rounds, 0.8% none, and the rate still reaches 0.99×.
// A gateway farther away, with more jitter, can still see qps+1.
//
// A fractional rate is met over the windows in which it is a whole number
// of calls: at 12.5/s (80.64 ms apart), at most 25 calls in any 2 s and 125
// in any 10 s. A 1 s window may then hold 13: no schedule averaging 12.5/s
// can hold every 1 s window to 12.
//
// # Expiry
//
// The key expires one second after the last slot it reserved has passed
// (PX = stored − now + 1 s): once that slot has passed a missing key and a
// stored past time mean the same, so an idle app leaves nothing in Redis;
// the extra second covers Redis's millisecond expiry and small clock steps.
//
// # Upgrading from redis_rate
//
// The stored value keeps redis_rate v10's unit and meaning under burst 1
// (decimal seconds since 2017-01-01, the time the next call may start),
// now with microsecond precision. During a rolling upgrade old and new
// workers therefore read each other's values correctly, and the quota holds
// across both: every grant, old or new, moves the stored time one interval
// past max(now, stored) (an old worker's interval is 1 s / qps without the
// margin, as before the upgrade). Old workers get a smaller share meanwhile
// (they take a slot only once it has opened, polling for it, while new ones
// reserve up to maxWait ahead), and hand more tasks back with "rate limit";
// the total rate stays at the quota. A value of another kind under the key
// (a hash or list, a non-number, a time more than an hour beyond any
// reservation) is treated as absent and overwritten by the next
// reservation.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/keyspace"
)

// Margin stretches the interval between slots: 1 s / qps × (1 + Margin).
// See the package doc.
const Margin = 0.008

// maxWaitCap bounds the wait a caller may ask for, so that a stored time
// further ahead than any reservation can be is recognised as corrupt.
const maxWaitCap = time.Hour

// Limiter spaces the gateway calls of one app across all processes that
// share its Redis key. A nil *Limiter allows everything.
type Limiter struct {
	rdb      redis.UniversalClient
	key      string
	qps      float64
	interval time.Duration // whole microseconds
	calls    atomic.Int64
}

// New returns a limiter of qps calls per second for appID, or nil when qps
// is 0 or less (no limit). Fractional rates work (12.5/s: one call every
// 80.64 ms with the margin). Calls are spaced evenly, never in bursts, so no
// one-second window sees more than the quota (a fractional one: see the
// package doc). The limiter's key is keyspace.New(prefix).Rate(appID).
func New(rdb redis.UniversalClient, prefix, appID string, qps float64) *Limiter {
	if qps <= 0 || math.IsNaN(qps) {
		return nil
	}
	us := math.Ceil(1e6 / qps * (1 + Margin))
	return &Limiter{
		rdb:      rdb,
		key:      keyspace.New(prefix).Rate(appID),
		qps:      qps,
		interval: time.Duration(max(us, 1)) * time.Microsecond,
	}
}

// String describes the limit as the worker logs it: "20 req/s (burst 1)",
// or for a fractional rate a whole number over a longer period, "25
// req/10s (burst 1)"; "no limit" for nil.
func (l *Limiter) String() string {
	if l == nil {
		return "no limit"
	}
	rate, period := l.qps, time.Second
	for rate != math.Trunc(rate) && period < time.Hour {
		rate, period = rate*10, period*10
	}
	unit := period.String() // "10s", "1m40s"
	switch period {
	case time.Second:
		unit = "s"
	case time.Hour:
		unit = "h"
	}
	return fmt.Sprintf("%d req/%s (burst 1)", int64(math.Round(rate)), unit)
}

// Interval is the spacing between slots, 1 s / qps with the margin; 0 for
// nil.
func (l *Limiter) Interval() time.Duration {
	if l == nil {
		return 0
	}
	return l.interval
}

// Calls is the number of Redis round trips this limiter has made: one per
// Wait, plus one when Redis had to be sent the script itself (the first
// call after a restart or SCRIPT FLUSH). 0 for nil.
func (l *Limiter) Calls() int64 {
	if l == nil {
		return 0
	}
	return l.calls.Load()
}

// Wait blocks until a call may start, for at most maxWait (negative means
// 0; more than an hour means an hour). It reserves the next free slot when
// that opens within maxWait, sleeps until it opens and returns, having
// waited that long, with retryAfter 0: the call may start. When the next
// free slot opens later than maxWait, it reserves nothing, pauses for
// maxWait (so that handlers with tasks to spare, each asking again at once
// with its next task, ask once per maxWait instead of in a loop) and
// returns retryAfter > 0, how long from then until that slot opens (others
// may take it meanwhile). Either way it makes one Redis call (two when
// Redis must first be sent the script): with H handlers asking at the
// quota's pace, about max(1, H / (qps × maxWait)) calls per granted call. Redis errors are returned, wrapped, with
// retryAfter 0; the caller decides whether to call anyway. When ctx ends
// during a pause or a sleep it returns ctx.Err() with retryAfter 0; a slot
// reserved for the sleep is lost (no call is made in it, and no other
// caller gets it).
func (l *Limiter) Wait(ctx context.Context, maxWait time.Duration) (waited, retryAfter time.Duration, err error) {
	g, err := l.wait(ctx, maxWait)
	return g.waited, g.retryAfter, err
}

// grant is what one wait did: Wait's results and, when a slot was
// reserved, when it opened on Redis's clock.
type grant struct {
	waited, retryAfter time.Duration
	slot               time.Time // zero when refused or on error
}

func (l *Limiter) wait(ctx context.Context, maxWait time.Duration) (grant, error) {
	if l == nil {
		return grant{}, nil
	}
	maxWait = min(max(maxWait, 0), maxWaitCap)
	start := time.Now()
	res, err := l.run(ctx, maxWait)
	if err != nil {
		return grant{waited: time.Since(start)}, fmt.Errorf("ratelimit: %w", err)
	}
	delay := time.Duration(res[1]) * time.Microsecond
	if res[0] == 0 {
		// Refused, nothing reserved: every slot within maxWait is taken.
		// Pause for maxWait before saying so. A handler hands its task back
		// and asks again at once with its next one; without the pause,
		// handlers beyond what maxWait's slots can hold would ask in a
		// loop, at the speed of Redis, while those slots are used up.
		if err := sleep(ctx, maxWait); err != nil {
			return grant{waited: time.Since(start)}, err
		}
		return grant{waited: time.Since(start), retryAfter: max(delay-maxWait, time.Microsecond)}, nil
	}
	g := grant{slot: time.Unix(epoch2017, 0).Add(time.Duration(res[2]) * time.Microsecond)}
	// The delay runs from Redis's now, which came before the reply did:
	// sleeping it from here starts the call at or after its slot, never
	// before.
	err = sleep(ctx, delay)
	g.waited = time.Since(start)
	return g, err
}

// sleep waits d, or until ctx ends (returning its error).
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// run calls the script, sending its body when Redis does not hold it, and
// counts each round trip.
func (l *Limiter) run(ctx context.Context, maxWait time.Duration) ([]int64, error) {
	keys := []string{l.key}
	args := []any{l.interval.Microseconds(), maxWait.Microseconds()}
	l.calls.Add(1)
	cmd := reserve.EvalSha(ctx, l.rdb, keys, args...)
	if err := cmd.Err(); errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT") {
		l.calls.Add(1)
		cmd = reserve.Eval(ctx, l.rdb, keys, args...)
	}
	res, err := cmd.Int64Slice()
	if err != nil {
		return nil, err
	}
	if len(res) != 3 {
		return nil, fmt.Errorf("reserve script returned %v", res)
	}
	return res, nil
}
