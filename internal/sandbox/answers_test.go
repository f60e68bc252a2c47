package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

func TestDeterminism(t *testing.T) {
	t.Run("two sandboxes answer the same bytes", func(t *testing.T) {
		a, b := newHarness(t, nil), newHarness(t, nil)
		for _, c := range []call{
			{method: zhima.MethodScoreBriefGet, biz: scoreBiz("D_1", 650)},
			{method: zhima.MethodRelationQuery, biz: relationBiz("D_1", "schoolmate")},
			{method: zhima.MethodCertificationInitialize, biz: certBiz("D_1")},
		} {
			x, y := a.do(t, c), b.do(t, c)
			if !bytes.Equal(x.body, y.body) {
				t.Errorf("%s: answers differ:\n%s\n%s", c.method, x.body, y.body)
			}
		}
	})

	t.Run("success nodes vary in note and sign order", func(t *testing.T) {
		h := newHarness(t, nil)
		var notes, signFirst, admit = 0, 0, map[string]int{}
		const n = 40
		for i := range n {
			a := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz(fmt.Sprintf("V_%d", i), 350+i*15)})
			a.wantCode(t, scoreNode, zhima.CodeSuccess, "")
			a.mustVerify(t, h.srv, zhima.RSA2)
			if bytes.Contains(a.node, []byte(`"sandbox_note":"签名 a\/b"`)) {
				notes++
			}
			if a.signFst {
				signFirst++
			}
			admit[a.fields["is_admittance"].(string)]++
		}
		if notes == 0 || notes == n || signFirst == 0 || signFirst == n {
			t.Errorf("of %d answers %d carry the note and %d put sign first; want some of each", n, notes, signFirst)
		}
		if len(admit) < 2 {
			t.Errorf("is_admittance is always the same: %v", admit)
		}
	})
}

func TestSuccessNode(t *testing.T) {
	score := func(certNo string, admittance int) *zhima.ScoreBriefGetRequest {
		return &zhima.ScoreBriefGetRequest{TransactionID: "U_1", CertType: "IDENTITY_CARD", CertNo: certNo, Name: applicantName, AdmittanceScore: admittance}
	}
	t.Run("admittance 350 is Y unless N/A", func(t *testing.T) {
		for i := range 50 {
			id := residentID(fmt.Sprintf("110105194912%05d", i))
			if got := admittance(score(id, 350)); got == "N" {
				t.Fatalf("score below 350 for person %d", i)
			}
		}
	})
	t.Run("N/A appears for a small fraction", func(t *testing.T) {
		na := 0
		for i := range 400 {
			if admittance(score(residentID(fmt.Sprintf("110105194912%05d", i)), 650)) == "N/A" {
				na++
			}
		}
		if na == 0 || na > 60 {
			t.Errorf("%d of 400 are N/A, want a small fraction", na)
		}
	})
	t.Run("relation score is 0 without a relation", func(t *testing.T) {
		r := &zhima.RelationQueryRequest{TransactionID: "U_2", CertNo: applicantID, Name: applicantName, RelationPhone: contactPhone, RelationName: contactName}
		if _, _, s := relation(r); s != 0 {
			t.Errorf("relation_score = %d, want 0", s)
		}
	})
	t.Run("biz_no is ZM and 30 digits", func(t *testing.T) {
		for _, m := range zhima.Methods {
			if bn := bizNo(m, "U_3"); !bizNoPattern.MatchString(bn) {
				t.Errorf("%s: biz_no %q", m, bn)
			}
		}
		if bizNo(zhima.MethodScoreBriefGet, "U_3") == bizNo(zhima.MethodScoreBriefGet, "U_4") {
			t.Error("biz_no ignores the transaction_id")
		}
	})
	t.Run("nodes are valid JSON", func(t *testing.T) {
		for i := range 8 {
			node := successNode(&zhima.RelationQueryRequest{TransactionID: fmt.Sprintf("U_%d", i), Relation: "family"})
			if !json.Valid(node) {
				t.Fatalf("invalid JSON: %s", node)
			}
		}
	})
}

// FuzzGateway feeds arbitrary form bodies to the gateway: it must never
// panic and must answer either a signed JSON node or a plain HTTP error.
func FuzzGateway(f *testing.F) {
	f.Add("method=zhima.credit.score.brief.get&charset=GBK&biz_content=%7B%7D")
	f.Add("app_id=1&method=x&sign=AAAA&sign_type=RSA2&timestamp=2025-01-01+00:00:00&version=1.0")
	f.Add("biz_content=%D5%C5%C8%FD&charset=gbk")
	f.Add("%zz")
	app, alipay := testKeys()
	srv, err := New(Config{AppPublicKey: &app.PublicKey, AlipayKey: alipay, Seed: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/gateway.do", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		resp := rec.Result()
		if resp.StatusCode != http.StatusOK {
			return
		}
		text := rec.Body.Bytes()
		if strings.Contains(resp.Header.Get("Content-Type"), "GBK") {
			return
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(text, &top); err != nil || len(top) != 2 || top["sign"] == nil {
			t.Fatalf("answer is not a signed node: %s", text)
		}
		if q, err := url.ParseQuery(body); err == nil && q.Get("sign") == "" && len(top["error_response"]) == 0 {
			t.Fatalf("an unsigned request was not refused: %s", text)
		}
	})
}
