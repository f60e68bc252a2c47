package metrics_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/zhimaq/zhimaq/internal/metrics"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

const (
	score = zhima.MethodScoreBriefGet
	rel   = zhima.MethodRelationQuery
	cert  = zhima.MethodCertificationInitialize
)

// drive calls every method of m once or more, as a worker and a producer would.
func drive(m *metrics.Metrics) {
	m.InFlight(1)
	m.InFlight(1)
	m.InFlight(-1)
	m.GatewayCall(score, "10000", 40*time.Millisecond)
	m.GatewayCall(score, "40004/SYSTEM_ERROR", 2*time.Second)
	m.GatewayCall(rel, "transport", 20*time.Second)
	m.Retry(score)
	m.Retry(rel)
	m.JobFinished(score, "succeeded")
	m.JobFinished(rel, "failed")
	m.Dedup(score, "duplicate")
	m.Dedup(cert, "conflict")
	m.LimiterWait(3 * time.Millisecond)
	m.LimiterWait(300 * time.Millisecond)
	m.HeldBack("rate limit")
	m.HeldBack("breaker open")
	m.HeldBack("breaker open")
	m.BreakerChanged("open")
	m.BreakerChanged("half-open")
	m.AuthFailure("missing")
	m.AuthFailure("invalid")
	m.AuthFailure("invalid")
}

func TestMetricsScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	drive(m)

	t.Run("counters and gauges", func(t *testing.T) {
		want := fmt.Sprintf(`
# HELP zhimaq_gateway_calls_in_flight Gateway calls under way.
# TYPE zhimaq_gateway_calls_in_flight gauge
zhimaq_gateway_calls_in_flight 1
# HELP zhimaq_breaker_state State of the gateway breaker: 0 closed, 1 half-open, 2 open.
# TYPE zhimaq_breaker_state gauge
zhimaq_breaker_state 1
# HELP zhimaq_breaker_changes_total Changes of the gateway breaker's state, by the state it changed to.
# TYPE zhimaq_breaker_changes_total counter
zhimaq_breaker_changes_total{to="closed"} 0
zhimaq_breaker_changes_total{to="half-open"} 1
zhimaq_breaker_changes_total{to="open"} 1
# HELP zhimaq_tasks_held_back_total Tasks handed back without a gateway call, by reason: rate_limit or breaker_open.
# TYPE zhimaq_tasks_held_back_total counter
zhimaq_tasks_held_back_total{reason="breaker_open"} 2
zhimaq_tasks_held_back_total{reason="rate_limit"} 1
# HELP zhimaq_gateway_retries_total Gateway calls that failed transiently and whose job will be retried, by method.
# TYPE zhimaq_gateway_retries_total counter
zhimaq_gateway_retries_total{method=%[1]q} 0
zhimaq_gateway_retries_total{method=%[2]q} 1
zhimaq_gateway_retries_total{method=%[3]q} 1
# HELP zhimaq_api_auth_failures_total HTTP API requests refused 401, by reason: missing (no bearer token) or invalid (a token not in API_TOKENS).
# TYPE zhimaq_api_auth_failures_total counter
zhimaq_api_auth_failures_total{reason="invalid"} 2
zhimaq_api_auth_failures_total{reason="missing"} 1
`, cert, rel, score)
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
			"zhimaq_gateway_calls_in_flight", "zhimaq_breaker_state", "zhimaq_breaker_changes_total",
			"zhimaq_tasks_held_back_total", "zhimaq_gateway_retries_total", "zhimaq_api_auth_failures_total"); err != nil {
			t.Error(err)
		}
	})

	// The rest through the exposition format as /metrics serves it.
	srv := httptest.NewServer(metrics.Handler(reg, nil, nil))
	defer srv.Close()
	body := scrape(t, srv.URL)
	for _, line := range []string{
		`zhimaq_gateway_calls_total{method="zhima.credit.score.brief.get",outcome="10000"} 1`,
		`zhimaq_gateway_calls_total{method="zhima.credit.score.brief.get",outcome="40004/SYSTEM_ERROR"} 1`,
		`zhimaq_gateway_calls_total{method="zhima.credit.relation.query",outcome="transport"} 1`,
		`zhimaq_gateway_call_duration_seconds_bucket{method="zhima.credit.score.brief.get",le="0.05"} 1`,
		`zhimaq_gateway_call_duration_seconds_bucket{method="zhima.credit.score.brief.get",le="2.5"} 2`,
		`zhimaq_gateway_call_duration_seconds_bucket{method="zhima.credit.relation.query",le="15"} 0`,
		`zhimaq_gateway_call_duration_seconds_bucket{method="zhima.credit.relation.query",le="30"} 1`,
		`zhimaq_gateway_call_duration_seconds_sum{method="zhima.credit.score.brief.get"} 2.04`,
		`zhimaq_gateway_call_duration_seconds_count{method="zhima.credit.score.brief.get"} 2`,
		`zhimaq_gateway_call_duration_seconds_count{method="zhima.customer.certification.initialize"} 0`,
		`zhimaq_jobs_finished_total{method="zhima.credit.score.brief.get",state="succeeded"} 1`,
		`zhimaq_jobs_finished_total{method="zhima.credit.score.brief.get",state="failed"} 0`,
		`zhimaq_jobs_finished_total{method="zhima.credit.relation.query",state="failed"} 1`,
		`zhimaq_dedup_hits_total{method="zhima.credit.score.brief.get",outcome="duplicate"} 1`,
		`zhimaq_dedup_hits_total{method="zhima.customer.certification.initialize",outcome="conflict"} 1`,
		`zhimaq_ratelimit_wait_seconds_bucket{le="0.005"} 1`,
		`zhimaq_ratelimit_wait_seconds_bucket{le="0.5"} 2`,
		`zhimaq_ratelimit_wait_seconds_count 2`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("scrape lacks %s", line)
		}
	}
	if t.Failed() {
		t.Logf("scraped:\n%s", body)
	}
}

