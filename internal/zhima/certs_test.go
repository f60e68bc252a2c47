package zhima

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// A gateway that wants even the download encrypted refuses it in clear:
// the client asks again encrypted and reads the encrypted answer.
func TestDownloadAsksAgainEncryptedWhenRefusedInClear(t *testing.T) {
	full := readCertVectorFile(t, "alipayCertPublicKey_RSA2.crt")
	interKey, err := ParsePrivateKey(string(readCertVectorFile(t, "rsa_class2_ca.key")))
	if err != nil {
		t.Fatal(err)
	}
	rest := full[len(firstBlock(t, full)):]
	inter, err := firstCert(rest)
	if err != nil {
		t.Fatal(err)
	}
	// The rotated leaf, issued by the intermediate.
	leafKey := testAlipayKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(424242), Subject: pkix.Name{CommonName: "Alipay rotated"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, inter, &leafKey.PublicKey, interKey)
	if err != nil {
		t.Fatal(err)
	}
	rotated := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), rest...)
	rotatedSN, err := CertSN(rotated)
	if err != nil {
		t.Fatal(err)
	}
	aesText := "MDEyMzQ1Njc4OWFiY2RlZg==" // "0123456789abcdef"
	aes, _ := ParseAESKey(aesText)

	var mu sync.Mutex
	var downloads []string // encrypt_type of each download call
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		method, enc := r.PostForm.Get("method"), r.PostForm.Get(ParamEncryptType)
		if method == MethodAlipayCertDownload {
			mu.Lock()
			downloads = append(downloads, enc)
			mu.Unlock()
			if enc == "" {
				fmt.Fprint(w, `{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-encrypt"}}`)
				return
			}
			node := fmt.Sprintf(`{"code":"10000","msg":"Success","alipay_cert_content":"%s"}`, base64.StdEncoding.EncodeToString(rotated))
			fmt.Fprintf(w, `{"%s":"%s"}`, NodeKey(method), aes.Encrypt([]byte(node)))
			return
		}
		node := `"` + aes.Encrypt([]byte(`{"code":"10000","msg":"Success","biz_no":"ZM1","is_admittance":"Y"}`)) + `"`
		sig, _ := Sign(leafKey, RSA2, []byte(node))
		fmt.Fprintf(w, `{"%s":%s,"alipay_cert_sn":"%s","sign":"%s"}`, NodeKey(method), node, rotatedSN, sig)
	}))
	defer srv.Close()

	c, err := NewClient(Config{GatewayURL: srv.URL, AppID: "2021000000000001", AppPrivateKey: readTestFile(t, "app_private_pkcs1.pem"),
		AppCert: string(readCertVectorFile(t, "appCertPublicKey_2021000000000001.crt")), AlipayCert: string(full),
		AlipayRootCert: string(readCertVectorFile(t, "alipayRootCert.crt")), AESKey: aesText})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.ScoreBriefGet(context.Background(), &ScoreBriefGetRequest{TransactionID: "ZQDL1", ProductCode: "w1010100000000002733",
		CertType: "IDENTITY_CARD", CertNo: "11010519491231002X", Name: "张三", AdmittanceScore: 600})
	if err != nil || resp.IsAdmittance != "Y" {
		t.Fatalf("ScoreBriefGet = %+v, %v", resp, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(downloads) != 2 || downloads[0] != "" || downloads[1] != EncryptAES {
		t.Fatalf("download calls by encrypt_type: %q; want one in clear, then one encrypted", downloads)
	}
}
