package launch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/zhimaq/zhimaq/internal/procs"
	"github.com/zhimaq/zhimaq/internal/sandbox"
)

// SandboxConfig says how to run zhima-sandbox. It always listens on a free
// port of 127.0.0.1 and generates its Alipay key.
type SandboxConfig struct {
	Program         string   // its path
	AppID           string   // --app-id, the only app it accepts
	AppPublicKey    string   // --app-public-key-file
	AlipayPublicKey string   // --write-alipay-public-key: the workers' ZHIMA_ALIPAY_PUBLIC_KEY_FILE (public-key mode)
	CertDir         string   // --cert-mode --cert-dir: certificate mode, in place of AlipayPublicKey
	EncryptKeyFile  string   // --encrypt-key-file: the AES key file, for content encryption
	Log             string   // the file its output goes to (created)
	Seed            int64    // --seed of its fault draws; 0 leaves it out (a random one)
	Args            []string // more flags, such as --system-error-rate 0.3
}

// Sandbox is a running zhima-sandbox and a client of its admin endpoints.
type Sandbox struct {
	Child           *procs.Child
	URL             string // ZHIMA_GATEWAY_URL: http://127.0.0.1:port/gateway.do
	AdminURL        string // http://127.0.0.1:port
	AlipayPublicKey string // the file it wrote its public key to (public-key mode)
	// The certificate files it wrote (certificate mode): the workers'
	// ZHIMA_APP_CERT_FILE, ZHIMA_ALIPAY_CERT_FILE, ZHIMA_ALIPAY_ROOT_CERT_FILE.
	AppCert, AlipayCert, RootCert string
	Log                           string

	client *http.Client
}

var gatewayURLField = regexp.MustCompile(`gateway_url="?([^"\s]+)`)

