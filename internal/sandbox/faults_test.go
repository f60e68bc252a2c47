package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

func TestFaults(t *testing.T) {
	tests := []struct {
		name   string
		faults Faults
		check  func(t *testing.T, h *harness, a *answer)
		key    string
	}{
		{"system error rate 1 answers SYSTEM_ERROR", Faults{SystemErrorRate: 1},
			func(t *testing.T, h *harness, a *answer) {
				a.wantCode(t, scoreNode, zhima.CodeBusinessFailed, zhima.SubSystemError)
				a.mustVerify(t, h.srv, zhima.RSA2)
			}, "40004/SYSTEM_ERROR"},
		{"unavailable rate 1 answers 20000", Faults{UnavailableRate: 1},
			func(t *testing.T, h *harness, a *answer) {
				a.wantCode(t, scoreNode, zhima.CodeServiceUnavailable, "isp.unknow-error")
				a.mustVerify(t, h.srv, zhima.RSA2)
				if a.env.Msg != "Service Currently Unavailable" {
					t.Errorf("msg = %q", a.env.Msg)
				}
			}, "20000/isp.unknow-error"},
		{"HTTP 502 rate 1 answers 502 in plain text", Faults{HTTP502Rate: 1},
			func(t *testing.T, h *harness, a *answer) {
				if a.status != http.StatusBadGateway || !strings.HasPrefix(a.header.Get("Content-Type"), "text/plain") {
					t.Errorf("got HTTP %d %q, want 502 text/plain", a.status, a.header.Get("Content-Type"))
				}
			}, "http/502"},
		{"bad sign rate 1 answers a node that does not verify", Faults{BadSignRate: 1},
			func(t *testing.T, h *harness, a *answer) {
				a.wantCode(t, scoreNode, zhima.CodeSuccess, "")
				if err := a.verify(h.srv, zhima.RSA2); err == nil {
					t.Error("signature verifies")
				}
			}, "bad_sign"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.Faults = tt.faults })
			biz := scoreBiz("F_1", 600)
			tt.check(t, h, h.do(t, call{method: zhima.MethodScoreBriefGet, biz: biz}))
			st := h.srv.Stats()
			if st.Billed != 0 || st.Transactions != 0 || st.Codes[tt.key] != 1 {
				t.Errorf("stats = %+v, want nothing billed or stored and %s counted once", st, tt.key)
			}

			h.srv.SetFaults(Faults{})
			a := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("F_1", 700)})
			a.wantCode(t, scoreNode, zhima.CodeSuccess, "")
			if got := h.srv.Stats().Billed; got != 1 {
				t.Errorf("after the fault, billed = %d, want 1 (the faulted call left no transaction)", got)
			}
		})
	}
}

func TestFaultHang(t *testing.T) {
	t.Run("hang blocks until the client gives up", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.Faults = Faults{HangRate: 1} })
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, err := postContext(ctx, h, h.params(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("H_1", 600)}))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the client's deadline", err)
		}
		if st := h.srv.Stats(); st.Codes["hang"] != 1 || st.Billed != 0 {
			t.Errorf("stats = %+v, want one hang, nothing billed", st)
		}
	})
	t.Run("hang ends with 504 after MaxHang", func(t *testing.T) {
		h := newHarness(t, func(c *Config) {
			c.Faults = Faults{HangRate: 1}
			c.MaxHang = 20 * time.Millisecond
		})
		a := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("H_2", 600)})
		if a.status != http.StatusGatewayTimeout {
			t.Errorf("status = %d, want 504", a.status)
		}
	})
	t.Run("Close releases hung requests", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.Faults = Faults{HangRate: 1} })
		done := make(chan int)
		go func() {
			resp, err := postContext(t.Context(), h, h.params(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("H_3", 600)}))
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		for h.srv.Stats().Codes["hang"] == 0 {
			time.Sleep(time.Millisecond)
		}
		h.srv.Close()
		if got := <-done; got != http.StatusGatewayTimeout {
			t.Errorf("status = %d, want 504", got)
		}
	})
}

