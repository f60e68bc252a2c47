// Package sandbox is a local stand-in for Alipay's OpenAPI gateway that
// answers the three Zhima methods zhimaq calls. It checks request signatures
// and parameters as the gateway does, answers deterministically, signs its
// answers with its own "Alipay" key, keeps transaction_id semantics, counts
// calls and billing, and injects faults on demand. Server is an http.Handler,
// so tests can run it under httptest; cmd/zhima-sandbox serves it on a port.
//
// Like Alipay, it reads the common parameters from the form body and the
// query string, treats a missing charset as GBK, verifies the signature over
// the bytes received in that charset, and answers in that charset. Protocol
// failures come in an "error_response" node, business failures (such as
// INVALID_PARAMETER naming the field) in the method's node. No answer quotes
// an ID number, a name or a phone number.
//
// Two options of Alipay's are available. Certificate mode (Config.Certs, see
// PKI and certmode.go): requests carry app_cert_sn and alipay_root_cert_sn,
// answers carry alipay_cert_sn and are signed by that Alipay certificate's
// key, alipay.open.app.alipaycert.download serves the certificates, and the
// Alipay certificate can rotate. Content encryption (Config.AESKey, see
// encrypt.go): the Zhima methods' biz_content and answer node travel AES
// encrypted.
package sandbox

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

// Defaults of Config's zero values.
const (
	DefaultWindow  = 24 * time.Hour
	DefaultMaxHang = 10 * time.Minute
	// DefaultKeyBits is the size of a generated Alipay key.
	DefaultKeyBits = 2048
)

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	// AppID is the only app_id accepted; "" accepts any.
	AppID string
	// AppPublicKey verifies request signatures. Required.
	AppPublicKey *rsa.PublicKey
	// AlipayKey signs answers in public key mode; nil generates a
	// DefaultKeyBits key. It must be nil in certificate mode, where the
	// current Alipay certificate's key signs.
	AlipayKey *rsa.PrivateKey
	// Certs turns on certificate mode: every request must carry the SNs of
	// Certs' app certificate and root file, answers carry alipay_cert_sn, and
	// alipay.open.app.alipaycert.download is served. Certs must have been
	// opened for AppID and AppPublicKey. nil means public key mode.
	Certs *PKI
	// RotateCertAfter, in certificate mode, rotates the Alipay certificate
	// once, after that many Zhima-method calls past the protocol checks:
	// the next answers carry the new SN. The count runs from New; Reset
	// does not restart it. 0 never rotates on its own.
	RotateCertAfter int
	// AESKey turns on content encryption: Zhima-method requests must carry
	// encrypt_type=AES and an encrypted biz_content, and their answers'
	// method nodes are encrypted. nil refuses encrypted requests.
	AESKey *zhima.AESKey
	// Window is how long a transaction_id keeps its first answer, measured
	// on Now from that answer; 0 means DefaultWindow (24h).
	Window time.Duration
	// Faults are the fault rates at start; the zero value injects none.
	Faults Faults
	// Seed seeds the fault draws so a run can be repeated; 0 picks one at
	// random.
	Seed int64
	// Now is the sandbox's clock for timestamp checks and the window; nil
	// means time.Now.
	Now func() time.Time
	// MaxHang bounds a hung request; 0 means DefaultMaxHang (10m).
	MaxHang time.Duration
}

// Server is the sandbox gateway. Its zero value is not usable; call New.
// All methods are safe for concurrent use.
type Server struct {
	appID     string
	appPub    *rsa.PublicKey
	alipayKey *rsa.PrivateKey // public key mode only
	certs     *PKI            // certificate mode only
	aes       *zhima.AESKey
	required  []requiredParam
	window    time.Duration
	maxHang   time.Duration
	now       func() time.Time

	rotateAfter int64
	zhimaCalls  atomic.Int64
	rotateOnce  sync.Once

	dice  *faultDice
	txs   *txStore
	count *counters
	mux   *http.ServeMux

	closeOnce sync.Once
	closed    chan struct{}
}

