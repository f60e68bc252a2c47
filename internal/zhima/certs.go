package zhima

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"time"
)

// CertCache shares the Alipay certificates one worker downloaded with every
// other worker of the app. What it returns is checked against the root file
// like a download, so a hostile writer can make a worker download again but
// never make it trust a certificate.
type CertCache interface {
	// Get returns the PEM file kept under sn, or nil and no error when
	// there is none.
	Get(ctx context.Context, sn string) ([]byte, error)
	// Put keeps a checked PEM file under sn.
	Put(ctx context.Context, sn string, pemFile []byte) error
}

// rejectFor is how long an SN whose certificate failed the chain check is
// refused without another download: a rogue answer repeated a thousand
// times costs one download.
const rejectFor = 10 * time.Minute

// maxRejected bounds the refused SNs remembered.
const maxRejected = 1024

// trust is certificate mode's state: the SNs requests carry, the roots, and
// every Alipay certificate that passed the chain check, by SN.
type trust struct {
	appSN, rootSN string
	defaultSN     string // the SN of the configured Alipay certificate
	roots         *x509.CertPool
	// inter are the intermediates of the configured Alipay certificate
	// file: a downloaded certificate may chain through them, for a
	// gateway that sends the leaf alone.
	inter []*x509.Certificate

	mu       sync.Mutex
	keys     map[string]trusted
	rejected map[string]time.Time
	flights  map[string]*flight
}

type trusted struct {
	key      *rsa.PublicKey
	notAfter time.Time
}

// flight is one resolution of an unknown SN that every caller waiting for
// the same SN shares.
type flight struct {
	done chan struct{}
	key  trusted
	err  error
}

// newTrust loads the three files of certificate mode and runs the start-up
// checks: the app certificate holds appKey, and the Alipay certificate
// chains to the root file and is within its dates at now.
func newTrust(appCert, alipayCert, rootCert string, appKey *rsa.PublicKey, now time.Time) (*trust, error) {
	t := &trust{roots: x509.NewCertPool(), keys: map[string]trusted{}, rejected: map[string]time.Time{}, flights: map[string]*flight{}}
	var err error
	if t.appSN, err = CertSN([]byte(appCert)); err != nil {
		return nil, fmt.Errorf("app certificate: %w", err)
	}
	app, err := firstCert([]byte(appCert))
	if err != nil {
		return nil, fmt.Errorf("app certificate: %w", err)
	}
	if pub, ok := app.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(appKey) {
		return nil, errors.New("app certificate: its public key is not the app private key's public half (is it another app's certificate?)")
	}
	if t.rootSN, err = RootCertSN([]byte(rootCert)); err != nil {
		return nil, fmt.Errorf("alipay root certificate: %w", err)
	}
	roots, _ := pemCerts([]byte(rootCert))
	for _, r := range roots {
		// A root Go cannot load (SM2) cannot anchor an RSA chain either.
		if c, err := x509.ParseCertificate(r.der); err == nil {
			t.roots.AddCert(c)
		}
	}
	if files, err := pemCerts([]byte(alipayCert)); err == nil {
		for _, f := range files[1:] {
			if c, err := x509.ParseCertificate(f.der); err == nil {
				t.inter = append(t.inter, c)
			}
		}
	}
	sn, key, err := t.check([]byte(alipayCert), now)
	if err != nil {
		return nil, fmt.Errorf("alipay certificate: %w", err)
	}
	if key.key.Equal(appKey) {
		return nil, errors.New("alipay certificate: it holds the app's own public key; use the Alipay public key certificate (alipayCertPublicKey_RSA2.crt)")
	}
	t.defaultSN = sn
	t.keys[sn] = key
	return t, nil
}

// firstCert parses the first certificate of a PEM file.
func firstCert(pemFile []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(pemFile)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("zhima: no PEM CERTIFICATE block found")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("zhima: %v", err)
	}
	return c, nil
}

