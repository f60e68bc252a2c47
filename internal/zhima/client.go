package zhima

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// DefaultGatewayURL is Alipay's production gateway.
const DefaultGatewayURL = "https://openapi.alipay.com/gateway.do"

// maxResponseBytes bounds what a response body may hold; Zhima answers are small.
const maxResponseBytes = 4 << 20

// Config configures a Client. Zero values mean the documented defaults.
type Config struct {
	// GatewayURL defaults to DefaultGatewayURL.
	GatewayURL string
	// AppID is required.
	AppID string
	// AppPrivateKey signs requests: PKCS#1 or PKCS#8 PEM, or a bare base64 body. Required.
	AppPrivateKey string
	// AlipayPublicKey verifies responses: PKIX or PKCS#1 PEM, or a bare
	// base64 body. Required in public-key mode.
	AlipayPublicKey string
	// AppCert, AlipayCert and AlipayRootCert, all three set, are certificate
	// mode (公钥证书) in place of AlipayPublicKey: the PEM texts of the app
	// public key certificate, the Alipay public key certificate (the leaf,
	// then its intermediates) and the Alipay root file.
	AppCert, AlipayCert, AlipayRootCert string
	// AESKey, when set, encrypts biz_content and the answers (接口内容加密):
	// the base64 key the Alipay console shows.
	AESKey string
	// SignType defaults to RSA2.
	SignType SignType
	// Charset is "utf-8" (default) or "GBK".
	Charset string
	// Timeout bounds one call, connection to last byte. Default 15s.
	Timeout time.Duration
}

// Client calls the Zhima methods of Alipay's gateway. It is safe for
// concurrent use.
type Client struct {
	gateway   string
	appID     string
	key       *rsa.PrivateKey
	alipayKey *rsa.PublicKey // public-key mode
	certs     *trust         // certificate mode
	cache     CertCache
	onCert    func(sn string, err error)
	aes       *AESKey
	signType  SignType
	charset   string
	timeout   time.Duration
	http      *http.Client
	now       func() time.Time
}

// Option sets an optional dependency of a Client.
type Option func(*Client)

// WithHTTPClient makes the client send through hc (its own Timeout is left
// alone; Config.Timeout still bounds each call). Default: a client with
// http.DefaultTransport.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithCertCache shares downloaded Alipay certificates through cache
// (certificate mode). Default: each client keeps its own.
func WithCertCache(cache CertCache) Option { return func(c *Client) { c.cache = cache } }

// WithCertEvents calls fn after each Alipay certificate SN the client did
// not hold was resolved (certificate mode): err nil when the certificate was
// checked and is now trusted, else why it was refused or not fetched. fn
// must not block.
func WithCertEvents(fn func(sn string, err error)) Option { return func(c *Client) { c.onCert = fn } }

// WithClock makes the client take request timestamps from now.
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// NewClient checks cfg and loads its keys. It fails with an error naming the
// setting when one is missing or malformed, when a key is of the wrong kind,
// or when the Alipay public key is the app's own public key.
func NewClient(cfg Config, opts ...Option) (*Client, error) {
	c := &Client{
		gateway:  cfg.GatewayURL,
		appID:    cfg.AppID,
		signType: cfg.SignType,
		charset:  strings.ToLower(cfg.Charset),
		timeout:  cfg.Timeout,
		http:     &http.Client{},
		now:      time.Now,
	}
	if c.gateway == "" {
		c.gateway = DefaultGatewayURL
	}
	if u, err := url.Parse(c.gateway); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("zhima: gateway URL %q: want an http(s) URL", c.gateway)
	}
	if c.appID == "" {
		return nil, errors.New("zhima: app id is required")
	}
	if c.signType == "" {
		c.signType = RSA2
	}
	if _, err := c.signType.hash(); err != nil {
		return nil, err
	}
	switch c.charset {
	case "":
		c.charset = "utf-8"
	case "utf-8", "gbk":
	default:
		return nil, fmt.Errorf("zhima: charset %q: want utf-8 or GBK", cfg.Charset)
	}
	if c.timeout == 0 {
		c.timeout = 15 * time.Second
	}
	var err error
	if c.key, err = ParsePrivateKey(cfg.AppPrivateKey); err != nil {
		return nil, fmt.Errorf("app private key: %w", err)
	}
	if cfg.AESKey != "" {
		if c.aes, err = ParseAESKey(cfg.AESKey); err != nil {
			return nil, err
		}
	}
	for _, o := range opts {
		o(c)
	}
	if err := c.loadAlipayKeys(cfg); err != nil {
		return nil, err
	}
	return c, nil
}

