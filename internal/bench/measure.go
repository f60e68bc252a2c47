package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// median of xs (the mean of the middle two for an even count); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ratios divides a[i] by b[i].
func ratios(a, b []float64) []float64 {
	out := make([]float64, 0, len(a))
	for i := range min(len(a), len(b)) {
		if b[i] != 0 {
			out = append(out, a[i]/b[i])
		}
	}
	return out
}

// perSecond counts sorted timestamps in consecutive seconds from the first.
func perSecond(ts []time.Time) []int {
	if len(ts) == 0 {
		return nil
	}
	var out []int
	for _, t := range ts {
		s := int(t.Sub(ts[0]) / time.Second)
		for len(out) <= s {
			out = append(out, 0)
		}
		out[s]++
	}
	return out
}

// selfCPU is the CPU time (user + system) this process has used, from
// getrusage(RUSAGE_SELF).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time another process has used: the sum over its threads
// of /proc/PID/task/TID/schedstat's first field (ns on a CPU), or, where
// schedstat is missing, utime+stime from /proc/PID/stat (at 100 ticks a
// second).
func procCPU(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err == nil && len(tasks) > 0 {
		var sum int64
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil {
				continue // a thread that just ended
			}
			f := strings.Fields(string(b))
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				sum += n
			}
		}
		return time.Duration(sum), nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// cpuMeter reads the CPU of this process and, when it is ours, of Redis.
type cpuMeter struct {
	e                 *env
	self, redis, sbox time.Duration
	start             time.Time
}

func (e *env) cpuStart() *cpuMeter {
	m := &cpuMeter{e: e}
	m.self = selfCPU()
	if e.redis != nil {
		m.redis, _ = procCPU(e.redis.Child().Pid())
	}
	m.sbox, _ = procCPU(e.sb.Child.Pid())
	m.start = time.Now()
	return m
}

// cpuUse is what a measurement cost: CPU of this process, of Redis (0 when
// shared) and of the sandbox, and the wall time.
type cpuUse struct{ self, redis, sandbox, wall time.Duration }

func (m *cpuMeter) stop() cpuUse {
	u := cpuUse{wall: time.Since(m.start), self: selfCPU() - m.self}
	if m.e.redis != nil {
		r, _ := procCPU(m.e.redis.Child().Pid())
		u.redis = r - m.redis
	}
	s, _ := procCPU(m.e.sb.Child.Pid())
	u.sandbox = s - m.sbox
	return u
}

// redisInfo reads one INFO section as key/value pairs.
func redisInfo(ctx context.Context, rdb *redis.Client, section string) (map[string]string, error) {
	s, err := rdb.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
			m[k] = v
		}
	}
	return m, nil
}

// commandCounts reads INFO commandstats: calls per command.
func commandCounts(ctx context.Context, rdb *redis.Client) (map[string]int64, error) {
	info, err := redisInfo(ctx, rdb, "commandstats")
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for k, v := range info {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok {
			continue
		}
		for _, kv := range strings.Split(v, ",") {
			if n, ok := strings.CutPrefix(kv, "calls="); ok {
				out[name], _ = strconv.ParseInt(n, 10, 64)
			}
		}
	}
	return out, nil
}

// commandsPerJob formats the commands that ran between before and after,
// per job, the most frequent first, leaving out those of the bench itself:
// set-up commands and the calls counted in own.
func commandsPerJob(before, after, own map[string]int64, jobs int) (string, float64) {
	type kv struct {
		k string
		v float64
	}
	var list []kv
	total := 0.0
	for k, v := range after {
		switch k {
		case "info", "ping", "flushall", "client|setinfo", "hello", "client":
			continue // the bench's own set-up
		}
		d := float64(v-before[k]-own[k]) / float64(jobs)
		if d >= 0.005 {
			list = append(list, kv{k, d})
			total += d
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].v > list[j].v || list[i].v == list[j].v && list[i].k < list[j].k })
	var parts []string
	for _, p := range list {
		parts = append(parts, fmt.Sprintf("%s %.2f", p.k, p.v))
	}
	return strings.Join(parts, ", "), total
}
