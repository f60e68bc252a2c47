package zhima

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// scriptedGateway is an httptest gateway that checks each request's signature
// with the app public key, then answers with the node that answer returns
// for it, signed with the test Alipay key. status != 200 sends body as is.
type scriptedGateway struct {
	tb     testing.TB
	answer func(method string) (status int, body string)
}

func (g *scriptedGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	params := map[string]string{}
	for k := range r.PostForm {
		params[k] = r.PostForm.Get(k)
	}
	appKey, err := ParsePublicKey(readTestFile(g.tb, "app_public.pem"))
	if err != nil {
		panic(err)
	}
	if err := Verify(appKey, SignType(params["sign_type"]), []byte(SigningString(params)), params["sign"]); err != nil {
		g.tb.Errorf("request signature: %v", err)
		http.Error(w, "bad signature", 400)
		return
	}
	status, body := g.answer(params["method"])
	w.Header().Set("trace_id", "0b1f2c3d")
	if status != http.StatusOK {
		w.WriteHeader(status)
		fmt.Fprint(w, body)
		return
	}
	fmt.Fprint(w, signedBody(g.tb, params["method"], body))
}

// signedBody wraps node as the gateway does, signed with the test Alipay key.
func signedBody(tb testing.TB, method, node string) string {
	tb.Helper()
	key := NodeKey(method)
	if strings.Contains(node, `"error_response"`) {
		key, node = ErrorNode, strings.TrimPrefix(node, `"error_response":`)
	}
	sig, err := Sign(testAlipayKey(tb), RSA2, []byte(node))
	if err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf(`{"%s":%s,"sign":"%s"}`, key, node, sig)
}

