// Command zhima-sandbox serves a local stand-in for Alipay's OpenAPI gateway
// (package internal/sandbox) for the demo, tests and benchmarks. Run it with
// --help for its flags.
package main

import (
	"context"
	"crypto/rsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

const (
	envAppPublicKeyFile = "ZHIMA_APP_PUBLIC_KEY_FILE"
	envAppID            = "ZHIMA_APP_ID"
	shutdownGrace       = 5 * time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// usageError is a bad flag or setting: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitCode prints err as one line on stderr and returns the exit status:
// 0 for success or --help, 2 for usage and configuration errors, 1 otherwise.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	}
	fmt.Fprintf(stderr, "zhima-sandbox: %v\n", err)
	if _, ok := errors.AsType[*usageError](err); ok {
		return 2
	}
	return 1
}

// options are the command's settings after flags and environment.
type options struct {
	addr                 string
	appID                string
	appPublicKeyFile     string
	alipayPrivateKeyFile string
	writeAlipayPublicKey string
	certMode             bool
	certDir              string
	rotateCertAfter      int
	encryptKey           string // base64; never printed
	encryptKeyFile       string
	window               time.Duration
	maxHang              time.Duration
	seed                 int64
	faults               sandbox.Faults
}

const usageHead = `Usage: zhima-sandbox --app-public-key-file FILE [--cert-mode --cert-dir DIR] [flags]

zhima-sandbox is a local stand-in for Alipay's OpenAPI gateway. It answers
zhima.credit.score.brief.get, zhima.credit.relation.query and
zhima.customer.certification.initialize at http://ADDR/gateway.do like Alipay:
it checks each request's signature with the app's public key, answers
deterministically, signs its answers with its own "Alipay" key, keeps
transaction_id answers for the window, and injects faults when asked.

In certificate mode (--cert-mode) it runs its own CA in --cert-dir: it issues
the app certificate for the app's public key, signs its answers with an
"Alipay" certificate's key and names it in alipay_cert_sn, requires
app_cert_sn and alipay_root_cert_sn on every request, serves
alipay.open.app.alipaycert.download, and can rotate its certificate. A restart
on the same --cert-dir keeps the same certificates. With --encrypt-key (or
--encrypt-key-file) the Zhima methods' biz_content and answers travel AES
encrypted, and requests in clear are refused.

Point the worker at it with:
  ZHIMA_GATEWAY_URL=http://127.0.0.1:8090/gateway.do
  ZHIMA_ALIPAY_PUBLIC_KEY_FILE=<the file written by --write-alipay-public-key>
or, in certificate mode, instead of the Alipay public key:
  ZHIMA_APP_CERT_FILE=DIR/appCertPublicKey_<app_id>.crt   (appCertPublicKey.crt without --app-id)
  ZHIMA_ALIPAY_CERT_FILE=DIR/alipayCertPublicKey_RSA2.crt
  ZHIMA_ALIPAY_ROOT_CERT_FILE=DIR/alipayRootCert.crt
and, with content encryption, ZHIMA_ENCRYPT_KEY=<the same base64 key>.

Flags:
`

const usageTail = `
Admin endpoints on the same address:
  GET  /admin/stats                                 calls, billed calls, connections, answers by code, calls by method, cert_downloads
  GET  /admin/faults, PUT /admin/faults             fault rates as JSON, e.g. {"system_error_rate":0.1,"latency":"50ms"}
  GET  /admin/calls?method=M&transaction_id=T       {"calls":N}
  POST /admin/reset                                 forget transactions and counters
  POST /admin/rotate-cert                           certificate mode: a new Alipay certificate, {"alipay_cert_sn":"..."}; 409 otherwise
  GET  /alipay_public_key.pem                       the key that verifies the sandbox's answers (the current certificate's)

Examples:
  zhima-sandbox --app-public-key-file app_public.pem \
    --write-alipay-public-key /tmp/alipay_public.pem --system-error-rate 0.05

  zhima-sandbox --app-id 2021000000000001 --app-public-key-file app_public.pem \
    --cert-mode --cert-dir /tmp/zhima-certs --encrypt-key-file aes.key --rotate-cert-after 100
  ZHIMA_APP_CERT_FILE=/tmp/zhima-certs/appCertPublicKey_2021000000000001.crt \
  ZHIMA_ALIPAY_CERT_FILE=/tmp/zhima-certs/alipayCertPublicKey_RSA2.crt \
  ZHIMA_ALIPAY_ROOT_CERT_FILE=/tmp/zhima-certs/alipayRootCert.crt \
  ZHIMA_ENCRYPT_KEY_FILE=aes.key worker
`

// parseFlags reads args and the environment. --help prints the usage on
// stdout and returns flag.ErrHelp.
func parseFlags(args []string, stdout io.Writer) (options, error) {
	var o options
	var latency time.Duration
	fs := flag.NewFlagSet("zhima-sandbox", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8090", "`host:port` to listen on; port 0 picks a free one")
	fs.StringVar(&o.appID, "app-id", os.Getenv(envAppID), "the only `app_id` accepted; empty accepts any (env "+envAppID+")")
	fs.StringVar(&o.appPublicKeyFile, "app-public-key-file", os.Getenv(envAppPublicKeyFile),
		"`file` holding the app's RSA public key, PEM or bare base64, that verifies request signatures; required (env "+envAppPublicKeyFile+")")
	fs.StringVar(&o.alipayPrivateKeyFile, "alipay-private-key-file", "",
		"`file` holding the sandbox's \"Alipay\" RSA private key, PKCS#1 or PKCS#8 PEM; empty generates a 2048-bit key for this run")
	fs.StringVar(&o.writeAlipayPublicKey, "write-alipay-public-key", "",
		"write the sandbox's Alipay public key as PEM to this `file`, for the worker's ZHIMA_ALIPAY_PUBLIC_KEY_FILE")
	fs.DurationVar(&o.window, "window", sandbox.DefaultWindow, "how long a transaction_id keeps its first answer")
	fs.DurationVar(&o.maxHang, "max-hang", sandbox.DefaultMaxHang, "longest a hung request waits before HTTP 504")
	fs.Int64Var(&o.seed, "seed", 0, "`seed` of the fault draws, to repeat a run; 0 picks one at random")
	fs.Float64Var(&o.faults.SystemErrorRate, "system-error-rate", 0, "share of calls (a `rate` from 0 to 1) answered 40004 SYSTEM_ERROR")
	fs.Float64Var(&o.faults.UnavailableRate, "unavailable-rate", 0, "share of calls (a `rate` from 0 to 1) answered 20000 isp.unknow-error")
	fs.Float64Var(&o.faults.HTTP502Rate, "http502-rate", 0, "share of calls (a `rate` from 0 to 1) answered HTTP 502 in plain text")
	fs.Float64Var(&o.faults.HangRate, "hang-rate", 0, "share of calls (a `rate` from 0 to 1) that hang until the client gives up")
	fs.Float64Var(&o.faults.BadSignRate, "bad-sign-rate", 0, "share of calls (a `rate` from 0 to 1) answered with a signature that does not verify")
	fs.Float64Var(&o.faults.RogueCertRate, "rogue-cert-rate", 0, "certificate mode: share of calls (a `rate` from 0 to 1) signed by a rogue certificate that does not chain to the root file")
	fs.DurationVar(&latency, "latency", 0, "delay added to every gateway call, e.g. 50ms")
	fs.BoolVar(&o.certMode, "cert-mode", false, "certificate mode (公钥证书): issue certificates in --cert-dir and require app_cert_sn and alipay_root_cert_sn")
	fs.StringVar(&o.certDir, "cert-dir", "", "certificate mode: `directory` (created 0700) for the CA's state and the worker's three certificate files; required with --cert-mode")
	fs.IntVar(&o.rotateCertAfter, "rotate-cert-after", 0, "certificate mode: rotate the Alipay certificate once, after `N` Zhima-method calls; 0 never")
	fs.StringVar(&o.encryptKey, "encrypt-key", "", "AES content-encryption key, the console's `base64` text (visible in ps: prefer --encrypt-key-file)")
	fs.StringVar(&o.encryptKeyFile, "encrypt-key-file", "", "`file` holding the AES content-encryption key in base64")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, stdout)
			return o, err
		}
		return o, usagef("%v (see --help)", err)
	}
	if fs.NArg() > 0 {
		return o, usagef("unexpected argument %q (see --help)", fs.Arg(0))
	}
	o.faults.Latency = sandbox.Duration(latency)
	if o.appPublicKeyFile == "" {
		return o, usagef("--app-public-key-file (or %s) is required: the app's public key verifies request signatures", envAppPublicKeyFile)
	}
	if err := o.faults.Validate(); err != nil {
		return o, usagef("%s", strings.TrimPrefix(err.Error(), "sandbox: faults: "))
	}
	if err := o.checkModes(); err != nil {
		return o, err
	}
	if o.window <= 0 {
		return o, usagef("--window must be positive, got %s", o.window)
	}
	if o.maxHang <= 0 {
		return o, usagef("--max-hang must be positive, got %s", o.maxHang)
	}
	return o, nil
}

