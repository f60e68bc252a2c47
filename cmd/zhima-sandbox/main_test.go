package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

// writeAppKey writes a fresh app public key and returns its path and the
// private half.
func writeAppKey(t *testing.T) (string, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "app_public.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, key
}

// lineWriter hands each written line to a channel, so a test can wait for
// the start line without polling.
type lineWriter struct {
	lines chan string
	buf   bytes.Buffer
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		select {
		case w.lines <- line:
		default:
		}
	}
}

var gatewayURL = regexp.MustCompile(`gateway_url=(\S+)`)

func TestRunServesGateway(t *testing.T) {
	pubPath, appKey := writeAppKey(t)
	alipayPub := filepath.Join(t.TempDir(), "alipay_public.pem")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stderr := &lineWriter{lines: make(chan string, 16)}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{
			"--addr", "127.0.0.1:0", "--app-id", "2021000000000001",
			"--app-public-key-file", pubPath, "--write-alipay-public-key", alipayPub, "--seed", "7",
		}, io.Discard, stderr)
	}()

	var gateway string
	select {
	case line := <-stderr.lines:
		m := gatewayURL.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("start line has no gateway_url: %s", line)
		}
		gateway = m[1]
	case err := <-done:
		t.Fatalf("run ended before listening: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no start line")
	}

	t.Run("a signed call succeeds and verifies with the written key", func(t *testing.T) {
		params := map[string]string{
			"app_id": "2021000000000001", "method": zhima.MethodCertificationInitialize, "format": "JSON",
			"charset": "utf-8", "sign_type": "RSA2", "timestamp": zhima.Timestamp(time.Now()), "version": "1.0",
			"biz_content": `{"transaction_id":"CMD_1","product_code":"w1010100000000002978","biz_code":"FACE","identity_param":"{\"identity_type\":\"CERT_INFO\",\"cert_type\":\"IDENTITY_CARD\",\"cert_name\":\"收委\",\"cert_no\":\"260104197909275964\"}"}`,
		}
		top := postSigned(t, gateway, appKey, params)
		var sign string
		json.Unmarshal(top["sign"], &sign)
		node := top["zhima_customer_certification_initialize_response"]
		if !bytes.Contains(node, []byte(`"code":"10000"`)) {
			t.Fatalf("not a success: %s", node)
		}
		pemText, err := os.ReadFile(alipayPub)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := zhima.ParsePublicKey(string(pemText))
		if err != nil {
			t.Fatal(err)
		}
		if err := zhima.Verify(pub, zhima.RSA2, node, sign); err != nil {
			t.Errorf("answer does not verify with --write-alipay-public-key: %v", err)
		}
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop after cancel")
	}
}