func newTestClient(tb testing.TB, gatewayURL string, opts ...Option) *Client {
	tb.Helper()
	c, err := NewClient(Config{
		GatewayURL:      gatewayURL,
		AppID:           "2021000000000001",
		AppPrivateKey:   readTestFile(tb, "app_private_pkcs8.pem"),
		AlipayPublicKey: publicPEM(tb, &testAlipayKey(tb).PublicKey),
		Timeout:         2 * time.Second,
	}, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestClientClassifiesEveryOutcome(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		node      string
		source    Source
		retryable bool
	}{
		{"service unavailable 20000 is retried", 200, `{"code":"20000","msg":"Service Currently Unavailable","sub_code":"isp.unknow-error","sub_msg":"系统繁忙"}`, SourceGateway, true},
		{"SYSTEM_ERROR is retried", 200, `{"code":"40004","msg":"Business Failed","sub_code":"SYSTEM_ERROR","sub_msg":"系统繁忙"}`, SourceGateway, true},
		{"TRANSACTION_ERROR is retried", 200, `{"code":"40004","msg":"Business Failed","sub_code":"TRANSACTION_ERROR","sub_msg":"交易订单异常"}`, SourceGateway, true},
		{"HTTP 502 is retried", 502, "Bad Gateway", SourceTransport, true},
		{"HTTP 503 is retried", 503, "", SourceTransport, true},
		{"HTTP 429 is retried", 429, "slow down", SourceTransport, true},
		{"HTTP 404 is final", 404, "not found", SourceTransport, false},
		{"40001 missing parameter is final", 200, `"error_response":{"code":"40001","msg":"Missing Required Arguments","sub_code":"isv.missing-method"}`, SourceGateway, false},
		{"40002 invalid signature is final", 200, `"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature"}`, SourceGateway, false},
		{"40006 no permission is final", 200, `{"code":"40006","msg":"Insufficient Permissions","sub_code":"isv.insufficient-isv-permissions"}`, SourceGateway, false},
		{"20001 bad auth token is final", 200, `{"code":"20001","msg":"Insufficient Token Permissions","sub_code":"aop.invalid-auth-token"}`, SourceGateway, false},
		{"INVALID_PARAMETER is final", 200, `{"code":"40004","msg":"Business Failed","sub_code":"INVALID_PARAMETER","sub_msg":"参数有误"}`, SourceGateway, false},
		{"NO_VALID_ARRANGEMENT is final", 200, `{"code":"40004","msg":"Business Failed","sub_code":"NO_VALID_ARRANGEMENT"}`, SourceGateway, false},
		{"TRANSACTION_ID_REPEAT is final", 200, `{"code":"40004","msg":"Business Failed","sub_code":"TRANSACTION_ID_REPEAT"}`, SourceGateway, false},
		{"TRANSACTION_ID_EXPIRED is final", 200, `{"code":"40004","msg":"Business Failed","sub_code":"TRANSACTION_ID_EXPIRED"}`, SourceGateway, false},
		{"unknown code is final", 200, `{"code":"50000","msg":"?"}`, SourceGateway, false},
		{"body without node is final", 200, ``, SourceTransport, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gw := httptest.NewServer(&scriptedGateway{tb: t, answer: func(string) (int, string) { return tc.status, tc.node }})
			defer gw.Close()
			if tc.node == "" && tc.status == 200 {
				gw.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"sign":"x"}`) })
			}
			_, err := newTestClient(t, gw.URL).ScoreBriefGet(context.Background(), validScore())
			var zerr *Error
			if !errors.As(err, &zerr) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if zerr.Source != tc.source || zerr.Retryable() != tc.retryable {
				t.Fatalf("got source %s retryable %v (%v), want %s %v", zerr.Source, zerr.Retryable(), zerr, tc.source, tc.retryable)
			}
			if tc.status != 200 && zerr.HTTPStatus != tc.status {
				t.Errorf("HTTP status %d, want %d", zerr.HTTPStatus, tc.status)
			}
			if zerr.TraceID != "0b1f2c3d" && tc.node != "" {
				t.Errorf("trace id %q", zerr.TraceID)
			}
			assertNoPersonalData(t, err.Error())
		})
	}
}

func TestClientTransportFailuresAreRetryable(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		gw := httptest.NewServer(http.NotFoundHandler())
		url := gw.URL
		gw.Close()
		_, err := newTestClient(t, url).RelationQuery(context.Background(), validRelation())
		assertRetryable(t, err, SourceTransport)
	})
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		defer gw.Close()
		defer close(release)
		c := newTestClient(t, gw.URL)
		c.timeout = 50 * time.Millisecond
		_, err := c.RelationQuery(context.Background(), validRelation())
		assertRetryable(t, err, SourceTransport)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
		}
	})
}

func assertRetryable(tb testing.TB, err error, source Source) {
	tb.Helper()
	var zerr *Error
	if !errors.As(err, &zerr) || zerr.Source != source || !zerr.Retryable() {
		tb.Fatalf("err = %v, want a retryable %s error", err, source)
	}
}

func TestClientNeverTrustsABadSignature(t *testing.T) {
	success := `{"code":"10000","msg":"Success","biz_no":"ZM1","is_admittance":"Y"}`
	good := signedBody(t, MethodScoreBriefGet, success)
	tests := map[string]string{
		"tampered node":             strings.Replace(good, `"Y"`, `"N"`, 1),
		"signature of another node": strings.Replace(good, `"ZM1"`, `"ZM2"`, 1),
		"missing sign":              `{"zhima_credit_score_brief_get_response":` + success + `}`,
		"sign not base64":           `{"zhima_credit_score_brief_get_response":` + success + `,"sign":"%%%"}`,
		"re-serialized slash":       strings.Replace(signedBody(t, MethodScoreBriefGet, `{"code":"10000","msg":"a\/b","biz_no":"ZM1","is_admittance":"Y"}`), `a\/b`, `a/b`, 1),
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) }))
			defer gw.Close()
			resp, err := newTestClient(t, gw.URL).ScoreBriefGet(context.Background(), validScore())
			assertRetryable(t, err, SourceVerification)
			if resp != nil {
				t.Errorf("a response that failed verification was decoded: %+v", resp)
			}
		})
	}
}

func TestClientVerifiesNodeBytesAsReceived(t *testing.T) {
	// Sign first, escaped slash, non-ASCII and odd spacing: the signature is
	// over these exact bytes, which re-serializing would change.
	node := `{ "code":"10000", "msg":"Success","biz_no":"ZM\/2026","is_admittance":"N\/A","note":"签名 \u4e2d"}`
	sig, err := Sign(testAlipayKey(t), RSA2, []byte(node))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"sign":"` + sig + `",  "zhima_credit_score_brief_get_response" : ` + node + `}`
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) }))
	defer gw.Close()
	resp, err := newTestClient(t, gw.URL).ScoreBriefGet(context.Background(), validScore())
	if err != nil {
		t.Fatal(err)
	}
	if resp.IsAdmittance != "N/A" || resp.BizNo != "ZM/2026" || string(resp.Raw) != node {
		t.Fatalf("got %+v raw %s", resp, resp.Raw)
	}
}

func TestClientRefusesInvalidRequestsBeforeSending(t *testing.T) {
	calls := 0
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls++ }))
	defer gw.Close()
	req := validRelation()
	req.CertNo = "110105194912310021"
	_, err := newTestClient(t, gw.URL).RelationQuery(context.Background(), req)
	var zerr *Error
	if !errors.As(err, &zerr) || zerr.Source != SourceLocal || zerr.SubCode != SubInvalidParameter {
		t.Fatalf("err = %v", err)
	}
	if calls != 0 {
		t.Fatalf("gateway called %d times", calls)
	}
}
