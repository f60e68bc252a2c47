package zhima

import (
	"bytes"
	"context"
	"crypto/rsa"
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
	// AlipayPublicKey verifies responses: PKIX or PKCS#1 PEM, or a bare base64 body. Required.
	AlipayPublicKey string
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
	alipayKey *rsa.PublicKey
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
	if c.alipayKey, err = ParsePublicKey(cfg.AlipayPublicKey); err != nil {
		return nil, fmt.Errorf("alipay public key: %w", err)
	}
	if c.alipayKey.Equal(&c.key.PublicKey) {
		return nil, errors.New("alipay public key: it is the app's own public key; use the Alipay public key shown beside it in the Alipay console")
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

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
	method, biz := req.method, req.biz
	var p callParams
	for _, o := range opts {
		o(&p)
	}
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
	content, err := c.encode(SigningString(params))
	if err != nil {
		return &Error{Source: SourceLocal, Method: method, Err: err}
	}
	sig, err := Sign(c.key, c.signType, content)
	if err != nil {
		return &Error{Source: SourceLocal, Method: method, Err: err}
	}
	params["sign"] = sig
	form, err := c.form(params)
	if err != nil {
		return &Error{Source: SourceLocal, Method: method, Err: err}
	}

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.gateway, strings.NewReader(form))
	if err != nil {
		return &Error{Source: SourceLocal, Method: method, Err: err}
	}
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset="+c.charset)
	hresp, err := c.http.Do(hreq)
	if err != nil {
		return &Error{Source: SourceTransport, Method: method, Err: err}
	}
	defer hresp.Body.Close()
	traceID := hresp.Header.Get("trace_id")
	if traceID == "" {
		traceID = hresp.Header.Get("alipay-trace-id")
	}
	body, err := io.ReadAll(io.LimitReader(hresp.Body, maxResponseBytes+1))
	if err == nil && len(body) > maxResponseBytes {
		return &Error{Source: SourceTransport, Method: method, HTTPStatus: hresp.StatusCode, TraceID: traceID,
			Err: fmt.Errorf("response larger than %d bytes", maxResponseBytes)}
	}
	if err != nil && hresp.StatusCode == http.StatusOK {
		// The connection failed mid-body: no answer came, like a network error.
		return &Error{Source: SourceTransport, Method: method, TraceID: traceID, Err: fmt.Errorf("read body: %w", err)}
	}
	if hresp.StatusCode != http.StatusOK {
		return &Error{Source: SourceTransport, Method: method, HTTPStatus: hresp.StatusCode, TraceID: traceID,
			Err: fmt.Errorf("HTTP %s", hresp.Status)}
	}
	if c.charset == "gbk" {
		if body, err = simplifiedchinese.GBK.NewDecoder().Bytes(body); err != nil {
			return &Error{Source: SourceTransport, Method: method, HTTPStatus: hresp.StatusCode, TraceID: traceID, Err: fmt.Errorf("decode GBK body: %w", err)}
		}
	}
	if err := ParseResponse(body, method, c.verifyNode, out); err != nil {
		var zerr *Error
		if errors.As(err, &zerr) {
			zerr.HTTPStatus, zerr.TraceID = hresp.StatusCode, traceID
		}
		return err
	}
	out.envelope().TraceID = traceID
	return nil
}

// verifyNode checks sign over node, re-encoded to the charset it was signed in.
func (c *Client) verifyNode(node []byte, sign string) error {
	content, err := c.encode(string(node))
	if err != nil {
		return err
	}
	return Verify(c.alipayKey, c.signType, content, sign)
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
