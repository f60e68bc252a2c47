package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/redistest"
	"github.com/zhimaq/zhimaq/internal/zhima"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

const testAppID = "2021000000000001"

// testEnv is the environment of one test: its own Redis key prefix and
// queue, so tests never meet each other or a running worker.
func testEnv(t *testing.T) map[string]string {
	t.Helper()
	srv := redistest.New(t)
	return map[string]string{
		"REDIS_URL":         srv.URL,
		"ZHIMA_APP_ID":      testAppID,
		"ZHIMAQ_QUEUE":      srv.Queue,
		"ZHIMAQ_KEY_PREFIX": srv.Prefix,
		"RESULT_TTL":        "1h",
		"DATA_KEYS":         zhimatest.DataKeys,
	}
}

// result is what one run of the command left.
type result struct {
	code           int
	stdout, stderr string
}

// enqueue runs the command in-process with env as its whole environment.
func enqueue(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	return enqueueCtx(t, context.Background(), env, strings.NewReader(stdin), args...)
}

func enqueueCtx(t *testing.T, ctx context.Context, env map[string]string, stdin interface{ Read([]byte) (int, error) }, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, args, stdin, &out, &errb, func(k string) string { return env[k] })
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// records reads the command's JSONL output.
func records(t *testing.T, stdout string) []zhimaq.Submission {
	t.Helper()
	var recs []zhimaq.Submission
	for i, line := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		if line == "" && stdout == "" {
			break
		}
		var rec zhimaq.Submission
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("output line %d is not a record: %v\n%s", i+1, err, line)
		}
		recs = append(recs, rec)
	}
	return recs
}

// testID is a valid resident ID number, different for each n.
func testID(n int) string { return zhimatest.ResidentID(fmt.Sprintf("110105194912%05d", n)) }

// The personal data of the tests' jobs besides their ID numbers: no output
// may quote it.
const (
	testName     = "张三"
	testPhone    = "13800138000"
	testRelative = "李四"
)

func scoreLine(tid, certNo string, admittance int) string {
	return string(zhimatest.JobLine(zhima.MethodScoreBriefGet, zhimatest.ScoreBiz(tid, certNo, testName, admittance)))
}

func relationLine(tid, certNo string) string {
	return string(zhimatest.JobLine(zhima.MethodRelationQuery, zhimatest.RelationBiz(tid, certNo, testName, testPhone, testRelative, "family")))
}

func certificationLine(tid, certNo, picture string) string {
	return string(zhimatest.JobLine(zhima.MethodCertificationInitialize, zhimatest.CertificationBiz(tid, certNo, testName, picture)))
}

// assertNoPersonalData fails when out quotes a name or ID number of the tests.
func assertNoPersonalData(t *testing.T, out string, ids ...string) {
	t.Helper()
	for _, s := range append(ids, testName, testRelative, testPhone) {
		if strings.Contains(out, s) {
			t.Errorf("output holds personal data %q", s)
		}
	}
}

// batchIDs matches the batch ids that enqueue makes.
var batchIDs = regexp.MustCompile(`\bb_[0-9]{8}T[0-9]{6}Z_[A-Z2-7]{6}\b`)

// anonBatch replaces every batch id in s with b_ID.
func anonBatch(s string) string { return batchIDs.ReplaceAllString(s, "b_ID") }

// oneLine fails unless s is exactly one line.
func oneLine(t *testing.T, s string) {
	t.Helper()
	if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") {
		t.Errorf("stderr is not one line:\n%s", s)
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"help", "batch"}, {"help", "get"}, {"help", "status"}, {"help", "results"}, {"batch", "--help"}, {"get", "-h"}, {"status", "--help"}, {"results", "-h"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := enqueue(t, nil, "", args...)
			if r.code != exitOK || r.stderr != "" {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			for _, want := range []string{"Usage:", "REDIS_URL", "ZHIMA_APP_ID", "ZHIMAQ_QUEUE", "ZHIMAQ_KEY_PREFIX", "RESULT_TTL"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("help lacks %q:\n%s", want, r.stdout)
				}
			}
		})
	}
	r := enqueue(t, nil, "", "batch", "--help")
	for _, want := range []string{"--wait", "--timeout", "--parallel", "whitespace", "unreachable", "Exit status"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("batch help lacks %q", want)
		}
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	env := map[string]string{"ZHIMA_APP_ID": testAppID, "REDIS_URL": "redis://127.0.0.1:1/0"}
	for name, args := range map[string][]string{
		"no command":              {},
		"unknown command":         {"submit"},
		"help on unknown command": {"help", "submit"},
		"batch without input":     {"batch"},
		"batch with two inputs":   {"batch", "a.jsonl", "b.jsonl"},
		"batch unknown flag":      {"batch", "--nope", "-"},
		"batch parallel zero":     {"batch", "--parallel", "0", "-"},
		"batch bad timeout":       {"batch", "--wait", "--timeout", "soon", "-"},
		"timeout without wait":    {"batch", "--timeout", "1s", "-"},
		"batch missing file":      {"batch", "/nonexistent/jobs.jsonl"},
		"batch directory":         {"batch", "."},
		"get without method":      {"get", "--transaction-id", "T1"},
		"get unknown method":      {"get", "--method", "zhima.nope", "--transaction-id", "T1"},
		"get without transaction": {"get", "--method", zhimaq.MethodScoreBriefGet},
		"get bad transaction":     {"get", "--method", zhimaq.MethodScoreBriefGet, "--transaction-id", "11010519491231002X-x"},
		"get extra argument":      {"get", "--method", zhimaq.MethodScoreBriefGet, "--transaction-id", "T1", "more"},
	} {
		t.Run(name, func(t *testing.T) {
			r := enqueue(t, env, "", args...)
			if r.code != exitUsage {
				t.Errorf("exit %d, want 2; stderr %q", r.code, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want none", r.stdout)
			}
			oneLine(t, r.stderr)
			assertNoPersonalData(t, r.stderr, "11010519491231002X")
		})
	}
}

