// Package metrics is zhimaq's Prometheus instrumentation: gateway calls,
// retries, finished jobs, de-duplication hits, the rate limiter and the
// breaker, the HTTP API's failed logins, plus asynq's queue metrics, served
// by Handler at /metrics.
//
// Every method of *Metrics is safe on a nil receiver, so callers hold an
// optional *Metrics without checks. Label values are bounded: anything
// outside the known set of methods, outcomes, states and reasons is counted
// under "other", so no input can grow the number of series.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

// Other is the label value that stands for any value outside a label's
// known set.
const Other = "other"

// Job states of JobFinished.
const (
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
)

// De-duplication outcomes of Dedup.
const (
	DedupDuplicate = "duplicate"
	DedupConflict  = "conflict"
)

// Reasons of HeldBack, as tasks.HeldBack spells them, and the label values
// they are counted under.
const (
	ReasonRateLimit   = "rate limit"
	ReasonBreakerOpen = "breaker open"
	ReasonBudget      = "daily budget"
)

// Reasons of AuthFailure: a request to the API without a bearer token, or
// with one that is not in API_TOKENS.
const (
	AuthMissing = "missing"
	AuthInvalid = "invalid"
)

// Breaker states of BreakerChanged and the values of zhimaq_breaker_state.
const (
	BreakerClosed   = "closed"
	BreakerHalfOpen = "half-open"
	BreakerOpen     = "open"
)

// GatewayBuckets are the gateway latency buckets, in seconds: 10 ms to 30 s.
var GatewayBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30}

// LimiterBuckets are the rate-limiter wait buckets, in seconds: 1 ms to 5 s
// (a handler waits at most MaxLimiterWait, 2s by default).
var LimiterBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5}

// Metrics holds zhimaq's own metrics. A nil *Metrics records nothing.
type Metrics struct {
	gatewayCalls   *prometheus.CounterVec
	gatewayLatency *prometheus.HistogramVec
	inFlight       prometheus.Gauge
	retries        *prometheus.CounterVec
	jobsFinished   *prometheus.CounterVec
	dedup          *prometheus.CounterVec
	limiterWait    prometheus.Histogram
	heldBack       *prometheus.CounterVec
	breakerState   *prometheus.GaugeVec
	breakerChanges *prometheus.CounterVec
	authFailures   *prometheus.CounterVec
	budgetUsed     *prometheus.GaugeVec
	apps           map[string]bool       // the app label's known values
	reg            prometheus.Registerer // nil: recorded, not registered
}

