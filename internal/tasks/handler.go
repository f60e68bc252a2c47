// Package tasks holds the worker's handler of zhimaq's tasks: it calls the
// gateway and maps the outcomes onto asynq's retry control and the results
// store. What a task carries, and how it is built and read, is in package
// payload.
//
// The handler owns a job's attempt budget (RETRY_MAX_ATTEMPTS): the record
// counts the gateway calls, and the delivery that uses up the budget, or
// meets a closed transaction_id window, ends the task with the record
// failed. asynq's MaxRetry on a job's task is only a backstop (see
// MaxDeliveries and Exhausted).
package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/zhimaq/zhimaq/internal/breaker"
	"github.com/zhimaq/zhimaq/internal/budget"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/metrics"
	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/ratelimit"
	"github.com/zhimaq/zhimaq/internal/results"
	"github.com/zhimaq/zhimaq/internal/seal"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// Gateway is the part of *zhima.Client the handler uses: it sends a request
// that the handler has validated already.
type Gateway interface {
	Send(ctx context.Context, req *zhima.Prepared, opts ...zhima.CallOption) (*zhima.Envelope, error)
}

// App is one app a worker calls as, with what spaces and bounds its calls.
type App struct {
	ID      string
	Gateway Gateway
	// Limiter spaces calls to the app's quota; nil means no limit.
	Limiter *ratelimit.Limiter
	// Breaker holds the app's calls back while its gateway fails; nil means none.
	Breaker *breaker.Breaker
	// Budget bounds the app's billed calls per Beijing day; nil means none.
	Budget *budget.Budget
}

// Handler runs one gateway attempt per delivery of a task. Success and final
// failures are stored and end the task; transient failures are stored as
// retrying and returned, so asynq retries them with RetryDelay.
type Handler struct {
	// Apps are the apps this worker calls as, by app id. A task of any
	// other app (a producer of another deployment on the same queue, or a
	// task written into Redis by hand) fails without a call: signing it as
	// one of these would bill that app for it.
	Apps    map[string]*App
	Results *results.Store
	Log     *zap.Logger
	// MaxAttempts bounds gateway calls per job, the first included. Default 12.
	MaxAttempts int
	// Window is how long the gateway honours a transaction_id after its first
	// call. Default 24h. No attempt starts after first call + Window - margin,
	// where margin is a tenth of Window, at most 10 minutes.
	Window time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Keys open sealed payloads; nil opens none (plaintext payloads only).
	Keys *seal.Keyring
	// Metrics records calls, retries and outcomes; nil records nothing.
	Metrics *metrics.Metrics
	// MaxLimiterWait is how long a handler waits for the rate limiter
	// before handing its task back; default 2s.
	MaxLimiterWait time.Duration
	// Backoff is the delay before a job's next attempt (RetryDelay, as
	// given to asynq), and InlineBelow the longest such delay the handler
	// waits out itself, calling again within the same delivery: asynq would
	// only see a due retry at its next poll. Each inline attempt is decided
	// afresh (window, attempts, breaker, rate limiter) and counted like any
	// other. InlineBelow 0 leaves every retry to asynq.
	Backoff     asynq.RetryDelayFunc
	InlineBelow time.Duration

	unsealed atomic.Int64 // payloads refused for being in clear
	spent    sync.Map     // "app\x00method\x00day" of the budgets found spent, logged once
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

// lastStart is how long after a transaction's first gateway call an
// attempt may still start.
func (h *Handler) lastStart() time.Duration {
	w := h.window()
	return w - min(w/10, 10*time.Minute)
}

// Register adds the handler for every method to mux.
func (h *Handler) Register(mux *asynq.ServeMux) {
	for _, m := range zhima.Methods {
		mux.Handle(payload.TaskType(m), h)
	}
}

// ProcessTask implements asynq.Handler in three steps: decide whether and
// how to call, execute the call, report its outcome. A job that fails for
// good ends its task like a success: its record holds the failure, and
// asynq's archive (which it trims at 10,000 tasks) is kept for payloads
// that cannot be read at all. It returns an error, so asynq tries again,
// only while the job may still succeed or its outcome could not be stored.
//
// A retry due sooner than InlineBelow is made within the delivery.
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	retried, _ := asynq.GetRetryCount(ctx)
	for n := retried; ; n++ {
		err := h.deliver(ctx, t)
		delay, inline := h.inlineDelay(n, err, t)
		if !inline {
			return err
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return err
		case <-timer.C:
		}
	}
}