func TestConfigErrorsExit2(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no app id", map[string]string{}, "enqueue: config: ZHIMA_APP_ID or ZHIMA_APPS_FILE is required\n"},
		{"bad redis url", map[string]string{"ZHIMA_APP_ID": testAppID, "REDIS_URL": "http://127.0.0.1"}, "REDIS_URL"},
		{"bad dedup window", map[string]string{"ZHIMA_APP_ID": testAppID, "DEDUP_WINDOW": "a day"}, "DEDUP_WINDOW"},
	}
	for _, tt := range tests {
		for _, args := range [][]string{{"batch", "-"}, {"get", "--method", zhimaq.MethodScoreBriefGet, "--transaction-id", "T1"}} {
			t.Run(tt.name+"/"+args[0], func(t *testing.T) {
				r := enqueue(t, tt.env, scoreLine("T1", testID(1), 600)+"\n", args...)
				if r.code != exitUsage || r.stdout != "" {
					t.Errorf("exit %d, stdout %q; want 2 and none", r.code, r.stdout)
				}
				oneLine(t, r.stderr)
				if !strings.Contains(r.stderr, tt.want) {
					t.Errorf("stderr %q does not say %q", r.stderr, tt.want)
				}
			})
		}
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	if r := enqueue(t, env, scoreLine("GET1", testID(1), 600)+"\n", "batch", "-"); r.code != exitOK {
		t.Fatalf("batch: exit %d: %s", r.code, r.stderr)
	}

	t.Run("found", func(t *testing.T) {
		r := enqueue(t, env, "", "get", "--method", zhimaq.MethodScoreBriefGet, "--transaction-id", "GET1")
		if r.code != exitOK || r.stderr != "" {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
		recs := records(t, r.stdout)
		if len(recs) != 1 || recs[0].TransactionID != "GET1" || recs[0].State != zhimaq.Queued || recs[0].Method != zhimaq.MethodScoreBriefGet {
			t.Errorf("got %s", r.stdout)
		}
	})
	t.Run("not found", func(t *testing.T) {
		r := enqueue(t, env, "", "get", "--method", zhimaq.MethodRelationQuery, "--transaction-id", "GET1")
		if r.code != exitFailed || r.stdout != "" {
			t.Errorf("exit %d, stdout %q; want 1 and none", r.code, r.stdout)
		}
		oneLine(t, r.stderr)
		if !strings.Contains(r.stderr, "no record") {
			t.Errorf("stderr %q", r.stderr)
		}
	})
	t.Run("flags in any order", func(t *testing.T) {
		r := enqueue(t, env, "", "get", "--transaction-id=GET1", "--method="+zhimaq.MethodScoreBriefGet)
		if r.code != exitOK {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

func TestBackstopEndsTheCommandAfterASignal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		grace   time.Duration
		signals int
		want    string
	}{
		{"exits 1 when the command is not done after the grace", 10 * time.Millisecond, 1, "enqueue: still not done 10ms after the interrupt; exiting\n"},
		{"exits 1 at once on a second signal", time.Hour, 2, "enqueue: interrupted again; exiting at once\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sigs := make(chan os.Signal, 2)
			exited := make(chan int, 1)
			var stderr bytes.Buffer
			go backstop(sigs, cancel, tc.grace, &stderr, func(code int) { exited <- code })
			for range tc.signals {
				sigs <- syscall.SIGTERM
			}
			select {
			case code := <-exited:
				if code != exitFailed {
					t.Errorf("exit %d, want 1", code)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no exit 5s after the signal")
			}
			if ctx.Err() == nil {
				t.Error("the first signal did not cancel the command")
			}
			if stderr.String() != tc.want {
				t.Errorf("stderr %q, want %q", stderr.String(), tc.want)
			}
		})
	}
}

// TestHelpNamesTheVariablesItReads: enqueue's help and every command's help
// name the variables enqueue reads, and no worker-only one.
func TestHelpNamesTheVariablesItReads(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"help", "batch"}, {"help", "get"}, {"help", "status"}, {"help", "results"}} {
		r := enqueue(t, nil, "", args...)
		if r.code != exitOK {
			t.Fatalf("%q: exit %d", args, r.code)
		}
		for _, v := range config.Table {
			if named, reads := strings.Contains(r.stdout, "  "+v.Name), v.Reads&config.Enqueue != 0; named != reads {
				t.Errorf("%q: names %s: %v; enqueue reads it: %v", args, v.Name, named, reads)
			}
		}
	}
}