// New creates zhimaq's metrics and registers them with reg (nil: they are
// recorded but not registered anywhere). It panics if reg already holds
// metrics of the same names, like prometheus.MustRegister: create one
// Metrics per registry. Series of every known method, state, reason and
// breaker state start at zero, so rates are defined from the first scrape.
// apps are the app ids the app label may hold; any other counts as "other".
func New(reg prometheus.Registerer, apps ...string) *Metrics {
	m := &Metrics{
		apps: map[string]bool{},
		reg:  reg,
		gatewayCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zhimaq_gateway_calls_total",
			Help: `Gateway calls by app, method and outcome: the code ("10000", "20000", …), "40004/<sub_code>", "transport", "verification", "local" or "other".`,
		}, []string{"app", "method", "outcome"}),
		gatewayLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "zhimaq_gateway_call_duration_seconds",
			Help:    "Duration of gateway calls, signing to verified answer, by app and method.",
			Buckets: GatewayBuckets,
		}, []string{"app", "method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zhimaq_gateway_calls_in_flight",
			Help: "Gateway calls under way.",
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zhimaq_gateway_retries_total",
			Help: "Gateway calls that failed transiently and whose job will be retried, by app and method.",
		}, []string{"app", "method"}),
		jobsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zhimaq_jobs_finished_total",
			Help: "Jobs that reached a final state (succeeded or failed), by app and method.",
		}, []string{"app", "method", "state"}),
		dedup: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zhimaq_dedup_hits_total",
			Help: "Submissions answered by de-duplication: duplicate (same parameters) or conflict (TRANSACTION_ID_REPEAT), by method.",
		}, []string{"method", "outcome"}),
		limiterWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "zhimaq_ratelimit_wait_seconds",
			Help:    "Time handlers waited for the gateway rate limiter (ZHIMA_QPS).",
			Buckets: LimiterBuckets,
		}),
		heldBack: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zhimaq_tasks_held_back_total",
			Help: "Tasks handed back without a gateway call, by app and reason: rate_limit, breaker_open or daily_budget (a job held until Beijing midnight).",
		}, []string{"app", "reason"}),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zhimaq_breaker_state",
			Help: "State of an app's gateway breaker: 0 closed, 1 half-open, 2 open.",
		}, []string{"app"}),
		breakerChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zhimaq_breaker_changes_total",
			Help: "Changes of an app's gateway breaker's state, by the state it changed to.",
		}, []string{"app", "to"}),
		budgetUsed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zhimaq_daily_budget_used",
			Help: "Billed calls reserved today (Beijing) of an app's daily budget, by method, as this worker last saw it; only methods with a budget.",
		}, []string{"app", "method"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zhimaq_api_auth_failures_total",
			Help: "HTTP API requests refused 401, by reason: missing (no bearer token) or invalid (a token not in API_TOKENS).",
		}, []string{"reason"}),
	}
	for _, app := range apps {
		m.apps[app] = true
		m.breakerState.WithLabelValues(app).Set(0) // closed
	}
	for _, app := range append(apps, Other) {
		for _, method := range zhima.Methods {
			m.gatewayLatency.WithLabelValues(app, method)
			m.retries.WithLabelValues(app, method)
			for _, s := range []string{StateSucceeded, StateFailed} {
				m.jobsFinished.WithLabelValues(app, method, s)
			}
		}
		for _, r := range heldBackLabels {
			m.heldBack.WithLabelValues(app, r)
		}
		for s := range breakerStates {
			m.breakerChanges.WithLabelValues(app, s)
		}
	}
	for _, method := range zhima.Methods {
		for _, o := range []string{DedupDuplicate, DedupConflict} {
			m.dedup.WithLabelValues(method, o)
		}
	}
	for _, r := range []string{AuthMissing, AuthInvalid} {
		m.authFailures.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.gatewayCalls, m.gatewayLatency, m.inFlight, m.retries, m.jobsFinished,
			m.dedup, m.limiterWait, m.heldBack, m.breakerState, m.breakerChanges, m.authFailures, m.budgetUsed)
	}
	return m
}

// NewRegistry returns a registry for a worker's /metrics that already holds
// the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// GatewayCall records one gateway call of app's method that ended with
// outcome (see Outcome) after d. Unknown apps, methods and outcomes count
// as "other".
func (m *Metrics) GatewayCall(app, method, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	method = methodLabel(method)
	if !outcomes[outcome] {
		outcome = Other
	}
	app = m.appLabel(app)
	m.gatewayCalls.WithLabelValues(app, method, outcome).Inc()
	m.gatewayLatency.WithLabelValues(app, method).Observe(d.Seconds())
}

// InFlight adds delta (+1 as a call starts, -1 as it ends) to the gateway
// calls under way.
func (m *Metrics) InFlight(delta int) {
	if m == nil {
		return
	}
	m.inFlight.Add(float64(delta))
}

// Retry records a call of app's method that failed transiently; its job
// will be retried.
func (m *Metrics) Retry(app, method string) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(m.appLabel(app), methodLabel(method)).Inc()
}

// JobFinished records a job of app's method that reached its final state,
// "succeeded" or "failed" (anything else counts as "other").
func (m *Metrics) JobFinished(app, method, state string) {
	if m == nil {
		return
	}
	if state != StateSucceeded && state != StateFailed {
		state = Other
	}
	m.jobsFinished.WithLabelValues(m.appLabel(app), methodLabel(method), state).Inc()
}

