package sandbox

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

// Keys are generated once per test binary: 2048-bit generation is the
// slowest thing these tests do.
var testKeys = sync.OnceValues(func() (app, alipay *rsa.PrivateKey) {
	var err error
	if app, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if alipay, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	return app, alipay
})

const testAppID = "2021000000000001"

// clock is an injectable clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// harness is a sandbox behind a real HTTP server, on a fake clock.
type harness struct {
	srv   *Server
	ts    *httptest.Server
	clock *clock
	aes   *zhima.AESKey // Config.AESKey: opens encrypted answers
}

// newHarness starts a sandbox; edit adjusts the config before New.
func newHarness(t *testing.T, edit func(*Config)) *harness {
	t.Helper()
	app, alipay := testKeys()
	clk := newClock()
	cfg := Config{
		AppID:        testAppID,
		AppPublicKey: &app.PublicKey,
		AlipayKey:    alipay,
		Seed:         1,
		Now:          clk.Now,
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewUnstartedServer(srv)
	ts.Config.ConnState = srv.ConnState
	ts.Start()
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
	})
	return &harness{srv: srv, ts: ts, clock: clk, aes: cfg.AESKey}
}

// call is one gateway request to build.
type call struct {
	method   string
	biz      string
	charset  string         // "" means utf-8
	signType zhima.SignType // "" means RSA2
	appID    string         // "" means testAppID
	// aes, when set, sends encrypt_type=AES and biz_content encrypted with
	// it (after the charset conversion).
	aes *zhima.AESKey
	// edit changes the parameters (UTF-8, before charset conversion and
	// encryption), sent changes them as they will be sent, just before
	// signing; tamper changes them after signing.
	edit, sent, tamper func(map[string]string)
}

// answer is a gateway reply taken apart, the node kept byte for byte.
type answer struct {
	status  int
	header  http.Header
	body    []byte // as received
	name    string // node key
	node    []byte // node bytes as received (in the reply's charset): what the sign covers
	utf8    []byte // node bytes as UTF-8; for an encrypted node, its plain text
	sign    string
	certSN  string // alipay_cert_sn beside sign, "" when absent
	cipher  string // an encrypted node's base64 text, "" for an object node
	gbk     bool
	env     zhima.Envelope
	fields  map[string]any
	signFst bool
}

func (h *harness) params(t *testing.T, c call) map[string]string {
	t.Helper()
	if c.charset == "" {
		c.charset = "utf-8"
	}
	if c.signType == "" {
		c.signType = zhima.RSA2
	}
	if c.appID == "" {
		c.appID = testAppID
	}
	p := map[string]string{
		"app_id":      c.appID,
		"method":      c.method,
		"format":      "JSON",
		"charset":     c.charset,
		"sign_type":   string(c.signType),
		"timestamp":   zhima.Timestamp(h.clock.Now()),
		"version":     "1.0",
		"biz_content": c.biz,
	}
	if certs := h.srv.Certs(); certs != nil {
		p[zhima.ParamAppCertSN] = certs.AppCertSN()
		p[zhima.ParamAlipayRootCertSN] = certs.RootCertSN()
	}
	if c.aes != nil {
		p[zhima.ParamEncryptType] = zhima.EncryptAES
	}
	if c.edit != nil {
		c.edit(p)
	}
	if strings.EqualFold(c.charset, "GBK") {
		for k, v := range p {
			p[k] = toGBK(t, v)
		}
	}
	if c.aes != nil {
		p["biz_content"] = c.aes.Encrypt([]byte(p["biz_content"]))
	}
	if c.sent != nil {
		c.sent(p)
	}
	app, _ := testKeys()
	st := c.signType
	if st != zhima.RSA {
		st = zhima.RSA2
	}
	sig, err := zhima.Sign(app, st, []byte(zhima.SigningString(p)))
	if err != nil {
		t.Fatalf("sign request: %v", err)
	}
	p["sign"] = sig
	if c.tamper != nil {
		c.tamper(p)
	}
	return p
}

// do posts c as a form and takes the reply apart.
func (h *harness) do(t *testing.T, c call) *answer {
	t.Helper()
	return h.post(t, h.params(t, c), "")
}

