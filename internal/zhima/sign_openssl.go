//go:build openssl && cgo

package zhima

// The OpenSSL signer: with -tags openssl (and cgo), Sign makes its RSA
// signatures with libcrypto's EVP_DigestSign instead of crypto/rsa, which
// takes several times its CPU per 2048-bit signature (bench/RESULTS.md,
// the "sign" rows). PKCS#1 v1.5 signatures
// are deterministic, so both make the same bytes (the SDK vectors prove it
// under the tag too).
//
// Each key is made ready for OpenSSL once, on its first signature: an
// EVP_PKEY decoded from its PKCS#1 DER, and per digest a context on which
// EVP_DigestSignInit has run. It is kept in evpKeys under a weak pointer to
// the *rsa.PrivateKey, so the cache does not keep a key alive, and when the
// key is collected a cleanup (runtime.AddCleanup) frees it. Each signature
// copies the template into its own EVP_MD_CTX and calls EVP_DigestSign, so
// any number of goroutines may sign with one key at once. The digests are
// fetched once per process.
//
// Build with CGO_ENABLED=1 and libcrypto's headers (pkg-config libcrypto,
// OpenSSL 1.1.1 or later; `make build-openssl`).

/*
#cgo pkg-config: libcrypto
#include <pthread.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/rsa.h>

#if OPENSSL_VERSION_NUMBER < 0x10101000L
#error "the openssl signer needs OpenSSL 1.1.1 or later (EVP_DigestSign)"
#endif

// zq_key is a key as OpenSSL signs with it. tmpl holds a digest-sign
// context per digest (SHA-256, SHA-1) initialised once, with nothing hashed;
// each signature copies one, which costs a small part of what
// EVP_DigestSignInit does (the algorithm fetch). mu guards those copies.
typedef struct {
	EVP_PKEY *pkey;
	EVP_MD_CTX *tmpl[2];
	pthread_mutex_t mu;
	int size;
} zq_key;

typedef struct {
	zq_key *key;
	unsigned long err;
} zq_key_result;

typedef struct {
	size_t len;
	unsigned long err;
	int ok;
} zq_sign_result;

// zq_error takes the first error off this thread's queue and empties it. The
// queue is per thread and a goroutine may change threads between cgo calls,
// so it is read in the call that failed.
static unsigned long zq_error(void) {
	unsigned long e = ERR_get_error();
	ERR_clear_error();
	return e;
}

// zq_init sets ctx up to sign with key and md, PKCS#1 v1.5.
static int zq_init(EVP_MD_CTX *ctx, EVP_PKEY *key, const EVP_MD *md) {
	EVP_PKEY_CTX *pctx = NULL;
	if (md == NULL) {
		return 0; // never the key's default digest
	}
	// One signature per context: finish in place instead of on a copy.
	EVP_MD_CTX_set_flags(ctx, EVP_MD_CTX_FLAG_FINALISE);
	return EVP_DigestSignInit(ctx, &pctx, md, NULL, key) == 1
		&& EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0;
}

// zq_drop_templates frees k's templates, so that each signature inits its
// own context (tests: never while k signs).
static void zq_drop_templates(zq_key *k) {
	for (int i = 0; i < 2; i++) {
		EVP_MD_CTX_free(k->tmpl[i]);
		k->tmpl[i] = NULL;
	}
}

static void zq_key_free(zq_key *k) {
	zq_drop_templates(k);
	EVP_PKEY_free(k->pkey);
	pthread_mutex_destroy(&k->mu);
	OPENSSL_free(k);
}

// zq_key_new decodes a PKCS#1 RSAPrivateKey. A digest whose template cannot
// be made (md NULL, or refused) is left to zq_sign, which says why.
static zq_key_result zq_key_new(const unsigned char *der, long len, const EVP_MD *md[2]) {
	zq_key_result r = {0};
	const unsigned char *p = der;
	zq_key *k = OPENSSL_zalloc(sizeof *k);
	if (k == NULL || pthread_mutex_init(&k->mu, NULL) != 0) {
		OPENSSL_free(k);
		r.err = zq_error();
		return r;
	}
	k->pkey = d2i_PrivateKey(EVP_PKEY_RSA, NULL, &p, len);
	if (k->pkey == NULL) {
		r.err = zq_error();
		zq_key_free(k);
		return r;
	}
	k->size = EVP_PKEY_size(k->pkey);
	for (int i = 0; i < 2; i++) {
		EVP_MD_CTX *t = md[i] != NULL ? EVP_MD_CTX_new() : NULL;
		if (t != NULL && !zq_init(t, k->pkey, md[i])) {
			EVP_MD_CTX_free(t);
			t = NULL;
		}
		k->tmpl[i] = t;
	}
	ERR_clear_error();
	r.key = k;
	return r;
}

// zq_md is SHA-256 (0) or SHA-1 (1), fetched once from the default
// provider so that no signature fetches it again.
static const EVP_MD *zq_md(int sha1) {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	return EVP_MD_fetch(NULL, sha1 ? "SHA1" : "SHA2-256", NULL);
#else
	return sha1 ? EVP_sha1() : EVP_sha256();
#endif
}

static const unsigned char zq_empty[1];

// zq_sign writes the PKCS#1 v1.5 signature of tbs's digest (md, which is
// SHA-256 or SHA-1 as which is 0 or 1) into sig, cap bytes (k->size).
static zq_sign_result zq_sign(zq_key *k, int which, const EVP_MD *md, const unsigned char *tbs, size_t tbslen,
		unsigned char *sig, size_t cap) {
	zq_sign_result r = {0};
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	r.len = cap;
	if (tbslen == 0) {
		tbs = zq_empty;
	}
	if (ctx == NULL) {
		r.ok = 0;
	} else if (k->tmpl[which] != NULL) {
		pthread_mutex_lock(&k->mu);
		r.ok = EVP_MD_CTX_copy_ex(ctx, k->tmpl[which]) == 1;
		pthread_mutex_unlock(&k->mu);
		EVP_MD_CTX_set_flags(ctx, EVP_MD_CTX_FLAG_FINALISE);
	} else {
		r.ok = zq_init(ctx, k->pkey, md);
	}
	r.ok = r.ok && EVP_DigestSign(ctx, sig, &r.len, tbs, tbslen) == 1;
	EVP_MD_CTX_free(ctx);
	if (!r.ok) {
		r.err = zq_error();
	}
	return r;
}
*/
import "C"

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
	"weak"
)

