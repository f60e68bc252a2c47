// Package tasks holds the worker's handler of zhimaq's tasks: it calls the
// gateway and maps the outcomes onto asynq's retry control and the results
// store. What a task carries, and how it is built and read, is in package
// payload.
package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/zhimaq/zhimaq/internal/breaker"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/idempotency"
	"github.com/zhimaq/zhimaq/internal/metrics"
	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/ratelimit"
	"github.com/zhimaq/zhimaq/internal/results"
	"github.com/zhimaq/zhimaq/internal/seal"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// Gateway is the part of *zhima.Client the handler uses.
type Gateway interface {
	Call(ctx context.Context, req zhima.Request, opts ...zhima.CallOption) (*zhima.Envelope, error)
}

// Handler runs one gateway attempt per delivery of a task. Success and final
// failures are stored and end the task; transient failures are stored as
// retrying and returned, so asynq retries them with RetryDelay.
type Handler struct {
	Gateway Gateway
	Results *results.Store
	Claims  *idempotency.Store
	Log     *zap.Logger
	// MaxAttempts bounds gateway calls per job, the first included. Default 12.
	MaxAttempts int
	// Window is how long the gateway honours a transaction_id after its first
	// call. Default 24h. No attempt starts after first call + Window - margin,
	// where margin is a tenth of Window, at most 10 minutes.
	Window time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Limiter spaces calls to the app's quota; nil means no limit.
	Limiter *ratelimit.Limiter
	// Keys open sealed payloads; nil opens none (plaintext payloads only).
	Keys *seal.Keyring
	// Metrics records calls, retries and outcomes; nil records nothing.
	Metrics *metrics.Metrics
	// Breaker holds calls back while the gateway fails; nil means none.
	Breaker *breaker.Breaker
	// MaxLimiterWait is how long a handler waits for the rate limiter
	// before handing its task back; default 2s.
	MaxLimiterWait time.Duration

	unsealed atomic.Int64 // payloads refused for being in clear
}

// HeldBack is returned when no call was made because the rate limiter or
// the breaker held it back. It uses up no attempt and, with IsFailure, no
// asynq retry; RetryDelay waits RetryAfter.
type HeldBack struct {
	Reason     string // "rate limit" or "breaker open"
	RetryAfter time.Duration
}

func (e *HeldBack) Error() string {
	return fmt.Sprintf("tasks: held back by the %s; again in %s", e.Reason, e.RetryAfter)
}

// IsFailure is asynq's IsFailure: a task held back has not failed.
func IsFailure(err error) bool {
	var hb *HeldBack
	return !errors.As(err, &hb)
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) window() time.Duration {
	if h.Window > 0 {
		return h.Window
	}
	return config.Defaults.DedupWindow
}

func (h *Handler) maxAttempts() int {
	if h.MaxAttempts > 0 {
		return h.MaxAttempts
	}
	return config.Defaults.RetryMaxAttempts
}

// lastStart is the latest moment an attempt may start for a transaction
// whose first gateway call was at first.
func (h *Handler) lastStart(first time.Time) time.Time {
	w := h.window()
	return first.Add(w - min(w/10, 10*time.Minute))
}

// Register adds the handler for every method to mux.
func (h *Handler) Register(mux *asynq.ServeMux) {
	for _, m := range zhima.Methods {
		mux.Handle(payload.TaskType(m), h)
	}
}

