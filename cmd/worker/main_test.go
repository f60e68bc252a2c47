package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/redistest"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

func TestRunRefusesBadConfigurationInOneLine(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no app id", map[string]string{}, "ZHIMA_APP_ID is required"},
		{"no data keys", map[string]string{"ZHIMA_APP_ID": zhimatest.AppID,
			"ZHIMA_APP_PRIVATE_KEY_FILE": zhimatest.KeyFile("app_private_pkcs1.pem"), "ZHIMA_ALIPAY_PUBLIC_KEY_FILE": zhimatest.KeyFile("app_public.pem")},
			"DATA_KEYS or DATA_KEYS_FILE is required"},
		{"bad data key", map[string]string{"ZHIMA_APP_ID": zhimatest.AppID, "DATA_KEYS": "k1:c2hvcnQ=",
			"ZHIMA_APP_PRIVATE_KEY_FILE": zhimatest.KeyFile("app_private_pkcs1.pem"), "ZHIMA_ALIPAY_PUBLIC_KEY_FILE": zhimatest.KeyFile("app_public.pem")},
			"DATA_KEYS: seal: data keys: entry 1"},
		{"bad duration", map[string]string{"RETRY_BASE_DELAY": "soon"}, "RETRY_BASE_DELAY"},
		{"app key as alipay key", map[string]string{"ZHIMA_APP_ID": "2021000000000001",
			"ZHIMA_APP_PRIVATE_KEY_FILE": zhimatest.KeyFile("app_private_pkcs1.pem"), "ZHIMA_ALIPAY_PUBLIC_KEY_FILE": zhimatest.KeyFile("app_public.pem"), "DATA_KEYS": "plaintext"}, "app's own public key"},
		{"private key where the alipay key belongs", map[string]string{"ZHIMA_APP_ID": "2021000000000001",
			"ZHIMA_APP_PRIVATE_KEY_FILE": zhimatest.KeyFile("app_private_pkcs1.pem"), "ZHIMA_ALIPAY_PUBLIC_KEY_FILE": zhimatest.KeyFile("app_private_pkcs8.pem"), "DATA_KEYS": "plaintext"}, "private key where a public key belongs"},
		{"an Alipay certificate without its chain", certEnv("appCertPublicKey_2021000000000001.crt", "appCertPublicKey_2021000000000001.crt"), "does not chain to the Alipay root file"},
		{"the root file as the app certificate", certEnv("alipayCertPublicKey_RSA2.crt", "alipayRootCert.crt"), "app certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(context.Background(), nil, func(k string) string { return tc.env[k] }, &stderr)
			out := stderr.String()
			if code != 2 || !strings.Contains(out, tc.want) || strings.Count(out, "\n") != 1 {
				t.Fatalf("exit %d, stderr %q; want 2 and one line naming %q", code, out, tc.want)
			}
		})
	}
}

// certEnv is a certificate-mode environment over the committed vector PKI
// with the Alipay certificate and the app certificate files given.
func certEnv(alipayCert, appCert string) map[string]string {
	dir := filepath.Join("..", "..", "internal", "zhima", "testdata", "certvectors")
	return map[string]string{"ZHIMA_APP_ID": zhimatest.AppID, "DATA_KEYS": "plaintext",
		"ZHIMA_APP_PRIVATE_KEY_FILE":  zhimatest.KeyFile("app_private_pkcs1.pem"),
		"ZHIMA_APP_CERT_FILE":         filepath.Join(dir, appCert),
		"ZHIMA_ALIPAY_CERT_FILE":      filepath.Join(dir, alipayCert),
		"ZHIMA_ALIPAY_ROOT_CERT_FILE": filepath.Join(dir, "alipayRootCert.crt")}
}

func TestRunStopsCleanlyWhenSignalled(t *testing.T) {
	stderr, stop := startRun(t, nil)
	checkEndpoints(t, stderr.String())
	if code := stop(); code != 0 || !strings.Contains(stderr.String(), `"worker stopped"`) {
		t.Fatalf("exit %d, log:\n%s", code, stderr.String())
	}
}

func TestRunServesTheAPIWhenTokensAreSet(t *testing.T) {
	for _, tt := range []struct {
		name   string
		tokens string
		status int
	}{
		{"with_tokens_the_API_asks_for_one", "8c1f4e7a2b9d06e3f5a1c7b48d2e9f60", http.StatusUnauthorized},
		{"without_tokens_there_is_none", "", http.StatusNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stderr, stop := startRun(t, map[string]string{"API_TOKENS": tt.tokens})
			defer stop()
			resp, err := http.Get("http://" + listenerAddr(t, stderr.String()) + "/v1/jobs/zhima.credit.score.brief.get/T1")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("GET /v1/jobs/…: %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
}

// startRun runs the command in the background against the sandbox and a
// test Redis, with env's variables added, until it logs that it started.
// stop signals it and returns its exit status.
func startRun(t *testing.T, env map[string]string) (*zhimatest.SyncBuffer, func() int) {
	t.Helper()
	gw, url := zhimatest.StartGateway(t, sandbox.Config{})
	srv := redistest.New(t)
	vars := map[string]string{
		"REDIS_URL": srv.URL, "ZHIMA_GATEWAY_URL": url, "ZHIMA_APP_ID": zhimatest.AppID,
		"ZHIMA_APP_PRIVATE_KEY_FILE": zhimatest.KeyFile("app_private_pkcs8.pem"), "ZHIMA_ALIPAY_PUBLIC_KEY": string(gw.AlipayPublicKeyPEM()),
		"HTTP_ADDR": "127.0.0.1:0", "DATA_KEYS": zhimatest.DataKeys, "ZHIMAQ_QUEUE": srv.Queue, "ZHIMAQ_KEY_PREFIX": srv.Prefix,
	}
	for k, v := range env {
		vars[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	stderr := new(zhimatest.SyncBuffer)
	done := make(chan int)
	go func() { done <- run(ctx, nil, func(k string) string { return vars[k] }, stderr) }()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stderr.String(), `"worker started"`); {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("worker did not start:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopped, code := false, 0
	return stderr, func() int {
		if stopped {
			return code
		}
		stopped = true
		cancel()
		select {
		case code = <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("worker did not stop within 30s of its signal")
		}
		return code
	}
}

// listenerAddr reads the listener's address from the start-up log line.
func listenerAddr(t *testing.T, log string) string {
	t.Helper()
	var started struct {
		HTTP string `json:"http"`
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `"worker started"`) {
			json.Unmarshal([]byte(line), &started)
		}
	}
	if started.HTTP == "" {
		t.Fatalf("no listener address in the log:\n%s", log)
	}
	return started.HTTP
}

// checkEndpoints checks /healthz, /readyz and /metrics.
func checkEndpoints(t *testing.T, log string) {
	t.Helper()
	addr := listenerAddr(t, log)
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/metrics": "zhimaq_breaker_state"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, body without %q:\n%.300s", path, resp.StatusCode, want, body)
		}
	}
}

func TestHelpNamesEveryVariableItReads(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, func(string) string { return "" }, &stderr); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, v := range config.Table {
		if v.Reads&config.Worker != 0 && !strings.Contains(stderr.String(), "  "+v.Name) {
			t.Errorf("--help does not name %s", v.Name)
		}
	}
}
