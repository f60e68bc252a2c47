package zhima

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// vectorTrust is the trust of the certvectors PKI, as a worker loads it.
func vectorTrust(t *testing.T, alipayCert []byte) (*trust, error) {
	t.Helper()
	app, err := ParsePrivateKey(readTestFile(t, "app_private_pkcs1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return newTrust(string(readCertVectorFile(t, "appCertPublicKey_2021000000000001.crt")), string(alipayCert),
		string(readCertVectorFile(t, "alipayRootCert.crt")), &app.PublicKey, time.Now())
}

// firstBlock is the first PEM block of a file: a leaf without its chain.
func firstBlock(t *testing.T, file []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(file)
	if b == nil {
		t.Fatal("no PEM block")
	}
	return pem.EncodeToMemory(b)
}

func TestADownloadedLeafMayChainThroughTheConfiguredIntermediate(t *testing.T) {
	full := readCertVectorFile(t, "alipayCertPublicKey_RSA2.crt")
	tr, err := vectorTrust(t, full)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tr.check(firstBlock(t, full), time.Now()); err != nil {
		t.Fatalf("the leaf alone, its intermediate known from the configured file: %v", err)
	}
	// Configured with the leaf alone, nothing links it to a root.
	if _, err := vectorTrust(t, firstBlock(t, full)); err == nil || !strings.Contains(err.Error(), "does not chain") {
		t.Fatalf("a leaf without its intermediate was accepted at start-up: %v", err)
	}
	// Dates count: the same leaf, checked after it expires.
	if _, _, err := tr.check(full, time.Date(2046, 1, 1, 0, 0, 0, 0, time.UTC)); err == nil {
		t.Fatal("an expired certificate was trusted")
	}
}

// The app certificate chains to Alipay's root, and the merchant holds its
// key: a certificate signed with that key must never pass for Alipay's.
func TestTheAppCertificateCannotIssueAnAlipayCertificate(t *testing.T) {
	tr, err := vectorTrust(t, readCertVectorFile(t, "alipayCertPublicKey_RSA2.crt"))
	if err != nil {
		t.Fatal(err)
	}
	appKey, err := ParsePrivateKey(readTestFile(t, "app_private_pkcs1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	appFile := readCertVectorFile(t, "appCertPublicKey_2021000000000001.crt")
	appCert, err := firstCert(appFile)
	if err != nil {
		t.Fatal(err)
	}
	forged := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Alipay (forged)"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, forged, appCert, &appKey.PublicKey, appKey)
	if err != nil {
		t.Fatal(err)
	}
	file := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), appFile...)
	if _, _, err := tr.check(file, time.Now()); err == nil || !strings.Contains(err.Error(), "does not chain") {
		t.Fatalf("a certificate issued by the app certificate was trusted: %v", err)
	}
}
