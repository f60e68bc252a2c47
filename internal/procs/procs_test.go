package procs

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestLineTapSplitsLinesAcrossWrites(t *testing.T) {
	var out bytes.Buffer
	var lines []string
	tap := NewLineTap(&out, func(l []byte) { lines = append(lines, string(l)) })
	for _, p := range []string{"one\ntw", "o\n", "three", "\nfour"} {
		if _, err := tap.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Join(lines, "|") != "one|two|three" || out.String() != "one\ntwo\nthree\nfour" {
		t.Errorf("lines %q, out %q", lines, out.String())
	}
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("a\nb\nc\nd\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Tail(path, 2); got != "c\nd" {
		t.Errorf("Tail(2) = %q", got)
	}
	if got := Tail(path, 10); got != "a\nb\nc\nd" {
		t.Errorf("Tail(10) = %q", got)
	}
	if got := Tail(filepath.Join(t.TempDir(), "missing"), 3); got != "" {
		t.Errorf("Tail(missing) = %q", got)
	}
}

func TestExitCodeAndDescribeExit(t *testing.T) {
	if ExitCode(nil) != 0 || DescribeExit(nil) != "exit status 0" {
		t.Errorf("nil: %d %q", ExitCode(nil), DescribeExit(nil))
	}
	if got := ExitCode(errors.New("signal: killed")); got != -1 {
		t.Errorf("ExitCode(not an ExitError) = %d", got)
	}
}

func TestCleanEnvKeepsOnlyPathAndHome(t *testing.T) {
	t.Setenv("REDIS_URL", "redis://leaked")
	for _, kv := range CleanEnv() {
		if k, _, _ := strings.Cut(kv, "="); k != "PATH" && k != "HOME" {
			t.Errorf("CleanEnv has %s", kv)
		}
	}
}

func shell(t *testing.T) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("needs a POSIX shell and signals")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	return sh
}

func TestChildStopsOnSIGTERM(t *testing.T) {
	sh := shell(t)
	var g Group
	var out bytes.Buffer
	c, err := g.Start("sleeper", sh, []string{"-c", "echo up; exec sleep 30"}, CleanEnv(), &out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Exited() || c.Err() != nil || c.UnexpectedExit() {
		t.Fatalf("fresh child: exited %v, err %v", c.Exited(), c.Err())
	}
	err = c.Stop(10 * time.Second)
	if err == nil || errors.Is(err, ErrKilled) || !c.Exited() || c.UnexpectedExit() {
		t.Fatalf("Stop = %v (want the SIGTERM exit), exited %v, unexpected %v", err, c.Exited(), c.UnexpectedExit())
	}
	if ExitCode(err) != -1 || !strings.Contains(DescribeExit(err), "terminated") {
		t.Errorf("exit %d, %q", ExitCode(err), DescribeExit(err))
	}
	if again := c.Stop(time.Second); again != err {
		t.Errorf("second Stop = %v, want %v", again, err)
	}
}

func TestChildKilledAfterGrace(t *testing.T) {
	sh := shell(t)
	var g Group
	c, err := g.Start("stubborn", sh, []string{"-c", `trap "" TERM; sleep 30 & wait`}, CleanEnv(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the trap be set
	start := time.Now()
	g.StopAll(300 * time.Millisecond)
	if !c.Exited() || time.Since(start) > 5*time.Second {
		t.Fatalf("StopAll took %s, exited %v", time.Since(start), c.Exited())
	}
	if err := c.Stop(time.Second); err == nil || errors.Is(err, ErrKilled) {
		t.Errorf("Stop after the kill = %v, want the kill's exit", err)
	}
	c, err = g.Start("stubborn", sh, []string{"-c", `trap "" TERM; sleep 30 & wait`}, CleanEnv(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := c.Stop(300 * time.Millisecond); !errors.Is(err, ErrKilled) || !strings.HasSuffix(err.Error(), "of SIGTERM; killed") {
		t.Errorf("Stop = %v, want ErrKilled", err)
	}
}

func TestUnexpectedExit(t *testing.T) {
	sh := shell(t)
	var g Group
	c, err := g.Start("quitter", sh, []string{"-c", "exit 3"}, CleanEnv(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	if !c.UnexpectedExit() || ExitCode(c.Err()) != 3 {
		t.Errorf("unexpected %v, exit %d", c.UnexpectedExit(), ExitCode(c.Err()))
	}
}
