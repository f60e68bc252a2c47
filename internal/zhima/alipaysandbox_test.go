//go:build alipaysandbox

// The live test against Alipay's own sandbox environment (沙箱环境). It runs
// only with -tags alipaysandbox and the credentials of a sandbox app in the
// environment; see the README's "Against Alipay's sandbox".
package zhima

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// alipaySandboxGateway is the gateway of Alipay's sandbox environment.
const alipaySandboxGateway = "https://openapi-sandbox.dl.alipaydev.com/gateway.do"

// liveConfig reads one mode's settings from ZHIMAQ_LIVE_<mode>_*; it skips
// the test when the app id is not set.
func liveConfig(t *testing.T, mode string) Config {
	t.Helper()
	env := func(name string) string { return os.Getenv("ZHIMAQ_LIVE_" + mode + "_" + name) }
	file := func(name string) string {
		path := env(name)
		if path == "" {
			return ""
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("ZHIMAQ_LIVE_%s_%s: %v", mode, name, err)
		}
		return string(b)
	}
	if env("APP_ID") == "" {
		t.Skipf("set ZHIMAQ_LIVE_%s_APP_ID and the other ZHIMAQ_LIVE_%s_* variables to run against Alipay's sandbox", mode, mode)
	}
	cfg := Config{
		GatewayURL:      env("GATEWAY_URL"),
		AppID:           env("APP_ID"),
		AppPrivateKey:   file("APP_PRIVATE_KEY_FILE"),
		AlipayPublicKey: file("ALIPAY_PUBLIC_KEY_FILE"),
		AppCert:         file("APP_CERT_FILE"),
		AlipayCert:      file("ALIPAY_CERT_FILE"),
		AlipayRootCert:  file("ALIPAY_ROOT_CERT_FILE"),
		AESKey:          env("ENCRYPT_KEY"),
		Timeout:         20 * time.Second,
	}
	if cfg.GatewayURL == "" {
		cfg.GatewayURL = alipaySandboxGateway
	}
	return cfg
}

// TestAlipaySandbox calls each Zhima method once in each configured mode.
// A sandbox app may not have the Zhima products, so a business error is
// accepted; what must hold is that the gateway accepted the signature (and
// the certificate SNs) and that its answer verified: no verification,
// transport or protocol failure.
func TestAlipaySandbox(t *testing.T) {
	for _, mode := range []string{"KEY", "CERT"} {
		t.Run(mode, func(t *testing.T) {
			c, err := NewClient(liveConfig(t, mode))
			if err != nil {
				t.Fatal(err)
			}
			if mode == "CERT" && !c.CertMode() {
				t.Fatal("ZHIMAQ_LIVE_CERT_* does not set the three certificate files")
			}
			ctx := context.Background()
			txid := "ZQLIVE" + time.Now().Format("20060102150405")
			req := &ScoreBriefGetRequest{TransactionID: txid, ProductCode: "w1010100000000002733",
				CertType: "IDENTITY_CARD", CertNo: "11010519491231002X", Name: "张三", AdmittanceScore: 650}
			_, err = c.ScoreBriefGet(ctx, req)
			var zerr *Error
			switch {
			case err == nil:
			case !errors.As(err, &zerr):
				t.Fatalf("not a *zhima.Error: %v", err)
			case zerr.Source != SourceGateway:
				t.Fatalf("the call failed before a verified answer: %v", err)
			case zerr.Code == CodeInvalidParameter || zerr.Code == CodeMissingParameter:
				t.Fatalf("the gateway refused the request's protocol: %v", err)
			default:
				t.Logf("business answer (the app may lack the product): %v", err)
			}
		})
	}
}
