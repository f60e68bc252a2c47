package zhima

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"sync"
	"testing"
)

var (
	alipayKeyOnce sync.Once
	alipayKey     *rsa.PrivateKey
)

// testAlipayKey is the key pair a test gateway signs responses with, made once per test binary.
func testAlipayKey(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	alipayKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		alipayKey = k
	})
	return alipayKey
}

func publicPEM(tb testing.TB, k *rsa.PublicKey) string {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestParseKeysAcceptsEveryAlipayForm(t *testing.T) {
	want, err := ParsePrivateKey(readTestFile(t, "app_private_pkcs1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"app_private_pkcs8.pem", "app_private_bare.txt"} {
		k, err := ParsePrivateKey(readTestFile(t, f))
		if err != nil || !k.Equal(want) {
			t.Errorf("%s: key %v, err %v", f, k != nil, err)
		}
	}
	// The bare body wrapped over several lines, as it is pasted from a console.
	bare := readTestFile(t, "app_private_bare.txt")
	var wrapped strings.Builder
	for i := 0; i < len(bare); i += 64 {
		wrapped.WriteString(bare[i:min(i+64, len(bare))] + "\n")
	}
	if k, err := ParsePrivateKey(wrapped.String()); err != nil || !k.Equal(want) {
		t.Errorf("wrapped bare key: %v", err)
	}
	pkcs1Pub := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&want.PublicKey)}))
	for name, text := range map[string]string{"pkix pem": readTestFile(t, "app_public.pem"), "bare": readTestFile(t, "app_public_bare.txt"), "pkcs1 pem": pkcs1Pub} {
		k, err := ParsePublicKey(text)
		if err != nil || !k.Equal(&want.PublicKey) {
			t.Errorf("public %s: %v", name, err)
		}
	}
}

func TestParseKeysRefusesWrongKinds(t *testing.T) {
	tests := []struct {
		name, text string
		parse      func(string) error
		want       string
	}{
		{"public key as private", readTestFile(t, "app_public.pem"), parsePriv, "public key where a private key belongs"},
		{"bare public key as private", readTestFile(t, "app_public_bare.txt"), parsePriv, "public key where a private key belongs"},
		{"private key as public", readTestFile(t, "app_private_pkcs8.pem"), parsePub, "private key where a public key belongs"},
		{"bare private key as public", readTestFile(t, "app_private_bare.txt"), parsePub, "private key where a public key belongs"},
		{"empty", "  \n", parsePriv, "key is empty"},
		{"not base64", "not a key!", parsePub, "neither PEM nor base64"},
		{"broken PEM", "-----BEGIN PUBLIC KEY-----\nAAAA", parsePub, "does not decode"},
		{"random bytes", "c29tZSBieXRlcw==", parsePriv, "neither PKCS#1 nor PKCS#8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.parse(tc.text)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func parsePriv(s string) error { _, err := ParsePrivateKey(s); return err }
func parsePub(s string) error  { _, err := ParsePublicKey(s); return err }

func TestNewClientRefusesBadConfig(t *testing.T) {
	good := Config{
		GatewayURL:      "http://127.0.0.1:1/gateway.do",
		AppID:           "2021000000000001",
		AppPrivateKey:   readTestFile(t, "app_private_pkcs1.pem"),
		AlipayPublicKey: publicPEM(t, &testAlipayKey(t).PublicKey),
	}
	if _, err := NewClient(good); err != nil {
		t.Fatalf("good config: %v", err)
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"app public key in place of alipay key", func(c *Config) { c.AlipayPublicKey = readTestFile(t, "app_public.pem") }, "app's own public key"},
		{"keys swapped", func(c *Config) { c.AppPrivateKey, c.AlipayPublicKey = c.AlipayPublicKey, c.AppPrivateKey }, "app private key: zhima: got a public key"},
		{"no app id", func(c *Config) { c.AppID = "" }, "app id is required"},
		{"bad sign type", func(c *Config) { c.SignType = "MD5" }, `sign type "MD5"`},
		{"bad charset", func(c *Config) { c.Charset = "latin1" }, `charset "latin1"`},
		{"bad gateway", func(c *Config) { c.GatewayURL = "openapi.alipay.com" }, "gateway URL"},
		{"no alipay key", func(c *Config) { c.AlipayPublicKey = "" }, "alipay public key: zhima: key is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.change(&cfg)
			_, err := NewClient(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}
