package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/jsonl"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// The corpus of bad job lines, testdata/bad-jobs.jsonl, and what enqueue
// must make of each, testdata/bad-jobs.expect, are written by
// testdata/gen_bad_jobs.go (cd testdata && go run gen_bad_jobs.go); its doc
// comment describes the two files.
const (
	corpusFile = "testdata/bad-jobs.jsonl"
	expectFile = "testdata/bad-jobs.expect"
)

// Outcomes in bad-jobs.expect besides a rejection's sub_code.
const (
	outcomeBlank     = "blank"
	outcomeSucceeded = "succeeded"
	outcomeDuplicate = "duplicate"
)

// corpusLine is one input line and what its record must say.
type corpusLine struct {
	n       int // 1-based line number in the batch input
	text    []byte
	outcome string // outcomeBlank, outcomeSucceeded, outcomeDuplicate or a sub_code
	detail  string // the transaction_id, or a part of the rejection's sub_msg
	what    string
	bug     string // set when a known bug keeps the line from its outcome
}

func (l corpusLine) good() bool {
	return l.outcome == outcomeSucceeded || l.outcome == outcomeDuplicate
}

// readCorpus reads the committed corpus and its expectations.
func readCorpus(t *testing.T) []corpusLine {
	t.Helper()
	data, err := os.ReadFile(corpusFile)
	if err != nil {
		t.Fatal(err)
	}
	expect, err := os.ReadFile(expectFile)
	if err != nil {
		t.Fatal(err)
	}
	texts := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	var lines []corpusLine
	sc := bufio.NewScanner(bytes.NewReader(expect))
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) != 3 || !strings.HasPrefix(cols[2], "# ") {
			t.Fatalf("%s:%d: want outcome, detail and # description, got %q", expectFile, len(lines)+1, sc.Text())
		}
		l := corpusLine{n: len(lines) + 1, outcome: cols[0], detail: cols[1], what: strings.TrimPrefix(cols[2], "# ")}
		if strings.HasPrefix(l.what, "bug: ") {
			l.bug = l.what
		}
		if l.n > len(texts) {
			t.Fatalf("%s has more lines than %s (%d)", expectFile, corpusFile, len(texts))
		}
		l.text = texts[l.n-1]
		if (l.outcome == outcomeBlank) != jsonl.Blank(l.text) {
			t.Fatalf("%s:%d: outcome %q for line %q", expectFile, l.n, l.outcome, l.text)
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(lines) != len(texts) {
		t.Fatalf("%s has %d lines, %s %d", expectFile, len(lines), corpusFile, len(texts))
	}
	return lines
}

// hugeLines are bad lines too big to commit, made at run time.
func hugeLines() []corpusLine {
	size := fmt.Sprintf("job: line is larger than %d bytes", zhimaq.MaxJobBytes)
	picture := func(n int) string {
		return certificationLine("HUGE_FACE", testID(900), strings.Repeat("QUFB", n/4))
	}
	return []corpusLine{
		{text: []byte(picture(zhimaq.MaxJobBytes)), outcome: zhima.SubInvalidParameter, detail: size,
			what: "a face picture of MaxJobBytes, so the line is larger than MaxJobBytes"},
		{text: []byte(`{"method":"zhima.credit.score.brief.get","biz_content":` + strings.Repeat("[", 1_000_000) + strings.Repeat("]", 1_000_000) + "}"),
			outcome: zhima.SubInvalidParameter, detail: size, what: "1,000,000 nested arrays as biz_content"},
		{text: []byte(`{"method":"zhima.credit.score.brief.get","biz_content":` + strings.Repeat("[", 500_000)),
			outcome: zhima.SubInvalidParameter, detail: "job: malformed JSON", what: "500,000 unclosed nested arrays (within MaxJobBytes)"},
		{text: []byte(picture(zhima.MaxFacePicture + 4)), outcome: zhima.SubInvalidParameter,
			detail: fmt.Sprintf("face_contrast_picture: is larger than %d characters", zhima.MaxFacePicture),
			what:   "a face picture 4 characters over the gateway's limit, the line within MaxJobBytes"},
	}
}

