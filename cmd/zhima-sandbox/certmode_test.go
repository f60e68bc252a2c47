package main

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// testAESKey is a 16-byte AES key in base64, as the console shows it.
const testAESKey = "emhpbWFxLXNhbmRib3gxNg=="

func writeAESKey(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "aes.key")
	if err := os.WriteFile(path, []byte(testAESKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// started is a run of the command in the background.
type started struct {
	line    string // the start line
	gateway string
	stop    func() error
}

// start runs the command with args until the test ends or stop is called.
func start(t *testing.T, args ...string) *started {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	stderr := &lineWriter{lines: make(chan string, 16)}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, io.Discard, stderr) }()
	s := &started{stop: func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("run did not stop after cancel")
			return nil
		}
	}}
	t.Cleanup(func() { cancel() })
	select {
	case s.line = <-stderr.lines:
	case err := <-done:
		t.Fatalf("run ended before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no start line")
	}
	m := gatewayURL.FindStringSubmatch(s.line)
	if m == nil {
		t.Fatalf("start line has no gateway_url: %s", s.line)
	}
	s.gateway = m[1]
	return s
}

var alipayCertSN = regexp.MustCompile(`alipay_cert_sn=([0-9a-f]{32})`)

func fileSN(t *testing.T, path string, sn func([]byte) (string, error)) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sn(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return s
}

func TestRunCertMode(t *testing.T) {
	pubPath, appKey := writeAppKey(t)
	const appID = "2021000000000001"
	dir := filepath.Join(t.TempDir(), "state", "certs")
	args := []string{"--addr", "127.0.0.1:0", "--app-id", appID, "--app-public-key-file", pubPath,
		"--cert-mode", "--cert-dir", dir, "--encrypt-key-file", writeAESKey(t), "--seed", "7"}
	run1 := start(t, args...)

	appFile := filepath.Join(dir, "appCertPublicKey_"+appID+".crt")
	alipayFile := filepath.Join(dir, "alipayCertPublicKey_RSA2.crt")
	rootFile := filepath.Join(dir, "alipayRootCert.crt")
	sn := alipayCertSN.FindStringSubmatch(run1.line)
	t.Run("start line names the cert dir and the current SN, not the key", func(t *testing.T) {
		if sn == nil || sn[1] != fileSN(t, alipayFile, zhima.CertSN) {
			t.Errorf("start line SN %v, want the SN of %s: %s", sn, alipayFile, run1.line)
		}
		if !strings.Contains(run1.line, "cert_dir="+dir) || !strings.Contains(run1.line, "encrypt=true") {
			t.Errorf("start line lacks cert_dir or encrypt: %s", run1.line)
		}
		if strings.Contains(run1.line, testAESKey) || strings.Contains(run1.line, "PRIVATE") {
			t.Errorf("start line shows a secret: %s", run1.line)
		}
	})
	t.Run("the files are written, the dir 0700 and the state 0600", func(t *testing.T) {
		for path, mode := range map[string]os.FileMode{
			dir: 0o700, filepath.Join(dir, sandbox.PKIStateFile): 0o600, appFile: 0o644, alipayFile: 0o644, rootFile: 0o644,
		} {
			st, err := os.Stat(path)
			if err != nil || st.Mode().Perm() != mode {
				t.Errorf("%s: %v (%v), want mode %v", path, st.Mode().Perm(), err, mode)
			}
		}
	})
	t.Run("an encrypted call with the files' SNs succeeds and verifies with the leaf", func(t *testing.T) {
		a := callCertMode(t, run1.gateway, appKey, appID, appFile, rootFile)
		if a.certSN != fileSN(t, alipayFile, zhima.CertSN) {
			t.Errorf("alipay_cert_sn = %s, want the SN of %s", a.certSN, alipayFile)
		}
		if err := zhima.Verify(leafKey(t, alipayFile), zhima.RSA2, a.node, a.sign); err != nil {
			t.Errorf("answer does not verify with the leaf of %s: %v", alipayFile, err)
		}
		key, _ := zhima.ParseAESKey(testAESKey)
		var cipher string
		json.Unmarshal(a.node, &cipher)
		plain, err := key.Decrypt(cipher)
		if err != nil || !bytes.Contains(plain, []byte(`"code":"10000"`)) {
			t.Errorf("node decrypts to %s (%v), want a success", plain, err)
		}
	})

	var rotated string
	t.Run("POST /admin/rotate-cert rotates and rewrites the Alipay file", func(t *testing.T) {
		resp, err := http.Post(strings.TrimSuffix(run1.gateway, "/gateway.do")+"/admin/rotate-cert", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d (%v)", resp.StatusCode, err)
		}
		rotated = got["alipay_cert_sn"]
		if rotated == "" || rotated == sn[1] || rotated != fileSN(t, alipayFile, zhima.CertSN) {
			t.Errorf("rotated SN %q, old %q, file %q", rotated, sn[1], fileSN(t, alipayFile, zhima.CertSN))
		}
	})
	if err := run1.stop(); err != nil {
		t.Fatalf("run after cancel = %v, want nil", err)
	}

	t.Run("a restart on the same dir keeps the PKI", func(t *testing.T) {
		appSN, rootSN := fileSN(t, appFile, zhima.CertSN), fileSN(t, rootFile, zhima.RootCertSN)
		run2 := start(t, args...)
		defer run2.stop()
		if m := alipayCertSN.FindStringSubmatch(run2.line); m == nil || m[1] != rotated {
			t.Errorf("restart SN %v, want the rotated %s", m, rotated)
		}
		if fileSN(t, appFile, zhima.CertSN) != appSN || fileSN(t, rootFile, zhima.RootCertSN) != rootSN {
			t.Error("app or root SN changed on restart")
		}
		a := callCertMode(t, run2.gateway, appKey, appID, appFile, rootFile)
		if a.certSN != rotated {
			t.Errorf("alipay_cert_sn = %s, want %s", a.certSN, rotated)
		}
	})
}