// loadAlipayKeys loads what verifies answers: the Alipay public key, or the
// three certificates of certificate mode.
func (c *Client) loadAlipayKeys(cfg Config) error {
	certs := cfg.AppCert != "" || cfg.AlipayCert != "" || cfg.AlipayRootCert != ""
	switch {
	case certs && cfg.AlipayPublicKey != "":
		return errors.New("zhima: give either the Alipay public key or the three certificates, not both")
	case certs && (cfg.AppCert == "" || cfg.AlipayCert == "" || cfg.AlipayRootCert == ""):
		return errors.New("zhima: certificate mode needs the app certificate, the Alipay certificate and the Alipay root certificate")
	case certs:
		var err error
		c.certs, err = newTrust(cfg.AppCert, cfg.AlipayCert, cfg.AlipayRootCert, &c.key.PublicKey, c.now())
		return err
	}
	var err error
	if c.alipayKey, err = ParsePublicKey(cfg.AlipayPublicKey); err != nil {
		return fmt.Errorf("alipay public key: %w", err)
	}
	if c.alipayKey.Equal(&c.key.PublicKey) {
		return errors.New("alipay public key: it is the app's own public key; use the Alipay public key shown beside it in the Alipay console")
	}
	return nil
}

// CertMode reports whether the client runs in certificate mode.
func (c *Client) CertMode() bool { return c.certs != nil }

// CallOption sets a per-call parameter.
type CallOption func(*callParams)

type callParams struct{ appAuthToken string }

// WithAppAuthToken sends app_auth_token, for calls made on behalf of another merchant.
func WithAppAuthToken(token string) CallOption {
	return func(p *callParams) { p.appAuthToken = token }
}

// CertificationInitialize calls zhima.customer.certification.initialize.
// Errors are *Error.
func (c *Client) CertificationInitialize(ctx context.Context, req *CertificationInitializeRequest, opts ...CallOption) (*CertificationInitializeResponse, error) {
	resp := new(CertificationInitializeResponse)
	if err := c.do(ctx, req, resp, opts); err != nil {
		return nil, err
	}
	return resp, nil
}

// ScoreBriefGet calls zhima.credit.score.brief.get. Errors are *Error.
func (c *Client) ScoreBriefGet(ctx context.Context, req *ScoreBriefGetRequest, opts ...CallOption) (*ScoreBriefGetResponse, error) {
	resp := new(ScoreBriefGetResponse)
	if err := c.do(ctx, req, resp, opts); err != nil {
		return nil, err
	}
	return resp, nil
}

// RelationQuery calls zhima.credit.relation.query. Errors are *Error.
func (c *Client) RelationQuery(ctx context.Context, req *RelationQueryRequest, opts ...CallOption) (*RelationQueryResponse, error) {
	resp := new(RelationQueryResponse)
	if err := c.do(ctx, req, resp, opts); err != nil {
		return nil, err
	}
	return resp, nil
}

// Call sends any Request and returns the verified response envelope; its Raw
// holds the node as the gateway sent it. Errors are *Error; on error the
// envelope is nil.
func (c *Client) Call(ctx context.Context, req Request, opts ...CallOption) (*Envelope, error) {
	resp := new(Envelope)
	if err := c.do(ctx, req, resp, opts); err != nil {
		return nil, err
	}
	return resp, nil
}

// Prepared is a request that passed its Validate, with its biz_content
// encoded: made by Prepare, sent by Client.Send as it is.
type Prepared struct {
	method string
	biz    []byte
}

// Prepare validates req and encodes its biz_content, so a caller that
// checks a request before it calls (the worker) validates it once. Errors
// are *Error: INVALID_PARAMETER naming the first bad field, or a local
// failure.
func Prepare(req Request) (*Prepared, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	biz, err := MarshalBizContent(req)
	if err != nil {
		return nil, &Error{Source: SourceLocal, Method: req.Method(), Err: err}
	}
	return &Prepared{method: req.Method(), biz: biz}, nil
}

// Send is Call for a request made by Prepare: it is not validated again.
func (c *Client) Send(ctx context.Context, req *Prepared, opts ...CallOption) (*Envelope, error) {
	resp := new(Envelope)
	if err := c.send(ctx, req, resp, opts); err != nil {
		return nil, err
	}
	return resp, nil
}

