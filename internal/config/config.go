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

// App is what the worker needs to call the gateway as one Alipay app: the
// single-app variables (ZHIMA_APP_ID, …) or one entry of ZHIMA_APPS_FILE.
type App struct {
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
	QPS             float64        // ZHIMA_QPS, 0 = no limit
	// DailyBudget is the billed calls allowed per Beijing day, per method
	// (only in ZHIMA_APPS_FILE); a method absent has no budget.
	DailyBudget map[string]int
}

// Config is every setting of the worker and the producer.
type Config struct {
	RedisURL          string        // REDIS_URL
	RedisWaitReplicas int           // REDIS_WAIT_REPLICAS: replicas that must hold a claim or a final record
	RedisWaitTimeout  time.Duration // REDIS_WAIT_TIMEOUT: how long to wait for them

	// App is the single app of the ZHIMA_* variables; with ZHIMA_APPS_FILE
	// it holds only their defaults, and Apps lists the file's apps.
	App
	AppsFile       string        // ZHIMA_APPS_FILE
	apps           []appEntry    // the apps of AppsFile, key files unread
	GatewayTimeout time.Duration // ZHIMA_TIMEOUT: one gateway call, connect to last byte

	WorkerConcurrency      int           // WORKER_CONCURRENCY
	InteractiveConcurrency int           // INTERACTIVE_CONCURRENCY: handlers of interactive-lane jobs, beside WorkerConcurrency's
	RetryMaxAttempts       int           // RETRY_MAX_ATTEMPTS, the first attempt included
	RetryBaseDelay         time.Duration // RETRY_BASE_DELAY
	RetryMaxDelay          time.Duration // RETRY_MAX_DELAY
	DedupWindow            time.Duration // DEDUP_WINDOW
	ResultTTL              time.Duration // RESULT_TTL
	PollInterval           time.Duration // POLL_INTERVAL: asynq's check for due retries and an idle worker's wait
	BreakerFailures        int           // BREAKER_FAILURES: transient failures in a row that open the breaker
	BreakerCooldown        time.Duration // BREAKER_COOLDOWN: how long it stays open before a probe
	DataKeys               string        // DATA_KEYS or the file DATA_KEYS_FILE
	HTTPAddr               string        // HTTP_ADDR
	HTTPIdleTimeout        time.Duration // HTTP_IDLE_TIMEOUT: a keep-alive connection idle this long is closed
	HTTPStallTimeout       time.Duration // HTTP_STALL_TIMEOUT: a client that sends or takes nothing this long is dropped
	HTTPMaxHeaderBytes     int           // HTTP_MAX_HEADER_BYTES: the largest request header accepted
	APIMaxRequests         int           // API_MAX_REQUESTS: API requests served at once; more get 503
	BatchMaxLines          int           // BATCH_MAX_LINES: the most lines one batch may hold
	CallbackSecret         string        // CALLBACK_SECRET or the file CALLBACK_SECRET_FILE: signs batch callbacks
	CallbackHosts          string        // CALLBACK_HOSTS: the hosts batch callbacks may go to, "" = any public address (batches.ParseHosts)
	APITokens              []string      // API_TOKENS or the file API_TOKENS_FILE: bearer tokens of the HTTP API

	Queue       string // ZHIMAQ_QUEUE: the asynq queue
	QueueShards int    // ZHIMAQ_QUEUE_SHARDS: batch queues per app (payload.QueueNames)
	KeyPrefix   string // ZHIMAQ_KEY_PREFIX: prefix of zhimaq's own Redis keys

	LogFormat string // LOG_FORMAT: json or console
	LogLevel  string // LOG_LEVEL: debug, info, warn, error
}

// Defaults are the documented defaults, each written here only; packages
// that fall back to one when given zero read it from here. BatchMaxLines
// leaves room for an overnight backfill while bounding what one batch can
// cost Redis.
var Defaults = Config{
	RedisURL:               "redis://127.0.0.1:6379/0",
	RedisWaitTimeout:       time.Second,
	App:                    App{GatewayURL: zhima.DefaultGatewayURL, SignType: zhima.RSA2, Charset: "utf-8"},
	GatewayTimeout:         15 * time.Second,
	WorkerConcurrency:      50,
	InteractiveConcurrency: 10,
	RetryMaxAttempts:       12,
	RetryBaseDelay:         2 * time.Second,
	RetryMaxDelay:          10 * time.Minute,
	DedupWindow:            24 * time.Hour, // the gateway honours a transaction_id for a day
	ResultTTL:              168 * time.Hour,
	HTTPAddr:               "127.0.0.1:8080",
	HTTPIdleTimeout:        60 * time.Second,
	HTTPStallTimeout:       30 * time.Second,
	HTTPMaxHeaderBytes:     16 << 10,
	APIMaxRequests:         32,
	BatchMaxLines:          100_000,
	PollInterval:           200 * time.Millisecond,
	BreakerFailures:        20,
	BreakerCooldown:        10 * time.Second,
	Queue:                  "zhimaq",
	QueueShards:            1,
	KeyPrefix:              keyspace.DefaultPrefix,
	LogFormat:              "json",
	LogLevel:               "info",
}

