//go:build openssl && cgo

package zhima

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"math/big"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"weak"
)

// These tests run only in the openssl build (`go test -tags openssl`);
// TestSignMatchesOfficialSDK and the certificate-mode vectors then run
// against OpenSSL too.

// TestSignBackendIsOpenSSL fails when the tag builds but Sign does not go
// through OpenSSL: the backend says so and the key lands in evpKeys.
func TestSignBackendIsOpenSSL(t *testing.T) {
	if SignBackend != "openssl" {
		t.Fatalf("SignBackend = %q under -tags openssl", SignBackend)
	}
	key := vectorKey(t)
	wp := weak.Make(key)
	if _, ok := evpKeys.Load(wp); ok {
		t.Fatal("a freshly parsed key is already cached")
	}
	if _, err := Sign(key, RSA2, []byte("a=1")); err != nil {
		t.Fatal(err)
	}
	if _, ok := evpKeys.Load(wp); !ok {
		t.Fatal("Sign did not make an EVP_PKEY for the key: it did not sign with OpenSSL")
	}
	runtime.KeepAlive(key)
}

// TestSignCertModeRequestsWithOpenSSL runs the certificate-mode request
// vectors (signed by Alipay's Node SDK) under `-run Sign`.
func TestSignCertModeRequestsWithOpenSSL(t *testing.T) {
	TestCertModeRequestMatchesOfficialSDK(t)
}

// TestSignOpenSSLMatchesCryptoRSA: for keys of other sizes, both sign types
// and contents from empty to large, OpenSSL's signature is crypto/rsa's.
func TestSignOpenSSLMatchesCryptoRSA(t *testing.T) {
	keys := map[string]*rsa.PrivateKey{"vectors 2048": vectorKey(t)}
	for _, bits := range []int{1024, 3072} {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		keys[fmt.Sprint(bits)] = k
	}
	// A key without its precomputed values is signed all the same, and not
	// written to.
	bare := vectorKey(t)
	bare.Precomputed = rsa.PrecomputedValues{}
	keys["not precomputed"] = bare

	contents := map[string][]byte{
		"empty": {},
		"short": []byte("app_id=2021000000000001&method=zhima.credit.score.brief.get"),
		"1 MiB": []byte(strings.Repeat("中文&=+/% ", 1<<20/14)),
	}
	for kn, key := range keys {
		for _, st := range []SignType{RSA2, RSA} {
			for cn, content := range contents {
				t.Run(fmt.Sprintf("%s/%s/%s", kn, st, cn), func(t *testing.T) {
					got, err := Sign(key, st, content)
					if err != nil {
						t.Fatal(err)
					}
					h, _ := st.hash()
					want, err := rsa.SignPKCS1v15(nil, key, h, digest(h, content))
					if err != nil {
						t.Fatal(err)
					}
					if got != base64.StdEncoding.EncodeToString(want) {
						t.Fatalf("OpenSSL's signature differs from crypto/rsa's\n got %s\nwant %s", got, base64.StdEncoding.EncodeToString(want))
					}
				})
			}
		}
	}
	if bare.Precomputed.Dp != nil {
		t.Error("Sign precomputed the caller's key")
	}
}

// TestSignOpenSSLWithoutTemplates: a key whose digest templates could not
// be made signs through EVP_DigestSignInit, with the same result.
func TestSignOpenSSLWithoutTemplates(t *testing.T) {
	key := vectorKey(t)
	k, err := evpKeyOf(key)
	if err != nil {
		t.Fatal(err)
	}
	k.dropTemplates()
	content := []byte("app_id=2021000000000001&sign_type=RSA2")
	for _, st := range []SignType{RSA2, RSA} {
		got, err := Sign(key, st, content)
		if err != nil {
			t.Fatal(err)
		}
		if err := Verify(&key.PublicKey, st, content, got); err != nil {
			t.Errorf("%s: %v", st, err)
		}
	}
}

// TestSignOpenSSLConcurrentFirstUse: goroutines that sign with a new key at
// once get the same signature and leave one EVP_PKEY behind.
func TestSignOpenSSLConcurrentFirstUse(t *testing.T) {
	key := vectorKey(t)
	before := keptEVPKeys.Load()
	const n = 16
	sigs := make([]string, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			for range 4 {
				sigs[i], errs[i] = Sign(key, RSA2, []byte("content"))
			}
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if sigs[i] != sigs[0] {
			t.Fatalf("goroutine %d signed %s, goroutine 0 %s", i, sigs[i], sigs[0])
		}
	}
	if got := keptEVPKeys.Load() - before; got != 1 {
		t.Errorf("%d EVP_PKEYs live for one key", got)
	}
	runtime.KeepAlive(key)
}

// TestSignOpenSSLFreesCollectedKeys: once a key is unreachable its EVP_PKEY
// is freed and its cache entry goes.
func TestSignOpenSSLFreesCollectedKeys(t *testing.T) {
	key := vectorKey(t)
	if _, err := Sign(key, RSA2, []byte("x")); err != nil {
		t.Fatal(err)
	}
	wp := weak.Make(key)
	key = nil
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		if _, ok := evpKeys.Load(wp); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the EVP_PKEY of a collected key was not freed")
		}
		time.Sleep(10 * time.Millisecond) // cleanups run on their own goroutine
	}
}

// TestSignOpenSSLRefusesIncompleteKeys: a key OpenSSL cannot take (no
// modulus, no primes, inconsistent values) gets an error, never a panic or a
// crypto/rsa signature behind the tag. ParsePrivateKey never returns one.
func TestSignOpenSSLRefusesIncompleteKeys(t *testing.T) {
	key := vectorKey(t)
	for name, k := range map[string]*rsa.PrivateKey{
		"no primes":  {PublicKey: key.PublicKey, D: key.D},
		"one prime":  {PublicKey: key.PublicKey, D: key.D, Primes: key.Primes[:1]},
		"no D":       {PublicKey: key.PublicKey, Primes: key.Primes},
		"wrong D":    {PublicKey: key.PublicKey, D: big.NewInt(3), Primes: key.Primes},
		"no modulus": {PublicKey: rsa.PublicKey{E: key.E}, D: key.D, Primes: key.Primes},
	} {
		t.Run(name, func(t *testing.T) {
			sig, err := Sign(k, RSA2, []byte("x"))
			if err == nil {
				t.Fatalf("signed %s with a broken key", sig)
			}
			if !strings.HasPrefix(err.Error(), "zhima: sign: openssl: ") {
				t.Fatalf("error %q lacks its prefix", err)
			}
		})
	}
}

func vectorKey(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	k, err := ParsePrivateKey(readTestFile(tb, "app_private_pkcs1.pem"))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// BenchmarkSignOpenSSL is Sign (RSA2) of a request-sized string in the
// openssl build; internal/bench's BenchmarkSign is the one the bench report
// uses.
func BenchmarkSignOpenSSL(b *testing.B) {
	key := vectorKey(b)
	content := []byte(strings.Repeat("k=v&", 150))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := Sign(key, RSA2, content); err != nil {
				b.Fatal(err)
			}
		}
	})
}
