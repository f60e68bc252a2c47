package config

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadDefaults(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.WorkerConcurrency != 50 || c.RetryMaxAttempts != 12 || c.RetryBaseDelay != 2*time.Second ||
		c.RetryMaxDelay != 10*time.Minute || c.DedupWindow != 24*time.Hour || c.ResultTTL != 168*time.Hour ||
		c.HTTPAddr != "127.0.0.1:8080" || c.SignType != "RSA2" || c.RedisURL != "redis://127.0.0.1:6379/0" ||
		c.GatewayURL != "https://openapi.alipay.com/gateway.do" || c.QPS != 0 {
		t.Fatalf("defaults differ from the contract: %+v", c)
	}
	if err := c.RequireGateway(); err == nil || !strings.Contains(err.Error(), "ZHIMA_APP_ID") {
		t.Fatalf("RequireGateway = %v", err)
	}
}

func TestLoadNamesTheBadSetting(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, []byte("KEY\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"bad duration", map[string]string{"RETRY_BASE_DELAY": "2 seconds"}, "RETRY_BASE_DELAY"},
		{"negative duration", map[string]string{"DEDUP_WINDOW": "-1h"}, "DEDUP_WINDOW"},
		{"zero concurrency", map[string]string{"WORKER_CONCURRENCY": "0"}, "WORKER_CONCURRENCY"},
		{"words for attempts", map[string]string{"RETRY_MAX_ATTEMPTS": "many"}, "RETRY_MAX_ATTEMPTS"},
		{"max below base", map[string]string{"RETRY_BASE_DELAY": "1m", "RETRY_MAX_DELAY": "1s"}, "RETRY_MAX_DELAY"},
		{"bad sign type", map[string]string{"ZHIMA_SIGN_TYPE": "MD5"}, "ZHIMA_SIGN_TYPE"},
		{"negative qps", map[string]string{"ZHIMA_QPS": "-3"}, "ZHIMA_QPS"},
		{"key and key file", map[string]string{"ZHIMA_APP_PRIVATE_KEY": "x", "ZHIMA_APP_PRIVATE_KEY_FILE": keyFile}, "ZHIMA_APP_PRIVATE_KEY"},
		{"missing key file", map[string]string{"ZHIMA_ALIPAY_PUBLIC_KEY_FILE": "/nonexistent/alipay.pem"}, "ZHIMA_ALIPAY_PUBLIC_KEY_FILE"},
		{"bad redis scheme", map[string]string{"REDIS_URL": "http://u:s3cret@h/0"}, "REDIS_URL"},
		{"bad redis db", map[string]string{"REDIS_URL": "redis://:s3cret@h/zero"}, "REDIS_URL"},
		{"sentinel without master", map[string]string{"REDIS_URL": "redis-sentinel://:s3cret@h1,h2"}, "REDIS_URL"},
		{"bad log format", map[string]string{"LOG_FORMAT": "xml"}, "LOG_FORMAT"},
		{"short callback secret", map[string]string{"CALLBACK_SECRET": "s3cret"}, "CALLBACK_SECRET"},
		{"callback host as a URL", map[string]string{"CALLBACK_HOSTS": "hooks.example,https://other.example"}, "CALLBACK_HOSTS"},
		{"short api token", map[string]string{"API_TOKENS": strongToken + ",s3cret"}, "API_TOKENS"},
		{"api token with a space", map[string]string{"API_TOKENS": "s3cret Kq7vXp2m9Lr4Tz8W"}, "API_TOKENS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(env(tc.env))
			if err == nil || !strings.HasPrefix(err.Error(), "config: "+tc.want) {
				t.Fatalf("err = %v, want it to name %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err %q leaks a secret or spans lines", err)
			}
		})
	}
}

