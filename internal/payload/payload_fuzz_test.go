package payload_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/zhima"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// bizSeeds are biz_contents for each method, good and bad; go test runs
// them every time, go test -fuzz grows from them. The jobs of cmd/enqueue's
// corpus of bad jobs are added to them.
var bizSeeds = []struct {
	method string
	biz    string
}{
	{zhima.MethodScoreBriefGet, `{"transaction_id":"T1","product_code":"w1010100000000002733","cert_type":"IDENTITY_CARD","cert_no":"11010519491231002X","name":"张三","admittance_score":650}`},
	{zhima.MethodScoreBriefGet, `{"transaction_id":"T1","product_code":"w1010100000000002733","cert_type":"ALIPAY_USER_ID","cert_no":"2088102177846591","admittance_score":350}`},
	{zhima.MethodScoreBriefGet, `{"transaction_id":"T1","product_code":"p","cert_type":"PASSPORT","cert_no":"E12345678","name":"Zhang San","admittance_score":950}`},
	{zhima.MethodRelationQuery, `{"product_code":"w1010100001000001200","transaction_id":"T2","cert_no":"11010519491231002X","name":"张三","relation_phone":"15843991158","relation_name":"李四","relation":"family","linked_merchant_id":"m"}`},
	{zhima.MethodCertificationInitialize, `{"transaction_id":"T3","product_code":"w1010100000000002978","biz_code":"FACE","identity_param":"{\"identity_type\":\"CERT_INFO\",\"cert_type\":\"IDENTITY_CARD\",\"cert_name\":\"张三\",\"cert_no\":\"11010519491231002X\"}","merchant_config":"{}","ext_biz_param":"{\"a\":1}","linked_merchant_id":"m","face_contrast_picture":"aGVsbG8="}`},
	{zhima.MethodCertificationInitialize, `{"transaction_id":"T3","product_code":"p","biz_code":"SMART_FACE","identity_param":"{\"identity_type\":\"BY_BIZ_NO\"}"}`},
	{zhima.MethodScoreBriefGet, `{"transaction_id":"T1","product_code":"w1010100000000002733","cert_type":"IDENTITY_CARD","cert_no":"11010519491231002X","name":"张三","admittance_score":650}}`},
	{zhima.MethodScoreBriefGet, `{"TRANSACTION_ID":"T1","Product_Code":"w1010100000000002733","cert_type":"IDENTITY_CARD","cert_no":"11010519491231002X","name":"张三","admittance_score":650}`},
	{zhima.MethodScoreBriefGet, `{"admittance_score":110105194912310021.5}`},
	{zhima.MethodScoreBriefGet, `{"admittance_score":1101051949123100210}`},
	{zhima.MethodRelationQuery, `{"110105194912310021":"张三"}`},
	{zhima.MethodScoreBriefGet, `{"transaction_id":"T1","zhangsan":"张三","CERT_NO":"11010519491231002X"}`},
	{zhima.MethodRelationQuery, `{"cert_no":110105194912310021}`},
	{zhima.MethodCertificationInitialize, `{"identity_param":"{\"identity_type\":\"CERT_INFO\",\"cert_no\":110105194912310021}"}`},
	{zhima.MethodScoreBriefGet, `{"name":"\u0000","cert_no":"\ud800"}`},
	{zhima.MethodScoreBriefGet, `{} {}`},
	{zhima.MethodScoreBriefGet, `[]`}, {zhima.MethodScoreBriefGet, `null`}, {zhima.MethodScoreBriefGet, ``},
	{zhima.MethodScoreBriefGet, `{"transaction_id":"T1"`}, {zhima.MethodScoreBriefGet, "\xff"},
	{"zhima.credit.score.get", `{}`}, {"", `{}`},
}

// corpusJobs are the method and biz_content of the jobs of
// cmd/enqueue/testdata/bad-jobs.jsonl up to 64 KiB that have both.
func corpusJobs(tb testing.TB) [][2]string {
	tb.Helper()
	data, err := os.ReadFile("../../cmd/enqueue/testdata/bad-jobs.jsonl")
	if err != nil {
		tb.Fatal(err)
	}
	var jobs [][2]string
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		var job struct {
			Method     string          `json:"method"`
			BizContent json.RawMessage `json:"biz_content"`
		}
		if len(line) <= 64<<10 && json.Unmarshal(line, &job) == nil && len(job.BizContent) > 0 {
			jobs = append(jobs, [2]string{job.Method, string(job.BizContent)})
		}
	}
	return jobs
}

// methodIndex numbers a method for the fuzzer: 0–2 the known ones, 3 any other.
func methodIndex(method string) uint8 {
	for i, m := range zhima.Methods {
		if m == method {
			return uint8(i)
		}
	}
	return uint8(len(zhima.Methods))
}

const unknownMethod = "zhima.credit.unknown"

