package sandbox

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

// pkiState is the state file of one PKI made for testAppID and the test app
// key, made once per test binary: testPKI copies it, so each test gets the
// same SNs without generating keys, and can rotate on its own.
var pkiState = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "sandbox-pki-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	app, _ := testKeys()
	if _, err := OpenPKI(dir, testAppID, &app.PublicKey); err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(dir, PKIStateFile))
})

// testPKI opens a copy of the shared PKI in a directory of its own, which
// OpenPKI creates.
func testPKI(t *testing.T) *PKI {
	t.Helper()
	state, err := pkiState()
	if err != nil {
		t.Fatalf("make PKI: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "certs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, PKIStateFile), state, 0o600); err != nil {
		t.Fatal(err)
	}
	app, _ := testKeys()
	p, err := OpenPKI(dir, testAppID, &app.PublicKey)
	if err != nil {
		t.Fatalf("OpenPKI: %v", err)
	}
	return p
}

func parseCerts(pemText []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for rest := pemText; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate")
	}
	return out, nil
}

func mustCerts(t *testing.T, pemText []byte) []*x509.Certificate {
	t.Helper()
	certs, err := parseCerts(pemText)
	if err != nil {
		t.Fatalf("parse certificates: %v", err)
	}
	return certs
}

// chainToRoots verifies the first certificate of a PEM file against the
// RSA roots of the root file, with the file's other certificates as
// intermediates, as a client in certificate mode does.
func chainToRoots(t *testing.T, rootPEM, certPEM []byte) ([][]*x509.Certificate, error) {
	t.Helper()
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range mustCerts(t, rootPEM) {
		roots.AddCert(c)
	}
	certs := mustCerts(t, certPEM)
	for _, c := range certs[1:] {
		inters.AddCert(c)
	}
	return certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPKIFiles(t *testing.T) {
	p := testPKI(t)
	app, _ := testKeys()
	rootFile := readFile(t, filepath.Join(p.Dir(), RootCertFile))
	alipayFile := readFile(t, filepath.Join(p.Dir(), AlipayCertFile))
	appFile := readFile(t, filepath.Join(p.Dir(), "appCertPublicKey_"+testAppID+".crt"))

	t.Run("files are what the accessors say", func(t *testing.T) {
		for _, f := range []struct {
			name       string
			path       string
			file, want []byte
		}{
			{"root", p.RootCertPath(), rootFile, p.RootCertPEM()},
			{"alipay", p.AlipayCertPath(), alipayFile, p.AlipayCertPEM()},
			{"app", p.AppCertPath(), appFile, p.AppCertPEM()},
		} {
			if !bytes.Equal(f.file, f.want) || !bytes.Equal(readFile(t, f.path), f.want) {
				t.Errorf("%s file differs from its accessor", f.name)
			}
		}
	})
	t.Run("SNs are zhima's of the files", func(t *testing.T) {
		for _, c := range []struct {
			name string
			sn   func([]byte) (string, error)
			file []byte
			want string
		}{
			{"app_cert_sn", zhima.CertSN, appFile, p.AppCertSN()},
			{"alipay_cert_sn", zhima.CertSN, alipayFile, p.AlipayCertSN()},
			{"alipay_root_cert_sn", zhima.RootCertSN, rootFile, p.RootCertSN()},
		} {
			got, err := c.sn(c.file)
			if err != nil || got != c.want || got == "" {
				t.Errorf("%s: zhima says %q (%v), the sandbox expects %q", c.name, got, err, c.want)
			}
		}
		if parts := strings.Split(p.RootCertSN(), "_"); len(parts) != 2 {
			t.Errorf("root SN %q: want the SNs of two RSA roots", p.RootCertSN())
		}
	})
	roots := mustCerts(t, rootFile)
	t.Run("root file holds an EC root first, then two RSA roots", func(t *testing.T) {
		if len(roots) != 3 {
			t.Fatalf("root file holds %d certificates, want 3", len(roots))
		}
		want := []x509.SignatureAlgorithm{x509.ECDSAWithSHA256, x509.SHA256WithRSA, x509.SHA256WithRSA}
		for i, r := range roots {
			if r.SignatureAlgorithm != want[i] || !r.IsCA || r.CheckSignatureFrom(r) != nil {
				t.Errorf("root %d: %v, CA %v, want a self-signed %v CA", i+1, r.SignatureAlgorithm, r.IsCA, want[i])
			}
		}
	})
	t.Run("Alipay file holds the leaf then the intermediate, chained to the RSA root", func(t *testing.T) {
		certs := mustCerts(t, alipayFile)
		if len(certs) != 2 || certs[0].IsCA || !certs[1].IsCA {
			t.Fatalf("Alipay file: %d certificates, want the leaf then the intermediate", len(certs))
		}
		if _, ok := certs[0].PublicKey.(*rsa.PublicKey); !ok {
			t.Error("leaf key is not RSA")
		}
		chains, err := chainToRoots(t, rootFile, alipayFile)
		if err != nil {
			t.Fatalf("leaf does not chain to the root file: %v", err)
		}
		if c := chains[0]; len(c) != 3 || !c[1].Equal(certs[1]) || !c[2].Equal(roots[1]) {
			t.Errorf("chain is not leaf -> intermediate -> first RSA root")
		}
	})
	t.Run("app certificate holds the app key and chains too", func(t *testing.T) {
		c := mustCerts(t, appFile)[0]
		if pub, ok := c.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&app.PublicKey) {
			t.Error("app certificate does not hold the app public key")
		}
		if _, err := chainToRoots(t, rootFile, append(bytes.Clone(appFile), mustPEMAt(t, alipayFile, 1)...)); err != nil {
			t.Errorf("app certificate does not chain: %v", err)
		}
	})
	t.Run("names, serials and validity look like Alipay's", func(t *testing.T) {
		now := time.Now()
		for _, c := range append(mustCerts(t, alipayFile), mustCerts(t, appFile)[0]) {
			is := c.Issuer
			if len(is.Country) == 0 || len(is.Organization) == 0 || len(is.OrganizationalUnit) == 0 || is.CommonName == "" {
				t.Errorf("issuer %q lacks C, O, OU or CN", is)
			}
			if n := len(c.SerialNumber.Bytes()); n < 16 {
				t.Errorf("serial of %q is %d bytes, want 16 or more", c.Subject.CommonName, n)
			}
			if now.Before(c.NotBefore) || now.After(c.NotAfter) {
				t.Errorf("%q is not valid now", c.Subject.CommonName)
			}
		}
		leaf := mustCerts(t, alipayFile)[0]
		if leaf.NotAfter.After(now.Add(366 * 24 * time.Hour)) {
			t.Errorf("leaf is valid until %s, want about a year", leaf.NotAfter)
		}
	})
	t.Run("directory is 0700 and the state 0600", func(t *testing.T) {
		for path, want := range map[string]os.FileMode{p.Dir(): 0o700, filepath.Join(p.Dir(), PKIStateFile): 0o600} {
			st, err := os.Stat(path)
			if err != nil || st.Mode().Perm() != want {
				t.Errorf("%s: mode %v (%v), want %v", path, st.Mode().Perm(), err, want)
			}
		}
	})
}