func TestBreakerStateGauge(t *testing.T) {
	m := metrics.New(nil)
	reg := prometheus.NewPedanticRegistry()
	m2 := metrics.New(reg)
	for _, tc := range []struct {
		to   string
		want float64
	}{{"open", 2}, {"half-open", 1}, {"closed", 0}, {"unknown state: 7", 0}} {
		m.BreakerChanged(tc.to)
		m2.BreakerChanged(tc.to)
		if err := testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(`
# HELP zhimaq_breaker_state State of the gateway breaker: 0 closed, 1 half-open, 2 open.
# TYPE zhimaq_breaker_state gauge
zhimaq_breaker_state %g
`, tc.want)), "zhimaq_breaker_state"); err != nil {
			t.Errorf("after %q: %v", tc.to, err)
		}
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *metrics.Metrics
	drive(m) // must not panic
}

func TestLabelCardinalityBounded(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := metrics.New(reg)
	drive(m)
	for i := range 500 {
		junk := fmt.Sprintf("junk-%d", i)
		m.GatewayCall(junk, junk, time.Millisecond)
		m.GatewayCall(score, "40004/"+junk, time.Millisecond)
		m.GatewayCall(score, metrics.Outcome(&zhima.Error{Source: zhima.SourceGateway, Code: "40004", SubCode: junk}), time.Millisecond)
		m.GatewayCall(score, metrics.Outcome(&zhima.Error{Source: zhima.SourceGateway, Code: junk}), time.Millisecond)
		m.Retry(junk)
		m.JobFinished(junk, junk)
		m.Dedup(junk, junk)
		m.HeldBack(junk)
		m.BreakerChanged(junk)
		m.AuthFailure(junk)
	}
	allowed := map[string]map[string]bool{
		"method":  set(append(zhima.Methods[:len(zhima.Methods):len(zhima.Methods)], "other")...),
		"outcome": set(append(metrics.Outcomes(), "duplicate", "conflict")...),
		"state":   set("succeeded", "failed", "other"),
		"reason":  set("rate_limit", "breaker_open", "missing", "invalid", "other"),
		"to":      set("closed", "half-open", "open", "other"),
		"le":      nil, // bucket bounds: fixed by the histograms
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			series++
			for _, l := range mt.GetLabel() {
				vals, known := allowed[l.GetName()]
				if !known {
					t.Errorf("%s: unexpected label %s", f.GetName(), l.GetName())
				} else if vals != nil && !vals[l.GetValue()] {
					t.Errorf("%s: label %s=%q outside its bounded set", f.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
	// 3+1 methods × (|outcomes| + a few) is the ceiling, whatever the input.
	if limit := 4*(len(metrics.Outcomes())+12) + 20; series > limit {
		t.Errorf("%d series after 500 distinct junk values; want at most %d", series, limit)
	}
	for _, name := range []string{"zhimaq_gateway_calls_total", "zhimaq_jobs_finished_total", "zhimaq_tasks_held_back_total", "zhimaq_api_auth_failures_total"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n == 0 {
			t.Errorf("%s: %d series, %v", name, n, err)
		}
	}
}

func TestOutcome(t *testing.T) {
	gw := func(code, sub string) error {
		return &zhima.Error{Source: zhima.SourceGateway, Method: score, Code: code, SubCode: sub}
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"success", nil, "10000"},
		{"system error", gw("40004", "SYSTEM_ERROR"), "40004/SYSTEM_ERROR"},
		{"prefixed sub_code", gw("40004", "isp.SYSTEM_ERROR"), "40004/SYSTEM_ERROR"},
		{"documented business code", gw("40004", "TRANSACTION_ID_REPEAT"), "40004/TRANSACTION_ID_REPEAT"},
		{"unknown sub_code", gw("40004", "SOMETHING_NEW"), "40004/other"},
		{"40004 without sub_code", gw("40004", ""), "40004"},
		{"service unavailable", gw("20000", "isp.unknow-error"), "20000"},
		{"invalid signature", gw("40002", "isv.invalid-signature"), "40002"},
		{"unknown code", gw("99999", ""), "other"},
		{"transport", &zhima.Error{Source: zhima.SourceTransport, HTTPStatus: 502}, "transport"},
		{"verification", &zhima.Error{Source: zhima.SourceVerification}, "verification"},
		{"local", &zhima.Error{Source: zhima.SourceLocal, Code: "40004", SubCode: "INVALID_PARAMETER"}, "local"},
		{"wrapped", fmt.Errorf("call: %w", gw("20000", "")), "20000"},
		{"plain error", errors.New("connection reset"), "transport"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := metrics.Outcome(tc.err); got != tc.want {
				t.Errorf("Outcome = %q, want %q", got, tc.want)
			}
		})
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, b)
	}
	return string(b)
}

func set(vals ...string) map[string]bool {
	s := make(map[string]bool, len(vals))
	for _, v := range vals {
		s[v] = true
	}
	return s
}

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	drive(metrics.New(reg))
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}
