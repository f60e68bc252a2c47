package sandbox

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

// MaxRequestBytes bounds a gateway request body (a face picture alone may
// take 1 MiB of base64); a larger one is answered with HTTP 413.
const MaxRequestBytes = 8 << 20

// TimestampSkew is how far a request's timestamp may be from the sandbox's
// clock, either way.
const TimestampSkew = 15 * time.Minute

// exchange is one gateway call as read from the wire.
type exchange struct {
	// raw holds the values as received, in cs: the bytes the signature covers.
	raw map[string]string
	// params holds the same values decoded to UTF-8; once the checks pass,
	// biz_content is the plain text of an encrypted one.
	params   map[string]string
	cs       charset
	signType zhima.SignType
	// encrypted is set once an encrypted biz_content has been opened: the
	// method's node of the answer is encrypted too.
	encrypted bool
}

// plainExchange is the exchange of a request that could not be read.
func plainExchange() *exchange { return &exchange{cs: charsetUTF8, signType: zhima.RSA2} }

// outcome is an answer ready to sign and send.
type outcome struct {
	name    string // the node's key: "<method>_response" or "error_response"
	node    []byte // the node's JSON, UTF-8
	key     string // what Stats.Codes counts it under
	signing signing
}

// signing says how reply signs an answer.
type signing int

const (
	signCurrent signing = iota // with the Alipay key (the current certificate's in certificate mode)
	signSpoiled                // as signCurrent, then spoiled: the bad_sign fault
	signRogue                  // with the rogue certificate's key: the rogue_cert fault
	signNone                   // not at all: certificate download answers
)

var errNotForm = errors.New("the request is not a valid URL-encoded form")

// serveGateway answers /gateway.do: protocol checks, then the method's
// parameters, then faults, then the transaction.
func (s *Server) serveGateway(w http.ResponseWriter, r *http.Request) {
	s.count.calls.Add(1)
	raw, err := readParams(w, r)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			s.plain(w, http.StatusRequestEntityTooLarge, "request body is larger than the gateway accepts\n", "http/413")
			return
		}
		s.reply(w, plainExchange(), protocolError(zhima.CodeInvalidParameter, "isv.invalid-parameter", errNotForm.Error()))
		return
	}
	if !s.wait(r, time.Duration(s.dice.get().Latency)) && r.Context().Err() != nil {
		return
	}
	ex, fail := s.checkProtocol(raw)
	if fail != nil {
		s.reply(w, ex, fail)
		return
	}
	method := ex.params["method"]
	if method == zhima.MethodAlipayCertDownload {
		s.reply(w, ex, s.certDownload(ex.params["biz_content"]))
		return
	}
	if err := s.rotateIfDue(); err != nil {
		s.plain(w, http.StatusInternalServerError, "sandbox: cannot rotate the Alipay certificate\n", "http/500")
		return
	}
	req, fail := decodeBizContent(method, ex.params["biz_content"])
	if fail != nil {
		s.reply(w, ex, fail)
		return
	}
	fp, err := fingerprint([]byte(ex.params["biz_content"]))
	if err != nil {
		s.reply(w, ex, invalidParameter(method, "biz_content: is not a JSON object"))
		return
	}

	switch s.dice.roll() {
	case faultSystemError:
		s.reply(w, ex, businessError(method, zhima.CodeBusinessFailed, msgBusiness, zhima.SubSystemError, "系统繁忙"))
	case faultUnavailable:
		s.reply(w, ex, businessError(method, zhima.CodeServiceUnavailable, msgUnavailable, "isp.unknow-error", "系统繁忙"))
	case faultHTTP502:
		s.plain(w, http.StatusBadGateway, "502 Bad Gateway\n", "http/502")
	case faultHang:
		s.count.answer("hang")
		s.wait(r, s.maxHang)
		if r.Context().Err() == nil {
			s.plain(w, http.StatusGatewayTimeout, "504 Gateway Timeout: hung request released\n", "")
		}
	case faultBadSign:
		out := s.transact(ex, req, fp, false)
		out.signing, out.key = signSpoiled, "bad_sign"
		s.reply(w, ex, out)
	case faultRogueCert:
		out := s.transact(ex, req, fp, false)
		out.signing, out.key = signRogue, "rogue_cert"
		s.reply(w, ex, out)
	default:
		s.reply(w, ex, s.transact(ex, req, fp, true))
	}
}

