package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/worker"
	"github.com/zhimaq/zhimaq/internal/workertest"
)

// startWorker runs a real worker in-process against a sandbox gateway with
// faults, on the Redis, queue, key prefix and producer settings that env
// gives the command, and returns the gateway.
func startWorker(t *testing.T, env map[string]string, faults sandbox.Faults) *sandbox.Server {
	t.Helper()
	shared, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	s := workertest.Start(t, workertest.Options{
		Gateway: sandbox.Config{AppID: testAppID, Faults: faults},
		Change: func(c *config.Config) {
			c.RedisURL, c.Queue, c.KeyPrefix = shared.RedisURL, shared.Queue, shared.KeyPrefix
			c.AppID, c.DataKeys, c.DedupWindow, c.ResultTTL = shared.AppID, shared.DataKeys, shared.DedupWindow, shared.ResultTTL
			c.CallbackHosts, c.BatchMaxLines = shared.CallbackHosts, shared.BatchMaxLines
			c.WorkerConcurrency, c.RetryMaxDelay, c.PollInterval = 8, 50*time.Millisecond, 50*time.Millisecond
		},
		Worker: worker.Options{ShutdownTimeout: time.Second},
	})
	return s.Gateway
}

func TestBatchWait(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	startWorker(t, env, sandbox.Faults{SystemErrorRate: 0.3})
	input := strings.Join([]string{
		scoreLine("W1", testID(1), 600),
		relationLine("W2", testID(2)),
		certificationLine("W3", testID(3), "aGVsbG8="),
		scoreLine("W1", testID(1), 600),
	}, "\n")

	t.Run("all succeed", func(t *testing.T) {
		start := time.Now()
		r := enqueue(t, env, input, "batch", "--wait", "--timeout", "30s", "-")
		if r.code != exitOK {
			t.Errorf("exit %d, want 0; stderr %q", r.code, r.stderr)
		}
		recs := records(t, r.stdout)
		checkRecords(t, recs, []want{
			{state: zhimaq.Succeeded, tid: "W1"},
			{state: zhimaq.Succeeded, tid: "W2"},
			{state: zhimaq.Succeeded, tid: "W3"},
			{state: zhimaq.Succeeded, tid: "W1", duplicate: true},
		})
		for i, rec := range recs {
			if len(rec.Response) == 0 || rec.Attempts < 1 {
				t.Errorf("record %d: no response or attempts: %+v", i+1, rec)
			}
		}
		if want := "enqueue: batch b_ID: 4 lines: 4 accepted (1 duplicate), 0 rejected · 4 succeeded, 0 failed\n"; anonBatch(r.stderr) != want {
			t.Errorf("stderr %q, want %q", r.stderr, want)
		}
		assertNoPersonalData(t, r.stdout+r.stderr, testID(1), testID(2), testID(3))
		t.Logf("waited %v", time.Since(start))
	})

	t.Run("finished ones come back at once", func(t *testing.T) {
		r := enqueue(t, env, input, "batch", "--wait", "-")
		if r.code != exitOK || !strings.HasSuffix(r.stderr, "4 accepted (4 duplicates), 0 rejected · 4 succeeded, 0 failed\n") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("a rejected line", func(t *testing.T) {
		r := enqueue(t, env, scoreLine("W5", testID(5), 600)+"\nnope\n", "batch", "--wait", "-")
		if r.code != exitFailed {
			t.Errorf("exit %d, want 1", r.code)
		}
		checkRecords(t, records(t, r.stdout), []want{
			{state: zhimaq.Succeeded, tid: "W5"},
			{state: zhimaq.Rejected, subCode: "INVALID_PARAMETER", subMsg: "JSON"},
		})
		if want := "enqueue: batch b_ID: 2 lines: 1 accepted (0 duplicates), 1 rejected · 1 succeeded, 0 failed\n"; anonBatch(r.stderr) != want {
			t.Errorf("stderr %q, want %q", r.stderr, want)
		}
	})
}

func TestBatchWaitGivesUp(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	startWorker(t, env, sandbox.Faults{HangRate: 1})
	input := scoreLine("H1", testID(1), 600) + "\n" + scoreLine("H2", testID(2), 600) + "\n"

	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		r := enqueue(t, env, input, "batch", "--wait", "--timeout", "700ms", "-")
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("took %v with --timeout 700ms", took)
		}
		if r.code != exitFailed {
			t.Errorf("exit %d, want 1", r.code)
		}
		recs := records(t, r.stdout)
		if len(recs) != 2 || recs[0].TransactionID != "H1" || recs[1].TransactionID != "H2" {
			t.Fatalf("records:\n%s", r.stdout)
		}
		for i, rec := range recs {
			if rec.State.Terminal() {
				t.Errorf("record %d is %s behind a hung gateway", i+1, rec.State)
			}
		}
		lines := strings.Split(strings.TrimSuffix(anonBatch(r.stderr), "\n"), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "enqueue: --timeout 700ms passed with 2 of 2 jobs unfinished") ||
			lines[1] != "enqueue: batch b_ID: 2 lines: 2 accepted (0 duplicates), 0 rejected · 0 succeeded, 0 failed, 2 unfinished" {
			t.Errorf("stderr:\n%s", r.stderr)
		}
	})

	t.Run("interrupt", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		r := enqueueCtx(t, ctx, env, strings.NewReader(input), "batch", "--wait", "-")
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("took %v after an interrupt at 500ms", took)
		}
		if r.code != exitFailed || len(records(t, r.stdout)) != 2 || !strings.Contains(r.stderr, "enqueue: interrupted with 2 of 2 jobs unfinished") {
			t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
	})
}
