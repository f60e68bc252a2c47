package metrics_test

import (
	"errors"
	"fmt"
	"io"
	"maps"
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

	// app and app2 are app ids a deployment serves: drive's calls are
	// app's, and New must be told of it (metrics.New(reg, app)).
	app  = "2021000000000001"
	app2 = "2021000000000002"
	// stranger is an app id New was not told of.
	stranger = "2099000000000099"
)

// drive calls every method of m once or more, as a worker of app and a
// producer would.
func drive(m *metrics.Metrics) {
	m.InFlight(1)
	m.InFlight(1)
	m.InFlight(-1)
	m.GatewayCall(app, score, "10000", 40*time.Millisecond)
	m.GatewayCall(app, score, "40004/SYSTEM_ERROR", 2*time.Second)
	m.GatewayCall(app, rel, "transport", 20*time.Second)
	m.Retry(app, score)
	m.Retry(app, rel)
	m.JobFinished(app, score, "succeeded")
	m.JobFinished(app, rel, "failed")
	m.Dedup(score, "duplicate")
	m.Dedup(cert, "conflict")
	m.LimiterWait(3 * time.Millisecond)
	m.LimiterWait(300 * time.Millisecond)
	m.HeldBack(app, "rate limit")
	m.HeldBack(app, "breaker open")
	m.HeldBack(app, "breaker open")
	m.HeldBack(app, "daily budget")
	m.BreakerChanged(app, "open")
	m.BreakerChanged(app, "half-open")
	m.BudgetUsed(app, score, 41)
	m.BudgetUsed(app, score, 42) // sets, does not add
	m.AuthFailure("missing")
	m.AuthFailure("invalid")
	m.AuthFailure("invalid")
}

func TestMetricsScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, app)
	drive(m)

	// Series of the known app and of "other" start at zero; the breaker
	// state and the budget gauge exist once set.
	t.Run("counters and gauges", func(t *testing.T) {
		want := fmt.Sprintf(`
# HELP zhimaq_gateway_calls_in_flight Gateway calls under way.
# TYPE zhimaq_gateway_calls_in_flight gauge
zhimaq_gateway_calls_in_flight 1
# HELP zhimaq_breaker_state State of an app's gateway breaker: 0 closed, 1 half-open, 2 open.
# TYPE zhimaq_breaker_state gauge
zhimaq_breaker_state{app=%[4]q} 1
# HELP zhimaq_breaker_changes_total Changes of an app's gateway breaker's state, by the state it changed to.
# TYPE zhimaq_breaker_changes_total counter
zhimaq_breaker_changes_total{app=%[4]q,to="closed"} 0
zhimaq_breaker_changes_total{app=%[4]q,to="half-open"} 1
zhimaq_breaker_changes_total{app=%[4]q,to="open"} 1
zhimaq_breaker_changes_total{app="other",to="closed"} 0
zhimaq_breaker_changes_total{app="other",to="half-open"} 0
zhimaq_breaker_changes_total{app="other",to="open"} 0
# HELP zhimaq_tasks_held_back_total Tasks handed back without a gateway call, by app and reason: rate_limit, breaker_open or daily_budget (a job held until Beijing midnight).
# TYPE zhimaq_tasks_held_back_total counter
zhimaq_tasks_held_back_total{app=%[4]q,reason="breaker_open"} 2
zhimaq_tasks_held_back_total{app=%[4]q,reason="daily_budget"} 1
zhimaq_tasks_held_back_total{app=%[4]q,reason="rate_limit"} 1
zhimaq_tasks_held_back_total{app="other",reason="breaker_open"} 0
zhimaq_tasks_held_back_total{app="other",reason="daily_budget"} 0
zhimaq_tasks_held_back_total{app="other",reason="rate_limit"} 0
# HELP zhimaq_gateway_retries_total Gateway calls that failed transiently and whose job will be retried, by app and method.
# TYPE zhimaq_gateway_retries_total counter
zhimaq_gateway_retries_total{app=%[4]q,method=%[1]q} 0
zhimaq_gateway_retries_total{app=%[4]q,method=%[2]q} 1
zhimaq_gateway_retries_total{app=%[4]q,method=%[3]q} 1
zhimaq_gateway_retries_total{app="other",method=%[1]q} 0
zhimaq_gateway_retries_total{app="other",method=%[2]q} 0
zhimaq_gateway_retries_total{app="other",method=%[3]q} 0
# HELP zhimaq_daily_budget_used Billed calls reserved today (Beijing) of an app's daily budget, by method, as this worker last saw it; only methods with a budget.
# TYPE zhimaq_daily_budget_used gauge
zhimaq_daily_budget_used{app=%[4]q,method=%[3]q} 42
# HELP zhimaq_api_auth_failures_total HTTP API requests refused 401, by reason: missing (no bearer token) or invalid (a token not in API_TOKENS).
# TYPE zhimaq_api_auth_failures_total counter
zhimaq_api_auth_failures_total{reason="invalid"} 2
zhimaq_api_auth_failures_total{reason="missing"} 1
`, cert, rel, score, app)
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
			"zhimaq_gateway_calls_in_flight", "zhimaq_breaker_state", "zhimaq_breaker_changes_total",
			"zhimaq_tasks_held_back_total", "zhimaq_gateway_retries_total", "zhimaq_daily_budget_used",
			"zhimaq_api_auth_failures_total"); err != nil {
			t.Error(err)
		}
	})

	// The rest through the exposition format as /metrics serves it.
	srv := httptest.NewServer(metrics.Handler(reg, nil, nil))
	defer srv.Close()
	body := scrape(t, srv.URL)
	for _, line := range []string{
		`zhimaq_gateway_calls_total{app="2021000000000001",method="zhima.credit.score.brief.get",outcome="10000"} 1`,
		`zhimaq_gateway_calls_total{app="2021000000000001",method="zhima.credit.score.brief.get",outcome="40004/SYSTEM_ERROR"} 1`,
		`zhimaq_gateway_calls_total{app="2021000000000001",method="zhima.credit.relation.query",outcome="transport"} 1`,
		`zhimaq_gateway_call_duration_seconds_bucket{app="2021000000000001",method="zhima.credit.score.brief.get",le="0.05"} 1`,
		`zhimaq_gateway_call_duration_seconds_bucket{app="2021000000000001",method="zhima.credit.score.brief.get",le="2.5"} 2`,
		`zhimaq_gateway_call_duration_seconds_bucket{app="2021000000000001",method="zhima.credit.relation.query",le="15"} 0`,
		`zhimaq_gateway_call_duration_seconds_bucket{app="2021000000000001",method="zhima.credit.relation.query",le="30"} 1`,
		`zhimaq_gateway_call_duration_seconds_sum{app="2021000000000001",method="zhima.credit.score.brief.get"} 2.04`,
		`zhimaq_gateway_call_duration_seconds_count{app="2021000000000001",method="zhima.credit.score.brief.get"} 2`,
		`zhimaq_gateway_call_duration_seconds_count{app="2021000000000001",method="zhima.customer.certification.initialize"} 0`,
		`zhimaq_gateway_call_duration_seconds_count{app="other",method="zhima.credit.score.brief.get"} 0`,
		`zhimaq_jobs_finished_total{app="2021000000000001",method="zhima.credit.score.brief.get",state="succeeded"} 1`,
		`zhimaq_jobs_finished_total{app="2021000000000001",method="zhima.credit.score.brief.get",state="failed"} 0`,
		`zhimaq_jobs_finished_total{app="2021000000000001",method="zhima.credit.relation.query",state="failed"} 1`,
		`zhimaq_jobs_finished_total{app="other",method="zhima.credit.relation.query",state="failed"} 0`,
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

// TestBreakerStateGauge changes two apps' breakers in turn: each known app
// has its own zhimaq_breaker_state series, closed from the start, and an
// unknown app's breaker is app="other".
func TestBreakerStateGauge(t *testing.T) {
	m := metrics.New(nil, app, app2)
	reg := prometheus.NewPedanticRegistry()
	m2 := metrics.New(reg, app, app2)
	for _, tc := range []struct {
		app, to string // no change when empty
		want    map[string]float64
	}{
		{"", "", map[string]float64{app: 0, app2: 0}},
		{app, "open", map[string]float64{app: 2, app2: 0}},
		{app2, "half-open", map[string]float64{app: 2, app2: 1}},
		{app, "closed", map[string]float64{app: 0, app2: 1}},
		{app2, "unknown state: 7", map[string]float64{app: 0, app2: 1}},
		{stranger, "open", map[string]float64{app: 0, app2: 1, "other": 2}},
	} {
		if tc.to != "" {
			m.BreakerChanged(tc.app, tc.to)
			m2.BreakerChanged(tc.app, tc.to)
		}
		want := "# HELP zhimaq_breaker_state State of an app's gateway breaker: 0 closed, 1 half-open, 2 open.\n" +
			"# TYPE zhimaq_breaker_state gauge\n"
		for a, v := range tc.want {
			want += fmt.Sprintf("zhimaq_breaker_state{app=%q} %g\n", a, v)
		}
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "zhimaq_breaker_state"); err != nil {
			t.Errorf("after %s changed to %q: %v", tc.app, tc.to, err)
		}
	}
}

