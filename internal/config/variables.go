package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/zhimaq/zhimaq/internal/hosts"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// Command is a set of the commands that read a variable.
type Command uint8

// The commands that read the environment.
const (
	Worker  Command = 1 << iota // cmd/worker
	Enqueue                     // cmd/enqueue
	Both    = Worker | Enqueue
)

// A Var is one environment variable of the contract.
type Var struct {
	// Name is the variable, such as "REDIS_URL".
	Name string
	// File says NAME_FILE may name a file that holds the value instead
	// (trimmed; an empty file is an error; setting both is an error).
	File bool
	// Default is the default as shown to users ("" = none); it must say
	// what Defaults holds (TestDefaultsAreTheTable checks).
	Default string
	// Help is one short line for the commands' --help.
	Help string
	// Reads are the commands that use the variable.
	Reads Command
	// PerApp says the variable is one app's (App): ZHIMA_APPS_FILE gives
	// it per app instead, under its name in lower case less "ZHIMA_".
	PerApp bool
	// Set checks the form of a value that is set (never "") and puts it into
	// c; its error is the detail after "config: NAME: " and never quotes a
	// secret.
	Set func(c *Config, v string) error
}

// Table lists every variable Load reads, in the order it reads them (the
// first malformed one is the one reported). Load, Variables and Help follow
// from it; see the package doc for adding a setting.
var Table = []Var{
	{Name: "REDIS_URL", Default: "redis://127.0.0.1:6379/0", Reads: Both,
		Help: "redis://, rediss://, redis-sentinel:// or redis-cluster://", Set: str(func(c *Config) *string { return &c.RedisURL })},
	{Name: "REDIS_WAIT_REPLICAS", Default: "0", Reads: Both,
		Help: "replicas that must hold each claim and final record before it counts (Redis WAIT); 0 = none", Set: atLeast(0, func(c *Config) *int { return &c.RedisWaitReplicas })},
	{Name: "REDIS_WAIT_TIMEOUT", Default: "1s", Reads: Both,
		Help: "how long a write waits for REDIS_WAIT_REPLICAS; fewer in time is an error, and the write is tried again",
		Set:  duration(func(c *Config) *time.Duration { return &c.RedisWaitTimeout })},
	{Name: "ZHIMA_GATEWAY_URL", PerApp: true, Default: zhima.DefaultGatewayURL, Reads: Worker,
		Help: "gateway endpoint", Set: str(func(c *Config) *string { return &c.GatewayURL })},
	{Name: "ZHIMA_APP_ID", PerApp: true, Reads: Both,
		Help: "the Alipay app (required)", Set: str(func(c *Config) *string { return &c.AppID })},
	{Name: "ZHIMA_APP_PRIVATE_KEY", PerApp: true, File: true, Reads: Worker,
		Help: "app private key, PEM or bare base64 (required)", Set: str(func(c *Config) *string { return &c.AppPrivateKey })},
	{Name: "ZHIMA_ALIPAY_PUBLIC_KEY", PerApp: true, File: true, Reads: Worker,
		Help: "Alipay public key, PEM or bare base64 (required in public-key mode)", Set: str(func(c *Config) *string { return &c.AlipayPublicKey })},
	{Name: "ZHIMA_APP_CERT", PerApp: true, File: true, Reads: Worker,
		Help: "certificate mode: the app public key certificate, PEM (appCertPublicKey_<app_id>.crt)", Set: str(func(c *Config) *string { return &c.AppCert })},
	{Name: "ZHIMA_ALIPAY_CERT", PerApp: true, File: true, Reads: Worker,
		Help: "certificate mode: the Alipay public key certificate, PEM (alipayCertPublicKey_RSA2.crt)", Set: str(func(c *Config) *string { return &c.AlipayCert })},
	{Name: "ZHIMA_ALIPAY_ROOT_CERT", PerApp: true, File: true, Reads: Worker,
		Help: "certificate mode: the Alipay root certificates, PEM (alipayRootCert.crt)", Set: str(func(c *Config) *string { return &c.AlipayRootCert })},
	{Name: "ZHIMA_ENCRYPT_KEY", PerApp: true, File: true, Reads: Worker,
		Help: "AES content encryption for every call: the console's base64 key", Set: setEncryptKey},
	{Name: "ZHIMA_CHARSET", PerApp: true, Default: "utf-8", Reads: Worker,
		Help: "utf-8 or GBK", Set: setCharset},
	{Name: "ZHIMA_SIGN_TYPE", PerApp: true, Default: "RSA2", Reads: Worker,
		Help: "RSA2 or RSA", Set: setSignType},
	{Name: "ZHIMA_APPS_FILE", Reads: Both,
		Help: "several apps, each with its keys, qps and daily_budget (YAML; see README); in place of the single-app ZHIMA_* variables",
		Set:  str(func(c *Config) *string { return &c.AppsFile })},
	{Name: "ZHIMA_TIMEOUT", Default: "15s", Reads: Worker,
		Help: "one gateway call, connect to last byte", Set: duration(func(c *Config) *time.Duration { return &c.GatewayTimeout })},
	{Name: "WORKER_CONCURRENCY", Default: "50", Reads: Worker,
		Help: "handlers at once", Set: positive(func(c *Config) *int { return &c.WorkerConcurrency })},
	{Name: "INTERACTIVE_CONCURRENCY", Default: "10", Reads: Worker,
		Help: "handlers at once for interactive-lane jobs, beside WORKER_CONCURRENCY's", Set: positive(func(c *Config) *int { return &c.InteractiveConcurrency })},
	{Name: "RETRY_MAX_ATTEMPTS", Default: "12", Reads: Worker,
		Help: "gateway calls per job, first included", Set: positive(func(c *Config) *int { return &c.RetryMaxAttempts })},
	{Name: "RETRY_BASE_DELAY", Default: "2s", Reads: Worker,
		Help: "backoff base, doubled each retry, with jitter", Set: duration(func(c *Config) *time.Duration { return &c.RetryBaseDelay })},
	{Name: "RETRY_MAX_DELAY", Default: "10m", Reads: Worker,
		Help: "longest backoff", Set: duration(func(c *Config) *time.Duration { return &c.RetryMaxDelay })},
	{Name: "DEDUP_WINDOW", Default: "24h", Reads: Both,
		Help: "how long a transaction_id stays claimed", Set: duration(func(c *Config) *time.Duration { return &c.DedupWindow })},
	{Name: "RESULT_TTL", Default: "168h", Reads: Both,
		Help: "how long records stay readable", Set: duration(func(c *Config) *time.Duration { return &c.ResultTTL })},
	{Name: "ZHIMA_QPS", PerApp: true, Default: "0", Reads: Worker,
		Help: "gateway calls per second per app, all workers together; 0 = no limit", Set: setQPS},
	{Name: "POLL_INTERVAL", Default: "200ms", Reads: Worker,
		Help: "how often due retries go back to the queue and an idle worker looks again; retries due sooner run in the handler",
		Set:  duration(func(c *Config) *time.Duration { return &c.PollInterval })},
	{Name: "BREAKER_FAILURES", Default: "20", Reads: Worker,
		Help: "transient failures in a row that stop gateway calls", Set: positive(func(c *Config) *int { return &c.BreakerFailures })},
	{Name: "BREAKER_COOLDOWN", Default: "10s", Reads: Worker,
		Help: "pause before a probe call", Set: duration(func(c *Config) *time.Duration { return &c.BreakerCooldown })},
	{Name: "DATA_KEYS", File: true, Reads: Both,
		Help: `keys that seal personal data in Redis: id:base64-32-bytes,…, the first seals (required; "plaintext" opts out)`,
		Set:  str(func(c *Config) *string { return &c.DataKeys })},
	{Name: "HTTP_ADDR", Default: "127.0.0.1:8080", Reads: Worker,
		Help: `/healthz, /readyz, /metrics and the API; "off" for none; ":8080" listens on every interface`,
		Set:  str(func(c *Config) *string { return &c.HTTPAddr })},
	{Name: "HTTP_IDLE_TIMEOUT", Default: "60s", Reads: Worker,
		Help: "close a keep-alive connection idle this long", Set: duration(func(c *Config) *time.Duration { return &c.HTTPIdleTimeout })},
	{Name: "HTTP_STALL_TIMEOUT", Default: "30s", Reads: Worker,
		Help: "drop a client that sends or takes nothing this long", Set: duration(func(c *Config) *time.Duration { return &c.HTTPStallTimeout })},
	{Name: "HTTP_MAX_HEADER_BYTES", Default: "16384", Reads: Worker,
		Help: "largest request header", Set: positive(func(c *Config) *int { return &c.HTTPMaxHeaderBytes })},
	{Name: "API_MAX_REQUESTS", Default: "32", Reads: Worker,
		Help: "API requests served at once; more get 503", Set: positive(func(c *Config) *int { return &c.APIMaxRequests })},
	{Name: "BATCH_MAX_LINES", Default: strconv.Itoa(Defaults.BatchMaxLines), Reads: Both,
		Help: "most lines one batch may hold", Set: positive(func(c *Config) *int { return &c.BatchMaxLines })},
	{Name: "CALLBACK_SECRET", File: true, Reads: Worker,
		Help: "signs batch callbacks (HMAC-SHA256); strong (openssl rand -hex 32)", Set: setCallbackSecret},
	{Name: "CALLBACK_HOSTS", Default: "any host with a public address", Reads: Both,
		Help: "hosts batch callbacks may go to: host[:port], *.domain[:port], comma-separated", Set: setCallbackHosts},
	{Name: "API_TOKENS", File: true, Reads: Worker,
		Help: "bearer tokens of the HTTP API (/v1/…), comma-separated, strong (openssl rand -hex 32); unset = no API",
		Set:  setAPITokens},
	{Name: "ZHIMAQ_QUEUE", Default: "zhimaq", Reads: Both,
		Help: "the asynq queue", Set: str(func(c *Config) *string { return &c.Queue })},
	{Name: "ZHIMAQ_QUEUE_SHARDS", Default: "1", Reads: Both,
		Help: "batch queues per app, jobs spread by transaction (a Redis Cluster keeps each queue on one node); workers first when raising it",
		Set:  positive(func(c *Config) *int { return &c.QueueShards })},
	{Name: "ZHIMAQ_KEY_PREFIX", Default: "zhimaq:", Reads: Both,
		Help: "prefix of zhimaq's own Redis keys", Set: str(func(c *Config) *string { return &c.KeyPrefix })},
	{Name: "LOG_FORMAT", Default: "json", Reads: Worker,
		Help: "json or console", Set: oneOf(func(c *Config) *string { return &c.LogFormat }, "json", "console")},
	{Name: "LOG_LEVEL", Default: "info", Reads: Worker,
		Help: "debug, info, warn or error", Set: str(func(c *Config) *string { return &c.LogLevel })},
}