// inlineDelay says whether the retry err asks for is short enough to wait
// out in the handler, and how long it is. Only a gateway failure is: a
// call held back has its own wait, and a store failure is asynq's to retry.
func (h *Handler) inlineDelay(n int, err error, t *asynq.Task) (time.Duration, bool) {
	if err == nil || h.Backoff == nil || h.InlineBelow <= 0 {
		return 0, false
	}
	if _, ok := errors.AsType[*zhima.Error](err); !ok {
		return 0, false
	}
	d := h.Backoff(n, err, t)
	return d, d < h.InlineBelow
}

// deliver is one attempt at a job: decide, execute, report.
func (h *Handler) deliver(ctx context.Context, t *asynq.Task) error {
	d := h.decide(ctx, t)
	switch d.action {
	case failJob:
		return h.fail(ctx, d.p, d.failure)
	case reply:
		return d.err
	}
	return h.report(ctx, d, h.execute(ctx, d))
}

// action is what a delivery of a task comes to.
type action int

const (
	reply   action = iota // no call: return decision.err to asynq (nil ends the task)
	failJob               // no call: store decision.failure as the job's final failure
	call                  // call the gateway with decision.req
)

// decision is what decide makes of one delivery.
type decision struct {
	action action
	p      *payload.Payload // nil when the payload names no transaction
	log    *zap.Logger      // with the job's method and transaction_id

	err     error              // reply
	failure *results.ErrorInfo // failJob

	app     *App
	unit    budget.Reservation // the unit of the app's budget the call takes
	req     *zhima.Prepared
	rec     *results.Record       // the record as it was marked running
	version results.Version       // rec's version in the store
	first   time.Time             // the transaction's first call: this one, if none came before
	settle  func(breaker.Outcome) // tells the breaker what came of the call
}

