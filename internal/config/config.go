// Package config reads zhimaq's settings from the environment (DESIGN.md
// "Contract: configuration"). Every failure names the variable at fault and
// never quotes a secret.
//
// The settings are data: Table holds one entry per variable (its name, its
// _FILE form, its default as users see it, a parser that checks it and sets
// its Config field, a help line and the commands that read it), and Load,
// Variables and the environment sections of worker --help and enqueue help
// are derived from it. Adding a setting is one Table entry plus a README row
// in the Configuration table (and the Config field the entry sets, with its
// value in Defaults when it has one); the tests check that the README, the
// help and Defaults agree with Table. Cross-field checks stay in Load.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/zhimaq/zhimaq/internal/keyspace"
	"github.com/zhimaq/zhimaq/internal/seal"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// Config is every setting of the worker and the producer.
type Config struct {
	RedisURL string // REDIS_URL

	GatewayURL      string         // ZHIMA_GATEWAY_URL
	AppID           string         // ZHIMA_APP_ID
	AppPrivateKey   string         // ZHIMA_APP_PRIVATE_KEY or the file ZHIMA_APP_PRIVATE_KEY_FILE
	AlipayPublicKey string         // ZHIMA_ALIPAY_PUBLIC_KEY or the file ZHIMA_ALIPAY_PUBLIC_KEY_FILE
	AppCert         string         // ZHIMA_APP_CERT[_FILE]: certificate mode, with the next two
	AlipayCert      string         // ZHIMA_ALIPAY_CERT[_FILE]
	AlipayRootCert  string         // ZHIMA_ALIPAY_ROOT_CERT[_FILE]
	EncryptKey      string         // ZHIMA_ENCRYPT_KEY[_FILE]: AES content encryption
	Charset         string         // ZHIMA_CHARSET: utf-8 or GBK
	SignType        zhima.SignType // ZHIMA_SIGN_TYPE
	GatewayTimeout  time.Duration  // ZHIMA_TIMEOUT: one gateway call, connect to last byte

	WorkerConcurrency  int           // WORKER_CONCURRENCY
	RetryMaxAttempts   int           // RETRY_MAX_ATTEMPTS, the first attempt included
	RetryBaseDelay     time.Duration // RETRY_BASE_DELAY
	RetryMaxDelay      time.Duration // RETRY_MAX_DELAY
	DedupWindow        time.Duration // DEDUP_WINDOW
	ResultTTL          time.Duration // RESULT_TTL
	QPS                float64       // ZHIMA_QPS, 0 = no limit
	PollInterval       time.Duration // POLL_INTERVAL: asynq's check for due retries and an idle worker's wait
	BreakerFailures    int           // BREAKER_FAILURES: transient failures in a row that open the breaker
	BreakerCooldown    time.Duration // BREAKER_COOLDOWN: how long it stays open before a probe
	DataKeys           string        // DATA_KEYS or the file DATA_KEYS_FILE
	HTTPAddr           string        // HTTP_ADDR
	HTTPIdleTimeout    time.Duration // HTTP_IDLE_TIMEOUT: a keep-alive connection idle this long is closed
	HTTPStallTimeout   time.Duration // HTTP_STALL_TIMEOUT: a client that sends or takes nothing this long is dropped
	HTTPMaxHeaderBytes int           // HTTP_MAX_HEADER_BYTES: the largest request header accepted
	APIMaxRequests     int           // API_MAX_REQUESTS: API requests served at once; more get 503
	BatchMaxLines      int           // BATCH_MAX_LINES: the most lines one batch may hold
	CallbackSecret     string        // CALLBACK_SECRET or the file CALLBACK_SECRET_FILE: signs batch callbacks
	CallbackHosts      string        // CALLBACK_HOSTS: the hosts batch callbacks may go to, "" = any public address (batches.ParseHosts)
	APITokens          []string      // API_TOKENS or the file API_TOKENS_FILE: bearer tokens of the HTTP API

	Queue     string // ZHIMAQ_QUEUE: the asynq queue
	KeyPrefix string // ZHIMAQ_KEY_PREFIX: prefix of zhimaq's own Redis keys

	LogFormat string // LOG_FORMAT: json or console
	LogLevel  string // LOG_LEVEL: debug, info, warn, error
}

// Defaults are the documented defaults, each written here only; packages
// that fall back to one when given zero read it from here. BatchMaxLines
// leaves room for an overnight backfill while bounding what one batch can
// cost Redis.
var Defaults = Config{
	RedisURL:           "redis://127.0.0.1:6379/0",
	GatewayURL:         zhima.DefaultGatewayURL,
	SignType:           zhima.RSA2,
	Charset:            "utf-8",
	GatewayTimeout:     15 * time.Second,
	WorkerConcurrency:  50,
	RetryMaxAttempts:   12,
	RetryBaseDelay:     2 * time.Second,
	RetryMaxDelay:      10 * time.Minute,
	DedupWindow:        24 * time.Hour, // the gateway honours a transaction_id for a day
	ResultTTL:          168 * time.Hour,
	HTTPAddr:           "127.0.0.1:8080",
	HTTPIdleTimeout:    60 * time.Second,
	HTTPStallTimeout:   30 * time.Second,
	HTTPMaxHeaderBytes: 16 << 10,
	APIMaxRequests:     32,
	BatchMaxLines:      100_000,
	PollInterval:       200 * time.Millisecond,
	BreakerFailures:    20,
	BreakerCooldown:    10 * time.Second,
	Queue:              "zhimaq",
	KeyPrefix:          keyspace.DefaultPrefix,
	LogFormat:          "json",
	LogLevel:           "info",
}