// ProcessTask implements asynq.Handler. A job that fails for good ends its
// task like a success: its record holds the failure, and asynq's archive
// (which it trims at 10,000 tasks) is kept for payloads that cannot be read
// at all. It returns an error, so asynq tries again, only while the job may
// still succeed or its outcome could not be stored.
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	p, err := payload.DecodePayload(t.Type(), t.Payload())
	if err != nil {
		h.Log.Error("task payload cannot be decoded; dropping it", zap.String("type", t.Type()), zap.Error(err))
		if p, ok := partialKey(t); ok {
			return h.fail(ctx, p, payload.ErrorInfo(zhima.InvalidParameter(p.Method, err.Error())))
		}
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	key := p.Key()
	log := h.Log.With(zap.String("method", p.Method), zap.String("transaction_id", p.TransactionID))
	if err := p.Open(h.Keys); err != nil {
		if errors.Is(err, payload.ErrNotSealed) {
			h.refuseUnsealed(log)
			return h.fail(ctx, p, payload.ErrorInfo(err))
		}
		if errors.Is(err, seal.ErrUnknownKey) {
			// Another worker may hold the key (a rotation under way): try again later.
			log.Error("job sealed with a data key this worker lacks; add it to DATA_KEYS", zap.Error(err))
			return err
		}
		log.Error("sealed payload cannot be opened", zap.Error(err))
		return h.fail(ctx, p, payload.ErrorInfo(zhima.LocalFailure(p.Method, err.Error())))
	}

	rec, err := h.Results.Get(ctx, key)
	if errors.Is(err, results.ErrNotFound) {
		rec = &results.Record{Method: p.Method, TransactionID: p.TransactionID, State: results.Queued}
	} else if err != nil {
		return fmt.Errorf("tasks: read result: %w", err)
	}
	if rec.State.Terminal() {
		log.Info("job already finished; no gateway call", zap.String("state", string(rec.State)))
		return nil
	}
	now := h.now()
	if rec.FirstCallAt != nil && now.After(h.lastStart(*rec.FirstCallAt)) {
		log.Warn("transaction_id window closed; job fails without another call", zap.Int("attempts", rec.Attempts))
		return h.fail(ctx, p, payload.ErrorInfo(zhima.TransactionIDExpired(p.Method,
			fmt.Sprintf("the transaction_id window (%s from the first call) closed before attempt %d could start", h.window(), rec.Attempts+1))))
	}
	if rec.Attempts >= h.maxAttempts() {
		return h.fail(ctx, p, rec.Error)
	}
	req, err := payload.Request(p.Method, p.BizContent)
	if err != nil {
		log.Warn("job holds an invalid request", zap.Error(err))
		return h.fail(ctx, p, payload.ErrorInfo(err))
	}

	report, err := h.admit(ctx)
	if err != nil {
		if hb := (*HeldBack)(nil); errors.As(err, &hb) {
			h.Metrics.HeldBack(hb.Reason)
		}
		return err
	}
	first := now
	if rec.FirstCallAt != nil {
		first = *rec.FirstCallAt
	}
	if rec, err = h.update(ctx, p, rec, func(r *results.Record) {
		r.State = results.Running
		if r.FirstCallAt == nil {
			r.FirstCallAt = &first
		}
	}); err != nil {
		report(breaker.NotMade)
		return fmt.Errorf("tasks: mark running: %w", err)
	}
	if rec.Attempts == 0 {
		// The gateway's window opens now: hold the claim at least as long.
		if err := h.Claims.Extend(ctx, key, first.Add(h.window())); err != nil {
			log.Warn("cannot extend the transaction claim", zap.Error(err))
		}
	}

	var opts []zhima.CallOption
	if p.AppAuthToken != "" {
		opts = append(opts, zhima.WithAppAuthToken(p.AppAuthToken))
	}
	h.Metrics.InFlight(1)
	started := time.Now()
	env, callErr := h.Gateway.Call(ctx, req, opts...)
	elapsed := time.Since(started)
	h.Metrics.InFlight(-1)
	h.Metrics.GatewayCall(p.Method, metrics.Outcome(callErr), elapsed)

	var zerr *zhima.Error
	if callErr != nil && !errors.As(callErr, &zerr) {
		zerr = &zhima.Error{Source: zhima.SourceTransport, Method: p.Method, Err: callErr}
	}
	final := zerr == nil || !zerr.Retryable()
	if final {
		report(breaker.Answered)
	} else {
		report(breaker.Transient)
	}
	rec, err = h.update(ctx, p, rec, func(r *results.Record) {
		r.Attempts++
		switch {
		case zerr == nil:
			r.State, r.Response, r.Error = results.Succeeded, env.Raw, nil
		default:
			r.Error = payload.ErrorInfo(zerr)
			r.State = results.Retrying
			if final || r.Attempts >= h.maxAttempts() || h.now().After(h.lastStart(first)) {
				r.State, final = results.Failed, true
			}
		}
	})
	if err != nil {
		// The call happened but its outcome is not stored: retry, and the
		// gateway answers the same transaction without billing again.
		return fmt.Errorf("tasks: store outcome: %w", err)
	}
	if final {
		h.Metrics.JobFinished(p.Method, string(rec.State))
	} else {
		h.Metrics.Retry(p.Method)
	}
	fields := []zap.Field{zap.Int("attempt", rec.Attempts), zap.Duration("elapsed", elapsed), zap.String("state", string(rec.State))}
	if zerr == nil {
		log.Info("gateway call succeeded", fields...)
		return nil
	}
	fields = append(fields, zap.String("source", string(zerr.Source)), zap.String("code", zerr.Code), zap.String("sub_code", zerr.SubCode))
	if zerr.TraceID != "" {
		fields = append(fields, zap.String("trace_id", zerr.TraceID))
	}
	if final {
		log.Warn("gateway call failed for good", fields...)
		return nil
	}
	log.Info("gateway call failed; will retry", fields...)
	return zerr
}