// Dedup records a submission answered by de-duplication: "duplicate" (same
// parameters inside the window) or "conflict" (TRANSACTION_ID_REPEAT).
// Producers call it, e.g. through zhimaq.ProducerConfig.OnDedup.
func (m *Metrics) Dedup(method, outcome string) {
	if m == nil {
		return
	}
	if outcome != DedupDuplicate && outcome != DedupConflict {
		outcome = Other
	}
	m.dedup.WithLabelValues(methodLabel(method), outcome).Inc()
}

// LimiterWait records how long a handler waited for the rate limiter,
// whether or not it was then let through.
func (m *Metrics) LimiterWait(d time.Duration) {
	if m == nil {
		return
	}
	m.limiterWait.Observe(d.Seconds())
}

// HeldBack records a task of app handed back without a call, for reason
// "rate limit", "breaker open" or "daily budget" (tasks.HeldBack's Reason).
// They are counted as reason="rate_limit", "breaker_open" and
// "daily_budget"; anything else as "other".
func (m *Metrics) HeldBack(app, reason string) {
	if m == nil {
		return
	}
	label, ok := heldBackLabels[reason]
	if !ok {
		label = Other
	}
	m.heldBack.WithLabelValues(m.appLabel(app), label).Inc()
}

// BreakerChanged records a change of app's breaker to state to ("closed",
// "half-open" or "open") and sets zhimaq_breaker_state. It fits
// breaker.Config.OnChange as func(_, to string) { m.BreakerChanged(app, to) }.
// An unknown state is counted as "other" and leaves the gauge as it was.
func (m *Metrics) BreakerChanged(app, to string) {
	if m == nil {
		return
	}
	app = m.appLabel(app)
	v, ok := breakerStates[to]
	if !ok {
		m.breakerChanges.WithLabelValues(app, Other).Inc()
		return
	}
	m.breakerState.WithLabelValues(app).Set(v)
	m.breakerChanges.WithLabelValues(app, to).Inc()
}

// BudgetUsed sets the units of app's daily budget for method taken today,
// as a reservation reported them.
func (m *Metrics) BudgetUsed(app, method string, used int) {
	if m == nil {
		return
	}
	m.budgetUsed.WithLabelValues(m.appLabel(app), methodLabel(method)).Set(float64(used))
}

// WatchLimiter serves zhimaq_ratelimit_redis_calls_total{app}: the Redis
// round trips app's rate limiter has made (ratelimit.Limiter.Calls), read
// at each scrape. Call it once per app, with an app New was told of.
func (m *Metrics) WatchLimiter(app string, calls func() int64) {
	if m == nil || m.reg == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name:        "zhimaq_ratelimit_redis_calls_total",
		Help:        "Redis round trips of an app's rate limiter (ZHIMA_QPS, qps): one per reservation asked, one more when Redis lacked the script.",
		ConstLabels: prometheus.Labels{"app": m.appLabel(app)},
	}, func() float64 { return float64(calls()) }))
}

// appLabel is app when New was told of it, else "other".
func (m *Metrics) appLabel(app string) string {
	if m.apps[app] {
		return app
	}
	return Other
}

// AuthFailure records an API request refused 401 for reason "missing" or
// "invalid" (anything else counts as "other").
func (m *Metrics) AuthFailure(reason string) {
	if m == nil {
		return
	}
	if reason != AuthMissing && reason != AuthInvalid {
		reason = Other
	}
	m.authFailures.WithLabelValues(reason).Inc()
}

var heldBackLabels = map[string]string{ReasonRateLimit: "rate_limit", ReasonBreakerOpen: "breaker_open", ReasonBudget: "daily_budget"}

var breakerStates = map[string]float64{BreakerClosed: 0, BreakerHalfOpen: 1, BreakerOpen: 2}

func methodLabel(method string) string {
	for _, m := range zhima.Methods {
		if method == m {
			return method
		}
	}
	return Other
}
