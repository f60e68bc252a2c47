package sandbox

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

// adminDo sends an admin request and returns the status and body.
func (h *harness) adminDo(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, h.ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func TestAdminFaults(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		name       string
		method     string
		body       string
		wantStatus int
		wantBody   string
	}{
		{"PUT sets faults", http.MethodPut, `{"system_error_rate":0.25,"latency":"5ms"}`, http.StatusOK, `"system_error_rate":0.25`},
		{"GET shows them", http.MethodGet, "", http.StatusOK, `"latency":"5ms"`},
		{"PUT with bad JSON is 400", http.MethodPut, `{"system_error_rate":`, http.StatusBadRequest, "faults: body is not a Faults JSON object"},
		{"PUT with an unknown field is 400", http.MethodPut, `{"error_rate":0.5}`, http.StatusBadRequest, "error_rate"},
		{"PUT with a rate above 1 is 400", http.MethodPut, `{"hang_rate":2}`, http.StatusBadRequest, "hang_rate must be between 0 and 1"},
		{"PUT with a bad latency is 400", http.MethodPut, `{"latency":"soon"}`, http.StatusBadRequest, "latency"},
		{"refused PUTs left the faults alone", http.MethodGet, "", http.StatusOK, `"system_error_rate":0.25`},
		{"POST is 405", http.MethodPost, `{}`, http.StatusMethodNotAllowed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := h.adminDo(t, tt.method, "/admin/faults", tt.body)
			if status != tt.wantStatus || !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("got %d %s, want %d containing %q", status, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
	if got := h.srv.Faults(); got.SystemErrorRate != 0.25 || got.Latency != Duration(5*time.Millisecond) {
		t.Errorf("Faults() = %+v", got)
	}
}

func TestAdminStatsCallsReset(t *testing.T) {
	h := newHarness(t, nil)
	h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("A_1", 600)})
	h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("A_1", 600)})

	t.Run("stats counts calls, billing and connections", func(t *testing.T) {
		status, body := h.adminDo(t, http.MethodGet, "/admin/stats", "")
		var st Stats
		if err := json.Unmarshal(body, &st); status != http.StatusOK || err != nil {
			t.Fatalf("got %d %s (%v)", status, body, err)
		}
		if st.Calls != 2 || st.Billed != 1 || st.Transactions != 1 || st.Codes["10000"] != 2 || st.Connections < 1 {
			t.Errorf("stats = %+v", st)
		}
	})
	t.Run("calls answers per transaction", func(t *testing.T) {
		status, body := h.adminDo(t, http.MethodGet, "/admin/calls?method="+zhima.MethodScoreBriefGet+"&transaction_id=A_1", "")
		if status != http.StatusOK || strings.TrimSpace(string(body)) != `{"calls":2}` {
			t.Errorf("got %d %s, want {\"calls\":2}", status, body)
		}
	})
	t.Run("calls without parameters is 400", func(t *testing.T) {
		if status, _ := h.adminDo(t, http.MethodGet, "/admin/calls?method=x", ""); status != http.StatusBadRequest {
			t.Errorf("status = %d, want 400", status)
		}
	})
	t.Run("reset forgets transactions and counters", func(t *testing.T) {
		h.srv.SetFaults(Faults{Latency: Duration(time.Millisecond)})
		if status, _ := h.adminDo(t, http.MethodPost, "/admin/reset", ""); status != http.StatusNoContent {
			t.Fatalf("status = %d, want 204", status)
		}
		st := h.srv.Stats()
		if st.Calls != 0 || st.Billed != 0 || st.Transactions != 0 || len(st.Codes) != 0 || h.srv.Calls(zhima.MethodScoreBriefGet, "A_1") != 0 {
			t.Errorf("after reset: %+v", st)
		}
		if h.srv.Faults().Latency != Duration(time.Millisecond) {
			t.Error("reset changed the faults")
		}
		a := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("A_1", 700)})
		a.wantCode(t, scoreNode, zhima.CodeSuccess, "")
	})
}

func TestAdminPublicKey(t *testing.T) {
	h := newHarness(t, nil)
	status, body := h.adminDo(t, http.MethodGet, "/alipay_public_key.pem", "")
	if status != http.StatusOK {
		t.Fatalf("status = %d", status)
	}
	pub, err := zhima.ParsePublicKey(string(body))
	if err != nil {
		t.Fatalf("PEM does not parse: %v", err)
	}
	if !pub.Equal(h.srv.AlipayPublicKey()) {
		t.Error("PEM is not AlipayPublicKey")
	}
}

func TestConnState(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.Reset()
	const n = 3
	for range n {
		req, _ := http.NewRequest(http.MethodGet, h.ts.URL+"/healthz", nil)
		req.Close = true
		resp, err := h.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if got := h.srv.Stats().Connections; got != n {
		t.Errorf("connections = %d, want %d", got, n)
	}
}