// refuseUnsealed logs the first payload refused for being in clear, once
// per Handler (a worker builds one), so a flood of them cannot flood the
// log; each job's record holds the failure all the same.
func (h *Handler) refuseUnsealed(log *zap.Logger) {
	if h.unsealed.Add(1) == 1 {
		log.Error("job refused without a gateway call: its payload is not sealed, and this worker runs sealed jobs only; " +
			"the producer must use the workers' DATA_KEYS. Later such jobs fail the same way without a log line")
	}
}

// admit asks the breaker, then the rate limiter, for a call. It returns how
// to report the call's outcome to the breaker, or a *HeldBack.
func (h *Handler) admit(ctx context.Context) (func(breaker.Outcome), error) {
	report := func(breaker.Outcome) {}
	if h.Breaker != nil {
		done, err := h.Breaker.Allow()
		if err != nil {
			return nil, &HeldBack{Reason: "breaker open", RetryAfter: h.Breaker.Cooldown() / 2}
		}
		report = done
	}
	maxWait := h.MaxLimiterWait
	if maxWait == 0 {
		maxWait = 2 * time.Second
	}
	waited, retryAfter, err := h.Limiter.Wait(ctx, maxWait)
	if h.Limiter != nil {
		h.Metrics.LimiterWait(waited)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		report(breaker.NotMade)
		return nil, err
	case err != nil:
		// Redis is where the tasks live too: if it fails, the call can wait.
		report(breaker.NotMade)
		return nil, fmt.Errorf("tasks: rate limit: %w", err)
	case retryAfter > 0:
		report(breaker.NotMade)
		return nil, &HeldBack{Reason: "rate limit", RetryAfter: retryAfter}
	}
	return report, nil
}

// update changes the job's record, starting from current when it is the
// stored record (one round trip), and creates it if it has gone missing.
func (h *Handler) update(ctx context.Context, p *payload.Payload, current *results.Record, change func(*results.Record)) (*results.Record, error) {
	apply := func(r *results.Record) error {
		change(r)
		r.UpdatedAt = h.now().UTC()
		return nil
	}
	rec, err := h.Results.UpdateFrom(ctx, p.Key(), current, apply)
	if errors.Is(err, results.ErrNotFound) {
		rec = &results.Record{Method: p.Method, TransactionID: p.TransactionID, State: results.Queued}
		_ = apply(rec)
		return rec, h.Results.Put(ctx, p.Key(), rec)
	}
	return rec, err
}

// fail stores a final failure. It returns nil once stored, ending the task;
// else the storing error, so the task comes back and fails again.
func (h *Handler) fail(ctx context.Context, p *payload.Payload, info *results.ErrorInfo) error {
	if _, err := h.update(ctx, p, nil, func(r *results.Record) { r.State, r.Error = results.Failed, info }); err != nil {
		return fmt.Errorf("tasks: store failure: %w", err)
	}
	h.Metrics.JobFinished(p.Method, metrics.StateFailed)
	return nil
}

// partialKey recovers the transaction of a payload that failed to decode
// in full, so its record can say why it failed.
func partialKey(t *asynq.Task) (*payload.Payload, bool) {
	var p payload.Payload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.AppID == "" || p.TransactionID == "" || p.Method != t.Type() {
		return nil, false
	}
	return &p, true
}

// RetryDelay is asynq's RetryDelayFunc for zhimaq: base·2ⁿ capped at max,
// with "equal jitter" (half fixed, half random) so retries of a failure
// burst spread out without waiting much longer than the backoff. A task
// held back comes back after its RetryAfter, plus up to a quarter more.
func RetryDelay(base, max time.Duration) asynq.RetryDelayFunc {
	return func(n int, err error, _ *asynq.Task) time.Duration {
		var hb *HeldBack
		if errors.As(err, &hb) {
			return hb.RetryAfter + rand.N(hb.RetryAfter/4+1)
		}
		d := max
		if n < 40 {
			if e := base << n; e > 0 && e < max {
				d = e
			}
		}
		half := d / 2
		return half + rand.N(half+1)
	}
}

// Exhausted is asynq's ErrorHandler: when asynq gives up on a task that the
// handler still meant to retry (its own retry budget ran out first, e.g.
// after repeated Redis failures), it marks the record failed so no caller
// waits for it forever.
func (h *Handler) Exhausted(ctx context.Context, t *asynq.Task, err error) {
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	if errors.Is(err, asynq.SkipRetry) || retried < maxRetry {
		return
	}
	p, ok := partialKey(t)
	if !ok {
		return
	}
	h.Log.Warn("asynq gave up on the task", zap.String("method", p.Method), zap.String("transaction_id", p.TransactionID), zap.Int("retried", retried))
	if err := h.fail(context.WithoutCancel(ctx), p, payload.ErrorInfo(err)); err != nil {
		h.Log.Error("cannot store a failed job", zap.String("method", p.Method), zap.String("transaction_id", p.TransactionID), zap.Error(err))
	}
}