// checkModes refuses flags that do not fit together: certificate mode
// needs --cert-dir and has no Alipay key of its own; its other flags need
// it; one source of the AES key at most.
func (o *options) checkModes() error {
	if o.certMode {
		switch {
		case o.certDir == "":
			return usagef("--cert-mode needs --cert-dir: the directory that keeps the certificates")
		case o.writeAlipayPublicKey != "":
			return usagef("--write-alipay-public-key does not apply in certificate mode: the worker reads %s from --cert-dir", sandbox.AlipayCertFile)
		case o.alipayPrivateKeyFile != "":
			return usagef("--alipay-private-key-file does not apply in certificate mode: the Alipay certificate's key, kept in --cert-dir, signs")
		}
	} else {
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"--cert-dir", o.certDir != ""},
			{"--rotate-cert-after", o.rotateCertAfter != 0},
			{"--rogue-cert-rate", o.faults.RogueCertRate != 0},
		} {
			if f.set {
				return usagef("%s needs --cert-mode", f.name)
			}
		}
	}
	if o.rotateCertAfter < 0 {
		return usagef("--rotate-cert-after must not be negative, got %d", o.rotateCertAfter)
	}
	if o.encryptKey != "" && o.encryptKeyFile != "" {
		return usagef("--encrypt-key and --encrypt-key-file are exclusive: give the key once")
	}
	return nil
}

