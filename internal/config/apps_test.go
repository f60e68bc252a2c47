package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeApps writes an apps file and returns the environment naming it.
func writeApps(t *testing.T, yaml string) map[string]string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "apps.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"ZHIMA_APPS_FILE": path}
}

func TestAppsFileListsEveryApp(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"a.pem", "a-alipay.pem", "b.pem", "b-app.crt", "b-alipay.crt", "b-root.crt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("PEM of "+f+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e := writeApps(t, `apps:
  - app_id: 2021000000000001
    app_private_key_file: `+dir+`/a.pem
    alipay_public_key_file: `+dir+`/a-alipay.pem
    qps: 20
    daily_budget:
      zhima.credit.score.brief.get: 5000
  - app_id: "2021000000000002"
    gateway_url: http://127.0.0.1:9/gateway.do
    app_private_key_file: `+dir+`/b.pem
    app_cert_file: `+dir+`/b-app.crt
    alipay_cert_file: `+dir+`/b-alipay.crt
    alipay_root_cert_file: `+dir+`/b-root.crt
    sign_type: rsa
    charset: GBK
    qps: 2.5
`)
	c, err := Load(env(e))
	if err != nil {
		t.Fatal(err)
	}
	if ids := c.AppIDs(); len(ids) != 2 || ids[0] != "2021000000000001" || ids[1] != "2021000000000002" {
		t.Fatalf("AppIDs = %v", ids)
	}
	apps, err := c.Apps()
	if err != nil {
		t.Fatal(err)
	}
	a, b := apps[0], apps[1]
	if a.AppPrivateKey != "PEM of a.pem" || a.AlipayPublicKey != "PEM of a-alipay.pem" || a.QPS != 20 || a.CertMode() ||
		a.GatewayURL != Defaults.GatewayURL || a.SignType != "RSA2" || a.DailyBudget["zhima.credit.score.brief.get"] != 5000 {
		t.Fatalf("first app = %+v", a)
	}
	if !b.CertMode() || b.AlipayRootCert != "PEM of b-root.crt" || b.QPS != 2.5 || b.SignType != "RSA" || b.Charset != "GBK" ||
		b.GatewayURL != "http://127.0.0.1:9/gateway.do" || b.DailyBudget != nil {
		t.Fatalf("second app = %+v", b)
	}
	if err := c.RequireGateway(); err != nil {
		t.Fatal(err)
	}
	if s := c.String(); strings.Contains(s, "PEM of") {
		t.Fatalf("String shows a key: %s", s)
	}
}

func TestAppsFileNeedsNoKeyFileToListItsApps(t *testing.T) {
	// enqueue and the API read the app ids; the key files may be the workers' only.
	e := writeApps(t, "apps:\n  - app_id: A1\n    app_private_key_file: /nonexistent/a.pem\n    alipay_public_key_file: /nonexistent/b.pem\n")
	c, err := Load(env(e))
	if err != nil {
		t.Fatal(err)
	}
	if ids := c.AppIDs(); len(ids) != 1 || ids[0] != "A1" {
		t.Fatalf("AppIDs = %v", ids)
	}
	_, err = c.Apps()
	if err == nil || !strings.Contains(err.Error(), "ZHIMA_APPS_FILE: app A1: app_private_key_file: cannot read /nonexistent/a.pem") {
		t.Fatalf("Apps = %v, want the app and the file named", err)
	}
}

func TestAppsFileNamesWhatIsWrong(t *testing.T) {
	secret := "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
	tests := []struct {
		name, yaml string
		env        map[string]string
		want       string
		apps       string // the error of Apps, when Load passes
	}{
		{name: "both", yaml: "apps:\n  - app_id: A1\n", env: map[string]string{"ZHIMA_APP_ID": "A0", "ZHIMA_QPS": "5"},
			want: "ZHIMA_APPS_FILE and ZHIMA_APP_ID, ZHIMA_QPS are both set"},
		{name: "no apps", yaml: "apps: []\n", want: "lists no app"},
		{name: "not yaml", yaml: "apps: [\n", want: "not an apps file"},
		{name: "top-level typo", yaml: "app:\n  - app_id: A1\n", want: "not an apps file"},
		{name: "no app id", yaml: "apps:\n  - qps: 3\n", want: "app 1: app_id: is required"},
		{name: "twice", yaml: "apps:\n  - app_id: A1\n  - app_id: A1\n", want: "app 2: app_id A1 is listed twice"},
		{name: "unknown key", yaml: "apps:\n  - app_id: A1\n    private_key: x\n", want: `app 1 (A1): unknown setting "private_key"`},
		{name: "bad qps", yaml: "apps:\n  - app_id: A1\n    qps: -1\n", want: "app 1 (A1): qps: want a number ≥ 0"},
		{name: "bad sign type", yaml: "apps:\n  - app_id: A1\n    sign_type: MD5\n", want: "app 1 (A1): sign_type: want RSA2 or RSA"},
		{name: "budget method", yaml: "apps:\n  - app_id: A1\n    daily_budget:\n      zhima.unknown: 3\n", want: "daily_budget: unknown method"},
		{name: "budget count", yaml: "apps:\n  - app_id: A1\n    daily_budget:\n      zhima.credit.relation.query: many\n", want: "zhima.credit.relation.query: want a whole number"},
		{name: "key and file", yaml: "apps:\n  - app_id: A1\n    app_private_key: " + secret + "\n    app_private_key_file: /k.pem\n",
			want: "app_private_key: set either app_private_key or app_private_key_file, not both"},
		{name: "key pasted as a list", yaml: "apps:\n  - app_id: A1\n    app_private_key: [" + secret + "]\n", want: "app_private_key: want a single value"},
		{name: "missing key", yaml: "apps:\n  - app_id: A1\n    alipay_public_key: " + secret + "\n",
			apps: "ZHIMA_APPS_FILE: app A1: app_private_key or app_private_key_file is required"},
		{name: "both modes", yaml: "apps:\n  - app_id: A1\n    app_private_key: k\n    alipay_public_key: p\n    app_cert: c\n",
			apps: "app A1: alipay_public_key[_file] and app_cert[_file] are both set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := writeApps(t, tt.yaml)
			for k, v := range tt.env {
				e[k] = v
			}
			c, err := Load(env(e))
			if tt.apps != "" {
				if err != nil {
					t.Fatalf("Load = %v", err)
				}
				_, err = c.Apps()
				tt.want = tt.apps
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error quotes the key: %v", err)
			}
		})
	}
}
