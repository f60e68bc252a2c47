package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/zhimaq/zhimaq"
)

// want is what a test expects of one output record.
type want struct {
	state     zhimaq.State
	tid       string
	duplicate bool
	subCode   string
	subMsg    string // a part of the error's sub_msg or msg
}

func checkRecords(t *testing.T, got []zhimaq.Submission, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Fatalf("%d records, want %d", len(got), len(wants))
	}
	for i, w := range wants {
		r := got[i]
		if r.State != w.state || r.TransactionID != w.tid || r.Duplicate != w.duplicate {
			t.Errorf("record %d: state %s, transaction_id %q, duplicate %v; want %s, %q, %v", i+1, r.State, r.TransactionID, r.Duplicate, w.state, w.tid, w.duplicate)
		}
		if w.state != zhimaq.Rejected {
			if r.Error != nil {
				t.Errorf("record %d: error %+v", i+1, r.Error)
			}
			continue
		}
		if r.Error == nil {
			t.Errorf("record %d: rejected without an error", i+1)
			continue
		}
		if r.Error.SubCode != w.subCode || !strings.Contains(r.Error.SubMsg+r.Error.Msg, w.subMsg) {
			t.Errorf("record %d: error %+v; want sub_code %q mentioning %q", i+1, *r.Error, w.subCode, w.subMsg)
		}
	}
}

func TestBatchRecordsInInputOrder(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	badID := testID(3)[:17] + "0"
	if badID == testID(3) {
		badID = testID(3)[:17] + "1"
	}
	input := strings.Join([]string{
		scoreLine("T1", testID(1), 600),
		"   \t",
		`{"method":"zhima.credit.score.brief.get","biz_content":{"transaction_id":"T2",`,
		`{"method":"zhima.credit.score.brief.fetch","biz_content":{"transaction_id":"T2"}}`,
		scoreLine("T3", badID, 600),
		"",
		scoreLine("T1", testID(1), 600),
		scoreLine("T1", testID(1), 700),
		relationLine("T4", testID(4)),
	}, "\n") + "\n"
	wants := []want{
		{state: zhimaq.Queued, tid: "T1"},
		{state: zhimaq.Rejected, subCode: "INVALID_PARAMETER", subMsg: "JSON"},
		{state: zhimaq.Rejected, tid: "T2", subCode: "INVALID_PARAMETER", subMsg: "method"},
		{state: zhimaq.Rejected, tid: "T3", subCode: "INVALID_PARAMETER", subMsg: "cert_no"},
		{state: zhimaq.Queued, tid: "T1", duplicate: true},
		{state: zhimaq.Rejected, tid: "T1", subCode: "TRANSACTION_ID_REPEAT"},
		{state: zhimaq.Queued, tid: "T4"},
	}
	path := filepath.Join(t.TempDir(), "jobs.jsonl")
	if err := os.WriteFile(path, []byte(input), 0o600); err != nil {
		t.Fatal(err)
	}
	r := enqueue(t, env, "", "batch", path)
	if r.code != exitFailed {
		t.Errorf("exit %d, want 1; stderr %q", r.code, r.stderr)
	}
	checkRecords(t, records(t, r.stdout), wants)
	if want := "enqueue: batch b_ID: 7 lines: 3 accepted (1 duplicate), 4 rejected\n"; anonBatch(r.stderr) != want {
		t.Errorf("stderr %q, want %q", r.stderr, want)
	}
	assertNoPersonalData(t, r.stdout+r.stderr, testID(1), badID, testID(4))

	t.Run("resubmitted", func(t *testing.T) {
		r := enqueue(t, env, input, "batch", "--parallel", "3", "-")
		wants := []want{
			{state: zhimaq.Queued, tid: "T1", duplicate: true},
			wants[1], wants[2], wants[3],
			{state: zhimaq.Queued, tid: "T1", duplicate: true},
			wants[5],
			{state: zhimaq.Queued, tid: "T4", duplicate: true},
		}
		checkRecords(t, records(t, r.stdout), wants)
		if want := "enqueue: batch b_ID: 7 lines: 3 accepted (3 duplicates), 4 rejected\n"; anonBatch(r.stderr) != want {
			t.Errorf("stderr %q, want %q", r.stderr, want)
		}
	})
}

