package main

import (
	"encoding/csv"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/batches"
	"github.com/zhimaq/zhimaq/internal/export"
	"github.com/zhimaq/zhimaq/internal/sandbox"
)

func init() { watchLines = 50 * time.Millisecond } // a line every 50ms in the tests' --watch

// batchIDOf is the batch id in a summary on stderr.
func batchIDOf(t *testing.T, stderr string) string {
	t.Helper()
	id := batchIDs.FindString(stderr)
	if id == "" {
		t.Fatalf("no batch id in stderr %q", stderr)
	}
	return id
}

func TestBatchRecordsCarryTheBatchID(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	first := enqueue(t, env, scoreLine("BI1", testID(1), 600)+"\nnope\n", "batch", "-")
	id1 := batchIDOf(t, first.stderr)
	if !batches.ValidID(id1) {
		t.Fatalf("batch id %q is not of the form", id1)
	}
	for i, rec := range records(t, first.stdout) {
		if rec.BatchID != id1 {
			t.Errorf("record %d: batch_id %q, want %q", i+1, rec.BatchID, id1)
		}
	}

	// The same job in another batch: its line names the second batch, the
	// stored record still the first.
	second := enqueue(t, env, scoreLine("BI1", testID(1), 600)+"\n", "batch", "-")
	id2 := batchIDOf(t, second.stderr)
	recs := records(t, second.stdout)
	if id2 == id1 || len(recs) != 1 || recs[0].BatchID != id2 || !recs[0].Duplicate {
		t.Fatalf("second batch %s: records %+v", id2, recs)
	}
	got := enqueue(t, env, "", "get", "--method", zhimaq.MethodScoreBriefGet, "--transaction-id", "BI1")
	if rec := records(t, got.stdout); len(rec) != 1 || rec[0].BatchID != id1 {
		t.Errorf("stored record: %s", got.stdout)
	}
	res := enqueue(t, env, "", "results", "--batch", id2)
	if rec := records(t, res.stdout); res.code != exitOK || len(rec) != 1 || rec[0].BatchID != id2 || !rec[0].Duplicate {
		t.Errorf("results of the second batch: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}

func TestStatusAndResults(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	startWorker(t, env, sandbox.Faults{SystemErrorRate: 0.3})
	input := strings.Join([]string{
		scoreLine("SR1", testID(1), 600),
		"not a job",
		relationLine("SR2", testID(2)),
		"",
		scoreLine("SR1", testID(1), 600),
	}, "\n")
	r := enqueue(t, env, input, "batch", "-")
	id := batchIDOf(t, r.stderr)

	t.Run("watch until done", func(t *testing.T) {
		w := enqueue(t, env, "", "status", "--batch", id, "--watch")
		if w.code != exitOK || w.stderr != "" {
			t.Fatalf("exit %d, stderr %q", w.code, w.stderr)
		}
		lines := strings.Split(strings.TrimSuffix(w.stdout, "\n"), "\n")
		n := len(lines)
		if n < 4 || !strings.HasPrefix(lines[n-4], "batch "+id+": 4 lines, all in, started ") || !strings.Contains(lines[n-4], ", done ") {
			t.Fatalf("stdout:\n%s", w.stdout)
		}
		if want := "queued 0 · running 0 · retrying 0 · held 0 · succeeded 3 · failed 0 · rejected 1"; lines[n-3] != want {
			t.Errorf("counts %q, want %q", lines[n-3], want)
		}
		if want := "by app: " + testAppID + " 3"; lines[n-2] != want {
			t.Errorf("apps %q, want %q", lines[n-2], want)
		}
		if want := "[####################] 3/3 jobs finished · 3 succeeded · 0 failed"; lines[n-1] != want {
			t.Errorf("progress %q, want %q", lines[n-1], want)
		}
		for _, l := range lines[:n-4] { // the watch lines before: "15:04:05 [...] …"
			if !regexp.MustCompile(`^\d\d:\d\d:\d\d \[[#.]{20}\] \d/3 jobs finished`).MatchString(l) {
				t.Errorf("watch line %q", l)
			}
		}
	})

	t.Run("status once done", func(t *testing.T) {
		s := enqueue(t, env, "", "status", "--batch", id)
		if s.code != exitOK || strings.Count(s.stdout, "\n") != 4 || !strings.Contains(s.stdout, "succeeded 3") {
			t.Errorf("exit %d\n%s%s", s.code, s.stdout, s.stderr)
		}
	})

	t.Run("results as jsonl", func(t *testing.T) {
		res := enqueue(t, env, "", "results", "--batch", id)
		recs := records(t, res.stdout)
		checkRecords(t, recs, []want{
			{state: zhimaq.Succeeded, tid: "SR1"},
			{state: zhimaq.Rejected, subCode: "INVALID_PARAMETER", subMsg: "JSON"},
			{state: zhimaq.Succeeded, tid: "SR2"},
			{state: zhimaq.Succeeded, tid: "SR1", duplicate: true},
		})
		for i, rec := range recs {
			if rec.BatchID != id {
				t.Errorf("record %d: batch_id %q", i+1, rec.BatchID)
			}
		}
	})

	t.Run("results as csv", func(t *testing.T) {
		res := enqueue(t, env, "", "results", "--batch", id, "--format", "csv")
		if res.code != exitOK || res.stderr != "" {
			t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
		}
		rows, err := csv.NewReader(strings.NewReader(res.stdout)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 5 || strings.Join(rows[0], ",") != strings.Join(export.CSVColumns, ",") {
			t.Fatalf("csv:\n%s", res.stdout)
		}
		col := map[string]int{}
		for i, c := range rows[0] {
			col[c] = i
		}
		wants := [][3]string{{"1", "SR1", "succeeded"}, {"2", "", "rejected"}, {"3", "SR2", "succeeded"}, {"4", "SR1", "succeeded"}}
		for i, w := range wants {
			row := rows[i+1]
			if row[col["line"]] != w[0] || row[col["transaction_id"]] != w[1] || row[col["state"]] != w[2] || row[col["batch_id"]] != id {
				t.Errorf("row %d: %q", i+1, row)
			}
		}
		if rows[1][col["is_admittance"]] == "" || rows[3][col["relation_rank"]] == "" || rows[2][col["error_sub_code"]] != "INVALID_PARAMETER" ||
			rows[4][col["duplicate"]] != "true" {
			t.Errorf("answer or error columns empty:\n%s", res.stdout)
		}
		assertNoPersonalData(t, res.stdout, testID(1), testID(2))
	})
}

func TestStatusAndResultsRefuse(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	env["CALLBACK_HOSTS"] = "hooks.lender.example"
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"status_without_batch", []string{"status"}, exitUsage, "--batch is required"},
		{"status_with_bad_batch", []string{"status", "--batch", "b_1:2"}, exitUsage, "not a batch id"},
		{"status_of_unknown_batch", []string{"status", "--batch", "b_20260101T000000Z_AAAAAA"}, exitFailed, "no batch b_20260101T000000Z_AAAAAA"},
		{"watch_of_unknown_batch", []string{"status", "--watch", "--batch", "b_20260101T000000Z_AAAAAA"}, exitFailed, "no batch"},
		{"results_with_bad_format", []string{"results", "--batch", "b_20260101T000000Z_AAAAAA", "--format", "xml"}, exitUsage, "--format"},
		{"results_of_unknown_batch", []string{"results", "--batch", "b_20260101T000000Z_AAAAAA"}, exitFailed, "no batch"},
		{"batch_with_bad_callback", []string{"batch", "--callback", "ftp://x/y", "-"}, exitUsage, "--callback"},
		{"batch_with_relative_callback", []string{"batch", "--callback", "/hook", "-"}, exitUsage, "--callback"},
		{"batch_with_callback_host_not_allowed", []string{"batch", "--callback", "http://10.0.0.7/hook", "-"}, exitUsage, "CALLBACK_HOSTS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := enqueue(t, env, "", tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.want) || r.stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d saying %q", r.code, r.stdout, r.stderr, tt.code, tt.want)
			}
			oneLine(t, r.stderr)
		})
	}
}
