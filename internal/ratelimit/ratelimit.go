// Package ratelimit holds every worker process of an app to one gateway
// call rate (ZHIMA_QPS), with a reservation limiter kept in Redis.
//
// # How it works
//
// One Redis key per app (keyspace.Rate) holds the time the next free slot
// opens. A call to Wait runs one Lua script that reads Redis's clock
// (TIME, never the caller's) as now, takes next = max(now, stored), and
// either refuses without storing anything, when next − now is more than
// the caller may reserve ahead (its reach: maxWait in the Interactive
// lane, at most the batch horizon in the Batch lane; see Lanes), or
// stores next + interval and returns next − now; the caller sleeps that
// long and goes. A refused caller pauses for maxWait and reports how long
// until it could have the slot (a Batch caller may be woken sooner and
// ask once more: see Lanes). Slots are handed out in order, one per call,
// each interval after the one before, so a granted call costs one Redis
// round trip, however many handlers wait: no handler races another for a
// slot that has just opened (as they did under the GCRA limiter with
// burst 1 that this replaces, 80–90 scripts per gateway call).
//
// # Lanes
//
// A reservation cannot be taken back once its caller sleeps on it, so a
// caller that must not queue behind a backlog (Interactive: an applicant
// is waiting in an app) can go first only if the backlog has not reserved
// far ahead. Batch callers (backfills) therefore reserve only a slot that
// opens within the batch horizon (Horizon: BatchHorizon, 500 ms, rounded
// up to whole intervals, at least 2), while Interactive callers reserve
// the next free slot up to their maxWait, as every caller did before
// lanes. Under a batch backlog the next free slot stays within the
// horizon plus one interval, so an Interactive caller's slot is at most
// that far ahead (one interval more for each Interactive caller ahead of
// it), and it takes that slot before any Batch caller: those are refused
// until the next free slot is back within the horizon. Batch callers still
// get every slot the Interactive ones leave: a slot is theirs from the
// moment it comes within the horizon, and handlers whose calls have just
// gone, or whose pause has ended, ask for it.
//
// A pause of maxWait is much longer than the horizon, so refused Batch
// callers would come back too late at the end of a drain: a handler
// refused a second before the last reservations pass returns after they
// have. So a Batch caller in its pause is woken when a slot that its own
// Limiter handed out opens (the longest paused first, one per slot), and
// asks once more: the slot that opened has just made room in the horizon
// for one reservation (the horizon is a whole number of intervals so that
// the room opens at that instant). Reserved, it sleeps until its slot and
// returns as any grant; refused again, it sleeps out the rest of its pause.
// A Batch Wait thus makes one Redis call, or two when woken, and the
// second is the one its caller would have made when the pause ended. In
// figure 5 of the bench (two workers of 50 handlers at 50/s, all in the
// Batch lane) refused callers without wakes came back as a cohort every
// maxWait and the rate fell to 0.69× the quota after the first 8 s; with
// random pauses, to 0.93–0.975× (stragglers after the last reservations);
// with wakes, 0.992× in every round, as without lanes.
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
// reserve up to their reach ahead), and hand more tasks back with "rate
// limit"; the total rate stays at the quota. Workers of this limiter from
// before lanes run the same script and reserve as Interactive callers do:
// until they are replaced, their backlog can still reserve up to maxWait
// ahead of an Interactive caller. A value of another kind under the key
// (a hash or list, a non-number, a time more than an hour beyond any
// reservation) is treated as absent and overwritten by the next
// reservation.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
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

// BatchHorizon is about how far ahead of now a Batch caller may reserve a
// slot: Horizon rounds it up to whole intervals (504 ms at 50/s and at
// 20/s, 564.48 ms at 12.5/s, 2 intervals at 4/s and less). An
// Interactive caller waits up to about that long behind a batch backlog,
// so it is the applicant's wait; shorter, more Batch callers are refused
// and pause, each refusal a Redis call. Measured at the limiter, at 20/s
// with 50 Batch handlers (two limiters, 100 ms per call, asking once more
// as the task handler does) and one Interactive call a second, from its
// Wait to the call's end, over 26 s per horizon:
//
//	horizon   Interactive p50 / p99   all calls / quota   scripts per grant
//	252 ms    379 / 400 ms            1.00×               2.96
//	504 ms    629 / 653 ms            1.00×               2.64
//	756 ms    880 / 903 ms            1.00×               2.59
//
// 504 ms leaves a third of a 1 s target to the task queue and the handler
// around the limiter, where 756 ms would leave 100 ms; 252 ms would cost
// more Redis calls for the same fill.
const BatchHorizon = 500 * time.Millisecond

