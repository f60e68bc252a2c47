// Package procs runs the real zhimaq programs as child processes for the
// commands that orchestrate them (demo, chaos and bench, through
// internal/launch): it finds the sibling programs, gives them a clean
// environment, starts each in its own process group, and stops them with a
// grace period.
//
// Each child leads its own process group, so a terminal's Ctrl-C reaches
// only the parent, which stops the children itself; on Linux the kernel
// also kills a child whose parent died without cleaning up.
package procs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The signals Child.Signal sends. Where there are no process groups or
// SIGTERM (not unix), every signal is a kill.
const (
	SigTerm = sigTerm
	SigKill = sigKill
)

// ErrKilled is wrapped by Stop's error for a child that was still running
// when its grace after SIGTERM ran out, and was killed.
var ErrKilled = errors.New("killed")

// Find returns the path of the sibling program name: in dir when dir is
// set, else next to this executable, else on PATH.
func Find(dir, name string) (string, error) {
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
		self := strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe")
		return "", fmt.Errorf("cannot find the %s program next to %s (%s) or on PATH; build them with `go build -o bin/ ./cmd/...`", name, self, dir)
	}
	return p, nil
}

// CleanEnv is the start of every child's environment: PATH and HOME only,
// so a user's own REDIS_URL, ZHIMA_* and the like cannot leak in.
func CleanEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Command is exec.CommandContext for a child run to completion: the process
// leads its own group (as Group's children do), and cancelling ctx sends
// SIGTERM to that group. Set WaitDelay for the kill that follows.
func Command(ctx context.Context, path string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error { return signalGroup(cmd.Process, sigTerm) }
	return cmd
}

// Group remembers every child it started and has not seen end, so that all
// of them can be stopped on every way out. The zero Group is ready to use.
type Group struct {
	mu       sync.Mutex
	children map[*Child]struct{}
}

// Child is one program a Group started, in its own process group.
type Child struct {
	name  string
	cmd   *exec.Cmd
	done  chan struct{} // closed when the process has exited
	err   error         // Wait's result, set before done closes
	files []io.Closer   // closed once the process has exited

	mu       sync.Mutex
	stopping bool // a stop or kill was asked for: an exit is expected
}

// Start starts path with args and env, stdout and stderr going to the given
// writers (an *os.File or anything else; those that are io.Closers, a
// LineTap included, are closed when the process exits). name is the child's
// name in errors.
func (g *Group) Start(name, path string, args, env []string, stdout, stderr io.Writer) (*Child, error) {
	return g.StartIn(name, path, args, env, nil, stdout, stderr)
}

// StartIn is Start with stdin (nil for none).
func (g *Group) StartIn(name, path string, args, env []string, stdin io.Reader, stdout, stderr io.Writer) (*Child, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdin = stdin
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &Child{name: name, cmd: cmd, done: make(chan struct{})}
	for _, w := range []io.Writer{stdout, stderr} {
		if cl, ok := w.(io.Closer); ok {
			c.files = append(c.files, cl)
		}
	}
	g.mu.Lock()
	if g.children == nil {
		g.children = map[*Child]struct{}{}
	}
	g.children[c] = struct{}{}
	g.mu.Unlock()
	go func() {
		c.err = cmd.Wait()
		seen := map[io.Closer]bool{}
		for _, f := range c.files {
			if !seen[f] {
				seen[f] = true
				f.Close()
			}
		}
		g.mu.Lock()
		delete(g.children, c)
		g.mu.Unlock()
		close(c.done)
	}()
	return c, nil
}

// StopAll stops every child still running, all at once: SIGTERM to each
// group, then SIGKILL to those still there after grace.
func (g *Group) StopAll(grace time.Duration) {
	g.mu.Lock()
	var all []*Child
	for c := range g.children {
		all = append(all, c)
	}
	g.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Go(func() { _ = c.Stop(grace) })
	}
	wg.Wait()
}

// Name is the name the child was started with.
func (c *Child) Name() string { return c.name }

// Pid is the child's process id (and its process group's).
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Done is closed when the process has ended.
func (c *Child) Done() <-chan struct{} { return c.done }

// Err is how the process ended: nil for exit status 0, else Wait's error.
// It is nil while the process runs.
func (c *Child) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Exited reports whether the process has ended.
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// UnexpectedExit reports whether the process ended although nobody asked
// it to: no Signal, Stop or ExpectExit came before.
func (c *Child) UnexpectedExit() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.stopping && c.Exited()
}

// ExpectExit records that the process is about to end on request by other
// means than a signal (a SHUTDOWN command, say), so that its end does not
// count as unexpected.
func (c *Child) ExpectExit() {
	c.mu.Lock()
	c.stopping = true
	c.mu.Unlock()
}

// Signal sends sig to the child's process group (to the child alone when
// that fails). An exit is expected from then on.
func (c *Child) Signal(sig syscall.Signal) error {
	c.ExpectExit()
	if c.Exited() {
		return nil
	}
	return signalGroup(c.cmd.Process, sig)
}

// Wait waits up to d for the process to end and reports whether it did.
func (c *Child) Wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.done:
		return true
	case <-t.C:
		return false
	}
}

// Stop sends SIGTERM and, if the child is still there after grace, SIGKILL.
// It returns how the child ended (nil for exit status 0), or an error
// wrapping ErrKilled when grace ran out. A child that had already ended is
// not signalled; Stop just returns how it ended. Safe to call again.
func (c *Child) Stop(grace time.Duration) error {
	if c.Exited() {
		return c.err
	}
	if err := c.Signal(sigTerm); err != nil {
		_ = c.Signal(sigKill)
	}
	if !c.Wait(grace) {
		_ = c.Signal(sigKill)
		<-c.done
		return fmt.Errorf("%s did not stop within %s of SIGTERM; %w", c.name, grace, ErrKilled)
	}
	return c.err
}

// DescribeExit says how a process ended, from Wait's error.
func DescribeExit(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// ExitCode is the exit status in err from exec, 0 for nil, -1 when the
// program did not end with an exit status (a signal, for instance).
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode()
	}
	return -1
}

// LineTap passes everything written to it on to a writer and calls a func
// with each complete line (without its newline), in order, from the
// writer's goroutine: a way to watch a child's log as it is written.
type LineTap struct {
	w  io.Writer
	fn func(line []byte)

	mu  sync.Mutex
	buf []byte
}

// NewLineTap returns a LineTap writing to w and calling fn with each line.
// fn must not keep line.
func NewLineTap(w io.Writer, fn func(line []byte)) *LineTap { return &LineTap{w: w, fn: fn} }

func (t *LineTap) Write(p []byte) (int, error) {
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

// Close closes the underlying writer when it is an io.Closer.
func (t *LineTap) Close() error {
	if c, ok := t.w.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Tail returns about the last n lines of the file at path, for error
// messages; "" when it cannot be read.
func Tail(path string, n int) string {
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
