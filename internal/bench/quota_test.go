package bench

import (
	"testing"
	"time"
)

func TestPromValueReadsOneSeries(t *testing.T) {
	text := `# HELP zhimaq_ratelimit_wait_seconds Time handlers waited.
# TYPE zhimaq_ratelimit_wait_seconds histogram
zhimaq_ratelimit_wait_seconds_bucket{le="0.001"} 3
zhimaq_ratelimit_wait_seconds_sum 12.5
zhimaq_ratelimit_wait_seconds_count 512
zhimaq_tasks_held_back_total{reason="breaker_open"} 4
zhimaq_tasks_held_back_total{reason="rate_limit"} 1.2e+06
`
	for series, want := range map[string]int64{
		"zhimaq_ratelimit_wait_seconds_count":                 512,
		`zhimaq_tasks_held_back_total{reason="rate_limit"}`:   1200000,
		`zhimaq_tasks_held_back_total{reason="breaker_open"}`: 4,
		"zhimaq_ratelimit_wait_seconds":                       0,
		"absent":                                              0,
	} {
		if got := promValue(text, series); got != want {
			t.Errorf("%s: %d, want %d", series, got, want)
		}
	}
}

func TestLatenessFitsTheScheduleUnderTheArrivals(t *testing.T) {
	t0 := time.Unix(0, 0)
	iv := 20 * time.Millisecond
	var ts []time.Time
	// on time but for call 3, 7 ms late, and call 0, 1 ms late
	for i, late := range []time.Duration{time.Millisecond, 0, 0, 7 * time.Millisecond, 0} {
		ts = append(ts, t0.Add(time.Duration(i)*iv+late))
	}
	p50, p99, most := lateness(ts, iv)
	if p50 != 0 || p99 != 7*time.Millisecond || most != 7*time.Millisecond {
		t.Fatalf("lateness = %v %v %v, want 0 7ms 7ms", p50, p99, most)
	}
}
