package zhima_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/zhima"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// These tests run the client against the sandbox gateway in certificate
// mode, over real HTTP with real certificates.

var aesKey = base64.StdEncoding.EncodeToString([]byte("zhimaq-test-key!"))

// pubPEM is k as PKIX PEM.
func pubPEM(t *testing.T, k *rsa.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// memCache is a CertCache in memory that counts its reads.
type memCache struct {
	mu   sync.Mutex
	pems map[string][]byte
	gets int
}

func (c *memCache) Get(_ context.Context, sn string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gets++
	return c.pems[sn], nil
}

func (c *memCache) Put(_ context.Context, sn string, pemFile []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pems == nil {
		c.pems = map[string][]byte{}
	}
	c.pems[sn] = pemFile
	return nil
}

// certFiles are the three files of certificate mode as p holds them now
// (a rotation rewrites the Alipay one).
type certFiles struct{ app, alipay, root []byte }

func filesOf(p *sandbox.PKI) certFiles {
	return certFiles{p.AppCertPEM(), p.AlipayCertPEM(), p.RootCertPEM()}
}

// certClient is a client of the test app in certificate mode against url.
func certClient(t *testing.T, url string, f certFiles, aes, charset string, opts ...zhima.Option) *zhima.Client {
	t.Helper()
	c, err := zhima.NewClient(zhima.Config{GatewayURL: url, AppID: zhimatest.AppID, AppPrivateKey: zhimatest.AppPrivateKeyPEM(t),
		AppCert: string(f.app), AlipayCert: string(f.alipay), AlipayRootCert: string(f.root),
		AESKey: aes, Charset: charset}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var txSeq struct {
	sync.Mutex
	n int
}

// score is a valid score request with a transaction id of its own.
func score() *zhima.ScoreBriefGetRequest {
	txSeq.Lock()
	txSeq.n++
	n := txSeq.n
	txSeq.Unlock()
	return &zhima.ScoreBriefGetRequest{TransactionID: fmt.Sprintf("ZQCERT%06d", n), ProductCode: "w1010100000000002733",
		CertType: "IDENTITY_CARD", CertNo: zhimatest.ResidentID("11010119900307123"), Name: "张三", AdmittanceScore: 600}
}

func TestCertificateModeWithAndWithoutAES(t *testing.T) {
	key, err := zhima.ParseAESKey(aesKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, aes := range []string{"", aesKey} {
		for _, charset := range []string{"utf-8", "GBK"} {
			t.Run(fmt.Sprintf("aes=%v/%s", aes != "", charset), func(t *testing.T) {
				p := zhimatest.PKI(t)
				cfg := sandbox.Config{Certs: p}
				if aes != "" {
					cfg.AESKey = key
				}
				gw, url := zhimatest.StartGateway(t, cfg)
				c := certClient(t, url, filesOf(p), aes, charset)
				resp, err := c.ScoreBriefGet(context.Background(), score())
				if err != nil {
					t.Fatal(err)
				}
				if resp.Code != zhima.CodeSuccess || resp.IsAdmittance == "" || resp.Raw[0] != '{' {
					t.Fatalf("answer %+v, raw %s", resp, resp.Raw)
				}
				if st := gw.Stats(); st.Billed != 1 || st.CertDownloads != 0 {
					t.Fatalf("billed %d, downloads %d; want 1 and 0", st.Billed, st.CertDownloads)
				}
			})
		}
	}
}

func TestPublicKeyModeWithAES(t *testing.T) {
	key, _ := zhima.ParseAESKey(aesKey)
	_, url := zhimatest.StartGateway(t, sandbox.Config{AESKey: key})
	newClient := func(aes string) *zhima.Client {
		c, err := zhima.NewClient(zhima.Config{GatewayURL: url, AppID: zhimatest.AppID, AppPrivateKey: zhimatest.AppPrivateKeyPEM(t),
			AlipayPublicKey: string(pubPEM(t, &zhimatest.AlipayKey().PublicKey)), AESKey: aes})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if _, err := newClient(aesKey).ScoreBriefGet(context.Background(), score()); err != nil {
		t.Fatal(err)
	}
	// The gateway refuses what it cannot decrypt, in a plain error_response.
	other := base64.StdEncoding.EncodeToString([]byte("another-16-bytes"))
	for aes, sub := range map[string]string{"": sandbox.SubInvalidEncrypt, other: sandbox.SubDecryptionError} {
		_, err := newClient(aes).ScoreBriefGet(context.Background(), score())
		zerr, ok := errors.AsType[*zhima.Error](err)
		if !ok || zerr.Source != zhima.SourceGateway || zerr.SubCode != sub || zerr.Retryable() {
			t.Errorf("AES key set %v: %v; want a final gateway error %s", aes != "", err, sub)
		}
	}
}

func TestRotationIsDownloadedOnceAndShared(t *testing.T) {
	p := zhimatest.PKI(t)
	gw, url := zhimatest.StartGateway(t, sandbox.Config{Certs: p})
	cache := new(memCache)
	before := filesOf(p)
	var events []string
	var mu sync.Mutex
	c := certClient(t, url, before, "", "", zhima.WithCertCache(cache), zhima.WithCertEvents(func(sn string, err error) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, fmt.Sprintf("%s %v", sn, err))
	}))
	ctx := context.Background()
	if _, err := c.ScoreBriefGet(ctx, score()); err != nil {
		t.Fatal(err)
	}
	oldSN := p.AlipayCertSN()
	newSN, err := gw.RotateCert()
	if err != nil || newSN == oldSN {
		t.Fatalf("RotateCert = %q, %v (old %q)", newSN, err, oldSN)
	}

	// 20 calls meet the new SN at once: one download between them.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			if _, err := c.ScoreBriefGet(ctx, score()); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := gw.Stats().CertDownloads; n != 1 {
		t.Fatalf("%d downloads for one rotation; want 1", n)
	}
	if cache.pems[newSN] == nil {
		t.Fatal("the downloaded certificate is not in the shared cache")
	}
	mu.Lock()
	defer mu.Unlock()
	if want := newSN + " <nil>"; len(events) != 1 || events[0] != want {
		t.Fatalf("certificate events %q; want one: %q", events, want)
	}

	// Another worker of the app, started with the files of before the
	// rotation, takes it from the cache; one without the cache downloads it
	// itself.
	if _, err := certClient(t, url, before, "", "", zhima.WithCertCache(cache)).ScoreBriefGet(ctx, score()); err != nil {
		t.Fatal(err)
	}
	if n := gw.Stats().CertDownloads; n != 1 {
		t.Fatalf("a worker sharing the cache downloaded again: %d downloads", n)
	}
	if _, err := certClient(t, url, before, "", "").ScoreBriefGet(ctx, score()); err != nil {
		t.Fatal(err)
	}
	if n := gw.Stats().CertDownloads; n != 2 {
		t.Fatalf("%d downloads; a worker without the cache should have made the second", n)
	}
}

func TestACertificateOfNoRootIsNeverTrusted(t *testing.T) {
	p := zhimatest.PKI(t)
	gw, url := zhimatest.StartGateway(t, sandbox.Config{Certs: p})
	ctx := context.Background()

	// A Redis writer puts another PKI's certificate under the new SN: it
	// fails the chain check, and the worker downloads the real one.
	stranger := zhimatest.PKI(t)
	cache := new(memCache)
	c := certClient(t, url, filesOf(p), "", "", zhima.WithCertCache(cache))
	newSN, err := gw.RotateCert()
	if err != nil {
		t.Fatal(err)
	}
	cache.Put(ctx, newSN, stranger.AlipayCertPEM())
	if _, err := c.ScoreBriefGet(ctx, score()); err != nil {
		t.Fatalf("a hostile cache entry broke the call: %v", err)
	}
	if n := gw.Stats().CertDownloads; n != 1 {
		t.Fatalf("%d downloads; want 1 (the cache entry is not trusted)", n)
	}

	// The gateway answers with a rogue certificate: every answer is a
	// verification failure, retried, never data; the rogue SN is
	// downloaded once and then refused without asking again.
	gw.SetFaults(sandbox.Faults{RogueCertRate: 1})
	for i := range 5 {
		resp, err := c.ScoreBriefGet(ctx, score())
		zerr, ok := errors.AsType[*zhima.Error](err)
		if resp != nil || !ok || zerr.Source != zhima.SourceVerification || !zerr.Retryable() {
			t.Fatalf("call %d under a rogue certificate: %+v, %v; want a retryable verification failure", i, resp, err)
		}
		if !strings.Contains(err.Error(), "does not chain") {
			t.Fatalf("call %d: %v does not say why", i, err)
		}
	}
	if n := gw.Stats().CertDownloads; n != 2 {
		t.Fatalf("%d downloads; want 2 (the rotation and the rogue SN once)", n)
	}
	gw.SetFaults(sandbox.Faults{})
	if _, err := c.ScoreBriefGet(ctx, score()); err != nil {
		t.Fatal(err)
	}
}

func TestCertificateModeStartUpChecks(t *testing.T) {
	p := zhimatest.PKI(t)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherApp, err := sandbox.OpenPKI(t.TempDir(), zhimatest.AppID, &otherKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	good := zhima.Config{AppID: zhimatest.AppID, AppPrivateKey: zhimatest.AppPrivateKeyPEM(t),
		AppCert: string(p.AppCertPEM()), AlipayCert: string(p.AlipayCertPEM()), AlipayRootCert: string(p.RootCertPEM())}
	if _, err := zhima.NewClient(good); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(*zhima.Config)
		want   string
	}{
		{"another app's certificate", func(c *zhima.Config) { c.AppCert = string(otherApp.AppCertPEM()) }, "not the app private key's public half"},
		{"an Alipay certificate of another root", func(c *zhima.Config) { c.AlipayCert = string(otherApp.AlipayCertPEM()) }, "does not chain"},
		{"a root file without the Alipay root", func(c *zhima.Config) { c.AlipayRootCert = string(otherApp.RootCertPEM()) }, "does not chain"},
		{"both modes", func(c *zhima.Config) { c.AlipayPublicKey = string(pubPEM(t, &otherKey.PublicKey)) }, "not both"},
		{"two of three", func(c *zhima.Config) { c.AlipayRootCert = "" }, "needs the app certificate"},
		{"the app certificate as the Alipay one", func(c *zhima.Config) { c.AlipayCert = c.AppCert }, "alipay certificate"},
		{"a short AES key", func(c *zhima.Config) { c.AESKey = "c2hvcnQ=" }, "5 bytes"},
	}
	for _, tc := range tests {
		cfg := good
		tc.change(&cfg)
		_, err := zhima.NewClient(cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewClient = %v; want an error saying %q", tc.name, err, tc.want)
		}
		if err != nil && cfg.AESKey != "" && strings.Contains(err.Error(), cfg.AESKey) {
			t.Errorf("%s: the error quotes the AES key", tc.name)
		}
	}
}