// certAnswer is a certificate-mode answer: the node as received, its sign
// and the SN beside it.
type certAnswer struct {
	node   []byte
	sign   string
	certSN string
}

// callCertMode makes an encrypted, signed score call with the SNs of the
// files, as the worker would.
func callCertMode(t *testing.T, gateway string, appKey *rsa.PrivateKey, appID, appFile, rootFile string) certAnswer {
	t.Helper()
	key, err := zhima.ParseAESKey(testAESKey)
	if err != nil {
		t.Fatal(err)
	}
	biz := `{"transaction_id":"CM_1","product_code":"w1010100000000002733","cert_type":"IDENTITY_CARD","cert_no":"260104197909275964","name":"收委","admittance_score":600}`
	params := map[string]string{
		"app_id": appID, "method": zhima.MethodScoreBriefGet, "format": "JSON",
		"charset": "utf-8", "sign_type": "RSA2", "timestamp": zhima.Timestamp(time.Now()), "version": "1.0",
		zhima.ParamAppCertSN:        fileSN(t, appFile, zhima.CertSN),
		zhima.ParamAlipayRootCertSN: fileSN(t, rootFile, zhima.RootCertSN),
		zhima.ParamEncryptType:      zhima.EncryptAES,
		"biz_content":               key.Encrypt([]byte(biz)),
	}
	top := postSigned(t, gateway, appKey, params)
	var a certAnswer
	json.Unmarshal(top["sign"], &a.sign)
	json.Unmarshal(top["alipay_cert_sn"], &a.certSN)
	a.node = top["zhima_credit_score_brief_get_response"]
	if len(a.node) == 0 || a.node[0] != '"' {
		t.Fatalf("node is not an encrypted string: %s", top)
	}
	return a
}

func leafKey(t *testing.T, path string) *rsa.PublicKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s holds no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.PublicKey.(*rsa.PublicKey)
}

func TestRunEncryptKeyFlag(t *testing.T) {
	pubPath, _ := writeAppKey(t)
	s := start(t, "--addr", "127.0.0.1:0", "--app-public-key-file", pubPath, "--encrypt-key", testAESKey)
	if !strings.Contains(s.line, "encrypt=true") || strings.Contains(s.line, testAESKey) {
		t.Errorf("start line: %s", s.line)
	}
	if !strings.Contains(s.line, "alipay_public_key=") || strings.Contains(s.line, "alipay_cert_sn") {
		t.Errorf("key mode start line: %s", s.line)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}