// decide reads the task's payload and decides: its request is invalid, the
// breaker or the rate limiter holds the call back, or (in one Redis step
// that reads the job's record and, for a call, marks it running) the job has
// finished already, its window has closed, its attempts are used up, or it
// calls. It decodes and validates the request once, for the call. A call
// held back after the limiter granted it leaves that slot unused.
func (h *Handler) decide(ctx context.Context, t *asynq.Task) decision {
	p, err := payload.DecodePayload(t.Type(), t.Payload())
	if err != nil {
		h.Log.Error("task payload cannot be decoded; dropping it", zap.String("type", t.Type()), zap.Error(err))
		if p, ok := partialKey(t); ok {
			return decision{action: failJob, p: p, failure: payload.ErrorInfo(zhima.InvalidParameter(p.Method, err.Error()))}
		}
		return decision{err: fmt.Errorf("%w: %w", err, asynq.SkipRetry)}
	}
	d := decision{p: p, log: h.Log.With(zap.String("app_id", p.AppID), zap.String("method", p.Method), zap.String("transaction_id", p.TransactionID))}
	if d.app = h.Apps[p.AppID]; d.app == nil {
		// The task's app_id is not logged: it came from Redis, and may hold anything.
		d.log = h.Log.With(zap.String("method", p.Method), zap.String("transaction_id", p.TransactionID))
		d.log.Error("job of an app this worker does not serve; it fails without a gateway call")
		d.action, d.failure = failJob, payload.ErrorInfo(zhima.LocalFailure(p.Method,
			"the job's app_id is not one of this worker's apps (ZHIMA_APP_ID or ZHIMA_APPS_FILE); it was not sent"))
		return d
	}
	if err := p.Open(h.Keys); err != nil {
		switch {
		case errors.Is(err, payload.ErrNotSealed):
			h.refuseUnsealed(d.log)
			d.action, d.failure = failJob, payload.ErrorInfo(err)
		case errors.Is(err, seal.ErrUnknownKey):
			// Another worker may hold the key (a rotation under way): try again later.
			d.log.Error("job sealed with a data key this worker lacks; add it to DATA_KEYS", zap.Error(err))
			d.err = err
		default:
			d.log.Error("sealed payload cannot be opened", zap.Error(err))
			d.action, d.failure = failJob, payload.ErrorInfo(zhima.LocalFailure(p.Method, err.Error()))
		}
		return d
	}

	req, err := prepare(p)
	if err != nil {
		d.log.Warn("job holds an invalid request", zap.Error(err))
		d.action, d.failure = failJob, payload.ErrorInfo(err)
		return d
	}
	settle, err := h.admit(ctx, d.app, h.lane(ctx))
	if err != nil {
		if hb := (*HeldBack)(nil); errors.As(err, &hb) {
			h.Metrics.HeldBack(p.AppID, hb.Reason)
		}
		d.err = err
		return d
	}
	d.unit, err = d.app.Budget.Reserve(ctx, p.Method, h.now())
	if d.unit.Limit > 0 && err == nil {
		h.Metrics.BudgetUsed(p.AppID, p.Method, d.unit.Used)
	}
	if err != nil || !d.unit.Granted {
		settle(breaker.NotMade)
		if err != nil {
			d.err = fmt.Errorf("tasks: %w", err)
		} else {
			d.err = h.hold(ctx, d)
		}
		return d
	}
	// One step reads the record, checks it and marks it running.
	start, rec, version, err := h.Results.Begin(ctx, p.Key(), h.now(), results.Rules{
		Window: h.window(), LastStart: h.lastStart(), MaxAttempts: h.maxAttempts()})
	if start != results.Started {
		settle(breaker.NotMade)
		h.refund(ctx, d)
	}
	switch {
	case err != nil:
		d.err = fmt.Errorf("tasks: begin attempt: %w", err)
	case start == results.Finished:
		d.log.Info("job already finished; no gateway call", zap.String("state", string(rec.State)))
	case start == results.WindowClosed:
		d.log.Warn("transaction_id window closed; job fails without another call", zap.Int("attempts", rec.Attempts))
		d.action, d.failure = failJob, payload.ErrorInfo(zhima.TransactionIDExpired(p.Method,
			fmt.Sprintf("the transaction_id window (%s from the first call) closed before attempt %d could start", h.window(), rec.Attempts+1)))
	case start == results.AttemptsUsed:
		d.action, d.failure = failJob, rec.Error
	default:
		d.action, d.req, d.rec, d.version, d.settle, d.first = call, req, rec, version, settle, *rec.FirstCallAt
	}
	return d
}

// prepare decodes the job's biz_content into its typed request, strictly
// (field names exactly Alipay's), and validates it. Errors are *zhima.Error
// (INVALID_PARAMETER naming the field) and quote no data.
//
// TODO(lead): this is payload.Request without its Validate, so that the
// request is validated once, by zhima.Prepare; a payload.Decode (Request
// less Validate) would replace the first two steps.
func prepare(p *payload.Payload) (*zhima.Prepared, error) {
	req, err := payload.Decode(p.Method, p.BizContent)
	if err != nil {
		return nil, err
	}
	return zhima.Prepare(req)
}

// outcome is what execute's call came to.
type outcome struct {
	env     *zhima.Envelope
	err     error // the client's, as it returned it
	elapsed time.Duration
}

// execute makes the call decide has marked running.
func (h *Handler) execute(ctx context.Context, d decision) outcome {
	var opts []zhima.CallOption
	if d.p.AppAuthToken != "" {
		opts = append(opts, zhima.WithAppAuthToken(d.p.AppAuthToken))
	}
	h.Metrics.InFlight(1)
	started := time.Now()
	env, err := d.app.Gateway.Send(ctx, d.req, opts...)
	elapsed := time.Since(started)
	h.Metrics.InFlight(-1)
	return outcome{env: env, err: err, elapsed: elapsed}
}