// Load reads the settings from getenv (os.Getenv when nil) over Defaults.
// It checks the form of every value it finds but requires none: callers
// ask for what they need with RequireGateway. With ZHIMA_APPS_FILE it
// reads the file and checks every app's settings, but reads none of the
// key files the apps name: Apps does, for the worker.
func Load(getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	c := Defaults
	err := c.set(Table, getenv, plainName)
	if err == nil && c.RetryMaxDelay < c.RetryBaseDelay {
		err = errors.New("RETRY_MAX_DELAY: is shorter than RETRY_BASE_DELAY")
	}
	if err == nil {
		err = c.App.checkMode(plainName)
	}
	if err == nil {
		_, err = ParseRedisURL(c.RedisURL)
		if err != nil {
			return c, err
		}
	}
	if err == nil && c.AppsFile != "" {
		err = c.loadAppsFile(getenv)
	}
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// set applies vars, read from getenv, to c; the first malformed value
// fails it, named by name (the variable's name, or an apps file's key).
func (c *Config) set(vars []Var, getenv func(string) string, name func(string) string) error {
	for _, v := range vars {
		val, err := v.value(getenv, name)
		switch {
		case err != nil:
			return err
		case val != "":
			if err := v.Set(c, val); err != nil {
				return fmt.Errorf("%s: %v", name(v.Name), err)
			}
		}
	}
	return nil
}

// plainName names a variable as the environment does.
func plainName(v string) string { return v }

// RequireGateway reports the first gateway setting a worker needs that is
// missing, of the single app or of any app of ZHIMA_APPS_FILE (whose key
// files it reads).
func (c Config) RequireGateway() error {
	_, err := c.Apps()
	return err
}

// check reports the first setting of a that a worker lacks or that
// contradicts another.
func (a App) check(name func(string) string) error {
	if err := a.checkMode(name); err != nil {
		return err
	}
	either := func(v string) string { return name(v) + " or " + name(v+"_FILE") }
	switch {
	case a.AppID == "":
		return fmt.Errorf("%s is required", name("ZHIMA_APP_ID"))
	case a.AppPrivateKey == "":
		return fmt.Errorf("%s is required", either("ZHIMA_APP_PRIVATE_KEY"))
	case a.AlipayPublicKey == "" && !a.CertMode():
		return fmt.Errorf("%s is required, or certificate mode: %s, %s and %s", name("ZHIMA_ALIPAY_PUBLIC_KEY_FILE"),
			name("ZHIMA_APP_CERT_FILE"), name("ZHIMA_ALIPAY_CERT_FILE"), name("ZHIMA_ALIPAY_ROOT_CERT_FILE"))
	}
	return nil
}

// CertMode says the three certificate variables are set.
func (a App) CertMode() bool {
	return a.AppCert != "" && a.AlipayCert != "" && a.AlipayRootCert != ""
}

// checkMode refuses both ways of verifying answers at once, and some of the
// certificate variables without the others.
func (a App) checkMode(name func(string) string) error {
	certs := []struct{ name, value string }{
		{"ZHIMA_APP_CERT", a.AppCert}, {"ZHIMA_ALIPAY_CERT", a.AlipayCert}, {"ZHIMA_ALIPAY_ROOT_CERT", a.AlipayRootCert},
	}
	label := func(v string) string { return name(v) + "[" + strings.TrimPrefix(name(v+"_FILE"), name(v)) + "]" }
	var set, missing []string
	for _, v := range certs {
		if v.value != "" {
			set = append(set, label(v.name))
		} else {
			missing = append(missing, label(v.name))
		}
	}
	switch {
	case len(set) > 0 && a.AlipayPublicKey != "":
		return fmt.Errorf("%s and %s are both set: choose public-key mode or certificate mode, as the app is set up in the Alipay console", label("ZHIMA_ALIPAY_PUBLIC_KEY"), strings.Join(set, ", "))
	case len(set) > 0 && len(missing) > 0:
		return fmt.Errorf("certificate mode needs all three certificates: %s set, %s missing", strings.Join(set, ", "), strings.Join(missing, ", "))
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
	c.apps = nil // the file's inline keys are not printed; AppsFile names it
	if u, err := url.Parse(c.RedisURL); err == nil && u.User != nil {
		u.User = url.User(u.User.Username())
		c.RedisURL = u.String()
	}
	type plain Config
	return fmt.Sprintf("%+v", plain(c))
}