func TestRunUsageErrors(t *testing.T) {
	pubPath, appKey := writeAppKey(t)
	privPath := filepath.Join(t.TempDir(), "app_private.pem")
	if err := os.WriteFile(privPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(appKey)}), 0o600); err != nil {
		t.Fatal(err)
	}
	key := []string{"--addr", "127.0.0.1:0", "--app-public-key-file", pubPath}
	certDir := filepath.Join(t.TempDir(), "certs")
	aesFile := writeAESKey(t)
	shortKey := base64.StdEncoding.EncodeToString([]byte("short-key"))
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--bogus"}, "bogus"},
		{"no app public key", []string{"--addr", "127.0.0.1:0"}, "--app-public-key-file"},
		{"missing key file", []string{"--app-public-key-file", filepath.Join(t.TempDir(), "none.pem")}, "--app-public-key-file"},
		{"private key as the app public key", []string{"--app-public-key-file", privPath}, "private key where a public key belongs"},
		{"public key as the Alipay private key", append(key, "--alipay-private-key-file", pubPath), "--alipay-private-key-file"},
		{"rate above 1", append(key, "--system-error-rate", "1.5"), "system_error_rate must be between 0 and 1"},
		{"bad latency", append(key, "--latency", "soon"), "latency"},
		{"zero window", append(key, "--window", "0s"), "--window"},
		{"positional argument", append(key, "extra"), "unexpected argument"},
		{"cert mode without a cert dir", append(key, "--cert-mode"), "--cert-dir"},
		{"cert mode with --write-alipay-public-key", append(key, "--cert-mode", "--cert-dir", certDir, "--write-alipay-public-key", filepath.Join(certDir, "k.pem")), "--write-alipay-public-key"},
		{"cert mode with --alipay-private-key-file", append(key, "--cert-mode", "--cert-dir", certDir, "--alipay-private-key-file", privPath), "--alipay-private-key-file"},
		{"cert dir without cert mode", append(key, "--cert-dir", certDir), "--cert-dir needs --cert-mode"},
		{"rotation without cert mode", append(key, "--rotate-cert-after", "3"), "--rotate-cert-after needs --cert-mode"},
		{"rogue certificates without cert mode", append(key, "--rogue-cert-rate", "0.5"), "--rogue-cert-rate needs --cert-mode"},
		{"rogue rate above 1", append(key, "--cert-mode", "--cert-dir", certDir, "--rogue-cert-rate", "2"), "rogue_cert_rate must be between 0 and 1"},
		{"negative rotation", append(key, "--cert-mode", "--cert-dir", certDir, "--rotate-cert-after", "-1"), "--rotate-cert-after"},
		{"both AES key flags", append(key, "--encrypt-key", testAESKey, "--encrypt-key-file", aesFile), "exclusive"},
		{"AES key not base64", append(key, "--encrypt-key", "not*base64"), "--encrypt-key: AES key is not standard base64"},
		{"short AES key", append(key, "--encrypt-key", shortKey), "--encrypt-key: AES key decodes to 9 bytes"},
		{"missing AES key file", append(key, "--encrypt-key-file", filepath.Join(certDir, "none.key")), "--encrypt-key-file"},
		{"unwritable cert dir", append(key, "--cert-mode", "--cert-dir", filepath.Join(pubPath, "certs")), "--cert-dir: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(envAppPublicKeyFile, "")
			err := run(t.Context(), tt.args, io.Discard, io.Discard)
			if err == nil {
				t.Fatal("run succeeded")
			}
			var stderr bytes.Buffer
			if code := exitCode(err, &stderr); code != 2 {
				t.Errorf("exit code %d, want 2 (err %v)", code, err)
			}
			out := stderr.String()
			if strings.Count(out, "\n") != 1 || !strings.Contains(out, tt.want) {
				t.Errorf("stderr = %q, want one line containing %q", out, tt.want)
			}
			if strings.Contains(out, shortKey) || strings.Contains(out, testAESKey) {
				t.Errorf("stderr quotes the AES key: %q", out)
			}
		})
	}
	if _, err := os.Stat(certDir); err == nil {
		t.Error("a refused run created --cert-dir")
	}
}

func TestRunHelp(t *testing.T) {
	var stdout bytes.Buffer
	err := run(t.Context(), []string{"--help"}, &stdout, io.Discard)
	if !errors.Is(err, flag.ErrHelp) || exitCode(err, io.Discard) != 0 {
		t.Fatalf("run --help = %v, want flag.ErrHelp and exit 0", err)
	}
	for _, want := range []string{"--app-public-key-file", "--write-alipay-public-key", "--hang-rate", "ZHIMA_GATEWAY_URL", "/admin/faults",
		"--cert-mode", "--cert-dir", "--rotate-cert-after", "--rogue-cert-rate", "--encrypt-key", "--encrypt-key-file", "/admin/rotate-cert",
		"ZHIMA_APP_CERT_FILE=DIR/appCertPublicKey_<app_id>.crt", "ZHIMA_ALIPAY_CERT_FILE=DIR/alipayCertPublicKey_RSA2.crt",
		"ZHIMA_ALIPAY_ROOT_CERT_FILE=DIR/alipayRootCert.crt", "ZHIMA_ENCRYPT_KEY="} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestRunEnvKeyFile(t *testing.T) {
	pubPath, _ := writeAppKey(t)
	t.Setenv(envAppPublicKeyFile, pubPath)
	o, err := parseFlags([]string{"--addr", "127.0.0.1:0"}, io.Discard)
	if err != nil || o.appPublicKeyFile != pubPath {
		t.Fatalf("parseFlags = %+v, %v; want the key file from %s", o, err, envAppPublicKeyFile)
	}
}

func TestDialable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"127.0.0.1:8090", "127.0.0.1:8090"},
		{"0.0.0.0:8090", "127.0.0.1:8090"},
		{"[::]:8090", "127.0.0.1:8090"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := dialable(tt.in); got != tt.want {
				t.Errorf("dialable(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// postSigned signs params with appKey, posts them to gateway and returns
// the answer's top-level fields.
func postSigned(t *testing.T, gateway string, appKey *rsa.PrivateKey, params map[string]string) map[string]json.RawMessage {
	t.Helper()
	sig, err := zhima.Sign(appKey, zhima.RSA2, []byte(zhima.SigningString(params)))
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"sign": {sig}}
	for k, v := range params {
		form.Set(k, v)
	}
	resp, err := http.PostForm(gateway, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatalf("not JSON: %s", body)
	}
	return top
}