// Load reads the settings from getenv (os.Getenv when nil) over Defaults.
// It checks the form of every value it finds but requires none: callers
// ask for what they need with RequireGateway.
func Load(getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	c := Defaults
	r := reader{}
	for _, v := range Table {
		val, err := v.value(getenv)
		switch {
		case err != nil:
			r.failErr(err)
		case val != "":
			if err := v.Set(&c, val); err != nil {
				r.fail(v.Name, err.Error())
			}
		}
	}
	if r.err == nil && c.RetryMaxDelay < c.RetryBaseDelay {
		r.fail("RETRY_MAX_DELAY", "is shorter than RETRY_BASE_DELAY")
	}
	if r.err == nil {
		r.failErr(c.checkMode())
	}
	if r.err == nil {
		if _, err := ParseRedisURL(c.RedisURL); err != nil {
			r.err = err
		}
	}
	return c, r.err
}

// RequireGateway reports the first gateway setting a worker needs that is missing.
func (c Config) RequireGateway() error {
	switch {
	case c.AppID == "":
		return errors.New("config: ZHIMA_APP_ID is required")
	case c.AppPrivateKey == "":
		return errors.New("config: ZHIMA_APP_PRIVATE_KEY or ZHIMA_APP_PRIVATE_KEY_FILE is required")
	case c.AlipayPublicKey == "" && !c.CertMode():
		return errors.New("config: ZHIMA_ALIPAY_PUBLIC_KEY_FILE is required, or certificate mode: ZHIMA_APP_CERT_FILE, ZHIMA_ALIPAY_CERT_FILE and ZHIMA_ALIPAY_ROOT_CERT_FILE")
	}
	return nil
}

// CertMode says the three certificate variables are set.
func (c Config) CertMode() bool {
	return c.AppCert != "" && c.AlipayCert != "" && c.AlipayRootCert != ""
}

// checkMode refuses both ways of verifying answers at once, and some of the
// certificate variables without the others.
func (c Config) checkMode() error {
	certs := []struct{ name, value string }{
		{"ZHIMA_APP_CERT", c.AppCert}, {"ZHIMA_ALIPAY_CERT", c.AlipayCert}, {"ZHIMA_ALIPAY_ROOT_CERT", c.AlipayRootCert},
	}
	var set, missing []string
	for _, v := range certs {
		if v.value != "" {
			set = append(set, v.name+"[_FILE]")
		} else {
			missing = append(missing, v.name+"[_FILE]")
		}
	}
	switch {
	case len(set) > 0 && c.AlipayPublicKey != "":
		return fmt.Errorf("config: ZHIMA_ALIPAY_PUBLIC_KEY[_FILE] and %s are both set: choose public-key mode or certificate mode, as the app is set up in the Alipay console", strings.Join(set, ", "))
	case len(set) > 0 && len(missing) > 0:
		return fmt.Errorf("config: certificate mode needs all three certificates: %s set, %s missing", strings.Join(set, ", "), strings.Join(missing, ", "))
	}
	return nil
}

// Keyring parses DATA_KEYS. Without keys it fails, naming the opt-out:
// personal data is sealed in Redis unless DATA_KEYS=plaintext says otherwise.
func (c Config) Keyring() (*seal.Keyring, error) {
	if c.DataKeys == "" {
		return nil, errors.New("config: DATA_KEYS or DATA_KEYS_FILE is required (DATA_KEYS=plaintext keeps personal data in clear in Redis)")
	}
	k, err := seal.Parse(c.DataKeys)
	if err != nil {
		return nil, fmt.Errorf("config: DATA_KEYS: %w", err)
	}
	return k, nil
}

// String shows the configuration with every secret replaced by its length,
// so a Config printed by mistake leaks nothing.
func (c Config) String() string {
	redact := func(s string) string {
		if s == "" {
			return ""
		}
		return fmt.Sprintf("<%d bytes>", len(s))
	}
	c.AppPrivateKey, c.AlipayPublicKey, c.DataKeys = redact(c.AppPrivateKey), redact(c.AlipayPublicKey), redact(c.DataKeys)
	c.CallbackSecret, c.EncryptKey = redact(c.CallbackSecret), redact(c.EncryptKey)
	tokens := make([]string, len(c.APITokens))
	for i, t := range c.APITokens {
		tokens[i] = redact(t)
	}
	c.APITokens = tokens
	if u, err := url.Parse(c.RedisURL); err == nil && u.User != nil {
		u.User = url.User(u.User.Username())
		c.RedisURL = u.String()
	}
	type plain Config
	return fmt.Sprintf("%+v", plain(c))
}

// reader collects the first malformed setting.
type reader struct {
	err error
}

func (r *reader) fail(name, detail string) {
	r.failErr(fmt.Errorf("config: %s: %s", name, detail))
}

func (r *reader) failErr(err error) {
	if r.err == nil {
		r.err = err
	}
}
