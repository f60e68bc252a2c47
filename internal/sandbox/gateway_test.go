package sandbox

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

var bizNoPattern = regexp.MustCompile(`^ZM[0-9]{30}$`)

func TestGatewaySuccess(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		name     string
		method   string
		biz      string
		signType zhima.SignType
		node     string
		check    func(t *testing.T, a *answer)
	}{
		{
			name: "score brief get answers is_admittance", method: zhima.MethodScoreBriefGet,
			biz: scoreBiz("S_1", 600), node: scoreNode,
			check: func(t *testing.T, a *answer) {
				if v := a.fields["is_admittance"]; v != "Y" && v != "N" && v != "N/A" {
					t.Errorf("is_admittance = %v, want Y, N or N/A", v)
				}
			},
		},
		{
			name: "relation query answers rank and score", method: zhima.MethodRelationQuery,
			biz: relationBiz("R_1", "family"), node: relationNode,
			check: func(t *testing.T, a *answer) {
				rank, _ := a.fields["relation_rank"].(string)
				if !strings.HasPrefix(rank, "V_CT_RL_") {
					t.Errorf("relation_rank = %q", rank)
				}
				score, ok := a.fields["relation_score"].(float64)
				if !ok || score < 0 || score > 100 {
					t.Errorf("relation_score = %v, want 0..100", a.fields["relation_score"])
				}
				_, hasInfo := a.fields["relation_info"]
				if hasInfo == (rank == "V_CT_RL_NO") {
					t.Errorf("relation_info present=%v with rank %s", hasInfo, rank)
				}
			},
		},
		{
			name: "certification initialize answers biz_no", method: zhima.MethodCertificationInitialize,
			biz: certBiz("C_1"), node: certNode,
		},
		{
			name: "RSA sign type is answered in RSA", method: zhima.MethodScoreBriefGet,
			biz: scoreBiz("S_RSA", 600), signType: zhima.RSA, node: scoreNode,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := h.do(t, call{method: tt.method, biz: tt.biz, signType: tt.signType})
			a.wantCode(t, tt.node, zhima.CodeSuccess, "")
			a.mustVerify(t, h.srv, tt.signType)
			if a.env.Msg != "Success" {
				t.Errorf("msg = %q, want Success", a.env.Msg)
			}
			if bn, _ := a.fields["biz_no"].(string); !bizNoPattern.MatchString(bn) {
				t.Errorf("biz_no = %q, want ZM and 30 digits", bn)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json;charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			if id := a.header.Get("trace_id"); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
				t.Errorf("trace_id = %q, want 32 hex digits", id)
			}
			noPersonalData(t, a.body)
			if tt.check != nil {
				tt.check(t, a)
			}
		})
	}
	if got := h.srv.Stats().Billed; got != int64(len(tests)) {
		t.Errorf("billed = %d, want %d", got, len(tests))
	}
}

