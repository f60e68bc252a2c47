package zhimaq_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestRootImportsNoWorkerCode: a Go producer that imports zhimaq pulls in
// none of the worker's parts: no Prometheus, breaker or rate limiter, no
// task handler, no worker assembly, no HTTP API.
func TestRootImportsNoWorkerCode(t *testing.T) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"prometheus", "gobreaker", "redis_rate", "zhimaq/internal/tasks", "zhimaq/internal/worker",
			"zhimaq/internal/api", "zhimaq/internal/metrics", "zhimaq/internal/breaker", "zhimaq/internal/ratelimit"} {
			if strings.Contains(pkg, banned) {
				t.Errorf("the root package depends on %s", pkg)
			}
		}
	}
}
