package metrics_test

import (
	"encoding/json"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

const dashboardFile = "../../deploy/grafana/zhimaq.json"

// TestDashboardNamesExportedMetrics checks that every PromQL expression of
// the Grafana dashboard names only series that zhimaq's metrics or asynq's
// queue collector export, as a scrape of a real registry shows them, that
// every panel queries the Prometheus datasource variable, that variables
// take the values of a label their metric has, and that a query of a
// metric labelled by app keeps to the selected apps ($app).
func TestDashboardNamesExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s is not JSON: %v", dashboardFile, err)
	}
	for _, key := range []string{"title", "uid", "panels", "templating", "schemaVersion"} {
		if dash[key] == nil {
			t.Errorf("dashboard lacks %q", key)
		}
	}

	exported := exportedNames(t)
	used := map[string]bool{}
	variables := map[string]bool{} // the labels of the label_values variables
	var exprs int
	walk(dash, func(obj map[string]any) {
		if ds, ok := obj["datasource"].(map[string]any); ok && ds["type"] == "prometheus" {
			if uid := ds["uid"]; uid != "${DS_PROMETHEUS}" && uid != "prometheus" {
				t.Errorf("datasource uid %v; want ${DS_PROMETHEUS}", uid)
			}
		}
		var names []string
		if expr, ok := obj["expr"].(string); ok {
			exprs++
			names = metricNames(expr)
			if len(names) == 0 {
				t.Errorf("no metric found in %q", expr)
			}
		}
		if q, ok := obj["definition"].(string); ok {
			m := regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`).FindStringSubmatch(q)
			if m == nil {
				t.Errorf("variable query %q is not label_values(metric, label)", q)
				return
			}
			names = []string{m[1]}
			variables[m[2]] = true
			if labels := exported[m[1]]; labels != nil && !labels[m[2]] {
				t.Errorf("variable query %q: %s has no label %s", q, m[1], m[2])
			}
		}
		for _, n := range names {
			used[n] = true
			if exported[n] == nil {
				t.Errorf("dashboard queries %s, which neither zhimaq nor asynq's collector exports", n)
			}
			if expr, ok := obj["expr"].(string); ok && exported[n]["app"] && !strings.Contains(expr, `app=~"$app"`) {
				t.Errorf("%q queries %s, labelled by app, without app=~\"$app\"", expr, n)
			}
		}
	})
	for _, v := range []string{"queue", "app", "method"} {
		if !variables[v] {
			t.Errorf("dashboard lacks the %s variable", v)
		}
	}
	if exprs < 10 {
		t.Errorf("only %d expressions in the dashboard", exprs)
	}
	// Every metric of zhimaq's own shows on some panel.
	for n := range exported {
		if !strings.HasPrefix(n, "zhimaq_") || strings.HasSuffix(n, "_sum") || strings.HasSuffix(n, "_count") {
			continue
		}
		base := strings.TrimSuffix(n, "_bucket")
		if !used[n] && !used[base+"_bucket"] && !used[base+"_sum"] {
			t.Errorf("no panel shows %s", n)
		}
	}
	for _, need := range []string{"asynq_tasks_enqueued_total", "zhimaq_gateway_call_duration_seconds_bucket", "zhimaq_breaker_state"} {
		if !used[need] {
			t.Errorf("no panel shows %s", need)
		}
	}
}

// exportedNames is every series name a /metrics scrape of a worker holds,
// histograms' _bucket, _sum and _count included, each with the names of
// its labels.
func exportedNames(t *testing.T) map[string]map[string]bool {
	t.Helper()
	reg, _, _ := queueRegistry(t)
	names := map[string]map[string]bool{}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			labels := map[string]bool{}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = true
				}
			}
			names[f.GetName()] = labels
			if f.GetType() == dto.MetricType_HISTOGRAM {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					names[f.GetName()+s] = labels
				}
			}
		}
		if names["asynq_queue_size"] != nil || time.Now().After(deadline) {
			break // see TestQueueCollectorReportsPendingTask
		}
	}
	if names["asynq_queue_size"] == nil || names["zhimaq_gateway_calls_total"] == nil {
		t.Fatalf("scrape lacks asynq's or zhimaq's series: %v", slices.Sorted(maps.Keys(names)))
	}
	return names
}

var (
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promBraces   = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	promVars     = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`\b[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"inf": true, "nan": true, "atan2": true}
)

// metricNames returns the metric names of a PromQL expression: identifiers
// outside strings, label matchers, ranges and grouping clauses that are not
// functions, aggregations or keywords.
func metricNames(expr string) []string {
	s := promStrings.ReplaceAllString(expr, `""`)
	s = promVars.ReplaceAllString(s, "")
	s = promBraces.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	var names []string
	for _, m := range promIdent.FindAllStringSubmatch(s, -1) {
		name := strings.TrimRight(strings.TrimSuffix(strings.TrimSpace(m[0]), "("), " ")
		if m[1] != "" || promKeywords[strings.ToLower(name)] {
			continue // a function or aggregation call, or a keyword
		}
		names = append(names, name)
	}
	return names
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (outcome) (rate(zhimaq_gateway_calls_total{method=~"$method"}[$__rate_interval]))`: {"zhimaq_gateway_calls_total"},
		`histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="y{z}"}[5m])))`:                     {"a_bucket"},
		`sum(rate(a_sum[1m])) / on(job) group_left(instance) sum(rate(a_count[1m])) > bool 0`:      {"a_sum", "a_count"},
		`max without (instance) (up offset 5m) or vector(0)`:                                       {"up"},
	} {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("metricNames(%q) = %q, want %q", expr, got, want)
		}
	}
}

// walk calls visit with every JSON object under v.
func walk(v any, visit func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		visit(v)
		for _, c := range v {
			walk(c, visit)
		}
	case []any:
		for _, c := range v {
			walk(c, visit)
		}
	}
}
