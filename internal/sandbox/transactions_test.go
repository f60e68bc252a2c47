package sandbox

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

func TestTransactionID(t *testing.T) {
	const txid = "T_1"
	tests := []struct {
		name    string
		advance time.Duration // clock moves before the second call
		second  call
		want    string // sub_code of the second answer; "" for the stored node
		billed  int64
	}{
		{
			name:   "same parameters get the stored node unbilled",
			second: call{method: zhima.MethodScoreBriefGet, biz: scoreBiz(txid, 600)},
			billed: 1,
		},
		{
			name: "same parameters reordered and spaced get the stored node",
			second: call{method: zhima.MethodScoreBriefGet, biz: `{ "admittance_score": 600, "name": "` + applicantName +
				`", "cert_no": "` + applicantID + `", "cert_type": "IDENTITY_CARD", "product_code": "w1010100000000002733", "transaction_id": "` + txid + `" }`},
			billed: 1,
		},
		{
			name:    "same parameters just inside the window get the stored node",
			advance: DefaultWindow - time.Second,
			second:  call{method: zhima.MethodScoreBriefGet, biz: scoreBiz(txid, 600)},
			billed:  1,
		},
		{
			name:   "other parameters are TRANSACTION_ID_REPEAT",
			second: call{method: zhima.MethodScoreBriefGet, biz: scoreBiz(txid, 700)},
			want:   zhima.SubTransactionIDRepeat,
			billed: 1,
		},
		{
			name:    "after the window is TRANSACTION_ID_EXPIRED",
			advance: DefaultWindow,
			second:  call{method: zhima.MethodScoreBriefGet, biz: scoreBiz(txid, 600)},
			want:    zhima.SubTransactionIDExpired,
			billed:  1,
		},
		{
			name:   "another method is another transaction",
			second: call{method: zhima.MethodRelationQuery, biz: relationBiz(txid, "")},
			billed: 2,
		},
		{
			name:   "another app id is another transaction",
			second: call{method: zhima.MethodScoreBriefGet, biz: scoreBiz(txid, 700), appID: "2021000000000002"},
			billed: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.AppID = "" })
			first := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz(txid, 600)})
			first.wantCode(t, scoreNode, zhima.CodeSuccess, "")
			h.clock.Advance(tt.advance)

			second := h.do(t, tt.second)
			second.mustVerify(t, h.srv, zhima.RSA2)
			switch {
			case tt.want != "":
				second.wantCode(t, scoreNode, zhima.CodeBusinessFailed, tt.want)
			case tt.second.method == zhima.MethodScoreBriefGet && tt.second.appID == "":
				second.wantCode(t, scoreNode, zhima.CodeSuccess, "")
				if !bytes.Equal(first.node, second.node) {
					t.Errorf("replay differs:\nfirst  %s\nsecond %s", first.node, second.node)
				}
			default:
				second.wantCode(t, nodeName(tt.second.method), zhima.CodeSuccess, "")
			}
			st := h.srv.Stats()
			if st.Billed != tt.billed {
				t.Errorf("billed = %d, want %d", st.Billed, tt.billed)
			}
			if got := h.srv.Calls(zhima.MethodScoreBriefGet, txid); got < 1 {
				t.Errorf("Calls = %d, want at least 1", got)
			}
		})
	}
}

func TestTransactionIDCountsCalls(t *testing.T) {
	h := newHarness(t, nil)
	for range 3 {
		h.do(t, call{method: zhima.MethodCertificationInitialize, biz: certBiz("CNT_1")})
	}
	h.do(t, call{method: zhima.MethodCertificationInitialize, biz: certBiz("CNT_1"), tamper: func(p map[string]string) { p["sign"] = "AAAA" }})
	if got := h.srv.Calls(zhima.MethodCertificationInitialize, "CNT_1"); got != 4 {
		t.Errorf("Calls = %d, want 4 (failed calls count too)", got)
	}
	st := h.srv.Stats()
	if st.Calls != 4 || st.Billed != 1 || st.Codes["10000"] != 3 || st.Codes["40002/isv.invalid-signature"] != 1 {
		t.Errorf("stats = %+v, want 4 calls, 1 billed, 3×10000, 1×invalid-signature", st)
	}
}

func TestTransactionIDConcurrentFirstCalls(t *testing.T) {
	h := newHarness(t, nil)
	const n = 16
	nodes := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a := h.do(t, call{method: zhima.MethodRelationQuery, biz: relationBiz("CC_1", "workmate")})
			if a.env.Code != zhima.CodeSuccess {
				t.Errorf("call %d: code %s %s", i, a.env.Code, a.env.SubCode)
			}
			nodes[i] = a.node
		})
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		if !bytes.Equal(nodes[0], nodes[i]) {
			t.Fatalf("concurrent answers differ: %s vs %s", nodes[0], nodes[i])
		}
	}
	if st := h.srv.Stats(); st.Billed != 1 || st.Calls != n {
		t.Errorf("billed %d of %d calls, want 1 of %d", st.Billed, st.Calls, n)
	}
}

func TestFingerprint(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"key order does not matter", `{"a":1,"b":"x"}`, `{"b":"x","a":1}`, true},
		{"space does not matter", `{"a":1}`, " {\n\"a\" : 1 } ", true},
		{"escapes do not matter", `{"a":"\u5f20"}`, `{"a":"张"}`, true},
		{"values matter", `{"a":1}`, `{"a":2}`, false},
		{"number spelling matters", `{"a":1}`, `{"a":1.0}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa, err := fingerprint([]byte(tt.a))
			if err != nil {
				t.Fatal(err)
			}
			fb, err := fingerprint([]byte(tt.b))
			if err != nil {
				t.Fatal(err)
			}
			if (fa == fb) != tt.same {
				t.Errorf("same = %v, want %v", fa == fb, tt.same)
			}
		})
	}
	if _, err := fingerprint([]byte(strings.Repeat("{", 3))); err == nil {
		t.Error("broken JSON has a fingerprint")
	}
}
