package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestMaxInWindowCountsHalfOpenWindows(t *testing.T) {
	t0 := time.Unix(0, 0)
	at := func(ms ...int) []time.Time {
		var ts []time.Time
		for _, m := range ms {
			ts = append(ts, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return ts
	}
	for _, c := range []struct {
		name string
		ts   []time.Time
		want int
	}{
		{"none", nil, 0},
		{"one", at(5), 1},
		{"a second apart is two windows", at(0, 1000), 1},
		{"just inside one window", at(0, 999), 2},
		{"densest stretch anywhere", at(0, 100, 1500, 1600, 1700, 2499, 2500), 4},
	} {
		if got := zhimatest.MostInWindow(c.ts, time.Second); got != c.want {
			t.Errorf("%s: MostInWindow = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestPerSecond(t *testing.T) {
	t0 := time.Unix(0, 0)
	ts := []time.Time{t0, t0.Add(300 * time.Millisecond), t0.Add(2100 * time.Millisecond)}
	got := perSecond(ts)
	if len(got) != 3 || got[0] != 2 || got[1] != 0 || got[2] != 1 {
		t.Fatalf("perSecond = %v, want [2 0 1]", got)
	}
}

func TestDrainPollWhen(t *testing.T) {
	d := drainPoll{timeline: []progress{{0, 100}, {time.Second, 50}, {2 * time.Second, 0}}}
	if got := d.when(60); got != time.Second {
		t.Errorf("when(60) = %s, want 1s", got)
	}
	if got := d.when(0); got != 2*time.Second {
		t.Errorf("when(0) = %s, want 2s", got)
	}
}

func TestCommandsPerJobLeavesOutTheBenchsOwn(t *testing.T) {
	before := map[string]int64{"evalsha": 10, "llen": 0}
	after := map[string]int64{"evalsha": 30, "set": 20, "llen": 8, "info": 3}
	text, total := commandsPerJob(before, after, map[string]int64{"llen": 8}, 10)
	if total != 4 || text != "evalsha 2.00, set 2.00" {
		t.Fatalf("commandsPerJob = %q, %v; want %q, 4", text, total, "evalsha 2.00, set 2.00")
	}
}

func TestTableMarksMissedTargets(t *testing.T) {
	met := &figure{ID: "1", Name: "a", Zhimaq: "1", Reference: "1", Ratio: 1, Target: "≥ 0.80×"}
	met.check(true)
	missed := &figure{ID: "2", Name: "b", Zhimaq: "2", Reference: "1", Ratio: 2, Target: "≤ 1.30×"}
	missed.check(false)
	skipped := &figure{ID: "4", Name: "c", Skip: "no redis-server"}
	got := table([]*figure{met, missed, skipped})
	for _, want := range []string{
		"| figure | zhimaq | reference | ratio | target | met |",
		"| 1. a | 1 | 1 | 1.000× | ≥ 0.80× | yes |",
		"| 2. b | 2 | 1 | 2.000× | ≤ 1.30× | **no** |",
		"| 4. c | — | — | — |  | skipped |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}