// TestBatchBadJobsCorpus runs `enqueue batch --wait` over the corpus of bad
// lines (good ones between them) against a real worker and the sandbox.
func TestBatchBadJobsCorpus(t *testing.T) {
	t.Parallel()
	lines := append(readCorpus(t), hugeLines()...)
	var input bytes.Buffer
	for i := range lines {
		lines[i].n = i + 1
		input.Write(lines[i].text)
		input.WriteByte('\n')
	}
	path := filepath.Join(t.TempDir(), "bad-jobs.jsonl")
	if err := os.WriteFile(path, input.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	env := testEnv(t)
	sb := startWorker(t, env, sandbox.Faults{})

	r := enqueue(t, env, "", "batch", "--wait", "--timeout", "60s", "--parallel", "4", path)

	if r.code != exitFailed {
		t.Errorf("exit %d, want 1", r.code)
	}
	var records []zhimaq.Submission
	var nonBlank []corpusLine
	for _, l := range lines {
		if l.outcome != outcomeBlank {
			nonBlank = append(nonBlank, l)
		}
	}
	for i, out := range strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n") {
		var rec zhimaq.Submission
		if err := json.Unmarshal([]byte(out), &rec); err != nil {
			t.Fatalf("output line %d is not a record: %v\n%.500s", i+1, err, out)
		}
		records = append(records, rec)
	}
	if len(records) != len(nonBlank) {
		t.Fatalf("%d records for %d non-blank lines; stderr:\n%s", len(records), len(nonBlank), r.stderr)
	}

	// Every record against its line, in order. A line with a known bug is
	// skipped, not failed, while the bug shows; accepted lines are noted so
	// the gateway's calls for them are allowed below.
	sent := map[string]bool{} // method + " " + transaction_id, of the lines the gateway may see
	for i, l := range nonBlank {
		rec := records[i]
		if l.good() {
			sent[lineMethod(l.text)+" "+l.detail] = true
		}
		t.Run(fmt.Sprintf("line %d: %s", l.n, l.what), func(t *testing.T) {
			problems := checkCorpusRecord(l, rec)
			if len(problems) == 0 {
				if l.bug != "" {
					t.Logf("line %d is marked %q but came out right: remove the mark", l.n, l.bug)
				}
				return
			}
			if l.bug != "" {
				if rec.State != zhimaq.Rejected {
					sent[rec.Method+" "+rec.TransactionID] = true
				}
				t.Skipf("%s: %s", l.bug, strings.Join(problems, "; "))
			}
			for _, p := range problems {
				t.Error(p)
			}
		})
	}

	// The gateway saw the good lines once each, and nothing else.
	st := sb.Stats()
	var want int64
	for key := range sent {
		method, tid, _ := strings.Cut(key, " ")
		calls := sb.Calls(method, tid)
		if calls != 1 {
			t.Errorf("the gateway saw %d calls for %s, want 1", calls, key)
		}
		want += calls
	}
	if st.Calls != want || st.Billed != int64(len(sent)) {
		t.Errorf("the gateway saw %d calls (%d billed) for %d jobs; only the good lines may reach it: %+v", st.Calls, st.Billed, len(sent), st)
	}
	for _, l := range nonBlank {
		if tid := lineTransactionID(l.text); !l.good() && l.bug == "" && tid != "" && !sent[lineMethod(l.text)+" "+tid] {
			if calls := sb.Calls(lineMethod(l.text), tid); calls != 0 {
				t.Errorf("line %d (%s) reached the gateway %d times", l.n, l.what, calls)
			}
		}
	}

	// stderr is the summary alone; nothing quotes personal data.
	if !strings.HasPrefix(anonBatch(r.stderr), fmt.Sprintf("enqueue: batch b_ID: %d lines: ", len(nonBlank))) || !strings.HasSuffix(r.stderr, ", 0 failed\n") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	secrets := personalData(lines)
	t.Logf("%d pieces of personal data in the corpus", len(secrets))
	if len(secrets) < 20 {
		t.Fatalf("found only %d pieces of personal data in the corpus: %q", len(secrets), secrets)
	}
	for _, s := range secrets {
		if strings.Contains(r.stdout, s) || strings.Contains(r.stderr, s) {
			t.Errorf("output quotes personal data %q", s)
		}
	}
	if len(r.stdout) > 256<<10 {
		t.Errorf("%d bytes of output for %d lines: input is echoed", len(r.stdout), len(nonBlank))
	}
}