// post sends params (values already in the request charset) as a form body,
// and query as the URL's query string.
func (h *harness) post(t *testing.T, params map[string]string, query string) *answer {
	t.Helper()
	form := url.Values{}
	for k, v := range params {
		form.Set(k, v)
	}
	u := h.ts.URL + "/gateway.do"
	if query != "" {
		u += "?" + query
	}
	resp, err := h.ts.Client().Post(u, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	a := parseAnswer(t, resp, readAll(t, resp))
	if a.status != http.StatusOK {
		return a
	}
	switch certs := h.srv.Certs(); {
	case certs == nil && a.certSN != "":
		t.Fatalf("public key mode answer carries alipay_cert_sn: %s", a.body)
	case certs != nil && a.sign != "" && a.certSN == "":
		t.Fatalf("certificate mode answer carries no alipay_cert_sn: %s", a.body)
	}
	if a.cipher != "" {
		a.open(t, h.aes)
	}
	return a
}

// open decrypts an encrypted node with key and parses its plain text.
func (a *answer) open(t *testing.T, key *zhima.AESKey) {
	t.Helper()
	if key == nil {
		t.Fatalf("encrypted answer from a sandbox without an AES key: %s", a.body)
	}
	plain, err := key.Decrypt(a.cipher)
	if err != nil {
		t.Fatalf("encrypted node does not decrypt: %v", err)
	}
	if a.gbk {
		if plain, err = simplifiedchinese.GBK.NewDecoder().Bytes(plain); err != nil {
			t.Fatalf("decrypted node is not GBK: %v", err)
		}
	}
	a.utf8 = plain
	a.parseNode(t)
}

func (a *answer) parseNode(t *testing.T) {
	t.Helper()
	if err := json.Unmarshal(a.utf8, &a.env); err != nil {
		t.Fatalf("node is not an envelope: %v", err)
	}
	if err := json.Unmarshal(a.utf8, &a.fields); err != nil {
		t.Fatalf("node is not an object: %v", err)
	}
}

func parseAnswer(t *testing.T, resp *http.Response, body []byte) *answer {
	t.Helper()
	a := &answer{status: resp.StatusCode, header: resp.Header, body: body}
	if resp.StatusCode != http.StatusOK {
		return a
	}
	gbk := strings.Contains(resp.Header.Get("Content-Type"), "charset=GBK")
	a.gbk = gbk
	text := body
	if gbk {
		var err error
		if text, err = simplifiedchinese.GBK.NewDecoder().Bytes(body); err != nil {
			t.Fatalf("reply is not GBK: %v", err)
		}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(text, &top); err != nil {
		t.Fatalf("reply is not JSON: %v\n%s", err, text)
	}
	for k, v := range top {
		switch k {
		case "sign":
			if err := json.Unmarshal(v, &a.sign); err != nil {
				t.Fatalf("sign is not a string: %s", v)
			}
		case zhima.ParamAlipayCertSN:
			if err := json.Unmarshal(v, &a.certSN); err != nil || a.certSN == "" {
				t.Fatalf("alipay_cert_sn is not a string: %s", v)
			}
		default:
			if a.name != "" {
				t.Fatalf("reply has two nodes, %s and %s: %s", a.name, k, text)
			}
			a.name, a.utf8 = k, v
		}
	}
	if a.name == "" {
		t.Fatalf("reply has no node: %s", text)
	}
	if a.sign == "" && a.name != downloadNode {
		t.Fatalf("reply has no sign: %s", text)
	}
	a.node = a.utf8
	if gbk {
		a.node = []byte(toGBK(t, string(a.utf8)))
	}
	if !bytes.Contains(body, a.node) {
		t.Fatalf("node bytes not found verbatim in the reply")
	}
	a.signFst = bytes.HasPrefix(text, []byte(`{"sign":`))
	if len(a.utf8) > 0 && a.utf8[0] == '"' {
		if err := json.Unmarshal(a.utf8, &a.cipher); err != nil || a.cipher == "" {
			t.Fatalf("string node is not a JSON string: %s", a.utf8)
		}
		return a // parsed once opened
	}
	a.parseNode(t)
	return a
}

// verify checks the reply's signature over the node bytes as received,
// with the key of the certificate alipay_cert_sn names when it is there.
func (a *answer) verify(srv *Server, st zhima.SignType) error {
	if st != zhima.RSA {
		st = zhima.RSA2
	}
	pub := srv.AlipayPublicKey()
	if a.certSN != "" {
		content, ok := srv.Certs().CertContent(a.certSN)
		if !ok {
			return fmt.Errorf("alipay_cert_sn %s is not a certificate of the sandbox", a.certSN)
		}
		certs, err := parseCerts(content)
		if err != nil {
			return err
		}
		if pub, ok = certs[0].PublicKey.(*rsa.PublicKey); !ok {
			return fmt.Errorf("certificate %s holds no RSA key", a.certSN)
		}
	}
	return zhima.Verify(pub, st, a.node, a.sign)
}

// mustVerify fails the test unless the reply's signature verifies.
func (a *answer) mustVerify(t *testing.T, srv *Server, st zhima.SignType) {
	t.Helper()
	if err := a.verify(srv, st); err != nil {
		t.Fatalf("reply signature does not verify: %v\nnode: %s", err, a.utf8)
	}
}

// wantCode fails the test unless the node is name with code and sub_code.
func (a *answer) wantCode(t *testing.T, name, code, subCode string) {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("HTTP %d %s, want 200", a.status, a.body)
	}
	if a.name != name || a.env.Code != code || a.env.SubCode != subCode {
		t.Fatalf("got %s code=%s sub_code=%s, want %s code=%s sub_code=%s\nnode: %s",
			a.name, a.env.Code, a.env.SubCode, name, code, subCode, a.utf8)
	}
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return b
}

func toGBK(t *testing.T, s string) string {
	t.Helper()
	b, err := simplifiedchinese.GBK.NewEncoder().String(s)
	if err != nil {
		t.Fatalf("encode GBK: %v", err)
	}
	return b
}

// residentID completes 17 digits with their check digit.
func residentID(first17 string) string {
	return first17 + string(zhima.ResidentIDCheckDigit(first17))
}

// Personal data the tests send; no reply may contain any of it.
var (
	applicantID   = residentID("11010519491231002")
	contactPhone  = "13812345678"
	applicantName = "张三"
	contactName   = "李四"
)

func scoreBiz(txid string, admittance int) string {
	return fmt.Sprintf(`{"transaction_id":%q,"product_code":"w1010100000000002733","cert_type":"IDENTITY_CARD","cert_no":%q,"name":%q,"admittance_score":%d}`,
		txid, applicantID, applicantName, admittance)
}

func relationBiz(txid, relation string) string {
	return fmt.Sprintf(`{"product_code":"w1010100001000001200","transaction_id":%q,"cert_no":%q,"name":%q,"relation_phone":%q,"relation_name":%q,"relation":%q}`,
		txid, applicantID, applicantName, contactPhone, contactName, relation)
}

func certBiz(txid string) string {
	identity, _ := json.Marshal(map[string]string{
		"identity_type": "CERT_INFO", "cert_type": "IDENTITY_CARD", "cert_name": applicantName, "cert_no": applicantID,
	})
	return fmt.Sprintf(`{"transaction_id":%q,"product_code":"w1010100000000002978","biz_code":"FACE","identity_param":%q}`, txid, identity)
}

var (
	downloadNode = nodeName(zhima.MethodAlipayCertDownload)
	scoreNode    = nodeName(zhima.MethodScoreBriefGet)
	relationNode = nodeName(zhima.MethodRelationQuery)
	certNode     = nodeName(zhima.MethodCertificationInitialize)
)

// noPersonalData fails the test if the reply echoes what the tests send.
func noPersonalData(t *testing.T, body []byte) {
	t.Helper()
	for _, s := range []string{applicantID[:17], contactPhone, applicantName, contactName} {
		if bytes.Contains(body, []byte(s)) {
			t.Fatalf("reply echoes personal data: %s", body)
		}
	}
}

// txidWith finds a transaction_id whose success node for method carries the
// sandbox note (note true) or not.
func txidWith(t *testing.T, method string, note bool) string {
	t.Helper()
	for i := range 1000 {
		txid := fmt.Sprintf("N_%d", i)
		if withNote(method, txid) == note {
			return txid
		}
	}
	t.Fatal("no transaction_id found")
	return ""
}
