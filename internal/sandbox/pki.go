package sandbox

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

// The files a PKI keeps in its directory. The first three are what the
// worker is configured with; the state file is the sandbox's own.
const (
	// AlipayCertFile holds the current Alipay leaf certificate, then the
	// intermediate that issued it (ZHIMA_ALIPAY_CERT_FILE).
	AlipayCertFile = "alipayCertPublicKey_RSA2.crt"
	// RootCertFile holds the roots: an EC P-256 root first, then the RSA
	// root that issued the intermediate, then a second RSA root
	// (ZHIMA_ALIPAY_ROOT_CERT_FILE).
	RootCertFile = "alipayRootCert.crt"
	// PKIStateFile holds the intermediate's key and every Alipay leaf
	// issued, with its key, as PEM (file mode 0600). It never leaves the
	// sandbox: give the worker the other three files only.
	PKIStateFile = "zhima-sandbox-state.pem"
)

// AppCertFileName is the name of the app public key certificate for appID
// (ZHIMA_APP_CERT_FILE): appCertPublicKey_<app_id>.crt, or
// appCertPublicKey.crt when appID is "".
func AppCertFileName(appID string) string {
	if appID == "" {
		return "appCertPublicKey.crt"
	}
	return "appCertPublicKey_" + appID + ".crt"
}

// pkiKeyBits is the size of every RSA key the PKI makes.
const pkiKeyBits = 2048

// The names on the sandbox's certificates: Alipay's, marked as the sandbox's.
var (
	pkiOrg     = []string{"Ant Financial"}
	pkiCAUnit  = []string{"Certification Authority"}
	rootECName = pkix.Name{Country: []string{"CN"}, Organization: pkiOrg, OrganizationalUnit: pkiCAUnit,
		CommonName: "Ant Financial Sandbox Certification Authority E1"}
	rootRSAName = pkix.Name{Country: []string{"CN"}, Organization: pkiOrg, OrganizationalUnit: pkiCAUnit,
		CommonName: "Ant Financial Sandbox Certification Authority R1"}
	rootRSA2Name = pkix.Name{Country: []string{"CN"}, Organization: pkiOrg, OrganizationalUnit: pkiCAUnit,
		CommonName: "Ant Financial Sandbox Certification Authority R2"}
	intermediateName = pkix.Name{Country: []string{"CN"}, Organization: pkiOrg, OrganizationalUnit: pkiCAUnit,
		CommonName: "Ant Financial Sandbox Certification Authority Class 2 R1"}
	alipayLeafName = pkix.Name{Country: []string{"CN"}, Organization: []string{"Alipay.com Co.,Ltd"},
		OrganizationalUnit: []string{"Alipay"}, CommonName: "Alipay Sandbox Open Platform (zhima-sandbox)"}
)

func appCertName(appID string) pkix.Name {
	cn := appID
	if cn == "" {
		cn = "zhima-sandbox app"
	}
	return pkix.Name{Country: []string{"CN"}, Organization: []string{"zhima-sandbox"},
		OrganizationalUnit: []string{"Alipay Open Platform"}, CommonName: cn}
}

// Validity of what the PKI issues, measured on the wall clock (a client
// checks it against its own).
const (
	leafValidity = 365 * 24 * time.Hour
	caValidity   = 20 * 365 * 24 * time.Hour
	backdate     = time.Hour
)

// Roles of the state file's PEM blocks (header "Role").
const (
	roleIntermediate = "intermediate"
	roleRoots        = "root"
	roleLeaf         = "alipay-leaf"
	roleApp          = "app"
)