func TestGatewayProtocolErrors(t *testing.T) {
	h := newHarness(t, nil)
	biz := scoreBiz("P_1", 600)
	set := func(k, v string) func(map[string]string) {
		return func(p map[string]string) { p[k] = v }
	}
	drop := func(k string) func(map[string]string) {
		return func(p map[string]string) { delete(p, k) }
	}
	tests := []struct {
		name          string
		c             call
		code, subCode string
	}{
		{"tampered signature is invalid-signature",
			call{tamper: func(p map[string]string) { p["biz_content"] = strings.Replace(p["biz_content"], "600", "601", 1) }},
			zhima.CodeInvalidParameter, "isv.invalid-signature"},
		{"signature by another key is invalid-signature",
			call{tamper: set("sign", "c2lnbmF0dXJl")}, zhima.CodeInvalidParameter, "isv.invalid-signature"},
		{"stale timestamp is invalid-timestamp",
			call{edit: func(p map[string]string) { p["timestamp"] = zhima.Timestamp(h.clock.Now().Add(-16 * time.Minute)) }},
			zhima.CodeInvalidParameter, "isv.invalid-timestamp"},
		{"future timestamp is invalid-timestamp",
			call{edit: func(p map[string]string) { p["timestamp"] = zhima.Timestamp(h.clock.Now().Add(16 * time.Minute)) }},
			zhima.CodeInvalidParameter, "isv.invalid-timestamp"},
		{"UTC timestamp is invalid-timestamp",
			call{edit: func(p map[string]string) { p["timestamp"] = h.clock.Now().UTC().Format(zhima.TimestampLayout) }},
			zhima.CodeInvalidParameter, "isv.invalid-timestamp"},
		{"malformed timestamp is invalid-timestamp",
			call{edit: set("timestamp", "2025-03-14T17:26:53+08:00")}, zhima.CodeInvalidParameter, "isv.invalid-timestamp"},
		{"missing method is missing-method",
			call{edit: drop("method")}, zhima.CodeMissingParameter, "isv.missing-method"},
		{"missing sign is missing-signature",
			call{tamper: drop("sign")}, zhima.CodeMissingParameter, "isv.missing-signature"},
		{"missing app_id is missing-app-id",
			call{edit: drop("app_id")}, zhima.CodeMissingParameter, "isv.missing-app-id"},
		{"missing timestamp is missing-timestamp",
			call{edit: drop("timestamp")}, zhima.CodeMissingParameter, "isv.missing-timestamp"},
		{"missing version is missing-version",
			call{edit: drop("version")}, zhima.CodeMissingParameter, "isv.missing-version"},
		{"unknown app id is invalid-app-id",
			call{appID: "2021999999999999"}, zhima.CodeInvalidParameter, "isv.invalid-app-id"},
		{"unknown method is invalid-method",
			call{method: "alipay.trade.pay"}, zhima.CodeInvalidParameter, "isv.invalid-method"},
		{"version 2.0 is invalid",
			call{edit: set("version", "2.0")}, zhima.CodeInvalidParameter, "isv.invalid-parameter"},
		{"format XML is invalid-format",
			call{edit: set("format", "XML")}, zhima.CodeInvalidParameter, "isv.invalid-format"},
		{"charset latin1 is invalid-charset",
			call{charset: "ISO-8859-1"}, zhima.CodeInvalidParameter, "isv.invalid-charset"},
		{"sign_type MD5 is invalid-signature-type",
			call{signType: "MD5"}, zhima.CodeInvalidParameter, "isv.invalid-signature-type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.c
			if c.method == "" {
				c.method = zhima.MethodScoreBriefGet
			}
			c.biz = biz
			a := h.do(t, c)
			a.wantCode(t, errorResponse, tt.code, tt.subCode)
			a.mustVerify(t, h.srv, c.signType)
			if a.env.SubMsg == "" {
				t.Error("sub_msg is empty")
			}
			noPersonalData(t, a.body)
		})
	}
	if st := h.srv.Stats(); st.Billed != 0 || st.Transactions != 0 {
		t.Errorf("protocol errors billed %d and stored %d, want 0 and 0", st.Billed, st.Transactions)
	}
}

func TestGatewayInvalidBizContent(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		name      string
		method    string
		biz       string
		wantField string
	}{
		{"bad ID check digit names cert_no", zhima.MethodScoreBriefGet,
			strings.Replace(scoreBiz("B_1", 600), applicantID, applicantID[:17]+"0", 1), "cert_no: "},
		{"admittance score below 350 names admittance_score", zhima.MethodScoreBriefGet,
			scoreBiz("B_2", 100), "admittance_score: "},
		{"admittance score as a string names admittance_score", zhima.MethodScoreBriefGet,
			strings.Replace(scoreBiz("B_3", 600), "600", `"600"`, 1), "admittance_score: "},
		{"missing transaction_id names transaction_id", zhima.MethodScoreBriefGet,
			scoreBiz("", 600), "transaction_id: "},
		{"bad phone names relation_phone", zhima.MethodRelationQuery,
			strings.Replace(relationBiz("B_4", "family"), contactPhone, "1234", 1), "relation_phone: "},
		{"unknown relation names relation", zhima.MethodRelationQuery,
			relationBiz("B_5", "enemy"), "relation: "},
		{"transaction_id over 32 for certification names transaction_id", zhima.MethodCertificationInitialize,
			certBiz(strings.Repeat("A", 33)), "transaction_id: "},
		{"not JSON names biz_content", zhima.MethodScoreBriefGet, `{"transaction_id":`, "biz_content: "},
		{"empty biz_content names biz_content", zhima.MethodScoreBriefGet, "", "biz_content: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := h.do(t, call{method: tt.method, biz: tt.biz})
			a.wantCode(t, nodeName(tt.method), zhima.CodeBusinessFailed, zhima.SubInvalidParameter)
			a.mustVerify(t, h.srv, zhima.RSA2)
			if a.env.Msg != "Business Failed" {
				t.Errorf("msg = %q", a.env.Msg)
			}
			if !strings.HasPrefix(a.env.SubMsg, tt.wantField) {
				t.Errorf("sub_msg = %q, want it to start with %q", a.env.SubMsg, tt.wantField)
			}
			noPersonalData(t, a.body)
		})
	}
	if st := h.srv.Stats(); st.Billed != 0 {
		t.Errorf("billed = %d, want 0", st.Billed)
	}
}

