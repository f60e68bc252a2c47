package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/payload"
)

func TestGeneratedJobsAreValid(t *testing.T) {
	g := newJobGen(42)
	jobs := g.batch("T1a2b3c", 0, 300)
	seen := map[string]bool{}
	for _, j := range jobs {
		job, rej := zhimaq.ParseJob(j.Line)
		if rej != nil {
			t.Fatalf("%s: rejected: %+v", j.Line, rej.Error)
		}
		if _, err := payload.Request(job.Method, job.BizContent); err != nil {
			t.Fatalf("%s: %v", j.Line, err)
		}
		if job.Method != j.Method || seen[j.TxID] {
			t.Fatalf("job %s: method %s, seen before %v", j.TxID, job.Method, seen[j.TxID])
		}
		seen[j.TxID] = true
		if j.Method == zhimaq.MethodCertificationInitialize && len(j.TxID) > 32 {
			t.Fatalf("certification transaction_id %s is longer than 32", j.TxID)
		}
	}
	methods := map[string]int{}
	for _, j := range jobs {
		methods[j.Method]++
	}
	if len(methods) != 3 {
		t.Errorf("methods = %v, want all three", methods)
	}
}

func TestConflictingJobKeepsTheTransactionButNotTheParameters(t *testing.T) {
	g := newJobGen(7)
	for _, j := range g.batch("C", 0, 30) {
		c := g.conflicting(j)
		if c.TxID != j.TxID || c.Method != j.Method || bytes.Equal(c.Line, j.Line) {
			t.Fatalf("conflicting(%s) = %s", j.Line, c.Line)
		}
		job, rej := zhimaq.ParseJob(c.Line)
		if rej != nil {
			t.Fatalf("%s: rejected: %+v", c.Line, rej.Error)
		}
		if _, err := payload.Request(job.Method, job.BizContent); err != nil {
			t.Fatalf("%s: %v", c.Line, err)
		}
	}
}

func TestJobGenIsRepeatable(t *testing.T) {
	a, b := newJobGen(99).batch("R", 0, 20), newJobGen(99).batch("R", 0, 20)
	for i := range a {
		if !bytes.Equal(a[i].Line, b[i].Line) {
			t.Fatalf("line %d differs:\n%s\n%s", i, a[i].Line, b[i].Line)
		}
	}
}

func TestMinRetrySpan(t *testing.T) {
	tests := []struct {
		base, max time.Duration
		attempts  int
		want      time.Duration
	}{
		{time.Second, 20 * time.Second, 12, 75500 * time.Millisecond}, // .5+1+2+4+8 + 6×10
		{2 * time.Second, 10 * time.Minute, 1, 0},
		{2 * time.Second, 10 * time.Minute, 3, 3 * time.Second},
		{time.Second, time.Second, 5, 2 * time.Second},
	}
	for _, tt := range tests {
		if got := minRetrySpan(tt.base, tt.max, tt.attempts); got != tt.want {
			t.Errorf("minRetrySpan(%s, %s, %d) = %s, want %s", tt.base, tt.max, tt.attempts, got, tt.want)
		}
	}
}

func TestOutageBackoffOutlastsTheOutage(t *testing.T) {
	for _, outage := range []time.Duration{20 * time.Second, time.Minute, 3 * time.Minute} {
		base, max := outageBackoff(outage, 12)
		if span := minRetrySpan(base, max, 12); span < outage+outage/4 {
			t.Errorf("outage %s: base %s max %s give only %s", outage, base, max, span)
		}
	}
	if base, max := outageBackoff(time.Minute, 12); base != time.Second || max != 20*time.Second {
		t.Errorf("outageBackoff(1m) = %s, %s; want 1s, 20s", base, max)
	}
}

func TestParseRecords(t *testing.T) {
	in := `{"method":"zhima.credit.score.brief.get","transaction_id":"T1","state":"succeeded","attempts":1,"duplicate":false,"response":{"code":"10000"},"error":null,"enqueued_at":"2026-11-26T02:40:00Z","updated_at":"2026-11-26T02:40:01Z"}

{"method":"zhima.credit.score.brief.get","transaction_id":"T2","state":"rejected","attempts":0,"duplicate":false,"response":null,"error":{"source":"local","code":"40004","sub_code":"TRANSACTION_ID_REPEAT"},"enqueued_at":null,"updated_at":"2026-11-26T02:40:01Z"}
`
	recs, err := parseRecords(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].State != zhimaq.Succeeded || recs[1].Error.SubCode != "TRANSACTION_ID_REPEAT" {
		t.Fatalf("records = %+v", recs)
	}
	if _, err := parseRecords(strings.NewReader("{\"state\":\"\"}\n")); err == nil {
		t.Error("a record without a state was accepted")
	}
	if _, err := parseRecords(strings.NewReader("not json\n")); err == nil {
		t.Error("a line that is not JSON was accepted")
	}
}