// readParams merges the form body of a POST and the query string; the body
// wins where both have a key. Values stay as received (percent-decoded
// bytes, in the request's charset).
func readParams(w http.ResponseWriter, r *http.Request) (map[string]string, error) {
	params := map[string]string{}
	merge := func(q url.Values) {
		for k, vs := range q {
			if _, ok := params[k]; !ok && len(vs) > 0 {
				params[k] = vs[0]
			}
		}
	}
	if r.Method == http.MethodPost {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if mt == "" || mt == "application/x-www-form-urlencoded" {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
			if err != nil {
				return nil, err
			}
			q, err := url.ParseQuery(string(body))
			if err != nil {
				return nil, errNotForm
			}
			merge(q)
		}
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errNotForm
	}
	merge(q)
	return params, nil
}

// requiredParam is a parameter that must be present, with the sub_code of
// its absence.
type requiredParam struct{ param, subCode string }

// required lists the parameters that must be present, in the order they are
// checked; certificate mode adds certRequired after them.
var required = []requiredParam{
	{"method", "isv.missing-method"},
	{"app_id", "isv.missing-app-id"},
	{"sign_type", "isv.missing-signature-type"},
	{"sign", "isv.missing-signature"},
	{"timestamp", "isv.missing-timestamp"},
	{"version", "isv.missing-version"},
}

// checkProtocol runs the gateway's checks of the common parameters, in
// order: charset, required parameters (the SNs included in certificate
// mode), sign_type, app_id, the certificate SNs, the signature, timestamp,
// method, version, format, and last content encryption, which opens an
// encrypted biz_content into params. The exchange it returns is usable for
// the reply even on failure.
func (s *Server) checkProtocol(raw map[string]string) (*exchange, *outcome) {
	ex := &exchange{raw: raw, cs: charsetUTF8, signType: zhima.RSA2}
	cs, ok := parseCharset(raw["charset"])
	if !ok {
		return ex, protocolError(zhima.CodeInvalidParameter, "isv.invalid-charset", "charset must be utf-8 or GBK")
	}
	ex.cs = cs
	ex.params = make(map[string]string, len(raw))
	for k, v := range raw {
		d, err := cs.decode(v)
		if err != nil {
			return ex, protocolError(zhima.CodeInvalidParameter, "isv.invalid-charset", "a parameter is not valid "+string(cs))
		}
		ex.params[k] = d
	}
	p := ex.params
	biz, encrypted, openFail := s.openBizContent(ex)
	s.countCall(p["method"], biz)

	st := zhima.SignType(p["sign_type"])
	validType := st == zhima.RSA2 || st == zhima.RSA
	if validType {
		ex.signType = st
	}
	for _, req := range s.required {
		if p[req.param] == "" {
			return ex, protocolError(zhima.CodeMissingParameter, req.subCode, "missing parameter "+req.param)
		}
	}
	if !validType {
		return ex, protocolError(zhima.CodeInvalidParameter, "isv.invalid-signature-type", "sign_type must be RSA2 or RSA")
	}
	if s.appID != "" && p["app_id"] != s.appID {
		return ex, protocolError(zhima.CodeInvalidParameter, "isv.invalid-app-id", "app_id is not known to this gateway")
	}
	if fail := s.checkCertSNs(p); fail != nil {
		return ex, fail
	}
	if err := zhima.Verify(s.appPub, st, []byte(zhima.SigningString(raw)), raw["sign"]); err != nil {
		return ex, protocolError(zhima.CodeInvalidParameter, "isv.invalid-signature",
			"the signature does not verify with the app public key: check the signing string ("+string(cs)+" bytes) and that the app private key matches")
	}
	ts, err := zhima.ParseTimestamp(p["timestamp"])
	if err != nil {
		return ex, protocolError(zhima.CodeInvalidParameter, "isv.invalid-timestamp", "timestamp must be yyyy-MM-dd HH:mm:ss in Beijing time")
	}
	if skew := s.now().Sub(ts); skew > TimestampSkew || skew < -TimestampSkew {
		return ex, protocolError(zhima.CodeInvalidParameter, "isv.invalid-timestamp",
			"timestamp is more than 15 minutes from the gateway's time (Beijing time, UTC+8)")
	}
	if !s.knownMethod(p["method"]) {
		return ex, protocolError(zhima.CodeInvalidParameter, "isv.invalid-method", "this gateway does not know the method")
	}
	if p["version"] != "1.0" {
		return ex, protocolError(zhima.CodeInvalidParameter, "isv.invalid-parameter", "version must be 1.0")
	}
	if f := p["format"]; f != "" && !strings.EqualFold(f, "JSON") {
		return ex, protocolError(zhima.CodeInvalidParameter, "isv.invalid-format", "format must be JSON")
	}
	if openFail != nil {
		return ex, openFail
	}
	if encrypted {
		p["biz_content"], ex.encrypted = biz, true
	}
	return ex, nil
}