// report tells the metrics and the breaker what came of the call, stores
// the record (succeeded, retrying, or failed when the failure is final, the
// attempts are used up or the window has closed) and logs one line. It
// returns the gateway's error while the job is retrying.
func (h *Handler) report(ctx context.Context, d decision, out outcome) error {
	method := d.p.Method
	h.Metrics.GatewayCall(d.p.AppID, method, metrics.Outcome(out.err), out.elapsed)
	var zerr *zhima.Error
	if out.err != nil && !errors.As(out.err, &zerr) {
		zerr = &zhima.Error{Source: zhima.SourceTransport, Method: method, Err: out.err}
	}
	final := zerr == nil || !zerr.Retryable()
	if final {
		d.settle(breaker.Answered)
	} else {
		d.settle(breaker.Transient)
	}
	if zerr != nil && (zerr.Source == zhima.SourceGateway || zerr.Source == zhima.SourceLocal) {
		// Answered with an error, or never sent: not billed. A call whose
		// answer was lost or did not verify may have been, and keeps its unit.
		h.refund(ctx, d)
	}
	rec, _, err := h.update(ctx, d.p, d.rec, d.version, func(r *results.Record) error {
		r.Attempts++
		switch {
		case zerr == nil:
			r.State, r.Response, r.Error = results.Succeeded, out.env.Raw, nil
		default:
			r.Error = payload.ErrorInfo(zerr)
			r.State = results.Retrying
			if final || r.Attempts >= h.maxAttempts() || h.now().After(d.first.Add(h.lastStart())) {
				r.State, final = results.Failed, true
			}
		}
		return nil
	})
	if err != nil {
		// The call happened but its outcome is not stored: retry, and the
		// gateway answers the same transaction without billing again.
		return fmt.Errorf("tasks: store outcome: %w", err)
	}
	if final {
		h.Metrics.JobFinished(d.p.AppID, method, string(rec.State))
	} else {
		h.Metrics.Retry(d.p.AppID, method)
	}
	fields := []zap.Field{zap.Int("attempt", rec.Attempts), zap.Duration("elapsed", out.elapsed), zap.String("state", string(rec.State))}
	if zerr == nil {
		d.log.Info("gateway call succeeded", fields...)
		return nil
	}
	fields = append(fields, zap.String("source", string(zerr.Source)), zap.String("code", zerr.Code), zap.String("sub_code", zerr.SubCode))
	if zerr.TraceID != "" {
		fields = append(fields, zap.String("trace_id", zerr.TraceID))
	}
	if final {
		d.log.Warn("gateway call failed for good", fields...)
		return nil
	}
	d.log.Info("gateway call failed; will retry", fields...)
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

// admit asks app's breaker, then its rate limiter, for a call in lane. It
// returns how to report the call's outcome to the breaker, or a *HeldBack.
func (h *Handler) admit(ctx context.Context, app *App, lane ratelimit.Lane) (func(breaker.Outcome), error) {
	report := func(breaker.Outcome) {}
	if app.Breaker != nil {
		done, err := app.Breaker.Allow()
		if err != nil {
			return nil, &HeldBack{Reason: metrics.ReasonBreakerOpen, RetryAfter: app.Breaker.Cooldown() / 2}
		}
		report = done
	}
	maxWait := h.MaxLimiterWait
	if maxWait == 0 {
		maxWait = 2 * time.Second
	}
	waited, retryAfter, err := app.Limiter.Wait(ctx, lane, maxWait)
	if err == nil && retryAfter > 0 && retryAfter <= maxWait {
		// Refused after its pause, but the slot it found opens within
		// another wait: ask once more rather than hand the task to asynq's
		// retry set, which keeps whole seconds and is read once a poll.
		more, after, err2 := app.Limiter.Wait(ctx, lane, maxWait)
		waited, retryAfter, err = waited+more, after, err2
	}
	if app.Limiter != nil {
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
		return nil, &HeldBack{Reason: metrics.ReasonRateLimit, RetryAfter: retryAfter}
	}
	return report, nil
}

// lane is the rate limiter's lane for the task being handled: Interactive
// for a task of an interactive queue.
func (h *Handler) lane(ctx context.Context) ratelimit.Lane {
	queue, _ := asynq.GetQueueName(ctx)
	if payload.LaneOf(queue) == payload.LaneInteractive {
		return ratelimit.Interactive
	}
	return ratelimit.Batch
}

// hold marks the job held, its app's budget for its method spent for the
// day, logs that once per app, method and day, and returns the HeldBack
// that brings the task back after Beijing midnight, no attempt used.
func (h *Handler) hold(ctx context.Context, d decision) error {
	u, p := d.unit, d.p
	h.Metrics.HeldBack(p.AppID, metrics.ReasonBudget)
	if _, logged := h.spent.LoadOrStore(p.AppID+"\x00"+p.Method+"\x00"+u.Day, true); !logged {
		d.log.Warn("daily budget spent: the app's jobs of this method are held until Beijing midnight",
			zap.String("day", u.Day), zap.Int("budget", u.Limit), zap.Time("resumes", u.Resumes))
	}
	info := payload.ErrorInfo(zhima.BusinessFailure(p.Method, SubDailyBudgetSpent, fmt.Sprintf(
		"the app's daily budget of %d billed calls of this method is spent for %s (Beijing); the job runs after midnight, no attempt used", u.Limit, u.Day)))
	if _, _, err := h.update(ctx, p, nil, results.Version{}, func(r *results.Record) error {
		if r.State.Terminal() || r.State == results.Held {
			return errFinished
		}
		r.State, r.Error = results.Held, info
		return nil
	}); err != nil && !errors.Is(err, errFinished) {
		return fmt.Errorf("tasks: mark held: %w", err)
	}
	return &HeldBack{Reason: metrics.ReasonBudget, RetryAfter: max(u.Resumes.Sub(h.now()), time.Second)}
}

// SubDailyBudgetSpent is the sub_code of a held job's record.
const SubDailyBudgetSpent = "DAILY_BUDGET_SPENT"

// refund gives back the budget unit of a call that was not made or not
// billed. A failure is logged: the unit stays taken, which errs on the
// side of the budget.
func (h *Handler) refund(ctx context.Context, d decision) {
	if err := d.app.Budget.Refund(context.WithoutCancel(ctx), d.unit); err != nil {
		d.log.Warn("budget unit of a call not billed could not be given back", zap.Error(err))
	}
}

// update changes the job's record, starting from current at version v when
// the store still holds it (one round trip), and creates it if it has gone
// missing. It returns the record written and its version.
func (h *Handler) update(ctx context.Context, p *payload.Payload, current *results.Record, v results.Version, change func(*results.Record) error) (*results.Record, results.Version, error) {
	apply := func(r *results.Record) error {
		if err := change(r); err != nil {
			return err
		}
		r.UpdatedAt = h.now().UTC()
		return nil
	}
	rec, version, err := h.Results.UpdateFrom(ctx, p.Key(), current, v, apply)
	if errors.Is(err, results.ErrNotFound) {
		rec = &results.Record{Method: p.Method, TransactionID: p.TransactionID, State: results.Queued}
		if err = apply(rec); err == nil {
			version, err = h.Results.Put(ctx, p.Key(), rec)
		}
	}
	return rec, version, err
}

// fail stores a final failure. It returns nil once stored, ending the task;
// else the storing error, so the task comes back and fails again.
// A job that has finished meanwhile keeps its record.
func (h *Handler) fail(ctx context.Context, p *payload.Payload, info *results.ErrorInfo) error {
	if _, _, err := h.update(ctx, p, nil, results.Version{}, func(r *results.Record) error {
		if r.State.Terminal() {
			return errFinished
		}
		r.State, r.Error = results.Failed, info
		return nil
	}); err != nil && !errors.Is(err, errFinished) {
		return fmt.Errorf("tasks: store failure: %w", err)
	}
	h.Metrics.JobFinished(p.AppID, p.Method, metrics.StateFailed)
	return nil
}

// errFinished stops fail's change of a record that has finished already.
var errFinished = errors.New("job finished already")

// partialKey recovers the transaction of a payload that failed to decode
// in full, so its record can say why it failed.
func partialKey(t *asynq.Task) (*payload.Payload, bool) {
	var p payload.Payload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.AppID == "" || p.TransactionID == "" || p.Method != t.Type() {
		return nil, false
	}
	return &p, true
}