// TestUnknownAppCountsAsOther records one of each per-app metric for two
// app ids New was not told of: both land on the app="other" series, the
// second adds no series, and no series names either.
func TestUnknownAppCountsAsOther(t *testing.T) {
	strangers := []string{stranger, "not an app id"}
	for _, tc := range []struct {
		name   string
		record func(m *metrics.Metrics, app string)
		want   string // the app="other" series after both, with its value
	}{
		{"gateway call", func(m *metrics.Metrics, a string) { m.GatewayCall(a, score, "10000", time.Second) },
			fmt.Sprintf(`zhimaq_gateway_calls_total{app="other",method=%q,outcome="10000"} 2`, score)},
		{"gateway latency", func(m *metrics.Metrics, a string) { m.GatewayCall(a, score, "10000", time.Second) },
			fmt.Sprintf(`zhimaq_gateway_call_duration_seconds_count{app="other",method=%q} 2`, score)},
		{"retry", func(m *metrics.Metrics, a string) { m.Retry(a, rel) },
			fmt.Sprintf(`zhimaq_gateway_retries_total{app="other",method=%q} 2`, rel)},
		{"job finished", func(m *metrics.Metrics, a string) { m.JobFinished(a, rel, "failed") },
			fmt.Sprintf(`zhimaq_jobs_finished_total{app="other",method=%q,state="failed"} 2`, rel)},
		{"held back", func(m *metrics.Metrics, a string) { m.HeldBack(a, "daily budget") },
			`zhimaq_tasks_held_back_total{app="other",reason="daily_budget"} 2`},
		{"breaker change", func(m *metrics.Metrics, a string) { m.BreakerChanged(a, "open") },
			`zhimaq_breaker_changes_total{app="other",to="open"} 2`},
		{"breaker state", func(m *metrics.Metrics, a string) { m.BreakerChanged(a, "open") },
			`zhimaq_breaker_state{app="other"} 2`},
		{"budget used", func(m *metrics.Metrics, a string) { m.BudgetUsed(a, score, 7) },
			fmt.Sprintf(`zhimaq_daily_budget_used{app="other",method=%q} 7`, score)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			m := metrics.New(reg, app)
			tc.record(m, strangers[0])
			first := seriesCount(t, reg)
			tc.record(m, strangers[1])
			if n := seriesCount(t, reg); n != first {
				t.Errorf("a second unknown app made %d series of %d", n, first)
			}
			srv := httptest.NewServer(metrics.Handler(reg, nil, nil))
			defer srv.Close()
			body := scrape(t, srv.URL)
			if !strings.Contains(body, tc.want+"\n") {
				t.Errorf("scrape lacks %s", tc.want)
			}
			for _, a := range strangers {
				if strings.Contains(body, a) {
					t.Errorf("scrape names the unknown app %q", a)
				}
			}
			if t.Failed() {
				t.Logf("scraped:\n%s", body)
			}
		})
	}
}

