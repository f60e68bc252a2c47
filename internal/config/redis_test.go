package config

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
)

func ping(tb testing.TB, url string) error {
	tb.Helper()
	rdb, err := RedisClient(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return rdb.Ping(ctx).Err()
}

func TestRedisURLCarriesAuth(t *testing.T) {
	m := miniredis.RunT(t)
	m.RequireUserAuth("zhimaq", "s3cret-pass")
	if err := ping(t, "redis://zhimaq:s3cret-pass@"+m.Addr()+"/0"); err != nil {
		t.Fatalf("with the right password: %v", err)
	}
	err := ping(t, "redis://zhimaq:wrong-pass@"+m.Addr()+"/0")
	if err == nil {
		t.Fatal("a wrong password was accepted")
	}
	if strings.Contains(err.Error(), "wrong-pass") {
		t.Fatalf("the error shows the password: %v", err)
	}
}

// testCA is made once per process: the system roots are loaded once, so a
// second run of the test (go test -count=2) must present the same CA.
var testCA = sync.OnceValues(func() (*ecdsa.PrivateKey, []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return key, der
})

// TestRedissURLSpeaksTLS serves miniredis over TLS with a certificate of a
// test CA that the process trusts through SSL_CERT_FILE, as an operator
// would add a private CA.
func TestRedissURLSpeaksTLS(t *testing.T) {
	dir := t.TempDir()
	key, der := testCA()
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	t.Setenv("SSL_CERT_FILE", caFile) // read when the system roots are first loaded, below

	m := miniredis.NewMiniRedis()
	m.RequireAuth("tls-pass")
	if err := m.StartTLS(&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, port, _ := net.SplitHostPort(m.Addr())
	if err := ping(t, "rediss://:tls-pass@localhost:"+port+"/0"); err != nil {
		t.Fatalf("rediss:// with a trusted certificate: %v", err)
	}
	if err := ping(t, "redis://:tls-pass@localhost:"+port+"/0"); err == nil {
		t.Fatal("plain redis:// spoke to a TLS server")
	}
}

func TestRedisClusterURL(t *testing.T) {
	for _, tt := range []struct{ url, want string }{
		{"redis-cluster://", "needs hosts"},
		{"redis-cluster://h1:7000,h2:7001/2", "no database number"},
		{"redis-cluster://h1:7000?tls=maybe", "tls must be true or false"},
	} {
		if _, err := ParseRedisURL(tt.url); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.url, err, tt.want)
		}
	}
	opt, err := ParseRedisURL("redis-cluster://u:s3cret@h1:7000,h2?tls=true")
	if err != nil {
		t.Fatal(err)
	}
	c, ok := opt.(asynq.RedisClusterClientOpt)
	if !ok || len(c.Addrs) != 2 || c.Addrs[1] != "h2:6379" || c.Password != "s3cret" || c.TLSConfig == nil || c.TLSConfig.ServerName != "h1" {
		t.Fatalf("options %+v", opt)
	}
}