// mustPEMAt is the i-th PEM block of a file.
func mustPEMAt(t *testing.T, pemText []byte, i int) []byte {
	t.Helper()
	return certPEM(mustCerts(t, pemText)[i].Raw)
}

func TestOpenPKI(t *testing.T) {
	app, _ := testKeys()
	t.Run("a new directory is created 0700 with the three files", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "b")
		p, err := OpenPKI(dir, "", &app.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("dir mode %v (%v), want 0700", st.Mode().Perm(), err)
		}
		for _, name := range []string{"appCertPublicKey.crt", AlipayCertFile, RootCertFile, PKIStateFile} {
			if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		if p.AppCertPath() != filepath.Join(dir, "appCertPublicKey.crt") {
			t.Errorf("AppCertPath = %s", p.AppCertPath())
		}
	})
	t.Run("reopening loads the same PKI", func(t *testing.T) {
		p := testPKI(t)
		os.Remove(p.AlipayCertPath()) // written again from the state
		q, err := OpenPKI(p.Dir(), testAppID, &app.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		if q.AppCertSN() != p.AppCertSN() || q.AlipayCertSN() != p.AlipayCertSN() || q.RootCertSN() != p.RootCertSN() {
			t.Error("reopened PKI has other SNs")
		}
		if !bytes.Equal(readFile(t, q.AlipayCertPath()), p.AlipayCertPEM()) {
			t.Error("Alipay file not written again")
		}
	})
	t.Run("another app key gets a new app certificate, the rest stays", func(t *testing.T) {
		p := testPKI(t)
		_, other := testKeys()
		q, err := OpenPKI(p.Dir(), testAppID, &other.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		if q.AppCertSN() == p.AppCertSN() || q.AlipayCertSN() != p.AlipayCertSN() || q.RootCertSN() != p.RootCertSN() {
			t.Errorf("app SN %s -> %s, Alipay SN same %v, root SN same %v",
				p.AppCertSN(), q.AppCertSN(), q.AlipayCertSN() == p.AlipayCertSN(), q.RootCertSN() == p.RootCertSN())
		}
		c := mustCerts(t, readFile(t, q.AppCertPath()))[0]
		if pub, _ := c.PublicKey.(*rsa.PublicKey); pub == nil || !pub.Equal(&other.PublicKey) {
			t.Error("app file does not hold the new key")
		}
	})
	t.Run("a rotated certificate survives a restart", func(t *testing.T) {
		p := testPKI(t)
		old := p.AlipayCertSN()
		sn, err := p.rotate()
		if err != nil {
			t.Fatal(err)
		}
		q, err := OpenPKI(p.Dir(), testAppID, &app.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		if q.AlipayCertSN() != sn || sn == old {
			t.Errorf("after restart the SN is %s, want the rotated %s (old %s)", q.AlipayCertSN(), sn, old)
		}
		if _, ok := q.CertContent(old); !ok {
			t.Error("the old certificate is no longer downloadable")
		}
	})
	t.Run("a corrupt state file is refused, naming it", func(t *testing.T) {
		p := testPKI(t)
		state := filepath.Join(p.Dir(), PKIStateFile)
		if err := os.WriteFile(state, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenPKI(p.Dir(), testAppID, &app.PublicKey); err == nil || !strings.Contains(err.Error(), state) {
			t.Errorf("err = %v, want one naming %s", err, state)
		}
	})
	t.Run("New refuses a PKI of another app or key, or with an Alipay key", func(t *testing.T) {
		p := testPKI(t)
		_, other := testKeys()
		for name, cfg := range map[string]Config{
			"other app id":       {AppID: "2021000000000009", AppPublicKey: &app.PublicKey, Certs: p},
			"other app key":      {AppID: testAppID, AppPublicKey: &other.PublicKey, Certs: p},
			"Alipay key":         {AppID: testAppID, AppPublicKey: &app.PublicKey, Certs: p, AlipayKey: other},
			"rotate in key mode": {AppID: testAppID, AppPublicKey: &app.PublicKey, AlipayKey: other, RotateCertAfter: 1},
		} {
			if _, err := New(cfg); err == nil {
				t.Errorf("%s: New succeeded", name)
			}
		}
	})
}