func FuzzRequest(f *testing.F) {
	for _, s := range bizSeeds {
		f.Add(methodIndex(s.method), []byte(s.biz))
	}
	for _, j := range corpusJobs(f) {
		f.Add(methodIndex(j[0]), []byte(j[1]))
	}
	f.Fuzz(func(t *testing.T, m uint8, biz []byte) {
		method := unknownMethod
		if i := int(m) % (len(zhima.Methods) + 1); i < len(zhima.Methods) {
			method = zhima.Methods[i]
		}
		req, err := payload.Request(method, biz)
		if err == nil {
			if req.Method() != method {
				t.Fatalf("%s request for method %s", req.Method(), method)
			}
			if verr := req.Validate(); verr != nil {
				t.Fatalf("Request accepted %q but Validate says %v", biz, verr)
			}
			if !json.Valid(biz) {
				t.Fatalf("Request accepted %q, which is not one JSON value", biz)
			}
			b, err := json.Marshal(req)
			if err != nil {
				t.Fatalf("request from %q does not encode: %v", biz, err)
			}
			again, err := payload.Request(method, b)
			if err != nil {
				t.Fatalf("request from %q encodes as %s, which Request refuses: %v", biz, b, err)
			}
			if !reflect.DeepEqual(req, again) {
				t.Fatalf("request from %q encodes as %s, which decodes as %+v, not %+v", biz, b, again, req)
			}
			return
		}
		var zerr *zhima.Error
		if !errors.As(err, &zerr) {
			t.Fatalf("error %v (%T) for %q is not a *zhima.Error", err, err, biz)
		}
		if zerr.Source != zhima.SourceLocal || zerr.Code != zhima.CodeBusinessFailed || zerr.SubCode != zhima.SubInvalidParameter ||
			zerr.SubMsg == "" || zerr.Method != method {
			t.Fatalf("error for %q is %+v", biz, *zerr)
		}
		if method == unknownMethod && !strings.HasPrefix(zerr.SubMsg, "method: ") {
			t.Fatalf("error for method %s is %+v", method, *zerr)
		}
		// No personal data: no long digit run of biz_content, and sub_msg
		// is short ASCII of zhimaq's own.
		text := err.Error()
		if runs := zhimatest.CopiedDigitRuns([]byte(text), biz); len(runs) > 0 {
			t.Fatalf("error for %q quotes %q: %s", biz, runs, text)
		}
		if len(zerr.SubMsg) > 256 || !zhimatest.PrintableASCII(zerr.SubMsg) {
			t.Fatalf("error for %q has sub_msg %q", biz, zerr.SubMsg)
		}
	})
}

func FuzzDecodePayload(f *testing.F) {
	for _, s := range bizSeeds {
		p := &payload.Payload{AppID: "2021000000000001", Method: s.method, TransactionID: "T1", AppAuthToken: "tok", BizContent: json.RawMessage(s.biz)}
		if b, err := json.Marshal(p); err == nil {
			f.Add(s.method, b)
		}
		f.Add(s.method, []byte(`{"app_id":"2021000000000001","method":"`+s.method+`","transaction_id":"T1","biz_content":`+s.biz+`}`))
	}
	for _, s := range []string{
		`{"app_id":"a","method":"m","transaction_id":"t","biz_content":{}} trailing`,
		`{"app_id":"a","method":"m","transaction_id":"t","biz_content":null}`,
		`{"app_id":"a","method":"m","transaction_id":"t"}`,
		`{"app_id":1,"method":"m","transaction_id":"110105194912310021","biz_content":{}}`,
		`{"app_id":"a","method":"m","transaction_id":"t","biz_content":{},"app_auth_token":110105194912310021.5}`,
		`{"app_id":"a","method":"m","transaction_id":"t","biz_content":{"cert_no":"110105194912310021"`,
		`[]`, `null`, `""`, ``, "\xff", `{"biz_content":` + strings.Repeat("[", 10001),
	} {
		f.Add("m", []byte(s))
	}
	f.Fuzz(func(t *testing.T, taskType string, b []byte) {
		p, err := payload.DecodePayload(taskType, b)
		if err != nil {
			if !errors.Is(err, payload.ErrBadPayload) {
				t.Fatalf("error %v for %q does not wrap ErrBadPayload", err, b)
			}
			text := strings.ReplaceAll(err.Error(), taskType, "")
			if runs := zhimatest.CopiedDigitRuns([]byte(text), b); len(runs) > 0 {
				t.Fatalf("error for %q quotes %q: %v", b, runs, err)
			}
			return
		}
		if p.AppID == "" || p.TransactionID == "" || p.Method != taskType || len(p.BizContent) == 0 && p.Sealed == "" {
			t.Fatalf("accepted %q as %+v", b, p)
		}
		// What NewTask makes of it decodes to the same payload.
		task, err := payload.NewTask(p)
		if err != nil {
			t.Fatalf("payload from %q does not encode: %v", b, err)
		}
		if task.Type() != taskType {
			t.Fatalf("task type %q, want %q", task.Type(), taskType)
		}
		again, err := payload.DecodePayload(task.Type(), task.Payload())
		if err != nil {
			t.Fatalf("payload from %q re-encodes as %s, which is refused: %v", b, task.Payload(), err)
		}
		if !sameJSON(p.BizContent, again.BizContent) {
			t.Fatalf("biz_content %s re-encodes as %s", p.BizContent, again.BizContent)
		}
		p.BizContent, again.BizContent = nil, nil
		if !reflect.DeepEqual(p, again) {
			t.Fatalf("payload %+v re-encodes as %+v", *p, *again)
		}
	})
}

// sameJSON reports whether a and b hold the same JSON value.
func sameJSON(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}