func TestHeldBackReasons(t *testing.T) {
	for _, tc := range []struct {
		name, reason, label string
	}{
		{"rate limit counts as rate_limit", "rate limit", "rate_limit"},
		{"breaker open counts as breaker_open", "breaker open", "breaker_open"},
		{"daily budget counts as daily_budget", "daily budget", "daily_budget"},
		{"unknown reason counts as other", "budget", "other"},
		{"empty reason counts as other", "", "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			m := metrics.New(reg, app, app2)
			m.HeldBack(app2, tc.reason)
			want := map[string]float64{}
			for _, a := range []string{app, app2, "other"} {
				for _, r := range []string{"rate_limit", "breaker_open", "daily_budget"} {
					want[a+"/"+r] = 0
				}
			}
			want[app2+"/"+tc.label] = 1
			got := map[string]float64{}
			families, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range families {
				if f.GetName() != "zhimaq_tasks_held_back_total" {
					continue
				}
				for _, mt := range f.GetMetric() {
					l := map[string]string{}
					for _, p := range mt.GetLabel() {
						l[p.GetName()] = p.GetValue()
					}
					got[l["app"]+"/"+l["reason"]] = mt.GetCounter().GetValue()
				}
			}
			if !maps.Equal(got, want) {
				t.Errorf("zhimaq_tasks_held_back_total by app/reason = %v, want %v", got, want)
			}
		})
	}
}

func TestBudgetUsedSetsGauge(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := metrics.New(reg, app, app2)
	m.BudgetUsed(app, score, 10)
	m.BudgetUsed(app2, score, 3)
	m.BudgetUsed(app, score, 12) // the latest reservation's count, not a sum
	m.BudgetUsed(app, rel, 0)
	m.BudgetUsed(app2, "zhima.not.a.method", 5)
	want := fmt.Sprintf(`
# HELP zhimaq_daily_budget_used Billed calls reserved today (Beijing) of an app's daily budget, by method, as this worker last saw it; only methods with a budget.
# TYPE zhimaq_daily_budget_used gauge
zhimaq_daily_budget_used{app=%[1]q,method=%[3]q} 0
zhimaq_daily_budget_used{app=%[1]q,method=%[4]q} 12
zhimaq_daily_budget_used{app=%[2]q,method="other"} 5
zhimaq_daily_budget_used{app=%[2]q,method=%[4]q} 3
`, app, app2, rel, score)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "zhimaq_daily_budget_used"); err != nil {
		t.Error(err)
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *metrics.Metrics
	drive(m) // must not panic
}

func TestLabelCardinalityBounded(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := metrics.New(reg, app)
	drive(m)
	for i := range 500 {
		junk := fmt.Sprintf("junk-%d", i)
		m.GatewayCall(junk, junk, junk, time.Millisecond)
		m.GatewayCall(app, score, "40004/"+junk, time.Millisecond)
		m.GatewayCall(app, score, metrics.Outcome(&zhima.Error{Source: zhima.SourceGateway, Code: "40004", SubCode: junk}), time.Millisecond)
		m.GatewayCall(app, score, metrics.Outcome(&zhima.Error{Source: zhima.SourceGateway, Code: junk}), time.Millisecond)
		m.Retry(junk, junk)
		m.JobFinished(junk, junk, junk)
		m.Dedup(junk, junk)
		m.HeldBack(junk, junk)
		m.BreakerChanged(junk, junk)
		m.BreakerChanged(junk, "open")
		m.BudgetUsed(junk, junk, i)
		m.AuthFailure(junk)
	}
	allowed := map[string]map[string]bool{
		"app":     set(app, "other"),
		"method":  set(append(zhima.Methods[:len(zhima.Methods):len(zhima.Methods)], "other")...),
		"outcome": set(append(metrics.Outcomes(), "duplicate", "conflict")...),
		"state":   set("succeeded", "failed", "other"),
		"reason":  set("rate_limit", "breaker_open", "daily_budget", "missing", "invalid", "other"),
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
	// 1+1 apps × 3+1 methods × (|outcomes| + a few) is the ceiling,
	// whatever the input.
	if limit := 2*4*(len(metrics.Outcomes())+12) + 20; series > limit {
		t.Errorf("%d series after 500 distinct junk values; want at most %d", series, limit)
	}
	for _, name := range []string{"zhimaq_gateway_calls_total", "zhimaq_jobs_finished_total", "zhimaq_tasks_held_back_total",
		"zhimaq_breaker_state", "zhimaq_daily_budget_used", "zhimaq_api_auth_failures_total"} {
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

// seriesCount is the number of series reg gathers (a histogram is one).
func seriesCount(t *testing.T, reg prometheus.Gatherer) int {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		n += len(f.GetMetric())
	}
	return n
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
	drive(metrics.New(reg, app))
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}