// PKI is the sandbox's certificate authority for certificate mode (公钥证书
// 模式): a root file of several roots, an RSA intermediate, the Alipay leaf
// certificates that sign answers, and the app public key certificate.
// Open it with OpenPKI and pass it as Config.Certs. All methods are safe for
// concurrent use.
type PKI struct {
	dir   string
	appID string

	rootPEM []byte
	rootSN  string
	inter   *x509.Certificate
	interK  *rsa.PrivateKey
	interP  []byte // the intermediate as PEM
	appPEM  []byte
	appSN   string
	appCert *x509.Certificate

	mu      sync.RWMutex
	leaves  []*alipayLeaf          // Alipay leaves in issue order; the last is current
	bySN    map[string]*alipayLeaf // every leaf issued, rogue included, by SN
	rogueMu sync.Mutex             // held while the rogue chain is made
	rogue   *alipayLeaf
}

// alipayLeaf is one "Alipay" certificate and its key.
type alipayLeaf struct {
	key     *rsa.PrivateKey
	cert    *x509.Certificate
	sn      string
	content []byte // leaf PEM then its issuer's PEM: what download answers
}

// OpenPKI loads the PKI kept in dir, or makes a new one there when dir holds
// no PKIStateFile, creating dir (mode 0700) if it is missing. appID names
// the app certificate (see AppCertFileName) and appPublicKey is the key it
// certifies: when the stored app certificate holds another key or names
// another app, a new one is issued. It (re)writes the three files the worker
// reads, AppCertFileName(appID), AlipayCertFile and RootCertFile (0644), and
// PKIStateFile (0600). A restart on the same dir gives the same SNs. It
// fails when dir cannot be written, when its state file does not parse, or
// when appID holds a path separator.
func OpenPKI(dir, appID string, appPublicKey *rsa.PublicKey) (*PKI, error) {
	if dir == "" {
		return nil, errors.New("sandbox: pki: a directory is required")
	}
	if appPublicKey == nil {
		return nil, errors.New("sandbox: pki: the app public key is required")
	}
	if strings.ContainsAny(appID, `/\`) || appID == "." || appID == ".." {
		return nil, fmt.Errorf("sandbox: pki: app id %q cannot name a file", appID)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: pki: %w", err)
	}
	p := &PKI{dir: dir, appID: appID, bySN: map[string]*alipayLeaf{}}
	state, err := os.ReadFile(filepath.Join(dir, PKIStateFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		err = p.make()
	case err == nil:
		err = p.load(state)
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox: pki: %w", err)
	}
	if p.appCert == nil || !appPublicKey.Equal(p.appCert.PublicKey) || p.appCert.Subject.CommonName != appCertName(appID).CommonName {
		if err := p.issueApp(appPublicKey); err != nil {
			return nil, fmt.Errorf("sandbox: pki: %w", err)
		}
	}
	if err := p.save(); err != nil {
		return nil, fmt.Errorf("sandbox: pki: %w", err)
	}
	return p, nil
}

// Dir is the directory the PKI keeps its files in.
func (p *PKI) Dir() string { return p.dir }

// AppID is the app id the app certificate was issued for ("" for any).
func (p *PKI) AppID() string { return p.appID }

// AppCertPath, AlipayCertPath and RootCertPath are the files to configure
// the worker with: ZHIMA_APP_CERT_FILE, ZHIMA_ALIPAY_CERT_FILE and
// ZHIMA_ALIPAY_ROOT_CERT_FILE.
func (p *PKI) AppCertPath() string { return filepath.Join(p.dir, AppCertFileName(p.appID)) }

// AlipayCertPath is the path of AlipayCertFile; see AppCertPath.
func (p *PKI) AlipayCertPath() string { return filepath.Join(p.dir, AlipayCertFile) }

// RootCertPath is the path of RootCertFile; see AppCertPath.
func (p *PKI) RootCertPath() string { return filepath.Join(p.dir, RootCertFile) }

// AppCertPEM is the app public key certificate, as written to AppCertPath.
func (p *PKI) AppCertPEM() []byte { return bytes.Clone(p.appPEM) }

// AppCertSN is zhima.CertSN of AppCertPEM: what requests must send as
// app_cert_sn.
func (p *PKI) AppCertSN() string { return p.appSN }

// RootCertPEM is the root file, as written to RootCertPath.
func (p *PKI) RootCertPEM() []byte { return bytes.Clone(p.rootPEM) }

// RootCertSN is zhima.RootCertSN of RootCertPEM: what requests must send as
// alipay_root_cert_sn.
func (p *PKI) RootCertSN() string { return p.rootSN }

// AlipayCertPEM is the current Alipay leaf certificate then the
// intermediate, as written to AlipayCertPath (rewritten on rotation).
func (p *PKI) AlipayCertPEM() []byte { return bytes.Clone(p.current().content) }

// AlipayCertSN is zhima.CertSN of AlipayCertPEM: the alipay_cert_sn of the
// answers signed from now on.
func (p *PKI) AlipayCertSN() string { return p.current().sn }

// CertContent is what alipay.open.app.alipaycert.download answers for sn:
// the leaf's PEM then its issuer's PEM. Every leaf issued stays known: the
// current one, those rotated out and the rogue one. It reports false for an
// unknown sn.
func (p *PKI) CertContent(sn string) ([]byte, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	l, ok := p.bySN[sn]
	if !ok {
		return nil, false
	}
	return bytes.Clone(l.content), true
}

func (p *PKI) current() *alipayLeaf {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.leaves[len(p.leaves)-1]
}

// rotate issues a new Alipay leaf (new key, new serial) under the same
// intermediate, makes it current and persists it.
func (p *PKI) rotate() (string, error) {
	key, err := rsa.GenerateKey(rand.Reader, pkiKeyBits)
	if err != nil {
		return "", fmt.Errorf("sandbox: rotate: generate key: %w", err)
	}
	l, err := newLeaf(key, p.inter, p.interK, p.interP)
	if err != nil {
		return "", fmt.Errorf("sandbox: rotate: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.leaves = append(p.leaves, l)
	p.bySN[l.sn] = l
	if err := p.saveLocked(); err != nil {
		p.leaves = p.leaves[:len(p.leaves)-1]
		delete(p.bySN, l.sn)
		return "", fmt.Errorf("sandbox: rotate: %w", err)
	}
	return l.sn, nil
}

// rogueLeaf is an Alipay leaf that nobody trusts: it chains to a rogue root
// that is not in the root file, under the same names as the real chain, so
// only a signature check of the chain tells it apart. It is made on first
// use, is downloadable by its SN and is never persisted.
func (p *PKI) rogueLeaf() (*alipayLeaf, error) {
	p.rogueMu.Lock()
	defer p.rogueMu.Unlock()
	if p.rogue != nil {
		return p.rogue, nil
	}
	var keys [3]*rsa.PrivateKey
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, pkiKeyBits)
		if err != nil {
			return nil, fmt.Errorf("sandbox: rogue certificate: generate key: %w", err)
		}
		keys[i] = k
	}
	root, _, err := issueCA(rootRSAName, keys[0], nil, keys[0], -1)
	if err != nil {
		return nil, fmt.Errorf("sandbox: rogue certificate: %w", err)
	}
	inter, interPEM, err := issueCA(intermediateName, keys[1], root, keys[0], 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: rogue certificate: %w", err)
	}
	l, err := newLeaf(keys[2], inter, keys[1], interPEM)
	if err != nil {
		return nil, fmt.Errorf("sandbox: rogue certificate: %w", err)
	}
	p.mu.Lock()
	p.bySN[l.sn] = l
	p.mu.Unlock()
	p.rogue = l
	return l, nil
}

// make creates a new PKI: three roots (EC, RSA, RSA), the intermediate
// under the first RSA root, and the first Alipay leaf.
func (p *PKI) make() error {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate EC root key: %w", err)
	}
	var keys [4]*rsa.PrivateKey // root R1, root R2, intermediate, leaf
	for i := range keys {
		if keys[i], err = rsa.GenerateKey(rand.Reader, pkiKeyBits); err != nil {
			return fmt.Errorf("generate RSA key: %w", err)
		}
	}
	_, ecPEM, err := issueCA(rootECName, ecKey, nil, ecKey, -1)
	if err != nil {
		return err
	}
	r1, r1PEM, err := issueCA(rootRSAName, keys[0], nil, keys[0], -1)
	if err != nil {
		return err
	}
	_, r2PEM, err := issueCA(rootRSA2Name, keys[1], nil, keys[1], -1)
	if err != nil {
		return err
	}
	if p.inter, p.interP, err = issueCA(intermediateName, keys[2], r1, keys[0], 0); err != nil {
		return err
	}
	p.interK = keys[2]
	p.rootPEM = bytes.Join([][]byte{ecPEM, r1PEM, r2PEM}, nil)
	if p.rootSN, err = zhima.RootCertSN(p.rootPEM); err != nil {
		return err
	}
	l, err := newLeaf(keys[3], p.inter, p.interK, p.interP)
	if err != nil {
		return err
	}
	p.leaves = []*alipayLeaf{l}
	p.bySN[l.sn] = l
	return nil
}

// issueApp issues the app public key certificate for pub.
func (p *PKI) issueApp(pub *rsa.PublicKey) error {
	tmpl, err := template(appCertName(p.appID), leafValidity)
	if err != nil {
		return err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.inter, pub, p.interK)
	if err != nil {
		return fmt.Errorf("issue app certificate: %w", err)
	}
	p.appCert, err = x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	p.appPEM = certPEM(der)
	p.appSN, err = zhima.CertSN(p.appPEM)
	return err
}

// load reads a state file written by save.
func (p *PKI) load(state []byte) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %s (remove the file to make a new PKI)", filepath.Join(p.dir, PKIStateFile), fmt.Sprintf(format, args...))
	}
	var leafCert *x509.Certificate
	for rest := state; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		role := b.Headers["Role"]
		switch {
		case b.Type == "CERTIFICATE" && role == roleRoots:
			p.rootPEM = append(p.rootPEM, certPEM(b.Bytes)...)
		case b.Type == "CERTIFICATE" && role == roleIntermediate:
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return bad("intermediate: %v", err)
			}
			p.inter, p.interP = c, certPEM(b.Bytes)
		case b.Type == "PRIVATE KEY" && role == roleIntermediate:
			k, err := parseRSAKey(b.Bytes)
			if err != nil {
				return bad("intermediate key: %v", err)
			}
			p.interK = k
		case b.Type == "CERTIFICATE" && role == roleApp:
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return bad("app certificate: %v", err)
			}
			p.appCert, p.appPEM = c, certPEM(b.Bytes)
		case b.Type == "CERTIFICATE" && role == roleLeaf:
			if p.inter == nil {
				return bad("an Alipay certificate comes before the intermediate")
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return bad("Alipay certificate %d: %v", len(p.leaves)+1, err)
			}
			leafCert = c
		case b.Type == "PRIVATE KEY" && role == roleLeaf:
			if leafCert == nil {
				return bad("an Alipay key comes before its certificate")
			}
			k, err := parseRSAKey(b.Bytes)
			if err != nil || !k.PublicKey.Equal(leafCert.PublicKey) {
				return bad("Alipay certificate %d: its key does not match", len(p.leaves)+1)
			}
			l := &alipayLeaf{key: k, cert: leafCert, content: append(certPEM(leafCert.Raw), p.interP...)}
			if l.sn, err = zhima.CertSN(l.content); err != nil {
				return bad("Alipay certificate %d: %v", len(p.leaves)+1, err)
			}
			p.leaves = append(p.leaves, l)
			p.bySN[l.sn] = l
			leafCert = nil
		default:
			return bad("unexpected %s block with role %q", b.Type, role)
		}
	}
	switch {
	case p.inter == nil || p.interK == nil:
		return bad("no intermediate certificate and key")
	case !p.interK.PublicKey.Equal(p.inter.PublicKey):
		return bad("the intermediate key does not match its certificate")
	case len(p.leaves) == 0:
		return bad("no Alipay certificate")
	case len(p.rootPEM) == 0:
		return bad("no root certificate")
	}
	for i, l := range p.leaves {
		if err := l.cert.CheckSignatureFrom(p.inter); err != nil {
			return bad("Alipay certificate %d is not issued by the intermediate", i+1)
		}
	}
	if p.appCert != nil && p.appCert.CheckSignatureFrom(p.inter) != nil {
		p.appCert = nil // issue a new one
	}
	if p.appCert != nil {
		sn, err := zhima.CertSN(p.appPEM)
		if err != nil {
			return bad("app certificate: %v", err)
		}
		p.appSN = sn
	}
	var err error
	if p.rootSN, err = zhima.RootCertSN(p.rootPEM); err != nil {
		return bad("roots: %v", err)
	}
	return nil
}

// save writes the state file and the three public files.
func (p *PKI) save() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.saveLocked()
}

func (p *PKI) saveLocked() error {
	var st bytes.Buffer
	block := func(typ, role string, der []byte) {
		pem.Encode(&st, &pem.Block{Type: typ, Headers: map[string]string{"Role": role}, Bytes: der})
	}
	for rest := p.rootPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		block("CERTIFICATE", roleRoots, b.Bytes)
	}
	interKey, err := x509.MarshalPKCS8PrivateKey(p.interK)
	if err != nil {
		return err
	}
	block("CERTIFICATE", roleIntermediate, p.inter.Raw)
	block("PRIVATE KEY", roleIntermediate, interKey)
	for _, l := range p.leaves {
		k, err := x509.MarshalPKCS8PrivateKey(l.key)
		if err != nil {
			return err
		}
		block("CERTIFICATE", roleLeaf, l.cert.Raw)
		block("PRIVATE KEY", roleLeaf, k)
	}
	block("CERTIFICATE", roleApp, p.appCert.Raw)

	// The state first: a public file never names a leaf the state lacks.
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{PKIStateFile, st.Bytes(), 0o600},
		{RootCertFile, p.rootPEM, 0o644},
		{AlipayCertFile, p.leaves[len(p.leaves)-1].content, 0o644},
		{AppCertFileName(p.appID), p.appPEM, 0o644},
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(p.dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// writeFileAtomic replaces path with data through a temporary file in the
// same directory, so a reader never sees half a file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// issueCA makes a CA certificate for key's public half, signed by
// parentKey; a nil parent makes it self-signed. maxPath < 0 leaves the
// path length open.
func issueCA(name pkix.Name, key crypto.Signer, parent *x509.Certificate, parentKey crypto.Signer, maxPath int) (*x509.Certificate, []byte, error) {
	tmpl, err := template(name, caValidity)
	if err != nil {
		return nil, nil, err
	}
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	if maxPath >= 0 {
		tmpl.MaxPathLen, tmpl.MaxPathLenZero = maxPath, maxPath == 0
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("issue %s: %w", name.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return c, certPEM(der), nil
}

// newLeaf issues an Alipay leaf for key under issuer.
func newLeaf(key *rsa.PrivateKey, issuer *x509.Certificate, issuerKey *rsa.PrivateKey, issuerPEM []byte) (*alipayLeaf, error) {
	tmpl, err := template(alipayLeafName, leafValidity)
	if err != nil {
		return nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, issuerKey)
	if err != nil {
		return nil, fmt.Errorf("issue Alipay certificate: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	l := &alipayLeaf{key: key, cert: c, content: append(certPEM(der), issuerPEM...)}
	if l.sn, err = zhima.CertSN(l.content); err != nil {
		return nil, err
	}
	return l, nil
}

// template is a certificate template with a random 128-bit serial and a
// validity from an hour ago for d.
func template(name pkix.Name, d time.Duration) (*x509.Certificate, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	b[0] |= 0x80 // a full 16 bytes, positive once DER adds its leading zero
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(b[:]),
		Subject:      name,
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(d),
	}, nil
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func parseRSAKey(der []byte) (*rsa.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an RSA key")
	}
	return rk, nil
}