func printUsage(fs *flag.FlagSet, w io.Writer) {
	io.WriteString(w, usageHead)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%s\n      %s", line, usage)
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		io.WriteString(w, "\n")
	})
	io.WriteString(w, usageTail)
}

// run starts the sandbox on --addr and serves until ctx ends, then shuts
// down: hung requests are released and in-flight ones get shutdownGrace.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stdout)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))

	cfg := sandbox.Config{AppID: o.appID, Window: o.window, MaxHang: o.maxHang, Seed: o.seed, Faults: o.faults,
		RotateCertAfter: o.rotateCertAfter}
	if cfg.AppPublicKey, err = readPublicKey(o.appPublicKeyFile); err != nil {
		return usagef("--app-public-key-file: %v", err)
	}
	if o.alipayPrivateKeyFile != "" {
		if cfg.AlipayKey, err = readPrivateKey(o.alipayPrivateKeyFile); err != nil {
			return usagef("--alipay-private-key-file: %v", err)
		}
	}
	if cfg.AESKey, err = o.readEncryptKey(); err != nil {
		return err
	}
	if o.certMode {
		if cfg.Certs, err = sandbox.OpenPKI(o.certDir, o.appID, cfg.AppPublicKey); err != nil {
			return usagef("--cert-dir: %v", err)
		}
	}
	sb, err := sandbox.New(cfg)
	if err != nil {
		return err
	}
	if o.writeAlipayPublicKey != "" {
		if err := os.WriteFile(o.writeAlipayPublicKey, sb.AlipayPublicKeyPEM(), 0o644); err != nil {
			return fmt.Errorf("--write-alipay-public-key: %w", err)
		}
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.addr, err)
	}
	srv := &http.Server{
		Handler:           sb,
		ConnState:         sb.ConnState,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	appID := o.appID
	if appID == "" {
		appID = "any"
	}
	addr := ln.Addr().String()
	attrs := []any{"addr", addr, "gateway_url", "http://" + dialable(addr) + "/gateway.do"}
	if certs := sb.Certs(); certs != nil {
		attrs = append(attrs,
			"cert_dir", certs.Dir(),
			"alipay_cert_sn", certs.AlipayCertSN(),
			"app_cert_file", certs.AppCertPath(),
			"alipay_cert_file", certs.AlipayCertPath(),
			"alipay_root_cert_file", certs.RootCertPath())
	} else {
		alipayKey := "GET /alipay_public_key.pem"
		if o.writeAlipayPublicKey != "" {
			alipayKey = o.writeAlipayPublicKey
		}
		attrs = append(attrs, "alipay_public_key", alipayKey, "alipay_key_generated", o.alipayPrivateKeyFile == "")
	}
	attrs = append(attrs,
		"encrypt", cfg.AESKey != nil,
		"app_id", appID,
		"window", o.window,
		"faults", fmt.Sprintf("%+v", o.faults))
	logger.Info("zhima-sandbox listening", attrs...)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sb.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
	}
	st := sb.Stats()
	logger.Info("zhima-sandbox stopped", "calls", st.Calls, "billed", st.Billed, "connections", st.Connections)
	return nil
}

// dialable turns a listen address into one a client can dial: an
// unspecified host becomes loopback.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func readPublicKey(path string) (*rsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return zhima.ParsePublicKey(string(b))
}

// readEncryptKey reads the AES key from --encrypt-key or
// --encrypt-key-file; nil when neither is set. No error quotes the key.
func (o *options) readEncryptKey() (*zhima.AESKey, error) {
	text, flagName := o.encryptKey, "--encrypt-key"
	if o.encryptKeyFile != "" {
		flagName = "--encrypt-key-file"
		b, err := os.ReadFile(o.encryptKeyFile)
		if err != nil {
			return nil, usagef("%s: %v", flagName, err)
		}
		if text = strings.TrimSpace(string(b)); text == "" {
			return nil, usagef("%s: %s is empty", flagName, o.encryptKeyFile)
		}
	}
	if text == "" {
		return nil, nil
	}
	k, err := zhima.ParseAESKey(text)
	if err != nil {
		return nil, usagef("%s: %s", flagName, strings.TrimPrefix(err.Error(), "zhima: "))
	}
	return k, nil
}

func readPrivateKey(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return zhima.ParsePrivateKey(string(b))
}
