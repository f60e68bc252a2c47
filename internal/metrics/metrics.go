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
	breakerState   prometheus.Gauge
	breakerChanges *prometheus.CounterVec
	authFailures   *prometheus.CounterVec
}

// New creates zhimaq's metrics and registers them with reg (nil: they are
// recorded but not registered anywhere). It panics if reg already holds
// metrics of the same names, like prometheus.MustRegister: create one
// Metrics per registry. Series of every known method, state, reason and
// breaker state start at zero, so rates are defined from the first scrape.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		gatewayCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zhimaq_gateway_calls_total",
			Help: `Gateway calls by method and outcome: the code ("10000", "20000", …), "40004/<sub_code>", "transport", "verification", "local" or "other".`,
		}, []string{"method", "outcome"}),
		gatewayLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "zhimaq_gateway_call_duration_seconds",
			Help:    "Duration of gateway calls, signing to verified answer, by method.",
			Buckets: GatewayBuckets,
		}, []string{"method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zhimaq_gateway_calls_in_flight",
			Help: "Gateway calls under way.",
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zhimaq_gateway_retries_total",
			Help: "Gateway calls that failed transiently and whose job will be retried, by method.",
		}, []string{"method"}),
		jobsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zhimaq_jobs_finished_total",
			Help: "Jobs that reached a final state (succeeded or failed), by method.",
		}, []string{"method", "state"}),
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
			Help: "Tasks handed back without a gateway call, by reason: rate_limit or breaker_open.",
		}, []string{"reason"}),
		breakerState: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zhimaq_breaker_state",
			Help: "State of the gateway breaker: 0 closed, 1 half-open, 2 open.",
		}),
		breakerChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zhimaq_breaker_changes_total",
			Help: "Changes of the gateway breaker's state, by the state it changed to.",
		}, []string{"to"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zhimaq_api_auth_failures_total",
			Help: "HTTP API requests refused 401, by reason: missing (no bearer token) or invalid (a token not in API_TOKENS).",
		}, []string{"reason"}),
	}
	for _, method := range zhima.Methods {
		m.gatewayLatency.WithLabelValues(method)
		m.retries.WithLabelValues(method)
		for _, s := range []string{StateSucceeded, StateFailed} {
			m.jobsFinished.WithLabelValues(method, s)
		}
		for _, o := range []string{DedupDuplicate, DedupConflict} {
			m.dedup.WithLabelValues(method, o)
		}
	}
	for _, r := range heldBackLabels {
		m.heldBack.WithLabelValues(r)
	}
	for s := range breakerStates {
		m.breakerChanges.WithLabelValues(s)
	}
	for _, r := range []string{AuthMissing, AuthInvalid} {
		m.authFailures.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.gatewayCalls, m.gatewayLatency, m.inFlight, m.retries, m.jobsFinished,
			m.dedup, m.limiterWait, m.heldBack, m.breakerState, m.breakerChanges, m.authFailures)
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

// GatewayCall records one gateway call of method that ended with outcome
// (see Outcome) after d. Unknown methods and outcomes count as "other".
func (m *Metrics) GatewayCall(method, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	method = methodLabel(method)
	if !outcomes[outcome] {
		outcome = Other
	}
	m.gatewayCalls.WithLabelValues(method, outcome).Inc()
	m.gatewayLatency.WithLabelValues(method).Observe(d.Seconds())
}

// InFlight adds delta (+1 as a call starts, -1 as it ends) to the gateway
// calls under way.
func (m *Metrics) InFlight(delta int) {
	if m == nil {
		return
	}
	m.inFlight.Add(float64(delta))
}

// Retry records a call of method that failed transiently; its job will be
// retried.
func (m *Metrics) Retry(method string) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(methodLabel(method)).Inc()
}

// JobFinished records a job of method that reached its final state,
// "succeeded" or "failed" (anything else counts as "other").
func (m *Metrics) JobFinished(method, state string) {
	if m == nil {
		return
	}
	if state != StateSucceeded && state != StateFailed {
		state = Other
	}
	m.jobsFinished.WithLabelValues(methodLabel(method), state).Inc()
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

// HeldBack records a task handed back without a call, for reason "rate
// limit" or "breaker open" (tasks.HeldBack's Reason). They are counted as
// reason="rate_limit" and reason="breaker_open"; anything else as "other".
func (m *Metrics) HeldBack(reason string) {
	if m == nil {
		return
	}
	label, ok := heldBackLabels[reason]
	if !ok {
		label = Other
	}
	m.heldBack.WithLabelValues(label).Inc()
}

// BreakerChanged records a change of the breaker to state to ("closed",
// "half-open" or "open") and sets zhimaq_breaker_state. It fits
// breaker.Config.OnChange as func(_, to string) { m.BreakerChanged(to) }.
// An unknown state is counted as "other" and leaves the gauge as it was.
func (m *Metrics) BreakerChanged(to string) {
	if m == nil {
		return
	}
	v, ok := breakerStates[to]
	if !ok {
		m.breakerChanges.WithLabelValues(Other).Inc()
		return
	}
	m.breakerState.Set(v)
	m.breakerChanges.WithLabelValues(to).Inc()
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

var heldBackLabels = map[string]string{ReasonRateLimit: "rate_limit", ReasonBreakerOpen: "breaker_open"}

var breakerStates = map[string]float64{BreakerClosed: 0, BreakerHalfOpen: 1, BreakerOpen: 2}

func methodLabel(method string) string {
	for _, m := range zhima.Methods {
		if method == m {
			return method
		}
	}
	return Other
}