// StartSandbox starts zhima-sandbox and waits until it has logged its
// gateway URL and its admin endpoints answer.
func (l *Launcher) StartSandbox(ctx context.Context, c SandboxConfig) (*Sandbox, error) {
	f, err := os.Create(c.Log)
	if err != nil {
		return nil, err
	}
	found := make(chan string, 1)
	var once sync.Once
	tap := procs.NewLineTap(f, func(line []byte) {
		if m := gatewayURLField.FindSubmatch(line); m != nil {
			once.Do(func() { found <- string(m[1]) })
		}
	})
	args := []string{"--addr", "127.0.0.1:0", "--app-id", c.AppID, "--app-public-key-file", c.AppPublicKey}
	if c.CertDir != "" {
		args = append(args, "--cert-mode", "--cert-dir", c.CertDir)
	} else {
		args = append(args, "--write-alipay-public-key", c.AlipayPublicKey)
	}
	if c.EncryptKeyFile != "" {
		args = append(args, "--encrypt-key-file", c.EncryptKeyFile)
	}
	if c.Seed != 0 {
		args = append(args, "--seed", strconv.FormatInt(c.Seed, 10))
	}
	child, err := l.infra.Start("zhima-sandbox", c.Program, append(args, c.Args...), procs.CleanEnv(), tap, tap)
	if err != nil {
		f.Close()
		return nil, err
	}
	s := &Sandbox{Child: child, AlipayPublicKey: c.AlipayPublicKey, Log: c.Log,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	if c.CertDir != "" {
		s.AlipayPublicKey = ""
		s.AppCert = filepath.Join(c.CertDir, sandbox.AppCertFileName(c.AppID))
		s.AlipayCert = filepath.Join(c.CertDir, sandbox.AlipayCertFile)
		s.RootCert = filepath.Join(c.CertDir, sandbox.RootCertFile)
	}
	if err := s.wait(ctx, found); err != nil {
		_ = child.Stop(5 * time.Second)
		return nil, err
	}
	l.onClose(func(grace time.Duration) { _ = s.Stop(grace) })
	return s, nil
}

// wait waits for the gateway URL in the log, then for GET /admin/stats.
func (s *Sandbox) wait(ctx context.Context, found <-chan string) error {
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	exited := func() error {
		return fmt.Errorf("zhima-sandbox exited at start-up (%s):\n%s", procs.DescribeExit(s.Child.Err()), procs.Tail(s.Log, 8))
	}
	select {
	case s.URL = <-found:
	case <-s.Child.Done():
		return exited()
	case <-deadline.C:
		return fmt.Errorf("zhima-sandbox printed no gateway_url within %s:\n%s", startTimeout, procs.Tail(s.Log, 8))
	case <-ctx.Done():
		return ctx.Err()
	}
	u, err := url.Parse(s.URL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("zhima-sandbox printed an unusable gateway_url %q", s.URL)
	}
	s.AdminURL = "http://" + u.Host
	for {
		_, err := s.Stats(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-s.Child.Done():
			return exited()
		case <-deadline.C:
			return fmt.Errorf("zhima-sandbox does not answer at %s: %w", s.AdminURL, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop sends SIGTERM and kills it after grace; it returns how it ended,
// as procs.Child.Stop does.
func (s *Sandbox) Stop(grace time.Duration) error { return s.Child.Stop(grace) }

// Stats reads its counters (GET /admin/stats).
func (s *Sandbox) Stats(ctx context.Context) (sandbox.Stats, error) {
	var st sandbox.Stats
	err := s.admin(ctx, http.MethodGet, "/admin/stats", nil, &st)
	return st, err
}

// SetFaults replaces its faults (PUT /admin/faults).
func (s *Sandbox) SetFaults(ctx context.Context, f sandbox.Faults) error {
	return s.admin(ctx, http.MethodPut, "/admin/faults", f, nil)
}

// Reset zeroes its counters and forgets its transactions (POST /admin/reset).
func (s *Sandbox) Reset(ctx context.Context) error {
	return s.admin(ctx, http.MethodPost, "/admin/reset", nil, nil)
}

// RotateCert makes it rotate its Alipay certificate (POST
// /admin/rotate-cert, certificate mode) and returns the new SN.
func (s *Sandbox) RotateCert(ctx context.Context) (string, error) {
	var out struct {
		SN string `json:"alipay_cert_sn"`
	}
	err := s.admin(ctx, http.MethodPost, "/admin/rotate-cert", nil, &out)
	return out.SN, err
}

// GatewayEnv is the worker environment that points it at the sandbox and
// verifies its answers: the gateway URL, then the Alipay public key file
// or the three certificate files.
func (s *Sandbox) GatewayEnv() []string {
	env := []string{"ZHIMA_GATEWAY_URL=" + s.URL}
	if s.AppCert != "" {
		return append(env, "ZHIMA_APP_CERT_FILE="+s.AppCert, "ZHIMA_ALIPAY_CERT_FILE="+s.AlipayCert,
			"ZHIMA_ALIPAY_ROOT_CERT_FILE="+s.RootCert)
	}
	return append(env, "ZHIMA_ALIPAY_PUBLIC_KEY_FILE="+s.AlipayPublicKey)
}

// Calls is how many gateway calls it counted for one transaction
// (GET /admin/calls).
func (s *Sandbox) Calls(ctx context.Context, method, txid string) (int64, error) {
	var out struct {
		Calls int64 `json:"calls"`
	}
	q := url.Values{"method": {method}, "transaction_id": {txid}}
	err := s.admin(ctx, http.MethodGet, "/admin/calls?"+q.Encode(), nil, &out)
	return out.Calls, err
}

// admin sends body (JSON, when not nil) to an admin endpoint and decodes
// the answer into out (when not nil).
func (s *Sandbox) admin(ctx context.Context, method, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.AdminURL+path, rd)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("sandbox %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("sandbox %s %s: HTTP %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("sandbox %s %s: %w", method, path, err)
		}
	}
	return nil
}