// SignBackend names the code that makes request signatures in this build:
// "go" (crypto/rsa, the default build, no cgo) or "openssl" (libcrypto
// through cgo, built with -tags openssl).
const SignBackend = "openssl"

// evpKey is a key made ready for OpenSSL.
type evpKey struct {
	k    *C.zq_key
	size int
}

var (
	// evpKeys maps weak.Pointer[rsa.PrivateKey] to *evpKey.
	evpKeys sync.Map
	// keptEVPKeys counts the keys made less those freed by the loser of a
	// race to make one (for tests: one per *rsa.PrivateKey, never more).
	keptEVPKeys atomic.Int64

	// mds are SHA-256 and SHA-1 (index which in zq_sign), fetched once; an
	// entry is nil when this libcrypto does not offer it.
	mds = sync.OnceValue(func() *[2]*C.EVP_MD {
		return &[2]*C.EVP_MD{C.zq_md(0), C.zq_md(1)}
	})
)

// signPKCS1v15 is the PKCS#1 v1.5 signature of content's h digest with key,
// made by OpenSSL.
func signPKCS1v15(key *rsa.PrivateKey, h crypto.Hash, content []byte) ([]byte, error) {
	var which int
	switch h {
	case crypto.SHA256:
		which = 0
	case crypto.SHA1:
		which = 1
	default:
		return nil, fmt.Errorf("openssl: unsupported hash %v", h)
	}
	md := mds()[which]
	if md == nil {
		return nil, fmt.Errorf("openssl: %v is not available in this libcrypto", h)
	}
	k, err := evpKeyOf(key)
	if err != nil {
		return nil, err
	}
	sig := make([]byte, k.size)
	var tbs *C.uchar
	if len(content) > 0 {
		tbs = (*C.uchar)(unsafe.Pointer(&content[0]))
	}
	yieldNow()
	r := C.zq_sign(k.k, C.int(which), md, tbs, C.size_t(len(content)), (*C.uchar)(unsafe.Pointer(&sig[0])), C.size_t(len(sig)))
	// key owns k: while key is reachable its cleanup cannot free k.
	runtime.KeepAlive(key)
	if r.ok == 0 {
		return nil, opensslError("EVP_DigestSign", r.err)
	}
	return sig[:r.len], nil
}

