package zhimaq_test

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/zhima"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// jobSeeds are job lines, good and bad; go test runs them every time, go
// test -fuzz grows from them. The lines of cmd/enqueue's corpus of bad jobs
// are added to them.
var jobSeeds = []string{
	`{"method":"zhima.credit.score.brief.get","biz_content":{"transaction_id":"T1","product_code":"w1010100000000002733","cert_type":"IDENTITY_CARD","cert_no":"11010519491231002X","name":"张三","admittance_score":650}}`,
	`{"method":"zhima.credit.relation.query","biz_content":{"product_code":"w1010100001000001200","transaction_id":"T2","cert_no":"11010519491231002X","name":"张三","relation_phone":"15843991158","relation_name":"李四","relation":"family"}}`,
	`{"method":"zhima.customer.certification.initialize","biz_content":{"transaction_id":"T3","product_code":"w1010100000000002978","biz_code":"FACE","identity_param":"{\"identity_type\":\"CERT_INFO\",\"cert_type\":\"IDENTITY_CARD\",\"cert_name\":\"张三\",\"cert_no\":\"11010519491231002X\"}"},"app_auth_token":"tok"}`,
	` {"biz_content":{},"method":"m"} `,
	`{"method":"zhima.credit.score.brief.get","biz_content":{"transaction_id":"T1"}} {"method":"x"}`,
	`{"method":"zhima.credit.score.brief.get","biz_content":{"transaction_id":"T1"}}}`,
	`{"method":"zhima.credit.score.brief.get","biz_content":[{"transaction_id":"T1"}]}`,
	`{"method":"zhima.credit.score.brief.get","biz_content":"{\"transaction_id\":\"T1\"}"}`,
	`{"method":110105194912310021,"biz_content":{}}`,
	`{"method":"110105194912310021","biz_content":1}`,
	`{"method":"zhima.credit.score.brief.get","biz_content":{},"110105194912310021":"张三"}`,
	`{"method":"zhima.credit.score.brief.get","biz_content":{"cert_no":"110105194912310021"`,
	`{"method":"zhima.credit.score.brief.get","biz_content":{"name":"张\xff三"}}`,
	`{"method":"\u0031","biz_content":{}}`,
	`{"METHOD":"zhima.credit.score.brief.get","Biz_Content":{}}`,
	`{"method":"zhima.credit.score.brief.get","method":"","biz_content":{}}`,
	`{"method":null,"biz_content":null,"app_auth_token":null}`,
	`[[[[[[[[[[]]]]]]]]]]`, `null`, `"s"`, `1e400`, `{}`, `{`, ``, "\xef\xbb\xbf{}", "\x00",
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
}

// corpusSeeds are the lines of cmd/enqueue/testdata/bad-jobs.jsonl up to
// 64 KiB; longer ones would slow the fuzzer down and test only the size check.
func corpusSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	data, err := os.ReadFile("cmd/enqueue/testdata/bad-jobs.jsonl")
	if err != nil {
		tb.Fatal(err)
	}
	var seeds [][]byte
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		if len(line) <= 64<<10 {
			seeds = append(seeds, line)
		}
	}
	return seeds
}

func FuzzParseJob(f *testing.F) {
	for _, s := range jobSeeds {
		f.Add([]byte(s))
	}
	for _, s := range corpusSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		job, rec := zhimaq.ParseJob(line)
		if rec == nil {
			if job.Method == "" || !utf8.ValidString(job.Method) {
				t.Fatalf("accepted %q with method %q", line, job.Method)
			}
			var biz map[string]json.RawMessage
			if err := json.Unmarshal(job.BizContent, &biz); err != nil || biz == nil {
				t.Fatalf("accepted %q with biz_content %q, not a JSON object", line, job.BizContent)
			}
			if !json.Valid(line) {
				t.Fatalf("accepted %q, which is not one JSON value", line)
			}
			return
		}
		if rec.State != zhimaq.Rejected || rec.Error == nil || rec.Attempts != 0 || rec.EnqueuedAt != nil || rec.Response != nil {
			t.Fatalf("rejection of %q is %+v", line, rec)
		}
		if e := rec.Error; e.Source != string(zhima.SourceLocal) || e.Code != zhima.CodeBusinessFailed || e.SubCode != zhima.SubInvalidParameter || e.SubMsg == "" {
			t.Fatalf("rejection of %q has error %+v", line, *e)
		}
		if rec.TransactionID != "" && !zhima.IsTransactionID(rec.TransactionID) {
			t.Fatalf("rejection of %q has transaction_id %q", line, rec.TransactionID)
		}
		out, err := rec.MarshalJSON()
		if err != nil {
			t.Fatalf("rejection of %q does not encode: %v", line, err)
		}
		// No personal data: no long digit run of the input outside the
		// transaction_id, and sub_msg is short ASCII of zhimaq's own.
		if rec.Method != "" && !isMethod(rec.Method) {
			t.Fatalf("rejection of %q echoes method %q", line, rec.Method)
		}
		if runs := zhimatest.CopiedDigitRuns(bytes.Replace(out, []byte(rec.TransactionID), nil, 1), line); len(runs) > 0 {
			t.Fatalf("rejection of %q quotes %q:\n%s", line, runs, out)
		}
		if len(rec.Error.SubMsg) > 256 || !zhimatest.PrintableASCII(rec.Error.SubMsg) {
			t.Fatalf("rejection of %q has sub_msg %q", line, rec.Error.SubMsg)
		}
	})
}

func isMethod(s string) bool {
	for _, m := range zhima.Methods {
		if s == m {
			return true
		}
	}
	return false
}

func TestParseJobNeverQuotesAnUnknownField(t *testing.T) {
	biz := `{"transaction_id":"T1","product_code":"w1010100000000002733","cert_type":"IDENTITY_CARD","cert_no":"11010519491231002X","name":"张三","admittance_score":650}`
	tests := []struct {
		name, line, subMsg, input string
	}{
		{"a name as a field lists the fields", `{"method":"zhima.credit.score.brief.get","biz_content":` + biz + `,"zhangsan":"张三"}`,
			"job: unknown field; want one of method, biz_content, app_auth_token, app_id, lane", "zhangsan"},
		{"a misspelt field lists the fields", `{"method":"zhima.credit.score.brief.get","bizcontent":` + biz + `}`,
			"job: unknown field; want one of method, biz_content, app_auth_token, app_id, lane", "bizcontent"},
		{"a field in capitals names the known one", `{"Method":"zhima.credit.score.brief.get","biz_content":` + biz + `}`,
			"job: unknown field; did you mean method", "Method"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, rec := zhimaq.ParseJob([]byte(tc.line))
			if rec == nil || rec.Error == nil || rec.Error.SubMsg != tc.subMsg {
				t.Fatalf("rejection %+v, want sub_msg %q", rec, tc.subMsg)
			}
			if out, _ := rec.MarshalJSON(); strings.Contains(string(out), tc.input) {
				t.Errorf("the record quotes %q: %s", tc.input, out)
			}
		})
	}
}