// knownMethod reports whether the gateway serves method: the three Zhima
// methods, and the certificate download in certificate mode.
func (s *Server) knownMethod(method string) bool {
	return slices.Contains(zhima.Methods, method) || s.certs != nil && method == zhima.MethodAlipayCertDownload
}

// countCall counts a call under its method when the gateway serves it, and
// under its method and transaction_id when both can be read. bizContent is
// the plain text of an encrypted one when it opens.
func (s *Server) countCall(method, bizContent string) {
	if s.knownMethod(method) {
		s.count.method(method)
	}
	if method == "" || bizContent == "" {
		return
	}
	var b struct {
		TransactionID string `json:"transaction_id"`
	}
	if json.Unmarshal([]byte(bizContent), &b) != nil || b.TransactionID == "" {
		return
	}
	s.count.call(method, b.TransactionID)
}

// decodeBizContent reads biz_content into method's request type and
// validates it. A failure is INVALID_PARAMETER naming the field, never its
// value.
func decodeBizContent(method, bizContent string) (zhima.Request, *outcome) {
	if strings.TrimSpace(bizContent) == "" {
		return nil, invalidParameter(method, "biz_content: is required")
	}
	req, err := zhima.NewRequest(method)
	if err != nil {
		return nil, protocolError(zhima.CodeInvalidParameter, "isv.invalid-method", "this gateway does not know the method")
	}
	if err := json.Unmarshal([]byte(bizContent), req); err != nil {
		if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && te.Field != "" {
			return nil, invalidParameter(method, te.Field+": has the wrong JSON type")
		}
		return nil, invalidParameter(method, "biz_content: is not a JSON object")
	}
	if err := req.Validate(); err != nil {
		if ze, ok := errors.AsType[*zhima.Error](err); ok && ze.SubMsg != "" {
			return nil, invalidParameter(method, ze.SubMsg)
		}
		return nil, invalidParameter(method, "biz_content: is invalid")
	}
	if code, ok := productCodes[method]; ok && productCode(req) != code.want {
		return nil, businessError(method, zhima.CodeBusinessFailed, msgBusiness, code.subCode, code.subMsg)
	}
	return req, nil
}

// productCodes are the product codes Alipay's pages give for each method;
// any other is answered with the page's error for a wrong product code.
var productCodes = map[string]struct{ want, subCode, subMsg string }{
	zhima.MethodScoreBriefGet:           {"w1010100000000002733", "API_PRODUCT_NOT_MATCH", "输入的产品码不正确"},
	zhima.MethodRelationQuery:           {"w1010100001000001200", "API_PRODUCT_NOT_MATCH", "输入的产品码不正确"},
	zhima.MethodCertificationInitialize: {"w1010100000000002978", "ARRANGEMENT_ERROR", "合约异常"},
}

func productCode(req zhima.Request) string {
	switch r := req.(type) {
	case *zhima.ScoreBriefGetRequest:
		return r.ProductCode
	case *zhima.RelationQueryRequest:
		return r.ProductCode
	case *zhima.CertificationInitializeRequest:
		return r.ProductCode
	}
	return ""
}

// transact answers a valid, unfaulted request by its transaction_id. With
// commit false nothing is stored or billed.
func (s *Server) transact(ex *exchange, req zhima.Request, fp [sha256.Size]byte, commit bool) *outcome {
	method := req.Method()
	k := txKey{appID: ex.params["app_id"], method: method, transactionID: req.Transaction()}
	node, verdict := s.txs.resolve(k, fp, s.now(), s.window, func() []byte { return successNode(req) }, commit)
	switch verdict {
	case txRepeat:
		return businessError(method, zhima.CodeBusinessFailed, msgBusiness, zhima.SubTransactionIDRepeat, "相同业务流水号但业务参数不一致,请求被拒绝")
	case txExpired:
		return businessError(method, zhima.CodeBusinessFailed, msgBusiness, zhima.SubTransactionIDExpired, "业务流水号已过期")
	case txFirst:
		if commit {
			s.count.billed.Add(1)
		}
	}
	return &outcome{name: nodeName(method), node: node, key: zhima.CodeSuccess}
}