// Variables are the environment variables Load reads (NAME_FILE after
// NAME), in Table's order.
var Variables = variables()

func variables() []string {
	var names []string
	for _, v := range Table {
		names = append(names, v.names()...)
	}
	return names
}

// Help lists the variables cmd reads, one a line with its default in
// brackets, for a command's --help.
func Help(cmd Command) string {
	var b strings.Builder
	width := 0
	for _, v := range Table {
		if v.Reads&cmd != 0 {
			width = max(width, len(v.label()))
		}
	}
	for _, v := range Table {
		if v.Reads&cmd == 0 {
			continue
		}
		text := v.Help
		if v.Default != "" {
			text += " [" + v.Default + "]"
		}
		line := fmt.Sprintf("  %-*s ", width, v.label())
		indent := len(line)
		for i, word := range strings.Fields(text) {
			if i > 0 && len(line)+1+len(word) > helpWidth {
				b.WriteString(line + "\n")
				line = strings.Repeat(" ", indent)
			}
			line += " " + word
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// helpWidth is where Help wraps a line (in bytes, so "…" counts 3).
const helpWidth = 100

// label is the name as help shows it: NAME, or NAME[_FILE].
func (v Var) label() string {
	if v.File {
		return v.Name + "[_FILE]"
	}
	return v.Name
}

// value reads v from getenv: "" when unset; with File, NAME or the file
// NAME_FILE names, trimmed. A failure names the setting at fault, as name
// calls it.
func (v Var) value(getenv func(string) string, name func(string) string) (string, error) {
	if !v.File {
		return getenv(v.Name), nil
	}
	val, file := getenv(v.Name), getenv(v.Name+"_FILE")
	switch {
	case val != "" && file != "":
		return "", fmt.Errorf("%s: set either %s or %s, not both", name(v.Name), name(v.Name), name(v.Name+"_FILE"))
	case val != "":
		return strings.TrimSpace(val), nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: cannot read %s: %v", name(v.Name+"_FILE"), file, errors.Unwrap(err))
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", fmt.Errorf("%s: %s is empty", name(v.Name+"_FILE"), file)
		}
		return s, nil
	}
	return "", nil
}

// str sets a string field to the trimmed value; blanks leave it alone.
func str(field func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v = strings.TrimSpace(v); v != "" {
			*field(c) = v
		}
		return nil
	}
}

// oneOf is str for a value that must be one of want.
func oneOf(field func(*Config) *string, want ...string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v = strings.TrimSpace(v); v == "" {
			return nil
		}
		*field(c) = v
		for _, w := range want {
			if v == w {
				return nil
			}
		}
		return errors.New("want " + strings.Join(want, " or "))
	}
}

