// Package zhimatest holds what zhimaq's tests share: the committed test app
// keys, one generated "Alipay" key per test binary, the sandbox gateway
// under httptest, and a worker configuration pointed at it.
package zhimatest

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/redistest"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/seal"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// AppID is the app id of every test.
const AppID = "2021000000000001"

// KeyFile is the path of a committed test key (app_private_pkcs1.pem,
// app_private_pkcs8.pem, app_public.pem, …), wherever the test runs from.
func KeyFile(name string) string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "zhima", "testdata", "sdkvectors", name)
}

// AppPrivateKeyPEM is the test app's private key (PKCS#1 PEM).
func AppPrivateKeyPEM(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile(KeyFile("app_private_pkcs1.pem"))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// AppPublicKey is the test app's public key.
func AppPublicKey(tb testing.TB) *rsa.PublicKey {
	tb.Helper()
	b, err := os.ReadFile(KeyFile("app_public.pem"))
	if err != nil {
		tb.Fatal(err)
	}
	k, err := zhima.ParsePublicKey(string(b))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

var (
	alipayOnce sync.Once
	alipayKey  *rsa.PrivateKey
)

// AlipayKey is the key the test gateway signs with, generated once per test binary.
func AlipayKey() *rsa.PrivateKey {
	alipayOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		alipayKey = k
	})
	return alipayKey
}

// StartGateway serves a sandbox gateway for cfg until tb ends and returns
// it with its gateway URL. An unset AppPublicKey or AlipayKey becomes the
// test keys; an unset AppID becomes AppID.
func StartGateway(tb testing.TB, cfg sandbox.Config) (*sandbox.Server, string) {
	tb.Helper()
	if cfg.AppPublicKey == nil {
		cfg.AppPublicKey = AppPublicKey(tb)
	}
	if cfg.AlipayKey == nil && cfg.Certs == nil {
		cfg.AlipayKey = AlipayKey()
	}
	if cfg.AppID == "" {
		cfg.AppID = AppID
	}
	gw, err := sandbox.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(gw)
	hs.Config.ConnState = gw.ConnState
	hs.Start()
	tb.Cleanup(func() { gw.Close(); hs.Close() }) // hung calls go first
	return gw, hs.URL + "/gateway.do"
}

// PKI is a sandbox certificate authority for the test app, in a directory
// of tb's: set it as sandbox.Config.Certs for certificate mode.
func PKI(tb testing.TB) *sandbox.PKI {
	tb.Helper()
	p, err := sandbox.OpenPKI(tb.TempDir(), AppID, AppPublicKey(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// WorkerConfig is a worker's configuration for tests: the test app against
// gatewayURL, srv's queue and key prefix, fast retries and polls, no HTTP
// listener.
// A gateway in certificate mode is verified with its certificates.
func WorkerConfig(tb testing.TB, srv *redistest.Server, gw *sandbox.Server, gatewayURL string) config.Config {
	tb.Helper()
	cfg := config.Defaults
	cfg.RedisURL = srv.URL
	cfg.GatewayURL = gatewayURL
	cfg.AppID = AppID
	cfg.AppPrivateKey = AppPrivateKeyPEM(tb)
	if p := gw.Certs(); p != nil {
		cfg.AppCert, cfg.AlipayCert, cfg.AlipayRootCert = string(p.AppCertPEM()), string(p.AlipayCertPEM()), string(p.RootCertPEM())
	} else {
		cfg.AlipayPublicKey = string(gw.AlipayPublicKeyPEM())
	}
	cfg.RetryBaseDelay, cfg.RetryMaxDelay = 10*time.Millisecond, 40*time.Millisecond
	cfg.GatewayTimeout = 5 * time.Second
	cfg.WorkerConcurrency = 20
	cfg.HTTPAddr = "off"
	cfg.PollInterval = 20 * time.Millisecond // retries that are due do not wait long
	cfg.Queue, cfg.KeyPrefix = srv.Queue, srv.Prefix
	cfg.DataKeys = DataKeys
	return cfg
}

// DataKeys is a DATA_KEYS value for tests: one throwaway key, made per test binary.
var DataKeys = func() string {
	k, err := seal.Generate("test")
	if err != nil {
		panic(err)
	}
	return k
}()

// SyncBuffer is a bytes.Buffer that a logger and a test may share.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var digitRun = regexp.MustCompile(`[0-9]{15,}`)

// CopiedDigitRuns returns the runs of 15 or more digits in out of which 15
// in a row also stand in in: an ID number copied from input to output.
func CopiedDigitRuns(out, in []byte) []string {
	var runs []string
	for _, run := range digitRun.FindAll(out, -1) {
		for i := 0; i+15 <= len(run); i++ {
			if bytes.Contains(in, run[i:i+15]) {
				runs = append(runs, string(run))
				break
			}
		}
	}
	return runs
}

// PrintableASCII reports whether s is printable ASCII only: zhimaq's own
// messages are, so anything else came from the input.
func PrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// MostInWindow is the largest number of sorted times that fall in any
// half-open window [t, t+w).
func MostInWindow(ts []time.Time, w time.Duration) int {
	best, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}
