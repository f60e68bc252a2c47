// Package launch sets up what demo, chaos and bench run zhimaq's programs
// against, on top of internal/procs: the programs themselves (found, or
// built), a Redis of the run's own (a redis-server child or an embedded
// miniredis) and the zhima-sandbox gateway, each waited for until it
// answers; Launcher.Close stops all of it in order.
package launch

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/zhimaq/zhimaq/internal/procs"
)

// startTimeout bounds the wait for Redis or the sandbox to answer.
const startTimeout = 30 * time.Second

// Launcher is one run's processes. Redis and the sandboxes are started
// through its methods; the programs under test (workers, producers)
// through Children. The zero Launcher is ready to use.
type Launcher struct {
	// Children starts the programs under test; Close stops them first.
	Children procs.Group

	infra procs.Group // redis-server and zhima-sandbox children
	mu    sync.Mutex
	stops []func(grace time.Duration)
}

// onClose adds stop to what Close runs, before whatever came earlier.
func (l *Launcher) onClose(stop func(grace time.Duration)) {
	l.mu.Lock()
	l.stops = append(l.stops, stop)
	l.mu.Unlock()
}

// Close stops everything still running: Children all at once (SIGTERM,
// SIGKILL after grace), then the sandboxes and Redis, the last started
// first, so that no worker loses its gateway or Redis while it stops.
// Safe to call again.
func (l *Launcher) Close(grace time.Duration) {
	l.Children.StopAll(grace)
	l.mu.Lock()
	stops := l.stops
	l.stops = nil
	l.mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i](grace)
	}
	l.infra.StopAll(grace)
}

// Programs returns the paths of the named programs by name, each found as
// procs.Find finds it: in dir when set, else next to this executable, else
// on PATH.
func Programs(dir string, names ...string) (map[string]string, error) {
	paths := map[string]string{}
	for _, name := range names {
		p, err := procs.Find(dir, name)
		if err != nil {
			return nil, err
		}
		paths[name] = p
	}
	return paths, nil
}

// Build builds ./cmd/NAME of the module at root into dir for each name
// missing there, saying so on log, and returns the paths of all of them.
func Build(ctx context.Context, root, dir string, log io.Writer, names ...string) (map[string]string, error) {
	dir, err := filepath.Abs(dir) // go build runs in root
	if err != nil {
		return nil, err
	}
	var missing, pkgs []string
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			missing = append(missing, filepath.Join(dir, name))
			pkgs = append(pkgs, "./cmd/"+name)
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(log, "building %s\n", strings.Join(missing, " and "))
		cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	return Programs(dir, names...)
}

// FreePort returns a port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Sleep waits d, or until ctx ends (returning its error), for the demo, the
// drills and the benchmarks that pace what they start.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