// checkCorpusRecord lists what is wrong with rec as the record of l.
func checkCorpusRecord(l corpusLine, rec zhimaq.Submission) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if l.good() {
		if rec.State != zhimaq.Succeeded || rec.TransactionID != l.detail || rec.Duplicate != (l.outcome == outcomeDuplicate) {
			bad("state %s, transaction_id %q, duplicate %v; want succeeded, %q, %v (error %+v)",
				rec.State, rec.TransactionID, rec.Duplicate, l.detail, l.outcome == outcomeDuplicate, rec.Error)
		}
		if rec.Error != nil || len(rec.Response) == 0 || rec.Attempts != 1 || rec.Method != lineMethod(l.text) {
			bad("error %+v, response %s, attempts %d, method %q", rec.Error, rec.Response, rec.Attempts, rec.Method)
		}
		return problems
	}
	if rec.State != zhimaq.Rejected {
		return append(problems, fmt.Sprintf("state %s, want rejected with %s %q", rec.State, l.outcome, l.detail))
	}
	switch e := rec.Error; {
	case e == nil:
		bad("rejected without an error")
	case e.Source != string(zhima.SourceLocal) || e.Code != zhima.CodeBusinessFailed || e.SubCode != l.outcome || !strings.Contains(e.SubMsg, l.detail):
		bad("error %+v; want source local, code 40004, sub_code %s, sub_msg with %q", *e, l.outcome, l.detail)
	}
	if rec.Attempts != 0 || rec.EnqueuedAt != nil || rec.Response != nil || rec.FirstCallAt != nil {
		bad("a rejected record with attempts %d, enqueued_at %v, response %s, first_call_at %v", rec.Attempts, rec.EnqueuedAt, rec.Response, rec.FirstCallAt)
	}
	if rec.TransactionID != "" && (rec.TransactionID != lineTransactionID(l.text) || !zhima.IsTransactionID(rec.TransactionID)) {
		bad("transaction_id %q is not the line's well-formed one", rec.TransactionID)
	}
	return problems
}

// lineMethod reads a line's method, "" when it cannot.
func lineMethod(line []byte) string {
	var probe struct {
		Method string `json:"method"`
	}
	_ = json.Unmarshal(line, &probe)
	return probe.Method
}

// lineTransactionID reads a line's biz_content.transaction_id, "" when it cannot.
func lineTransactionID(line []byte) string {
	var probe struct {
		BizContent struct {
			TransactionID string `json:"transaction_id"`
		} `json:"biz_content"`
	}
	_ = json.Unmarshal(line, &probe)
	return probe.BizContent.TransactionID
}

// personalField finds the values of personal fields in job lines, quoted or
// not, at the top of biz_content or inside identity_param's escaped JSON.
var personalField = regexp.MustCompile(`\\?"(cert_no|name|cert_name|relation_name|relation_phone)\\?"\s*:\s*(?:\\?"([^"\\]+)|(\d+))`)

// personalData lists the ID numbers, names and phone numbers in lines;
// values of one character are left out, they would match anywhere.
func personalData(lines []corpusLine) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lines {
		for _, m := range personalField.FindAllSubmatch(l.text, -1) {
			v := string(m[2]) + string(m[3])
			if utf8.RuneCountInString(v) < 2 || seen[v] {
				continue
			}
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