func TestLoadReadsFilesAndURLs(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, []byte("  KEY BODY\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(env(map[string]string{"ZHIMA_APP_PRIVATE_KEY_FILE": keyFile, "ZHIMA_SIGN_TYPE": "rsa", "ZHIMA_QPS": "12.5"}))
	if err != nil || c.AppPrivateKey != "KEY BODY" || c.SignType != "RSA" || c.QPS != 12.5 {
		t.Fatalf("got %+v, %v", c, err)
	}
	tests := map[string]asynq.RedisConnOpt{
		"redis://127.0.0.1:6379/2":                 asynq.RedisClientOpt{Addr: "127.0.0.1:6379", DB: 2},
		"redis://app:pw@redis":                     asynq.RedisClientOpt{Addr: "redis:6379", Username: "app", Password: "pw"},
		"redis-sentinel://:pw@s1,s2:5000?master=m": asynq.RedisFailoverClientOpt{MasterName: "m", SentinelAddrs: []string{"s1:26379", "s2:5000"}, Password: "pw", SentinelPassword: "pw"},
	}
	for raw, want := range tests {
		got, err := ParseRedisURL(raw)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if gs, ws := strings.ReplaceAll(toString(got), " ", ""), strings.ReplaceAll(toString(want), " ", ""); gs != ws {
			t.Errorf("%s: got %s, want %s", raw, gs, ws)
		}
	}
	tlsOpt, err := ParseRedisURL("rediss://:pw@cache.example:6380/0")
	if err != nil || tlsOpt.(asynq.RedisClientOpt).TLSConfig == nil || tlsOpt.(asynq.RedisClientOpt).TLSConfig.ServerName != "cache.example" {
		t.Fatalf("rediss: %+v %v", tlsOpt, err)
	}
}

func toString(v any) string { return fmt.Sprintf("%+v", v) }

// TestVariablesListsEveryVariableLoadReads records every variable Load asks
// for: one missing from Variables, or listed but never read, shows up here.
func TestVariablesListsEveryVariableLoadReads(t *testing.T) {
	read := map[string]bool{}
	Load(func(k string) string { read[k] = true; return "" })
	for _, v := range Variables {
		if !read[v] && !read[strings.TrimSuffix(v, "_FILE")] {
			t.Errorf("%s is listed but Load never reads it", v)
		}
		delete(read, v)
	}
	for v := range read {
		t.Errorf("Load reads %s, which Variables does not list", v)
	}
}

func TestLoadCallbackSecretAndAPITokens(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte(" tok-9f3Kq7vXp2m9Lr4T , tok-Wn8c1Hd5Zs0Jy6Bg\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(env(map[string]string{"CALLBACK_SECRET": "cb-secret-0123456789", "API_TOKENS_FILE": file}))
	if err != nil {
		t.Fatal(err)
	}
	if c.CallbackSecret != "cb-secret-0123456789" || len(c.APITokens) != 2 || c.APITokens[0] != "tok-9f3Kq7vXp2m9Lr4T" || c.APITokens[1] != "tok-Wn8c1Hd5Zs0Jy6Bg" {
		t.Fatalf("got secret %q, tokens %q", c.CallbackSecret, c.APITokens)
	}
	if s := c.String(); strings.Contains(s, "cb-secret") || strings.Contains(s, "tok-") {
		t.Errorf("String() shows a secret: %s", s)
	}
	if d, err := Load(env(nil)); err != nil || d.CallbackSecret != "" || d.APITokens != nil {
		t.Errorf("defaults: secret %q, tokens %q, %v; want none", d.CallbackSecret, d.APITokens, err)
	}
}

// strongToken is an API token that passes weakSecret.
const strongToken = "c0b9a54e1f8d7236e4a1b5c9d0f27e83"

func TestWeakSecretsAreRefused(t *testing.T) {
	const (
		short       = "is shorter than 16 characters"
		published   = "is an example from zhimaq's documentation"
		few         = "has fewer than 6 different characters"
		half        = "is half or more one character"
		predictable = "is mostly a run of equal or successive characters or a repeated pattern"
	)
	tests := []struct {
		name, secret, want string
	}{
		{"refuses one character repeated", "aaaaaaaaaaaaaaaa", half},
		{"refuses two characters in turn", "abababababababab", half},
		{"refuses a run of successive characters", "0123456789abcdef0123", predictable},
		{"refuses the README's example token", "dev-token-0123456789abcdef", published},
		{"refuses 15 characters", "Kq7vXp2m9Lr4Tz8", short},
		{"refuses a repeated word", "abcabcabcabcabcabc", few},
		{"refuses a repeated block", "Kq7vXp2mKq7vXp2m", predictable},
		{"refuses a descending run", "zyxwvutsrqponm9A", predictable},
		{"refuses a run with an even step", "acegikmoqsuwy3Q7", predictable},
		{"refuses a run across digits and letters in either case", "x56789ABCDEFGHq2", predictable},
		{"refuses few different characters", "aaaabbbbccccdddde", few},
		{"refuses a character making up half", "xaxbxcxdxexfxgxh", half},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range []string{"API_TOKENS", "CALLBACK_SECRET"} {
				value := tc.secret
				if v == "API_TOKENS" {
					value = strongToken + "," + tc.secret
				}
				_, err := Load(env(map[string]string{v: value}))
				if err == nil {
					t.Fatalf("%s accepted", v)
				}
				msg := err.Error()
				if !strings.HasPrefix(msg, "config: "+v+": ") || !strings.Contains(msg, tc.want) ||
					!strings.Contains(msg, "openssl rand -hex 32") || strings.Contains(msg, "\n") {
					t.Errorf("%s: err %q, want one line naming %s, saying it %s and how to make a good one", v, msg, v, tc.want)
				}
				if quotesPart(msg, tc.secret) || quotesPart(msg, strongToken) {
					t.Errorf("%s: err %q quotes the secret", v, msg)
				}
			}
		})
	}
}

