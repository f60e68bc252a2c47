package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// machine describes where and when the run happened.
type machine struct {
	date      time.Time
	nproc     string
	cpu       string
	goVersion string
	openssl   string
	redis     string
	loadStart string
	loadEnd   string
	elapsed   time.Duration
}

func describeMachine(ctx context.Context) machine {
	m := machine{date: time.Now(), goVersion: runtime.Version(), loadStart: loadAvg()}
	m.nproc = strings.TrimSpace(output(ctx, "nproc"))
	if m.nproc == "" {
		m.nproc = fmt.Sprint(runtime.NumCPU())
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if v := strings.TrimSpace(output(ctx, "go", "version")); v != "" {
		m.goVersion = v
	}
	m.openssl = strings.TrimSpace(output(ctx, "openssl", "version"))
	return m
}

func output(ctx context.Context, name string, args ...string) string {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return ""
	}
	return string(out)
}

// loadAvg is /proc/loadavg's first three numbers.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func (e *env) redisDescription(ctx context.Context) string {
	info, err := redisInfo(ctx, e.rdb, "server")
	v := "?"
	if err == nil {
		v = info["redis_version"]
	}
	if e.redis != nil {
		return fmt.Sprintf("redis-server %s, private (started by the bench, --save \"\" --appendonly no)", v)
	}
	return fmt.Sprintf("Redis %s at REDIS_URL, shared (no redis-server on PATH)", v)
}

// report renders RESULTS.md.
func report(opts Options, m machine, figs []*figure) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# zhimaq benchmark results\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (cmd/bench, package internal/bench); each run replaces this file.\n\n")
	fmt.Fprintf(&b, "- date: %s (took %s)\n", m.date.UTC().Format("2006-01-02 15:04 MST"), m.elapsed.Round(time.Second))
	fmt.Fprintf(&b, "- machine: nproc %s, %s; load average %s at the start, %s at the end\n", m.nproc, m.cpu, m.loadStart, m.loadEnd)
	fmt.Fprintf(&b, "- %s; %s; %s\n", m.goVersion, m.redis, orDash(m.openssl))
	fmt.Fprintf(&b, "- settings: BENCH_SCALE %g, %d rounds per figure, testing.Benchmark time %s\n\n", opts.Scale, opts.Rounds, opts.BenchTime)
	b.WriteString("Ratios are zhimaq / reference: the median of the per-round ratios, each round measuring both sides " +
		"one after the other on the same machine (ABBA order), so drift and other load cancel out as far as they can.\n\n")
	b.WriteString(table(figs))
	var missed []*figure
	for _, f := range figs {
		if f.Met != nil && !*f.Met || len(f.Why) > 0 {
			missed = append(missed, f)
		}
	}
	if len(missed) > 0 {
		b.WriteString("\n## Why targets were missed\n\n")
		for _, f := range missed {
			fmt.Fprintf(&b, "**%s. %s** (%s, target %s)\n\n", f.ID, f.Name, f.ratioText(), f.Target)
			for _, w := range f.Why {
				fmt.Fprintf(&b, "- %s\n", w)
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n## Raw numbers and how each was measured\n\n")
	for _, f := range figs {
		fmt.Fprintf(&b, "### %s. %s\n\n", f.ID, f.Name)
		if f.Skip != "" {
			fmt.Fprintf(&b, "Not measured: %s\n\n", f.Skip)
		}
		for _, r := range f.Raw {
			fmt.Fprintf(&b, "- %s\n", r)
		}
		if f.How != "" {
			fmt.Fprintf(&b, "\nHow: %s\n", f.How)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "openssl: —"
	}
	return s
}