// do validates, signs, sends, verifies and decodes one call into out.
func (c *Client) do(ctx context.Context, req Request, out envelopeHolder, opts []CallOption) error {
	prep, err := Prepare(req)
	if err != nil {
		return err
	}
	return c.send(ctx, prep, out, opts)
}

// send signs, sends, verifies and decodes one prepared call into out.
func (c *Client) send(ctx context.Context, req *Prepared, out envelopeHolder, opts []CallOption) error {
	var p callParams
	for _, o := range opts {
		o(&p)
	}
	body, traceID, err := c.post(ctx, req.method, req.biz, c.aes, p)
	if err != nil {
		return err
	}
	if err := ParseResponse(body, req.method, callVerifier{c, ctx}, out); err != nil {
		var zerr *Error
		if errors.As(err, &zerr) {
			zerr.HTTPStatus, zerr.TraceID = http.StatusOK, traceID
		}
		return err
	}
	out.envelope().TraceID = traceID
	return nil
}

// post signs one call (biz encrypted with aes unless it is nil), sends it
// and returns the body of an HTTP 200 answer, decoded to UTF-8, and the
// gateway's trace id. Errors are *Error.
func (c *Client) post(ctx context.Context, method string, biz []byte, aes *AESKey, p callParams) ([]byte, string, error) {
	local := func(err error) error { return &Error{Source: SourceLocal, Method: method, Err: err} }
	params := map[string]string{
		"app_id":         c.appID,
		"method":         method,
		"format":         "JSON",
		"charset":        c.charset,
		"sign_type":      string(c.signType),
		"timestamp":      Timestamp(c.now()),
		"version":        "1.0",
		"app_auth_token": p.appAuthToken,
		"biz_content":    string(biz),
	}
	if c.certs != nil {
		params[ParamAppCertSN], params[ParamAlipayRootCertSN] = c.certs.appSN, c.certs.rootSN
	}
	if aes != nil {
		plain, err := c.encode(string(biz))
		if err != nil {
			return nil, "", local(err)
		}
		params["biz_content"], params[ParamEncryptType] = aes.Encrypt(plain), EncryptAES
	}
	content, err := c.encode(SigningString(params))
	if err != nil {
		return nil, "", local(err)
	}
	sig, err := Sign(c.key, c.signType, content)
	if err != nil {
		return nil, "", local(err)
	}
	params["sign"] = sig
	form, err := c.form(params)
	if err != nil {
		return nil, "", local(err)
	}

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.gateway, strings.NewReader(form))
	if err != nil {
		return nil, "", local(err)
	}
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset="+c.charset)
	hresp, err := c.http.Do(hreq)
	if err != nil {
		return nil, "", &Error{Source: SourceTransport, Method: method, Err: err}
	}
	defer hresp.Body.Close()
	traceID := hresp.Header.Get("trace_id")
	if traceID == "" {
		traceID = hresp.Header.Get("alipay-trace-id")
	}
	transport := func(err error) error {
		return &Error{Source: SourceTransport, Method: method, HTTPStatus: hresp.StatusCode, TraceID: traceID, Err: err}
	}
	body, err := io.ReadAll(io.LimitReader(hresp.Body, maxResponseBytes+1))
	if err == nil && len(body) > maxResponseBytes {
		return nil, "", transport(fmt.Errorf("response larger than %d bytes", maxResponseBytes))
	}
	if err != nil && hresp.StatusCode == http.StatusOK {
		// The connection failed mid-body: no answer came, like a network error.
		return nil, "", &Error{Source: SourceTransport, Method: method, TraceID: traceID, Err: fmt.Errorf("read body: %w", err)}
	}
	if hresp.StatusCode != http.StatusOK {
		return nil, "", transport(fmt.Errorf("HTTP %s", hresp.Status))
	}
	if body, err = c.decode(body); err != nil {
		return nil, "", transport(err)
	}
	return body, traceID, nil
}

// callVerifier checks one call's answer.
type callVerifier struct {
	c   *Client
	ctx context.Context
}

// Verify checks sign over a node, re-encoded to the charset it was signed
// in, with the Alipay public key or the certificate certSN names.
func (v callVerifier) Verify(node []byte, sign, certSN string) error {
	c := v.c
	content, err := c.encode(string(node))
	if err != nil {
		return err
	}
	key := c.alipayKey
	if c.certs != nil {
		if key, err = c.certs.key(v.ctx, certSN, c.now(), c.cache, c.downloadCert, c.onCert); err != nil {
			return err
		}
	}
	return Verify(key, c.signType, content, sign)
}

