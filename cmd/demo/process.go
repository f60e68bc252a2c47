package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"time"
)

// findBinary returns the path of the sibling program name: in dir when dir
// is set, else next to this executable, else on PATH.
func findBinary(dir, name string) (string, error) {
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	if dir == "" {
		if exe, err := os.Executable(); err == nil {
			if real, err := filepath.EvalSymlinks(exe); err == nil {
				exe = real
			}
			dir = filepath.Dir(exe)
		}
	}
	if dir != "" {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("cannot find the %s program next to the demo (%s) or on PATH; build them with `go build -o bin/ ./cmd/...`", name, dir)
	}
	return p, nil
}

// cleanEnv is the start of every child's environment: PATH and HOME only,
// so a user's own REDIS_URL, ZHIMA_* and the like cannot leak in.
func cleanEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// child is a long-running program the demo started (sandbox, worker).
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, set before done closes

	stopOnce sync.Once
	stopErr  error
}

// startChild starts path with args and env, output to stdout and stderr.
// The child gets its own process group, so a Ctrl-C in the terminal reaches
// only the demo, which then stops its children in order.
func startChild(name, path string, args, env []string, stdout, stderr io.Writer) (*child, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited reports whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop asks the child to end with SIGTERM, kills it after grace, and
// reports anything but a clean exit 0 after SIGTERM. A child that had
// already ended is reported as having exited early. Safe to call twice.
func (c *child) stop(grace time.Duration) error {
	c.stopOnce.Do(func() { c.stopErr = c.doStop(grace) })
	return c.stopErr
}

func (c *child) doStop(grace time.Duration) error {
	if c.exited() {
		return fmt.Errorf("%s exited early: %s", c.name, describeExit(c.err))
	}
	if err := terminate(c.cmd.Process); err != nil {
		_ = kill(c.cmd.Process)
	}
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = kill(c.cmd.Process)
		<-c.done
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", c.name, grace)
	}
	if c.err != nil {
		return fmt.Errorf("%s stopped badly after SIGTERM: %s", c.name, describeExit(c.err))
	}
	return nil
}

func describeExit(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// exitCode is the exit status in err from exec, 0 for nil, -1 when the
// program did not run to an exit.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode()
	}
	return -1
}

// gatewayURLWatcher copies the sandbox's log to w and reports the
// gateway_url of its "listening" line once.
type gatewayURLWatcher struct {
	w     io.Writer
	found chan string

	mu   sync.Mutex
	buf  []byte
	done bool
}

var gatewayURLField = regexp.MustCompile(`gateway_url="?([^"\s]+)`)

func newGatewayURLWatcher(w io.Writer) *gatewayURLWatcher {
	return &gatewayURLWatcher{w: w, found: make(chan string, 1)}
}

func (g *gatewayURLWatcher) Write(p []byte) (int, error) {
	g.mu.Lock()
	if !g.done {
		g.buf = append(g.buf, p...)
		for {
			i := bytes.IndexByte(g.buf, '\n')
			if i < 0 {
				break
			}
			line := g.buf[:i]
			g.buf = g.buf[i+1:]
			if m := gatewayURLField.FindSubmatch(line); m != nil {
				g.found <- string(m[1])
				g.done, g.buf = true, nil
				break
			}
		}
	}
	g.mu.Unlock()
	return g.w.Write(p)
}

// tail returns about the last n lines of the file at path, for error
// messages; "" when it cannot be read.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
