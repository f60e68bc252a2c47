package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
)

// profile calls run with functions that start and stop the CPU profiler
// (this process only), and returns lines for the report: the top functions
// by own time, zhimaq's functions by cumulative time, and where the time
// went by component. The profile file stays in the profile directory (or
// the scratch one) for `go tool pprof`.
func (e *env) profile(ctx context.Context, name string, run func(start, stop func()) error) (*profileResult, error) {
	if e.opts.NoProfile {
		return &profileResult{share: map[string]float64{}}, nil
	}
	dir := e.opts.ProfileDir
	if dir == "" {
		dir = e.tmp
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name+".pprof")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	e.logf("  profiling another zhimaq run (%s)", path)
	var startErr error
	started := false
	start := func() { startErr, started = pprof.StartCPUProfile(f), true }
	stop := func() {
		if started {
			pprof.StopCPUProfile()
			started = false
		}
	}
	runErr := run(start, stop)
	stop()
	if runErr != nil {
		return nil, runErr
	}
	if startErr != nil {
		return nil, startErr
	}
	flat, total, err := pprofTop(ctx, path, 10, "-top")
	if err != nil {
		return nil, err
	}
	all, _, err := pprofTop(ctx, path, 500, "-top", "-cum")
	if err != nil {
		return nil, err
	}
	var own []string
	for _, r := range all {
		if strings.HasPrefix(r.fn, "github.com/zhimaq/zhimaq") && !strings.HasPrefix(r.fn, "github.com/zhimaq/zhimaq/internal/bench") && len(own) < 10 {
			own = append(own, r.String())
		}
	}
	res := &profileResult{share: map[string]float64{}}
	var parts []string
	for _, c := range components {
		for _, r := range all {
			if strings.HasPrefix(r.fn, c.fn) {
				parts = append(parts, fmt.Sprintf("%s %s", c.label, r.cum))
				pct, _ := strconv.ParseFloat(strings.TrimSuffix(r.cum, "%"), 64)
				res.share[c.label] = pct / 100
				break
			}
		}
	}
	flatText := make([]string, len(flat))
	for i, r := range flat {
		flatText[i] = fmt.Sprintf("%s %s", short(r.fn), r.flat)
	}
	lines := []string{fmt.Sprintf("pprof of the zhimaq side (this process; %s): top by own time: %s", total, strings.Join(flatText, "; "))}
	if len(own) > 0 {
		lines = append(lines, "zhimaq's functions by cumulative time: "+strings.Join(own, "; "))
	}
	if len(parts) > 0 {
		lines = append(lines, "cumulative share by component: "+strings.Join(parts, "; "))
	}
	res.lines = lines
	return res, nil
}

// profileResult is what profile found: lines for the report, and each
// component's cumulative share of the samples (0..1).
type profileResult struct {
	lines []string
	share map[string]float64
}

// components are functions whose cumulative share says where time went.
var components = []struct{ label, fn string }{
	{"RSA sign", "crypto/rsa.SignPKCS1v15"},
	{"RSA verify", "crypto/rsa.VerifyPKCS1v15"},
	{"HTTP client", "net/http.(*Client).do"},
	{"HTTP connections", "net/http.(*persistConn).readLoop"},
	{"record updates", "github.com/zhimaq/zhimaq/internal/results.(*Store).Update"},
	{"record reads", "github.com/zhimaq/zhimaq/internal/results.(*Store).Get"},
	{"claims", "github.com/zhimaq/zhimaq/internal/idempotency.(*Store)."},
	{"asynq dequeue", "github.com/hibiken/asynq/internal/rdb.(*RDB).Dequeue"},
	{"asynq ack", "github.com/hibiken/asynq.(*processor).markAsDone"},
	{"go-redis commands", "github.com/redis/go-redis/v9.(*baseClient)._process"},
	{"go-redis pipelines", "github.com/redis/go-redis/v9.(*baseClient).processPipeline"},
	{"JSON encode", "encoding/json.Marshal"},
	{"JSON decode", "encoding/json.(*Decoder).Decode"},
	{"JSON unmarshal", "encoding/json.Unmarshal"},
	{"zap logging", "go.uber.org/zap.(*Logger).Info"},
	{"asynq processor", "github.com/hibiken/asynq.(*processor).exec"},
	{"goroutine stack growth", "runtime.newstack"},
	{"GC", "runtime.gcBgMarkWorker"},
	{"syscalls", "internal/runtime/syscall/linux.Syscall6"},
}

// pprofRow is one row of `go tool pprof -top`.
type pprofRow struct{ fn, flat, cum string }

func (r pprofRow) String() string { return fmt.Sprintf("%s %s", short(r.fn), r.cum) }

// short drops the module and repository prefixes of a function name.
func short(fn string) string {
	fn = strings.TrimPrefix(fn, "github.com/zhimaq/zhimaq/")
	fn = strings.TrimPrefix(fn, "github.com/zhimaq/")
	return strings.TrimPrefix(fn, "github.com/")
}

// pprofTop runs `go tool pprof` on path with args and returns its rows and
// the Duration line.
func pprofTop(ctx context.Context, path string, n int, args ...string) ([]pprofRow, string, error) {
	args = append([]string{"tool", "pprof", fmt.Sprintf("-nodecount=%d", n)}, args...)
	cmd := exec.CommandContext(ctx, "go", append(args, path)...)
	out, err := cmd.Output()
	if err != nil {
		return nil, "", fmt.Errorf("go tool pprof: %w", err)
	}
	var rows []pprofRow
	total := ""
	inRows := false
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Duration:") {
			total = strings.TrimSpace(line)
		}
		if strings.Contains(line, "flat%") && strings.Contains(line, "cum%") {
			inRows = true
			continue
		}
		f := strings.Fields(line)
		if !inRows || len(f) < 6 {
			continue
		}
		rows = append(rows, pprofRow{fn: strings.Join(f[5:], " "), flat: f[1], cum: f[4]})
	}
	return rows, total, nil
}