func TestBatchAllAcceptedExits0(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	var lines []string
	var wants []want
	for i := range 100 {
		tid := fmt.Sprintf("ORD%03d", i)
		lines = append(lines, scoreLine(tid, testID(i), 600))
		wants = append(wants, want{state: zhimaq.Queued, tid: tid})
	}
	// CRLF endings, a byte-order mark and no final line ending are all fine.
	input := "\xef\xbb\xbf" + strings.Join(lines, "\r\n")
	r := enqueue(t, env, input, "batch", "-", "--parallel", "7")
	if r.code != exitOK {
		t.Errorf("exit %d, want 0; stderr %q", r.code, r.stderr)
	}
	checkRecords(t, records(t, r.stdout), wants)
	if want := "enqueue: batch b_ID: 100 lines: 100 accepted (0 duplicates), 0 rejected\n"; anonBatch(r.stderr) != want {
		t.Errorf("stderr %q, want %q", r.stderr, want)
	}
}

func TestBatchEmptyInput(t *testing.T) {
	t.Parallel()
	r := enqueue(t, testEnv(t), "\n  \n", "batch", "-")
	if r.code != exitOK || r.stdout != "" || anonBatch(r.stderr) != "enqueue: batch b_ID: 0 lines: 0 accepted (0 duplicates), 0 rejected\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestBatchHugeLines(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	picture := strings.Repeat("A", 1<<20) // the largest legal face picture
	legal := certificationLine("BIG1", testID(1), picture)
	if len(legal) > zhimaq.MaxJobBytes {
		t.Fatalf("a legal line of %d bytes is over MaxJobBytes", len(legal))
	}
	tooBig := `{"method":"zhima.credit.score.brief.get","biz_content":{"transaction_id":"BIG2","name":"` + strings.Repeat("x", 3*zhimaq.MaxJobBytes) + `"}}`
	input := strings.Join([]string{tooBig, legal, scoreLine("BIG3", testID(3), 600), tooBig}, "\n")
	r := enqueue(t, env, input, "batch", "-")
	if r.code != exitFailed {
		t.Errorf("exit %d, want 1; stderr %q", r.code, r.stderr)
	}
	size := fmt.Sprint(zhimaq.MaxJobBytes)
	checkRecords(t, records(t, r.stdout), []want{
		{state: zhimaq.Rejected, subCode: "INVALID_PARAMETER", subMsg: size},
		{state: zhimaq.Queued, tid: "BIG1"},
		{state: zhimaq.Queued, tid: "BIG3"},
		{state: zhimaq.Rejected, subCode: "INVALID_PARAMETER", subMsg: size},
	})
	if len(r.stdout) > 10<<10 {
		t.Errorf("output of %d bytes echoes input", len(r.stdout))
	}
}

func TestBatchRedisDownStops(t *testing.T) {
	t.Parallel()
	env := map[string]string{"ZHIMA_APP_ID": testAppID, "REDIS_URL": "redis://127.0.0.1:1/0", "DATA_KEYS": "plaintext"}
	var lines []string
	for i := range 1000 { // more than enqueue reads ahead
		lines = append(lines, scoreLine(fmt.Sprintf("DOWN%03d", i), testID(i), 600))
	}
	r := enqueue(t, env, strings.Join(lines, "\n")+"\n", "batch", "--parallel", "2", "--redis-patience", "0", "-")
	if r.code != exitFailed {
		t.Errorf("exit %d, want 1", r.code)
	}
	recs := records(t, r.stdout)
	if len(recs) == 0 || len(recs) >= len(lines) {
		t.Fatalf("%d records for %d lines; want it to stop early", len(recs), len(lines))
	}
	for i, rec := range recs {
		if rec.State != zhimaq.Rejected || rec.Error == nil || rec.Error.Source != "local" || rec.Error.Msg == "" || rec.Error.Code != "" {
			t.Errorf("record %d: %+v %+v", i+1, rec, rec.Error)
		}
		if rec.TransactionID != fmt.Sprintf("DOWN%03d", i) {
			t.Errorf("record %d is for %q", i+1, rec.TransactionID)
		}
	}
	stop := fmt.Sprintf("enqueue: Redis is unreachable (dial tcp 127.0.0.1:1: connect: connection refused); stopped after line %d, later lines were not read\n", len(recs))
	summary := fmt.Sprintf("enqueue: batch b_ID: %d lines: 0 accepted (0 duplicates), %d rejected\n", len(recs), len(recs))
	if anonBatch(r.stderr) != stop+summary {
		t.Errorf("stderr:\n%s\nwant:\n%s%s", r.stderr, stop, summary)
	}
}