// Decrypt opens an encrypted node and decodes it from the charset.
func (v callVerifier) Decrypt(text string) ([]byte, error) {
	if v.c.aes == nil {
		return nil, errors.New("zhima: the answer is encrypted but no AES key is configured")
	}
	plain, err := v.c.aes.Decrypt(text)
	if err != nil {
		return nil, err
	}
	return v.c.decode(plain)
}

// downloadCert fetches the Alipay certificate file of sn with
// alipay.open.app.alipaycert.download. Its answer is not signed; the caller
// checks the certificate's chain before trusting it. Like Alipay's SDKs it
// asks in clear; a client with an AES key asks again encrypted when a
// gateway refuses that, and reads an encrypted answer either way.
func (c *Client) downloadCert(ctx context.Context, sn string) ([]byte, error) {
	biz, err := json.Marshal(map[string]string{ParamAlipayCertSN: sn})
	if err != nil {
		return nil, err
	}
	pemFile, err := c.fetchCert(ctx, biz, nil)
	if zerr, ok := errors.AsType[*Error](err); ok && zerr.Source == SourceGateway && c.aes != nil {
		pemFile, err = c.fetchCert(ctx, biz, c.aes)
	}
	if err != nil {
		return nil, fmt.Errorf("zhima: download Alipay certificate %s: %w", sn, err)
	}
	return pemFile, nil
}

// fetchCert makes one download call; an answer other than success is an
// *Error of SourceGateway.
func (c *Client) fetchCert(ctx context.Context, biz []byte, aes *AESKey) ([]byte, error) {
	body, _, err := c.post(ctx, MethodAlipayCertDownload, biz, aes, callParams{})
	if err != nil {
		return nil, err
	}
	a, err := ExtractNode(body, MethodAlipayCertDownload)
	if err != nil {
		return nil, errors.New("the answer holds no certificate node")
	}
	node := a.Node
	if a.Encrypted {
		var text string
		if err := json.Unmarshal(a.Node, &text); err != nil {
			return nil, err
		}
		if node, err = (callVerifier{c: c, ctx: ctx}).Decrypt(text); err != nil {
			return nil, err
		}
	}
	var answer struct {
		Envelope
		Content string `json:"alipay_cert_content"`
	}
	if err := json.Unmarshal(node, &answer); err != nil {
		return nil, err
	}
	if answer.Code != CodeSuccess {
		return nil, &Error{Source: SourceGateway, Method: MethodAlipayCertDownload, Code: answer.Code, Msg: answer.Msg, SubCode: answer.SubCode, SubMsg: answer.SubMsg}
	}
	pemFile, err := base64.StdEncoding.DecodeString(answer.Content)
	if err != nil {
		return nil, errors.New("alipay_cert_content is not base64")
	}
	return pemFile, nil
}

// decode returns a body in the client's charset as UTF-8.
func (c *Client) decode(b []byte) ([]byte, error) {
	if c.charset != "gbk" {
		return b, nil
	}
	out, err := simplifiedchinese.GBK.NewDecoder().Bytes(b)
	if err != nil {
		return nil, fmt.Errorf("decode GBK body: %w", err)
	}
	return out, nil
}

// encode returns s in the client's charset.
func (c *Client) encode(s string) ([]byte, error) {
	if c.charset == "gbk" {
		b, err := simplifiedchinese.GBK.NewEncoder().String(s)
		if err != nil {
			return nil, fmt.Errorf("text cannot be written in GBK: %w", err)
		}
		return []byte(b), nil
	}
	return []byte(s), nil
}

// form URL-encodes params in the client's charset, leaving out empty values.
func (c *Client) form(params map[string]string) (string, error) {
	v := url.Values{}
	for k, val := range params {
		if val == "" {
			continue
		}
		enc, err := c.encode(val)
		if err != nil {
			return "", err
		}
		v.Set(k, string(enc))
	}
	return v.Encode(), nil
}

// MarshalBizContent writes a request as the gateway's biz_content: JSON
// without HTML escaping, so '&', '<' and '>' are sent as themselves, as
// Alipay's SDKs send them.
func MarshalBizContent(req Request) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(req); err != nil {
		return nil, fmt.Errorf("encode biz_content: %w", err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
