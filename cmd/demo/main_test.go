package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/launch"
)

// TestDemo builds every command and runs the demo end to end: embedded
// Redis (and then a local Redis Cluster, DEMO_REDIS=cluster), sandbox with
// faults, worker, enqueue. It takes some seconds each.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the commands and runs the whole demo; skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH to build the commands")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	bin := t.TempDir()
	build := exec.CommandContext(ctx, goTool, "build", "-o", bin+string(filepath.Separator), "./cmd/...")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/...: %v\n%s", err, out)
	}

	for _, kind := range []string{"embedded", "cluster"} {
		t.Run(kind, func(t *testing.T) {
			if kind == "cluster" {
				if _, err := launch.FindRedisServer(""); err != nil {
					if os.Getenv("ZHIMAQ_REQUIRE_REDIS") == "1" {
						t.Fatalf("no redis-server for DEMO_REDIS=cluster and ZHIMAQ_REQUIRE_REDIS=1: %v", err)
					}
					t.Skip("DEMO_REDIS=cluster needs redis-server on PATH")
				}
			}
			runDemo(ctx, t, bin, root, kind)
		})
	}
}

// runDemo runs the demo built into bin with DEMO_REDIS=kind and checks
// its table and counts.
func runDemo(ctx context.Context, t *testing.T, bin, root, kind string) {
	var stdout, stderr bytes.Buffer
	demo := exec.CommandContext(ctx, filepath.Join(bin, "demo"),
		"--jobs", filepath.Join(root, "demo", "jobs.jsonl"), "--log-dir", t.TempDir(), "--timeout", "60s")
	// A REDIS_URL of the user's must not reach the children.
	demo.Env = append(os.Environ(), "REDIS_URL=redis://127.0.0.1:1/0", "ZHIMA_APP_ID=leaked", "DEMO_REDIS="+kind)
	demo.Stdout, demo.Stderr = &stdout, &stderr
	demo.Cancel = func() error { return demo.Process.Signal(os.Interrupt) } // let it stop its children
	demo.WaitDelay = 20 * time.Second
	start := time.Now()
	err := demo.Run()
	t.Logf("demo ran %s\n%s", time.Since(start).Round(time.Millisecond), stdout.String())
	if err != nil {
		t.Fatalf("demo: %v\nstderr:\n%s", err, stderr.String())
	}

	states := map[string]int{}
	succeeded := map[string]bool{} // method + transaction_id
	rows, inTable := 0, false
	for line := range strings.SplitSeq(stdout.String(), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "#":
			inTable = true
			continue
		case !inTable:
			continue
		case len(f) == 0:
			inTable = false
			continue
		case len(f) < 5:
			t.Fatalf("short table row %q", line)
		}
		if _, err := strconv.Atoi(f[0]); err != nil {
			t.Fatalf("table row %q does not start with its number", line)
		}
		rows++
		states[f[3]]++
		if f[3] == "succeeded" {
			succeeded[f[1]+" "+f[2]] = true
		}
	}
	if rows != 16 {
		t.Errorf("table has %d rows, want 16 (one per line of demo/jobs.jsonl)", rows)
	}
	for _, s := range []string{"succeeded", "failed", "rejected"} {
		if states[s] == 0 {
			t.Errorf("no %s row in the table; states: %v", s, states)
		}
	}
	for _, want := range []string{"TRANSACTION_ID_REPEAT", "INVALID_PARAMETER", "API_PRODUCT_NOT_MATCH", " yes "} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	m := regexp.MustCompile(`sandbox gateway: (\d+) calls, (\d+) billed`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatal("output lacks the sandbox's calls and billed counts")
	}
	if billed, _ := strconv.Atoi(m[2]); billed != len(succeeded) {
		t.Errorf("sandbox billed %d calls, want %d (the distinct succeeded transactions)", billed, len(succeeded))
	}
}

func TestOutcome(t *testing.T) {
	tests := []struct {
		name string
		rec  string
		want string
	}{
		{"score succeeded",
			`{"method":"zhima.credit.score.brief.get","state":"succeeded","response":{"code":"10000","biz_no":"B1","is_admittance":"N/A"}}`,
			"is_admittance=N/A"},
		{"relation succeeded",
			`{"method":"zhima.credit.relation.query","state":"succeeded","response":{"relation_rank":"V_CT_RL_SG","relation_info":{"recency":"V_CT_RL30D"},"relation_score":87}}`,
			"relation_rank=V_CT_RL_SG relation_score=87 recency=V_CT_RL30D"},
		{"certification succeeded",
			`{"method":"zhima.customer.certification.initialize","state":"succeeded","response":{"biz_no":"ZM1"}}`,
			"biz_no=ZM1"},
		{"failed with sub_code",
			`{"method":"zhima.credit.score.brief.get","state":"failed","error":{"source":"gateway","code":"40004","sub_code":"API_PRODUCT_NOT_MATCH","sub_msg":"输入的产品码不正确"}}`,
			"API_PRODUCT_NOT_MATCH 输入的产品码不正确"},
		{"rejected without sub_code",
			`{"method":"","state":"rejected","error":{"source":"local","msg":"job: bad JSON"}}`,
			"job: bad JSON"},
		{"unfinished", `{"method":"zhima.credit.score.brief.get","state":"retrying"}`, "(not finished)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, err := parseRecords([]byte(tt.rec+"\n"), 1)
			if err != nil {
				t.Fatal(err)
			}
			if got := outcome(recs[0]); got != tt.want {
				t.Errorf("outcome = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseRecordsShort(t *testing.T) {
	if _, err := parseRecords([]byte(`{"state":"succeeded"}`+"\n"), 2); err == nil {
		t.Error("parseRecords accepted 1 record for 2 lines")
	}
}