func duration(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%q is not a positive Go duration such as 2s or 10m", v)
		}
		*field(c) = d
		return nil
	}
}

func positive(field func(*Config) *int) func(*Config, string) error { return atLeast(1, field) }

// atLeast sets an int field to a whole number ≥ least.
func atLeast(least int, field func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < least {
			return fmt.Errorf("%q is not a whole number ≥ %d", v, least)
		}
		*field(c) = n
		return nil
	}
}

func setSignType(c *Config, v string) error {
	if v = strings.TrimSpace(v); v == "" {
		return nil
	}
	c.SignType = zhima.SignType(strings.ToUpper(v))
	if c.SignType != zhima.RSA2 && c.SignType != zhima.RSA {
		return errors.New("want RSA2 or RSA")
	}
	return nil
}

func setEncryptKey(c *Config, v string) error {
	c.EncryptKey = v
	_, err := zhima.ParseAESKey(v)
	return err
}

func setCharset(c *Config, v string) error {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "utf-8", "utf8":
		c.Charset = "utf-8"
	case "gbk":
		c.Charset = "GBK"
	default:
		return errors.New("want utf-8 or GBK")
	}
	return nil
}

func setQPS(c *Config, v string) error {
	q, err := strconv.ParseFloat(v, 64)
	c.QPS = q
	if err != nil || q < 0 {
		return errors.New("want a number ≥ 0 (0 = no limit)")
	}
	return nil
}

func setCallbackSecret(c *Config, v string) error {
	c.CallbackSecret = v
	if problem := weakSecret(v); v != "" && problem != "" {
		return errors.New(problem + "; " + makeSecret)
	}
	return nil
}

func setCallbackHosts(c *Config, v string) error {
	if v = strings.TrimSpace(v); v == "" {
		return nil
	}
	c.CallbackHosts = v
	if _, err := hosts.Parse(v); err != nil {
		return err
	}
	return nil
}

func setAPITokens(c *Config, v string) error {
	if v == "" {
		return nil
	}
	c.APITokens = nil
	n := 0
	for t := range strings.SplitSeq(v, ",") {
		t, n = strings.TrimSpace(t), n+1
		problem := weakSecret(t)
		if problem == "" && strings.ContainsFunc(t, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			problem = "holds a space or a character outside ASCII"
		}
		if problem != "" {
			return fmt.Errorf("token %d %s; %s", n, problem, makeSecret)
		}
		c.APITokens = append(c.APITokens, t)
	}
	return nil
}