// Lane says how a caller queues for a slot.
type Lane uint8

const (
	// Batch reserves only a slot that opens within the batch horizon
	// (Limiter.Horizon, or maxWait when that is shorter).
	Batch Lane = iota
	// Interactive reserves the next free slot, up to maxWait ahead.
	Interactive
)

// String is the lane's name, "batch" or "interactive"; "lane(N)" for a
// value that is neither (Wait treats such a lane as Batch).
func (ln Lane) String() string {
	switch ln {
	case Batch:
		return "batch"
	case Interactive:
		return "interactive"
	}
	return fmt.Sprintf("lane(%d)", uint8(ln))
}

// Limiter spaces the gateway calls of one app across all processes that
// share its Redis key. A nil *Limiter allows everything.
type Limiter struct {
	rdb      redis.UniversalClient
	key      string
	qps      float64
	interval time.Duration // whole microseconds
	horizon  time.Duration // how far ahead a Batch caller reserves; whole intervals
	calls    atomic.Int64

	mu     sync.Mutex
	paused []chan struct{} // refused Batch callers in their pause, longest first
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
	interval := time.Duration(max(us, 1)) * time.Microsecond
	return &Limiter{
		rdb:      rdb,
		key:      keyspace.New(prefix).Rate(appID),
		qps:      qps,
		interval: interval,
		horizon:  max((BatchHorizon+interval-1)/interval, 2) * interval, // see the package doc, Lanes
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

// Horizon is how far ahead of now a Batch caller may reserve a slot:
// BatchHorizon rounded up to whole intervals, at least 2 (so that one
// reservation at least queues behind the call about to start); 504 ms at
// 50/s, 2.016 s at 1/s; 0 for nil.
func (l *Limiter) Horizon() time.Duration {
	if l == nil {
		return 0
	}
	return l.horizon
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
// 0; more than an hour means an hour), queueing as lane says. Its reach is
// how far ahead it may reserve: maxWait for Interactive; for Batch (and
// any lane other than Interactive) the shorter of maxWait and Horizon. It
// reserves the next free slot when that opens within its reach, sleeps
// until it opens and returns, having waited that long, with retryAfter 0:
// the call may start. When the next free slot opens later, it reserves
// nothing, pauses for maxWait (so that handlers with tasks to spare, each
// asking again at once with its next task, ask once per maxWait instead of
// in a loop) and returns retryAfter > 0: how long from then until that
// slot opens (Interactive), or until it comes within the horizon, when a
// Batch caller could reserve it (Batch); at least 1 µs, and others may
// take it meanwhile. A Batch caller's pause ends early when a slot this
// Limiter handed out opens and the caller is the one paused longest: it
// asks once more, and is granted as above or, refused again, pauses for
// the rest of its maxWait (see Lanes in the package doc). So a Wait makes
// one Redis call, two for a Batch caller woken in its pause (one more
// either way when Redis must first be sent the script): with H handlers
// asking at the quota's pace, about max(1, H / (qps × maxWait)) calls per
// granted call for Interactive, and for Batch 2 to 3 (2.0–2.3 at 50/s
// with 100 handlers, 2.6 at 20/s with 50 handlers whose calls take
// 100 ms, counting the task handler's second ask). Redis errors are
// returned, wrapped, with retryAfter 0; the caller decides whether to call
// anyway. When ctx ends during a pause or a sleep it returns ctx.Err()
// with retryAfter 0; a slot reserved for the sleep is lost (no call is
// made in it, and no other caller gets it).
func (l *Limiter) Wait(ctx context.Context, lane Lane, maxWait time.Duration) (waited, retryAfter time.Duration, err error) {
	g, err := l.wait(ctx, lane, maxWait)
	return g.waited, g.retryAfter, err
}

// grant is what one wait did: Wait's results and, when a slot was
// reserved, when it opened on Redis's clock.
type grant struct {
	waited, retryAfter time.Duration
	slot               time.Time     // zero when refused or on error
	ahead              time.Duration // how far ahead of Redis's now the next free slot was
}

func (l *Limiter) wait(ctx context.Context, lane Lane, maxWait time.Duration) (grant, error) {
	if l == nil {
		return grant{}, nil
	}
	maxWait = min(max(maxWait, 0), maxWaitCap)
	reach := l.reach(lane, maxWait)
	start := time.Now()
	res, err := l.run(ctx, reach)
	if err != nil {
		return grant{waited: time.Since(start)}, fmt.Errorf("ratelimit: %w", err)
	}
	if res[0] == 1 {
		return l.take(ctx, start, res)
	}
	// Refused, nothing reserved: every slot within reach is taken. Pause
	// for maxWait before saying so. A handler hands its task back and asks
	// again at once with its next one; without the pause, handlers beyond
	// what the reach's slots can hold would ask in a loop, at the speed of
	// Redis, while those slots are used up.
	delay := time.Duration(res[1]) * time.Microsecond
	if lane != Interactive {
		return l.pause(ctx, start, reach, maxWait, delay)
	}
	if err := sleep(ctx, maxWait); err != nil {
		return grant{waited: time.Since(start), ahead: delay}, err
	}
	return grant{waited: time.Since(start), retryAfter: max(delay-maxWait, time.Microsecond), ahead: delay}, nil
}

// pause is the pause of a Batch caller refused a slot delay ahead: maxWait,
// unless a slot this limiter handed out opens meanwhile while it is the
// caller paused longest; then it asks once more, and either takes the slot
// found or sleeps out the rest of maxWait (see Lanes in the package doc).
// retryAfter, when refused, runs until the next free slot is within reach.
func (l *Limiter) pause(ctx context.Context, start time.Time, reach, maxWait, delay time.Duration) (grant, error) {
	end := time.Now().Add(maxWait)
	wake := make(chan struct{}, 1)
	l.mu.Lock()
	l.paused = append(l.paused, wake)
	l.mu.Unlock()
	t := time.NewTimer(maxWait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		l.unpark(wake)
		return grant{waited: time.Since(start), ahead: delay}, ctx.Err()
	case <-t.C:
		l.unpark(wake)
		return grant{waited: time.Since(start), retryAfter: max(delay-reach-maxWait, time.Microsecond), ahead: delay}, nil
	case <-wake:
	}
	res, err := l.run(ctx, reach)
	if err != nil {
		return grant{waited: time.Since(start)}, fmt.Errorf("ratelimit: %w", err)
	}
	if res[0] == 1 {
		return l.take(ctx, start, res)
	}
	delay = time.Duration(res[1]) * time.Microsecond
	rest := max(time.Until(end), 0)
	if err := sleep(ctx, rest); err != nil {
		return grant{waited: time.Since(start), ahead: delay}, err
	}
	return grant{waited: time.Since(start), retryAfter: max(delay-reach-rest, time.Microsecond), ahead: delay}, nil
}

// take sleeps until the slot the script reserved (res) opens, then wakes
// the Batch caller that has paused longest, if any: the slot that has
// opened has made room within the horizon for one more reservation.
func (l *Limiter) take(ctx context.Context, start time.Time, res []int64) (grant, error) {
	delay := time.Duration(res[1]) * time.Microsecond
	g := grant{slot: time.Unix(epoch2017, 0).Add(time.Duration(res[2]) * time.Microsecond), ahead: delay}
	// The delay runs from Redis's now, which came before the reply did:
	// sleeping it from here starts the call at or after its slot, never
	// before.
	err := sleep(ctx, delay)
	g.waited = time.Since(start)
	if err == nil {
		l.wakeOne()
	}
	return g, err
}

// wakeOne ends the pause of the Batch caller that has paused longest.
func (l *Limiter) wakeOne() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.paused) == 0 {
		return
	}
	l.paused[0] <- struct{}{}
	l.paused = l.paused[1:]
}

// unpark takes a caller whose pause has ended otherwise off the list; if
// it was woken meanwhile, it passes the wake on.
func (l *Limiter) unpark(wake chan struct{}) {
	l.mu.Lock()
	i := slices.Index(l.paused, wake)
	if i >= 0 {
		l.paused = slices.Delete(l.paused, i, i+1)
	}
	l.mu.Unlock()
	if i < 0 {
		l.wakeOne()
	}
}

// reach is how far ahead a caller of lane that waits up to maxWait (0 to
// maxWaitCap) may reserve: maxWait for Interactive, else the shorter of
// maxWait and the horizon.
func (l *Limiter) reach(lane Lane, maxWait time.Duration) time.Duration {
	if lane == Interactive {
		return maxWait
	}
	return min(maxWait, l.horizon)
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

// run calls the script for a caller that reserves up to reach ahead,
// sending its body when Redis does not hold it, and counts each round trip.
func (l *Limiter) run(ctx context.Context, reach time.Duration) ([]int64, error) {
	keys := []string{l.key}
	args := []any{l.interval.Microseconds(), reach.Microseconds()}
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