// yieldEpoch and lastYield (ns since yieldEpoch) time yieldNow.
var (
	yieldEpoch = time.Now()
	lastYield  atomic.Int64
)

// yieldNow lets the scheduler run (runtime.Gosched) at most once every 5 ms
// across the process. Go's sysmon takes the P of a goroutine that has gone
// 10 ms without being rescheduled, even one in a cgo call with Ps idle; a
// goroutine that signs back to back is never rescheduled (getting its P
// back after a cgo call does not), so from then on it would lose its P in
// every signature and each return would wake threads: about 10% more CPU
// per signature (bench figure sign-openssl: CPU per sign 1.10× wall time
// without this, 1.00× with it). Yielding every 5 ms keeps it younger than
// that. Goroutines that wait between signatures, as the worker's do, are
// rescheduled anyway.
func yieldNow() {
	now := int64(time.Since(yieldEpoch))
	if last := lastYield.Load(); now-last > 5e6 && lastYield.CompareAndSwap(last, now) {
		runtime.Gosched()
	}
}

// evpKeyOf returns key made ready for OpenSSL on its first use. Two
// goroutines that race on a new key each make one; the loser frees its own.
func evpKeyOf(key *rsa.PrivateKey) (*evpKey, error) {
	wp := weak.Make(key)
	if k, ok := evpKeys.Load(wp); ok {
		return k.(*evpKey), nil
	}
	k, err := newEVPKey(key)
	if err != nil {
		return nil, err
	}
	if prev, loaded := evpKeys.LoadOrStore(wp, k); loaded {
		k.free()
		keptEVPKeys.Add(-1)
		return prev.(*evpKey), nil
	}
	runtime.AddCleanup(key, dropEVPKey, wp)
	return k, nil
}

// dropEVPKey runs once key is unreachable: no signature can be using its
// evpKey any more.
func dropEVPKey(wp weak.Pointer[rsa.PrivateKey]) {
	if k, ok := evpKeys.LoadAndDelete(wp); ok {
		k.(*evpKey).free()
	}
}

// newEVPKey gives OpenSSL key as PKCS#1 DER and wipes the DER after.
func newEVPKey(key *rsa.PrivateKey) (*evpKey, error) {
	if len(key.Primes) < 2 || key.N == nil || key.D == nil {
		return nil, errors.New("openssl: incomplete RSA private key")
	}
	// MarshalPKCS1PrivateKey precomputes the key it is given; a copy leaves
	// the caller's key unwritten, so concurrent first signatures do not race.
	c := *key
	der := x509.MarshalPKCS1PrivateKey(&c)
	if len(der) == 0 {
		return nil, errors.New("openssl: RSA private key does not encode as PKCS#1")
	}
	defer clear(der)
	r := C.zq_key_new((*C.uchar)(unsafe.Pointer(&der[0])), C.long(len(der)), &mds()[0])
	if r.key == nil {
		return nil, opensslError("d2i_PrivateKey", r.err)
	}
	keptEVPKeys.Add(1)
	return &evpKey{k: r.key, size: int(r.key.size)}, nil
}

// dropTemplates makes k sign through EVP_DigestSignInit every time, the way
// it does when a template could not be made; for tests, never while k signs.
func (k *evpKey) dropTemplates() { C.zq_drop_templates(k.k) }

func (k *evpKey) free() {
	C.zq_key_free(k.k)
}

// opensslError describes an OpenSSL error code taken off the queue.
func opensslError(op string, code C.ulong) error {
	if code == 0 {
		return fmt.Errorf("openssl: %s failed", op)
	}
	var buf [256]C.char
	C.ERR_error_string_n(code, &buf[0], C.size_t(len(buf)))
	return fmt.Errorf("openssl: %s: %s", op, C.GoString(&buf[0]))
}
