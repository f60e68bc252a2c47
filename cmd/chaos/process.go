package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
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
		return "", fmt.Errorf("cannot find the %s program next to chaos (%s) or on PATH; build them with `go build -o bin/ ./cmd/...`", name, dir)
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

// registry remembers every child chaos started, so that all of them are
// stopped on every way out: the end of a drill, a failure, Ctrl-C.
type registry struct {
	mu       sync.Mutex
	children map[*child]struct{}
}

func newRegistry() *registry { return &registry{children: map[*child]struct{}{}} }

// child is one program chaos started, in its own process group.
type child struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result, set before done closes
	ended   time.Time     // set before done closes
	files   []io.Closer   // closed once the process has exited

	mu       sync.Mutex
	stopping bool // a stop or kill was asked for: an exit is expected
}

// start starts path with args and env, stdout and stderr going to the given
// writers (an *os.File or anything else; files are closed when the process
// exits). The child leads its own process group: a terminal's Ctrl-C reaches
// only chaos, which stops the children itself.
func (r *registry) start(name, path string, args, env []string, stdout, stderr io.Writer) (*child, error) {
	return r.startIn(name, path, args, env, nil, stdout, stderr)
}

// startIn is start with stdin (nil for none).
func (r *registry) startIn(name, path string, args, env []string, stdin io.Reader, stdout, stderr io.Writer) (*child, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdin = stdin
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, started: time.Now(), done: make(chan struct{})}
	for _, w := range []io.Writer{stdout, stderr} {
		if cl, ok := w.(io.Closer); ok {
			c.files = append(c.files, cl)
		}
	}
	r.mu.Lock()
	r.children[c] = struct{}{}
	r.mu.Unlock()
	go func() {
		err := cmd.Wait()
		c.err, c.ended = err, time.Now()
		seen := map[io.Closer]bool{}
		for _, f := range c.files {
			if !seen[f] {
				seen[f] = true
				f.Close()
			}
		}
		r.mu.Lock()
		delete(r.children, c)
		r.mu.Unlock()
		close(c.done)
	}()
	return c, nil
}

// stopAll stops every child still running: SIGTERM to each group, then
// SIGKILL to those still there after grace.
func (r *registry) stopAll(grace time.Duration) {
	r.mu.Lock()
	var all []*child
	for c := range r.children {
		all = append(all, c)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.stop(grace)
		}()
	}
	wg.Wait()
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// unexpectedExit reports whether the process ended although nobody asked it to.
func (c *child) unexpectedExit() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.stopping && c.exited()
}

func (c *child) markStopping() {
	c.mu.Lock()
	c.stopping = true
	c.mu.Unlock()
}

// signal sends sig to the child's process group.
func (c *child) signal(sig syscall.Signal) error {
	c.markStopping()
	if c.exited() {
		return nil
	}
	return signalGroup(c.cmd.Process, sig)
}

// wait waits up to d for the process to end and reports whether it did.
func (c *child) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.done:
		return true
	case <-t.C:
		return false
	}
}

// stop sends SIGTERM and, if the child is still there after grace, SIGKILL.
// It returns how the child ended: nil for exit status 0.
func (c *child) stop(grace time.Duration) error {
	if c.exited() {
		return c.err
	}
	if err := c.signal(sigTerm); err != nil {
		_ = c.signal(sigKill)
	}
	if !c.wait(grace) {
		_ = c.signal(sigKill)
		<-c.done
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", c.name, grace)
	}
	return c.err
}

func describeExit(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// exitCode is the exit status in err from exec, 0 for nil, -1 when the
// program did not end with an exit status (a signal, for instance).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode()
	}
	return -1
}

// lineTap passes everything written to it on to w and calls fn with each
// complete line (without its newline), in order, from the writer's goroutine.
type lineTap struct {
	w  io.Writer
	fn func(line []byte)

	mu  sync.Mutex
	buf []byte
}

func newLineTap(w io.Writer, fn func([]byte)) *lineTap { return &lineTap{w: w, fn: fn} }

func (t *lineTap) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.buf = append(t.buf, p...)
	for {
		i := bytes.IndexByte(t.buf, '\n')
		if i < 0 {
			break
		}
		t.fn(t.buf[:i])
		t.buf = t.buf[i+1:]
	}
	t.mu.Unlock()
	return t.w.Write(p)
}

// Close closes the underlying writer when it is a Closer.
func (t *lineTap) Close() error {
	if c, ok := t.w.(io.Closer); ok {
		return c.Close()
	}
	return nil
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