// quotesPart reports whether msg holds 8 characters in a row of secret.
func quotesPart(msg, secret string) bool {
	for i := 0; i+8 <= len(secret); i++ {
		if strings.Contains(msg, secret[i:i+8]) {
			return true
		}
	}
	return false
}

func TestRandomSecretsAreAccepted(t *testing.T) {
	formats := []struct {
		name string
		make func() string
	}{
		{"openssl rand -hex 16", func() string { return hex.EncodeToString(randomBytes(t, 16)) }},
		{"openssl rand -hex 32", func() string { return hex.EncodeToString(randomBytes(t, 32)) }},
		{"openssl rand -base64 24", func() string { return base64.StdEncoding.EncodeToString(randomBytes(t, 24)) }},
		{"a random UUID", func() string { return randomUUID(t) }},
	}
	for _, f := range formats {
		t.Run(f.name+" passes", func(t *testing.T) {
			for range 2000 {
				secret := f.make()
				if problem := weakSecret(secret); problem != "" {
					t.Fatalf("%s %s", secret, problem)
				}
				c, err := Load(env(map[string]string{"API_TOKENS": secret + "," + strongToken, "CALLBACK_SECRET": secret}))
				if err != nil || len(c.APITokens) != 2 || c.APITokens[0] != secret || c.CallbackSecret != secret {
					t.Fatalf("%s: tokens %q, secret %q, %v", secret, c.APITokens, c.CallbackSecret, err)
				}
			}
		})
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// randomUUID is a version 4 UUID as uuidgen prints it.
func randomUUID(t *testing.T) string {
	t.Helper()
	b := randomBytes(t, 16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func TestLoadCertificateModeAndEncryption(t *testing.T) {
	aesKey := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	c, err := Load(env(map[string]string{"ZHIMA_APP_CERT": "A", "ZHIMA_ALIPAY_CERT": "B", "ZHIMA_ALIPAY_ROOT_CERT": "C",
		"ZHIMA_ENCRYPT_KEY": aesKey, "ZHIMA_CHARSET": "gbk", "ZHIMA_APP_ID": "app", "ZHIMA_APP_PRIVATE_KEY": "K"}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.CertMode() || c.EncryptKey != aesKey || c.Charset != "GBK" {
		t.Fatalf("Load = %+v", c)
	}
	if err := c.RequireGateway(); err != nil {
		t.Fatalf("certificate mode needs no Alipay public key: %v", err)
	}
	if strings.Contains(c.String(), aesKey) {
		t.Fatal("String shows the AES key")
	}

	refused := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"both modes", map[string]string{"ZHIMA_ALIPAY_PUBLIC_KEY": "P", "ZHIMA_APP_CERT": "A"},
			[]string{"ZHIMA_ALIPAY_PUBLIC_KEY", "ZHIMA_APP_CERT", "both set"}},
		{"some of the three", map[string]string{"ZHIMA_APP_CERT": "A", "ZHIMA_ALIPAY_CERT": "B"},
			[]string{"ZHIMA_ALIPAY_ROOT_CERT[_FILE] missing"}},
		{"short AES key", map[string]string{"ZHIMA_ENCRYPT_KEY": base64.StdEncoding.EncodeToString([]byte("short-key"))},
			[]string{"ZHIMA_ENCRYPT_KEY", "9 bytes"}},
		{"AES key not base64", map[string]string{"ZHIMA_ENCRYPT_KEY": "not*base64"}, []string{"ZHIMA_ENCRYPT_KEY", "base64"}},
		{"charset", map[string]string{"ZHIMA_CHARSET": "latin1"}, []string{"ZHIMA_CHARSET", "utf-8 or GBK"}},
	}
	for _, tc := range refused {
		_, err := Load(env(tc.env))
		if err == nil {
			t.Errorf("%s: Load accepted %v", tc.name, tc.env)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v does not say %q", tc.name, err, w)
			}
		}
		if v := tc.env["ZHIMA_ENCRYPT_KEY"]; v != "" && strings.Contains(err.Error(), v) {
			t.Errorf("%s: the error quotes the key: %v", tc.name, err)
		}
	}
}
