package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestRenderProgress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		t    tally
		left time.Duration
		want string
	}{
		{"under way", tally{total: 1000, succeeded: 600, failed: 40, unfinished: 360}, 12 * time.Second,
			"[############........] 640/1000 jobs finished · 600 succeeded · 40 failed · 12s left"},
		{"no estimate yet", tally{total: 10, unfinished: 10}, -1,
			"[....................] 0/10 jobs finished · 0 succeeded · 0 failed · estimating time left"},
		{"finished", tally{total: 3, succeeded: 2, failed: 1}, 0,
			"[####################] 3/3 jobs finished · 2 succeeded · 1 failed"},
		{"nothing to wait for", tally{}, -1,
			"[....................] 0/0 jobs finished · 0 succeeded · 0 failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := renderProgress(tt.t, tt.left); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestEstimateLeft(t *testing.T) {
	t.Parallel()
	half := tally{total: 1000, succeeded: 500, unfinished: 500}
	if got := estimateLeft(half, 0, 10*time.Second); got != 10*time.Second {
		t.Errorf("half done in 10s: %v left, want 10s", got)
	}
	if got := estimateLeft(half, 250, 10*time.Second); got != 20*time.Second {
		t.Errorf("250 more in 10s: %v left, want 20s", got)
	}
	if got := estimateLeft(half, 500, 10*time.Second); got != -1 {
		t.Errorf("none since the start: %v, want -1 (no estimate)", got)
	}
	if got := estimateLeft(half, 0, 500*time.Millisecond); got != -1 {
		t.Errorf("under a second: %v, want -1 (no estimate)", got)
	}
}

func TestFormatLeft(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                       "0s",
		1500 * time.Millisecond: "2s",
		59 * time.Second:        "59s",
		185 * time.Second:       "3m05s",
		3720 * time.Second:      "1h02m",
	} {
		if got := formatLeft(d); got != want {
			t.Errorf("formatLeft(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestProgressLineRedraws(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	now := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	p := newProgressLine(&buf, func() time.Time { return now })
	p.draw(tally{total: 100, succeeded: 10, unfinished: 90})
	now = now.Add(10 * time.Second)
	p.draw(tally{total: 100, succeeded: 50, failed: 5, unfinished: 45})
	now = now.Add(10 * time.Second)
	p.draw(tally{total: 100, succeeded: 90, failed: 10})
	p.end()
	draws := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\r")
	if len(draws) != 4 || draws[0] != "" || !strings.HasSuffix(buf.String(), "\n") {
		t.Fatalf("output %q: want three \\r-led draws and a final newline", buf.String())
	}
	if want := "[##..................] 10/100 jobs finished · 10 succeeded · 0 failed · estimating time left"; draws[1] != want {
		t.Errorf("first draw %q", draws[1])
	}
	// 45 finished in 10s since the first draw: 45 more take 10s.
	if want := "[###########.........] 55/100 jobs finished · 50 succeeded · 5 failed · 10s left"; strings.TrimRight(draws[2], " ") != want {
		t.Errorf("second draw %q", draws[2])
	}
	// The last draw is shorter: it is padded over the previous one.
	if len([]rune(draws[3])) != len([]rune(draws[2])) || !strings.HasPrefix(draws[3], "[####################] 100/100") {
		t.Errorf("last draw %q does not cover %q", draws[3], draws[2])
	}
}

func TestProgressLineNilDrawsNothing(t *testing.T) {
	t.Parallel()
	var p *progressLine
	p.draw(tally{total: 1})
	p.end()
}

func TestIsTerminalOfNonFile(t *testing.T) {
	t.Parallel()
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is not a terminal")
	}
}