// check reads an Alipay certificate file (the leaf, then its intermediates)
// and returns its SN and key when the leaf chains to a root and now is
// within its dates. Nothing else makes a certificate trusted. The chain is
// checked as crypto/x509 checks it, strictly: every issuer must be marked a
// CA (else an app certificate, whose key a merchant holds, could issue an
// "Alipay" one), and SHA-1 signatures are refused.
func (t *trust) check(pemFile []byte, now time.Time) (string, trusted, error) {
	sn, err := CertSN(pemFile)
	if err != nil {
		return "", trusted{}, err
	}
	certs, _ := pemCerts(pemFile)
	leaf, err := x509.ParseCertificate(certs[0].der)
	if err != nil {
		return "", trusted{}, fmt.Errorf("zhima: %v", err)
	}
	inter := x509.NewCertPool()
	for _, c := range t.inter {
		inter.AddCert(c)
	}
	for _, c := range certs[1:] {
		ic, err := x509.ParseCertificate(c.der)
		if err != nil {
			return "", trusted{}, fmt.Errorf("zhima: intermediate certificate: %v", err)
		}
		inter.AddCert(ic)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: t.roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return "", trusted{}, fmt.Errorf("zhima: certificate %s does not chain to the Alipay root file: %v", sn, err)
	}
	key, ok := leaf.PublicKey.(*rsa.PublicKey)
	if !ok {
		return "", trusted{}, fmt.Errorf("zhima: certificate %s holds a %T key, want RSA", sn, leaf.PublicKey)
	}
	return sn, trusted{key: key, notAfter: leaf.NotAfter}, nil
}

// key returns the trusted key of sn ("" means the configured certificate).
// An unknown SN is resolved once however many callers wait for it: from
// the cache, else by fetch; the result is checked, kept and cached.
func (t *trust) key(ctx context.Context, sn string, now time.Time, cache CertCache, fetch func(context.Context, string) ([]byte, error), done func(string, error)) (*rsa.PublicKey, error) {
	if sn == "" {
		sn = t.defaultSN
	}
	t.mu.Lock()
	if k, ok := t.keys[sn]; ok {
		t.mu.Unlock()
		if now.After(k.notAfter) {
			return nil, fmt.Errorf("zhima: Alipay certificate %s expired on %s", sn, k.notAfter.Format(time.DateOnly))
		}
		return k.key, nil
	}
	if at, ok := t.rejected[sn]; ok && now.Sub(at) < rejectFor {
		t.mu.Unlock()
		return nil, fmt.Errorf("zhima: Alipay certificate %s was refused: it does not chain to the root file", sn)
	}
	f, ok := t.flights[sn]
	if !ok {
		f = &flight{done: make(chan struct{})}
		t.flights[sn] = f
		go t.resolve(context.WithoutCancel(ctx), sn, now, f, cache, fetch, done)
	}
	t.mu.Unlock()
	select {
	case <-f.done:
		if f.err != nil {
			return nil, f.err
		}
		return f.key.key, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// resolveTimeout bounds one resolution, which outlives the call that
// started it so that its waiters are not failed by one caller's deadline.
const resolveTimeout = 30 * time.Second

func (t *trust) resolve(ctx context.Context, sn string, now time.Time, f *flight, cache CertCache, fetch func(context.Context, string) ([]byte, error), done func(string, error)) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	chainFailed := false
	f.key, f.err = func() (trusted, error) {
		if cache != nil {
			if pemFile, err := cache.Get(ctx, sn); err == nil && pemFile != nil {
				if got, k, err := t.check(pemFile, now); err == nil && got == sn {
					return k, nil
				}
			}
		}
		pemFile, err := fetch(ctx, sn)
		if err != nil {
			return trusted{}, err
		}
		got, k, err := t.check(pemFile, now)
		if err == nil && got != sn {
			err = fmt.Errorf("zhima: the certificate downloaded for SN %s has SN %s", sn, got)
		}
		if err != nil {
			chainFailed = true
			return trusted{}, err
		}
		if cache != nil {
			cache.Put(ctx, sn, pemFile) // best effort: another worker downloads it again
		}
		return k, nil
	}()
	t.mu.Lock()
	delete(t.flights, sn)
	if f.err == nil {
		t.keys[sn] = f.key
	} else if chainFailed {
		if len(t.rejected) >= maxRejected { // a flood of made-up SNs costs memory no more
			clear(t.rejected)
		}
		t.rejected[sn] = now
	}
	t.mu.Unlock()
	if done != nil {
		done(sn, f.err) // before the waiters go on, so the event comes first
	}
	close(f.done)
}