func protocolError(code, subCode, subMsg string) *outcome {
	msg := msgInvalid
	if code == zhima.CodeMissingParameter {
		msg = msgMissing
	}
	return &outcome{name: errorResponse, node: errorNode(code, msg, subCode, subMsg), key: code + "/" + subCode}
}

func businessError(method, code, msg, subCode, subMsg string) *outcome {
	return &outcome{name: nodeName(method), node: errorNode(code, msg, subCode, subMsg), key: code + "/" + subCode}
}

func invalidParameter(method, subMsg string) *outcome {
	return businessError(method, zhima.CodeBusinessFailed, msgBusiness, zhima.SubInvalidParameter, subMsg)
}

// reply writes o's answer in ex's charset: {"<name>":<node>,"sign":"…"},
// or the sign first for about half the nodes. In certificate mode
// "alipay_cert_sn" stands beside "sign", naming the certificate whose key
// signed. For an encrypted exchange the method's node (not error_response)
// is a JSON string, the base64 AES ciphertext of the node in ex's charset.
// The signature covers the node's bytes exactly as they go on the wire: the
// object, or the string with its quotes. An unsigned outcome is written
// {"<name>":<node>} alone.
func (s *Server) reply(w http.ResponseWriter, ex *exchange, o *outcome) {
	node, err := ex.cs.encode(o.node)
	if err != nil {
		s.plain(w, http.StatusInternalServerError, "sandbox: the answer cannot be encoded in "+string(ex.cs)+"\n", "http/500")
		return
	}
	if ex.encrypted && o.name != errorResponse {
		node = appendJSONString(nil, s.aes.Encrypt(node))
	}
	name := appendJSONString(nil, o.name)
	body := make([]byte, 0, len(node)+len(name)+512)
	body = append(body, '{')
	if o.signing == signNone {
		body = append(append(append(body, name...), ':'), node...)
	} else {
		key, sn, err := s.signer(o.signing)
		if err != nil {
			s.plain(w, http.StatusInternalServerError, "sandbox: no key to sign the answer with\n", "http/500")
			return
		}
		sig, err := zhima.Sign(key, ex.signType, node)
		if err != nil {
			s.plain(w, http.StatusInternalServerError, "sandbox: cannot sign the answer\n", "http/500")
			return
		}
		if o.signing == signSpoiled {
			sig = spoil(sig)
		}
		var certSN []byte
		if sn != "" {
			certSN = appendJSONString(append(appendJSONString(nil, zhima.ParamAlipayCertSN), ':'), sn)
		}
		signField := appendJSONString([]byte(`"sign":`), sig)
		if sha256.Sum256(node)[0]&1 == 1 {
			body = append(append(body, signField...), ',')
			if certSN != nil {
				body = append(append(body, certSN...), ',')
			}
			body = append(append(append(body, name...), ':'), node...)
		} else {
			body = append(append(append(body, name...), ':'), node...)
			if certSN != nil {
				body = append(append(body, ','), certSN...)
			}
			body = append(append(body, ','), signField...)
		}
	}
	body = append(body, '}')

	h := w.Header()
	h.Set("Content-Type", ex.cs.contentType())
	h["trace_id"] = []string{traceID()}
	w.WriteHeader(http.StatusOK)
	w.Write(body)
	s.count.answer(o.key)
}

// plain writes a non-gateway HTTP answer, as a proxy in front of the gateway
// would, and counts it under key unless key is "".
func (s *Server) plain(w http.ResponseWriter, status int, text, key string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h["trace_id"] = []string{traceID()}
	w.WriteHeader(status)
	io.WriteString(w, text)
	if key != "" {
		s.count.answer(key)
	}
}

// spoil returns a signature of the right shape that does not verify.
func spoil(sig string) string {
	b, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || len(b) == 0 {
		return base64.StdEncoding.EncodeToString([]byte("not a signature"))
	}
	b[len(b)-1] ^= 0x01
	return base64.StdEncoding.EncodeToString(b)
}

func traceID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