func TestErrorKey(t *testing.T) {
	tests := []struct {
		in   *zhimaq.ErrorInfo
		want string
	}{
		{nil, "no error"},
		{&zhimaq.ErrorInfo{Source: "gateway", Code: "20000", SubCode: "isp.unknow-error"}, "gateway/20000/isp.unknow-error"},
		{&zhimaq.ErrorInfo{Source: "local", Msg: "zhimaq: submit 2021/zhima.credit.score.brief.get/T1: claim: connection refused"},
			"local: zhimaq: submit …: claim: connection refused"},
	}
	for _, tt := range tests {
		if got := errorKey(tt.in); got != tt.want {
			t.Errorf("errorKey(%+v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCountsText(t *testing.T) {
	if got, want := countsText(map[string]int{"b": 1, "a": 1, "c": 5}), "c 5, a 1, b 1"; got != want {
		t.Errorf("countsText = %q, want %q", got, want)
	}
	if got := countsText(nil); got != "none" {
		t.Errorf("countsText(nil) = %q", got)
	}
}

func TestResultLine(t *testing.T) {
	r := &result{Name: "kill-worker", In: 3000, Succeeded: 2990, Failed: 10, Calls: 3100, Billed: 2990,
		InFlightMax: 30, InFlightLimit: 32, Elapsed: 95 * time.Second}
	got := r.Line()
	for _, want := range []string{"kill-worker", "PASS", "in 3000", "finished 3000 (2990 succeeded / 10 failed)",
		"lost 0", "billed twice 0", "3100 calls, 2990 billed (= succeeded)", "in flight ≤ 30/32", "1m35s"} {
		if !strings.Contains(got, want) {
			t.Errorf("Line() = %q, missing %q", got, want)
		}
	}
	r.Lost, r.Problems = 2, []string{"2 accepted jobs never finished"}
	if got := r.Line(); !strings.Contains(got, "FAIL") || !strings.Contains(got, "lost 2") {
		t.Errorf("Line() = %q, want FAIL and lost 2", got)
	}
	s := &result{Name: "restart-redis", Skipped: "redis-server is not installed"}
	if got := s.Line(); !strings.Contains(got, "SKIPPED") || !strings.Contains(got, "not installed") || s.Pass() {
		t.Errorf("skipped Line() = %q, Pass %v", got, s.Pass())
	}
}

func TestSelectDrills(t *testing.T) {
	all, err := selectDrills("")
	if err != nil || len(all) != len(drills) {
		t.Fatalf("selectDrills(\"\") = %d drills, %v", len(all), err)
	}
	got, err := selectDrills("graceful-stop, kill-worker")
	if err != nil || len(got) != 2 || got[0].name != "kill-worker" || got[1].name != "graceful-stop" {
		t.Fatalf("selectDrills = %v, %v", got, err)
	}
	if _, err := selectDrills("kill-everything"); err == nil || !strings.Contains(err.Error(), "kill-worker") {
		t.Errorf("unknown drill: err = %v, want one listing the drills", err)
	}
}

func TestSummarizeLogCounts(t *testing.T) {
	line := func(level, logger, msg string) logLine { return logLine{Level: level, Logger: logger, Msg: msg} }
	if got := summarizeLogCounts(nil, nil, 0, 0); got != "no errors or warnings" {
		t.Errorf("empty: %q", got)
	}
	errs := map[string]int{shortLogMsg(line("error", "asynq", "Could not push task id=abc back")): 2}
	got := summarizeLogCounts(errs, nil, 3, 1)
	for _, want := range []string{"2 error lines", `"asynq: Could not push task id=…" 2`, "3 deliveries", "1 lines that are not JSON"} {
		if !strings.Contains(got, want) {
			t.Errorf("summary %q, missing %q", got, want)
		}
	}
	var l logLine
	if err := json.Unmarshal([]byte(`{"level":"warn","ts":"x","logger":"asynq","msg":"m"}`), &l); err != nil || l.Logger != "asynq" {
		t.Errorf("logLine = %+v, %v", l, err)
	}
}

func TestWaitReplicasFlag(t *testing.T) {
	var stderr bytes.Buffer
	o, err := parseFlags(nil, &stderr)
	if err != nil || o.wait != 1 {
		t.Fatalf("default --wait-replicas = %d, %v; want 1", o.wait, err)
	}
	if _, err := parseFlags([]string{"--wait-replicas", "2"}, &stderr); err == nil || !strings.Contains(err.Error(), "--wait-replicas") {
		t.Errorf("--wait-replicas 2: err = %v, want one naming the flag", err)
	}
	for _, s := range drills {
		if s.redis != shared && !s.needsRedisServer {
			t.Errorf("drill %s runs a Redis of its own but does not say it needs redis-server", s.name)
		}
	}
}
