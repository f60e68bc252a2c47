//go:build unix

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fifo makes a named pipe in a temporary directory. Its cleanup opens it
// for writing, if a reader waits, so that reader's open returns.
func fifo(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jobs.fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	t.Cleanup(func() {
		if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	})
	return path
}

func TestBatchFromAFIFO(t *testing.T) {
	t.Parallel()
	t.Run("with no writer, an interrupt ends it with exit 1", func(t *testing.T) {
		t.Parallel()
		path := fifo(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan result, 1)
		go func() { done <- enqueueCtx(t, ctx, nil, strings.NewReader(""), "batch", path) }()
		select {
		case r := <-done:
			if r.code != exitFailed || r.stdout != "" {
				t.Errorf("exit %d, stdout %q; want 1 and none", r.code, r.stdout)
			}
			oneLine(t, r.stderr)
			if !strings.Contains(r.stderr, "interrupted") {
				t.Errorf("stderr %q does not say it was interrupted", r.stderr)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("still opening the FIFO 5s after the interrupt")
		}
	})
	t.Run("with a writer, its lines are submitted", func(t *testing.T) {
		t.Parallel()
		path := fifo(t)
		env := testEnv(t)
		go func() {
			w, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				return // the run below fails for want of input
			}
			defer w.Close()
			w.WriteString(scoreLine("FIFO_1", testID(1), 600) + "\n")
		}()
		r := enqueue(t, env, "", "batch", path)
		if r.code != exitOK {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if recs := records(t, r.stdout); len(recs) != 1 || recs[0].TransactionID != "FIFO_1" {
			t.Errorf("records %s", r.stdout)
		}
	})
}

// TestSignalsStopTheProcess builds enqueue and signals it while it waits
// for a writer to open its input FIFO.
func TestSignalsStopTheProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	if runtime.GOOS != "linux" {
		t.Skip("tells that the process waits for a writer by /proc/PID/task/*/wchan")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "enqueue")
	if out, err := exec.Command(gobin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for name, sig := range map[string]syscall.Signal{"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT} {
		t.Run(name+" ends it with exit 1", func(t *testing.T) {
			t.Parallel()
			path := fifo(t)
			cmd := exec.Command(bin, "batch", path)
			cmd.Env = []string{"ZHIMA_APP_ID=" + testAppID, "DATA_KEYS=plaintext", "REDIS_URL=redis://127.0.0.1:1/0"}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			t.Cleanup(func() { cmd.Process.Kill() })
			waitForWriter(t, cmd.Process.Pid)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != exitFailed {
					t.Errorf("exit %v, want status 1", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("still running 5s after %s", sig)
			}
			oneLine(t, stderr.String())
			if !strings.Contains(stderr.String(), "interrupted") {
				t.Errorf("stderr %q does not say it was interrupted", stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want none", stdout.String())
			}
		})
	}
}

// waitForWriter returns once a thread of process pid waits in the kernel
// for a writer to open a FIFO; it skips the test when none does in 10s
// (a kernel that hides wchan).
func waitForWriter(t *testing.T, pid int) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "wchan"))
		for _, task := range tasks {
			if b, err := os.ReadFile(task); err == nil && string(b) == "wait_for_partner" {
				return
			}
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Skip("no thread of enqueue is seen waiting for a FIFO writer")
		}
	}
}