func TestBatchReadErrorStops(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	in := io.MultiReader(strings.NewReader(scoreLine("RD1", testID(1), 600)+"\n"), iotest.ErrReader(errors.New("disk on fire")))
	r := enqueueCtx(t, context.Background(), env, in, "batch", "-")
	if r.code != exitFailed {
		t.Errorf("exit %d, want 1", r.code)
	}
	checkRecords(t, records(t, r.stdout), []want{{state: zhimaq.Queued, tid: "RD1"}})
	if !strings.HasPrefix(r.stderr, "enqueue: read input: disk on fire; stopped after line 1") {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestRecordsKeepTheGatewayResponseByteForByte(t *testing.T) {
	node := `{"code":"10000","msg":"a<b&c>d \/ 中","biz_no":"ZM1"}`
	var out strings.Builder
	if err := writeRecord(&out, &zhimaq.Record{Method: zhimaq.MethodScoreBriefGet, TransactionID: "T1",
		State: zhimaq.Succeeded, Response: []byte(node)}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"response":`+node) {
		t.Fatalf("response changed on the way out:\n%s", out.String())
	}
}

func TestBatchLineLimitStops(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		lines        []string
		code         int
		wants        []want
		stderr       string
		notSubmitted []string // transaction ids whose jobs must not have been submitted
	}{
		{
			name:  "beyond_the_limit_stops_before_the_line",
			lines: []string{scoreLine("LIM1", testID(1), 600), "", "{}", scoreLine("LIM2", testID(2), 600), " ", scoreLine("LIM3", testID(3), 600), scoreLine("LIM4", testID(4), 600)},
			code:  exitFailed,
			wants: []want{{state: zhimaq.Queued, tid: "LIM1"}, {state: zhimaq.Rejected, subCode: "INVALID_PARAMETER", subMsg: "method"}, {state: zhimaq.Queued, tid: "LIM2"}},
			stderr: "enqueue: batch holds BATCH_MAX_LINES=3 lines; stopped after line 5, later lines were not read\n" +
				"enqueue: batch b_ID: 3 lines: 2 accepted (0 duplicates), 1 rejected\n",
			notSubmitted: []string{"LIM3", "LIM4"},
		},
		{
			name:   "exactly_the_limit_exits_0",
			lines:  []string{scoreLine("LIM5", testID(5), 600), scoreLine("LIM6", testID(6), 600), "", scoreLine("LIM7", testID(7), 600), "", ""},
			code:   exitOK,
			wants:  []want{{state: zhimaq.Queued, tid: "LIM5"}, {state: zhimaq.Queued, tid: "LIM6"}, {state: zhimaq.Queued, tid: "LIM7"}},
			stderr: "enqueue: batch b_ID: 3 lines: 3 accepted (0 duplicates), 0 rejected\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := testEnv(t)
			env["BATCH_MAX_LINES"] = "3"
			r := enqueue(t, env, strings.Join(tt.lines, "\n")+"\n", "batch", "-")
			if r.code != tt.code {
				t.Errorf("exit %d, want %d; stderr %q", r.code, tt.code, r.stderr)
			}
			checkRecords(t, records(t, r.stdout), tt.wants)
			assertNoPersonalData(t, r.stdout+r.stderr, testID(1), testID(2), testID(5), testID(6), testID(7))
			if anonBatch(r.stderr) != tt.stderr {
				t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, tt.stderr)
			}
			for _, tid := range tt.notSubmitted {
				if g := enqueue(t, env, "", "get", "--method", zhimaq.MethodScoreBriefGet, "--transaction-id", tid); g.code != exitFailed {
					t.Errorf("the job of %s, beyond the limit, was submitted: %s", tid, g.stdout)
				}
			}
		})
	}
}