// New returns a Server for cfg. It fails when AppPublicKey is missing, when
// a Faults rate is outside 0..1 or its latency is negative, when
// RogueCertRate is set outside certificate mode, when Certs does not match
// AppID and AppPublicKey or comes with an AlipayKey, or when a key cannot be
// generated.
func New(cfg Config) (*Server, error) {
	if cfg.AppPublicKey == nil {
		return nil, errors.New("sandbox: Config.AppPublicKey is required to verify request signatures")
	}
	if cfg.Window < 0 || cfg.MaxHang < 0 || cfg.RotateCertAfter < 0 {
		return nil, errors.New("sandbox: Config.Window, Config.MaxHang and Config.RotateCertAfter must not be negative")
	}
	s := &Server{
		appID:       cfg.AppID,
		appPub:      cfg.AppPublicKey,
		certs:       cfg.Certs,
		aes:         cfg.AESKey,
		required:    required,
		window:      cfg.Window,
		maxHang:     cfg.MaxHang,
		now:         cfg.Now,
		rotateAfter: int64(cfg.RotateCertAfter),
		dice:        newFaultDice(cfg.Faults, cfg.Seed),
		txs:         newTxStore(),
		count:       newCounters(),
		closed:      make(chan struct{}),
	}
	if err := s.validFaults(cfg.Faults); err != nil {
		return nil, err
	}
	switch {
	case cfg.Certs != nil:
		if err := s.checkCerts(cfg); err != nil {
			return nil, err
		}
		s.required = append(slices.Clip(required), certRequired...)
	case cfg.RotateCertAfter > 0:
		return nil, errors.New("sandbox: Config.RotateCertAfter needs certificate mode (Config.Certs)")
	case cfg.AlipayKey != nil:
		s.alipayKey = cfg.AlipayKey
	default:
		var err error
		if s.alipayKey, err = rsa.GenerateKey(rand.Reader, DefaultKeyBits); err != nil {
			return nil, fmt.Errorf("sandbox: generate Alipay key: %w", err)
		}
	}
	if s.window == 0 {
		s.window = DefaultWindow
	}
	if s.maxHang == 0 {
		s.maxHang = DefaultMaxHang
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /gateway.do", s.serveGateway)
	s.mux.HandleFunc("GET /gateway.do", s.serveGateway)
	s.mux.HandleFunc("GET /admin/stats", s.serveStats)
	s.mux.HandleFunc("GET /admin/faults", s.serveGetFaults)
	s.mux.HandleFunc("PUT /admin/faults", s.servePutFaults)
	s.mux.HandleFunc("GET /admin/calls", s.serveCalls)
	s.mux.HandleFunc("POST /admin/reset", s.serveReset)
	s.mux.HandleFunc("POST /admin/rotate-cert", s.serveRotateCert)
	s.mux.HandleFunc("GET /alipay_public_key.pem", s.servePublicKey)
	s.mux.HandleFunc("GET /healthz", s.serveHealth)
	return s, nil
}

// ServeHTTP answers the gateway at /gateway.do (POST form or GET query) and
// the admin endpoints: GET /admin/stats, GET and PUT /admin/faults,
// GET /admin/calls?method=M&transaction_id=T, POST /admin/reset,
// POST /admin/rotate-cert, GET /alipay_public_key.pem and GET /healthz.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// ConnState counts accepted connections; set it as http.Server.ConnState
// (or httptest.Server.Config.ConnState before Start).
func (s *Server) ConnState(_ net.Conn, st http.ConnState) {
	if st == http.StateNew {
		s.count.connections.Add(1)
	}
}

// SetFaults replaces the fault settings from the next call on. Rates are
// clamped to 0..1, a negative latency to 0, and RogueCertRate to 0 outside
// certificate mode; use Faults.Validate first to refuse such values instead.
func (s *Server) SetFaults(f Faults) {
	clamp := func(v *float64) {
		if !(*v >= 0) {
			*v = 0
		}
		if *v > 1 {
			*v = 1
		}
	}
	clamp(&f.SystemErrorRate)
	clamp(&f.UnavailableRate)
	clamp(&f.HTTP502Rate)
	clamp(&f.HangRate)
	clamp(&f.BadSignRate)
	clamp(&f.RogueCertRate)
	if s.certs == nil {
		f.RogueCertRate = 0
	}
	if f.Latency < 0 {
		f.Latency = 0
	}
	s.dice.set(f)
}

// Faults returns the fault settings in effect.
func (s *Server) Faults() Faults { return s.dice.get() }

// AlipayPublicKey is the key that verifies the sandbox's answers: configure
// it as the worker's Alipay public key. In certificate mode it is the
// current Alipay certificate's key.
func (s *Server) AlipayPublicKey() *rsa.PublicKey {
	if s.certs != nil {
		return &s.certs.current().key.PublicKey
	}
	return &s.alipayKey.PublicKey
}

// AlipayPublicKeyPEM is AlipayPublicKey as PKIX ("PUBLIC KEY") PEM.
func (s *Server) AlipayPublicKeyPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(s.AlipayPublicKey())
	if err != nil {
		panic("sandbox: marshal RSA public key: " + err.Error())
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Reset forgets every transaction and zeroes every counter. Keys and faults
// stay as they are.
func (s *Server) Reset() {
	s.txs.reset()
	s.count.reset()
}

// Close releases every hung request (answered with HTTP 504) and makes later
// hang faults answer at once, so an http.Server can shut down. The sandbox
// keeps answering otherwise. Close is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closed) })
}

// wait blocks for d, or until the request ends or the sandbox closes; it
// reports whether the full time passed.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closed:
		return false
	}
}