func postContext(ctx context.Context, h *harness, params map[string]string) (*http.Response, error) {
	form := url.Values{}
	for k, v := range params {
		form.Set(k, v)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.ts.URL+"/gateway.do", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return h.ts.Client().Do(req)
}

func TestFaultLatency(t *testing.T) {
	const latency = 30 * time.Millisecond
	h := newHarness(t, func(c *Config) { c.Faults = Faults{Latency: Duration(latency)} })
	start := time.Now()
	a := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("L_1", 600)})
	if elapsed := time.Since(start); elapsed < latency {
		t.Errorf("answered in %s, want at least %s", elapsed, latency)
	}
	a.wantCode(t, scoreNode, zhima.CodeSuccess, "")
}

// outcomes calls n times with rate 0.5 of each answering fault and lists what
// came back.
func outcomes(t *testing.T, seed int64, n int) []string {
	t.Helper()
	h := newHarness(t, func(c *Config) {
		c.Seed = seed
		c.Faults = Faults{SystemErrorRate: 0.3, UnavailableRate: 0.3, HTTP502Rate: 0.3, BadSignRate: 0.3}
	})
	var got []string
	for range n {
		a := h.do(t, call{method: zhima.MethodCertificationInitialize, biz: certBiz("SEED_1")})
		got = append(got, http.StatusText(a.status)+"/"+a.env.Code+"/"+a.env.SubCode+"/"+boolText(a.verify(h.srv, zhima.RSA2) == nil))
	}
	return got
}

func boolText(b bool) string {
	if b {
		return "verified"
	}
	return "unverified"
}

func TestFaultsSeeded(t *testing.T) {
	a, b := outcomes(t, 42, 24), outcomes(t, 42, 24)
	if strings.Join(a, " ") != strings.Join(b, " ") {
		t.Errorf("same seed, different outcomes:\n%v\n%v", a, b)
	}
	distinct := map[string]bool{}
	for _, o := range a {
		distinct[o] = true
	}
	if len(distinct) < 4 {
		t.Errorf("24 calls at these rates gave only %d kinds of outcome: %v", len(distinct), a)
	}
}

func TestFaultsValidate(t *testing.T) {
	tests := []struct {
		name    string
		f       Faults
		wantErr string
	}{
		{"zero is valid", Faults{}, ""},
		{"all ones are valid", Faults{SystemErrorRate: 1, UnavailableRate: 1, HTTP502Rate: 1, HangRate: 1, BadSignRate: 1, RogueCertRate: 1, Latency: Duration(time.Second)}, ""},
		{"rate above 1 is refused", Faults{HTTP502Rate: 1.5}, "http_502_rate"},
		{"negative rate is refused", Faults{HangRate: -0.1}, "hang_rate"},
		{"negative latency is refused", Faults{Latency: -1}, "latency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.f.Validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Validate() = %v, want an error naming %q", err, tt.wantErr)
			}
		})
	}
	app, _ := testKeys()
	if _, err := New(Config{AppPublicKey: &app.PublicKey, Faults: Faults{SystemErrorRate: 2}}); err == nil {
		t.Error("New accepts a rate of 2")
	}
}

func TestDurationJSON(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want time.Duration
	}{
		{"duration string", `"150ms"`, 150 * time.Millisecond},
		{"nanoseconds", `2000000`, 2 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Duration
			if err := json.Unmarshal([]byte(tt.in), &d); err != nil {
				t.Fatal(err)
			}
			if time.Duration(d) != tt.want {
				t.Errorf("got %s, want %s", time.Duration(d), tt.want)
			}
		})
	}
	b, _ := json.Marshal(Faults{Latency: Duration(100 * time.Millisecond)})
	if !strings.Contains(string(b), `"latency":"100ms"`) {
		t.Errorf("marshal = %s, want latency \"100ms\"", b)
	}
	var d Duration
	if err := json.Unmarshal([]byte(`"soon"`), &d); err == nil {
		t.Error(`"soon" reads as a duration`)
	}
}