func TestGatewayParamsInQueryString(t *testing.T) {
	h := newHarness(t, nil)
	p := h.params(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("Q_1", 600)})
	q := url.Values{}
	for k, v := range p {
		if k != "biz_content" {
			q.Set(k, v)
		}
	}
	a := h.post(t, map[string]string{"biz_content": p["biz_content"]}, q.Encode())
	a.wantCode(t, scoreNode, zhima.CodeSuccess, "")
	a.mustVerify(t, h.srv, zhima.RSA2)
}

func TestGatewayGBK(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		name    string
		charset string
		biz     string
		node    string
		code    string
	}{
		{"GBK request succeeds", "GBK", relationBiz("G_1", "friend"), relationNode, zhima.CodeSuccess},
		{"GBK node with non-ASCII verifies", "GBK", scoreBiz(txidWith(t, zhima.MethodScoreBriefGet, true), 600), scoreNode, zhima.CodeSuccess},
		{"lower-case gbk succeeds", "gbk", certBiz("G_2"), certNode, zhima.CodeSuccess},
		{"GBK business error is GBK too", "GBK", scoreBiz("G_3", 100), scoreNode, zhima.CodeBusinessFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := h.do(t, call{method: methodOf(tt.node), biz: tt.biz, charset: tt.charset})
			if ct := a.header.Get("Content-Type"); ct != "application/json;charset=GBK" {
				t.Fatalf("Content-Type = %q, want GBK", ct)
			}
			if a.name != tt.node || a.env.Code != tt.code {
				t.Fatalf("got %s code %s, want %s code %s: %s", a.name, a.env.Code, tt.node, tt.code, a.utf8)
			}
			a.mustVerify(t, h.srv, zhima.RSA2)
			noPersonalData(t, a.utf8)
		})
	}
}

func methodOf(node string) string {
	for _, m := range zhima.Methods {
		if nodeName(m) == node {
			return m
		}
	}
	return ""
}

func TestGatewayNonGatewayRequests(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		name       string
		do         func() (*http.Response, error)
		wantStatus int
		wantNode   string
	}{
		{"form with a bad escape is invalid-parameter", func() (*http.Response, error) {
			return h.ts.Client().Post(h.ts.URL+"/gateway.do", "application/x-www-form-urlencoded", strings.NewReader("method=%zz"))
		}, http.StatusOK, "isv.invalid-parameter"},
		{"oversized body is 413", func() (*http.Response, error) {
			req := httptest.NewRequest(http.MethodPost, "/gateway.do",
				strings.NewReader("biz_content="+strings.Repeat("a", MaxRequestBytes+1)))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			rec := httptest.NewRecorder()
			h.srv.ServeHTTP(rec, req)
			return rec.Result(), nil
		}, http.StatusRequestEntityTooLarge, ""},
		{"DELETE is 405", func() (*http.Response, error) {
			req, _ := http.NewRequest(http.MethodDelete, h.ts.URL+"/gateway.do", nil)
			return h.ts.Client().Do(req)
		}, http.StatusMethodNotAllowed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tt.do()
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantNode != "" {
				a := parseAnswer(t, resp, readAll(t, resp))
				a.wantCode(t, errorResponse, zhima.CodeInvalidParameter, tt.wantNode)
				a.mustVerify(t, h.srv, zhima.RSA2)
			}
		})
	}
}
