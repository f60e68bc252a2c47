package tasks

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/zhimaq/zhimaq/internal/payload"
)

// HeldBack is returned when no call was made because the rate limiter, the
// breaker or the app's daily budget held it back. It uses up no attempt
// and, with IsFailure, no asynq retry; RetryDelay waits RetryAfter.
type HeldBack struct {
	Reason     string // metrics.ReasonRateLimit, ReasonBreakerOpen or ReasonBudget
	RetryAfter time.Duration
}

func (e *HeldBack) Error() string {
	return fmt.Sprintf("tasks: held back by the %s; again in %s", e.Reason, e.RetryAfter)
}

// IsFailure is asynq's IsFailure: a task held back has not failed, so asynq
// does not count the delivery against the task's MaxRetry.
func IsFailure(err error) bool {
	var hb *HeldBack
	return !errors.As(err, &hb)
}

// RetryDelay is asynq's RetryDelayFunc for zhimaq: base·2ⁿ capped at max,
// with "equal jitter" (half fixed, half random) so retries of a failure
// burst spread out without waiting much longer than the backoff. n is
// asynq's count of failed deliveries, which held-back ones do not raise. A
// task held back comes back after its RetryAfter, plus up to a quarter more
// (at most a minute more: a job held until Beijing midnight resumes in the
// minute after it).
func RetryDelay(base, max time.Duration) asynq.RetryDelayFunc {
	return func(n int, err error, _ *asynq.Task) time.Duration {
		var hb *HeldBack
		if errors.As(err, &hb) {
			return hb.RetryAfter + rand.N(min(hb.RetryAfter/4, time.Minute)+1)
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

// Exhausted is asynq's ErrorHandler for job tasks. asynq calls it for every
// delivery that returns an error, before it decides what to do; it acts
// only when asynq gives up on the task: the backstop of MaxRetry is reached
// (asynq counts it, not the handler: see MaxDeliveries) while the handler
// still meant to retry, e.g. after repeated Redis failures or a data key no
// worker holds. It marks the record failed with the delivery's error, so no
// caller waits for it forever. A task ended with SkipRetry has no record to
// mark.
//
// What asynq (v0.26) counts: a delivery whose error IsFailure counts, and
// one whose lease expired; not one held back, nor one handed back at
// shutdown. It checks the backstop before IsFailure, so once a task has
// failed MaxRetry times, its next error ends it, even a HeldBack. A task
// whose lease expires at the backstop is archived by asynq's recoverer
// without calling Exhausted; its record keeps its last state.
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
