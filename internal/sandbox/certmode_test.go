package sandbox

import (
	"bytes"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

// newCertHarness starts a sandbox in certificate mode; edit adjusts the
// config before New.
func newCertHarness(t *testing.T, edit func(*Config)) *harness {
	t.Helper()
	certs := testPKI(t)
	return newHarness(t, func(c *Config) {
		c.AlipayKey = nil
		c.Certs = certs
		if edit != nil {
			edit(c)
		}
	})
}

func TestCertModeProtocol(t *testing.T) {
	h := newCertHarness(t, nil)
	certs := h.srv.Certs()
	set := func(k, v string) func(map[string]string) {
		return func(p map[string]string) { p[k] = v }
	}
	drop := func(keys ...string) func(map[string]string) {
		return func(p map[string]string) {
			for _, k := range keys {
				delete(p, k)
			}
		}
	}
	firstRoot := strings.Split(certs.RootCertSN(), "_")[0]
	tests := []struct {
		name          string
		edit          func(map[string]string)
		code, subCode string
		subMsg        string
	}{
		{"missing app_cert_sn", drop(zhima.ParamAppCertSN), zhima.CodeMissingParameter, SubMissingAppCertSN, "app_cert_sn"},
		{"missing alipay_root_cert_sn", drop(zhima.ParamAlipayRootCertSN), zhima.CodeMissingParameter, SubMissingRootCertSN, "alipay_root_cert_sn"},
		{"plain key mode request, no SNs", drop(zhima.ParamAppCertSN, zhima.ParamAlipayRootCertSN), zhima.CodeMissingParameter, SubMissingAppCertSN, "app_cert_sn"},
		{"wrong app_cert_sn", set(zhima.ParamAppCertSN, certs.AlipayCertSN()), zhima.CodeInvalidParameter, SubAppCertSNNotMatch, "app certificate"},
		{"wrong alipay_root_cert_sn", set(zhima.ParamAlipayRootCertSN, "0123456789abcdef0123456789abcdef"), zhima.CodeInvalidParameter, SubRootCertSNNotMatch, "alipayRootCert.crt"},
		{"root SN of one RSA root only", set(zhima.ParamAlipayRootCertSN, firstRoot), zhima.CodeInvalidParameter, SubRootCertSNNotMatch, "joined by _"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is "+tt.subCode, func(t *testing.T) {
			a := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("CP_1", 600), edit: tt.edit})
			a.wantCode(t, errorResponse, tt.code, tt.subCode)
			a.mustVerify(t, h.srv, zhima.RSA2)
			if a.certSN != certs.AlipayCertSN() {
				t.Errorf("alipay_cert_sn = %q, want the current %q", a.certSN, certs.AlipayCertSN())
			}
			if !strings.Contains(a.env.SubMsg, tt.subMsg) {
				t.Errorf("sub_msg = %q, want it to mention %q", a.env.SubMsg, tt.subMsg)
			}
		})
	}
	t.Run("SNs are signed: changing one after signing is invalid-signature", func(t *testing.T) {
		a := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("CP_2", 600),
			edit: drop(zhima.ParamAppCertSN), tamper: set(zhima.ParamAppCertSN, certs.AppCertSN())})
		a.wantCode(t, errorResponse, zhima.CodeInvalidParameter, "isv.invalid-signature")
	})
	if st := h.srv.Stats(); st.Billed != 0 || st.Calls != int64(len(tests)+1) {
		t.Errorf("stats = %+v, want nothing billed", st)
	}
}

func TestCertModeSuccess(t *testing.T) {
	h := newCertHarness(t, nil)
	certs := h.srv.Certs()
	leaf := mustCerts(t, readFile(t, certs.AlipayCertPath()))[0]
	for _, st := range []zhima.SignType{zhima.RSA2, zhima.RSA} {
		t.Run(string(st)+" answer carries alipay_cert_sn and verifies with the leaf", func(t *testing.T) {
			a := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("CS_"+string(st), 600), signType: st})
			a.wantCode(t, scoreNode, zhima.CodeSuccess, "")
			if a.certSN != certs.AlipayCertSN() {
				t.Errorf("alipay_cert_sn = %q, want %q", a.certSN, certs.AlipayCertSN())
			}
			if err := zhima.Verify(leaf.PublicKey.(*rsa.PublicKey), st, a.node, a.sign); err != nil {
				t.Errorf("answer does not verify with the leaf of %s: %v", AlipayCertFile, err)
			}
		})
	}
	t.Run("both key orders carry the SN beside sign", func(t *testing.T) {
		var first, last int
		for i := range 16 {
			a := h.do(t, call{method: zhima.MethodRelationQuery, biz: relationBiz(fmt.Sprintf("CO_%d", i), "family")})
			a.mustVerify(t, h.srv, zhima.RSA2)
			if a.signFst {
				first++
				if !bytes.HasPrefix(a.body, []byte(`{"sign":"`+a.sign+`","alipay_cert_sn":"`+a.certSN+`",`)) {
					t.Fatalf("sign-first body: %s", a.body)
				}
			} else {
				last++
				if !bytes.HasSuffix(a.body, []byte(`,"alipay_cert_sn":"`+a.certSN+`","sign":"`+a.sign+`"}`)) {
					t.Fatalf("node-first body: %s", a.body)
				}
			}
		}
		if first == 0 || last == 0 {
			t.Errorf("of 16 answers %d put sign first; want some of each", first)
		}
	})
	t.Run("GET /alipay_public_key.pem is the leaf's key", func(t *testing.T) {
		_, body := h.adminDo(t, http.MethodGet, "/alipay_public_key.pem", "")
		pub, err := zhima.ParsePublicKey(string(body))
		if err != nil || !pub.Equal(leaf.PublicKey) {
			t.Errorf("key does not match the leaf (%v)", err)
		}
	})
}

// download asks the sandbox for the certificate of sn.
func (h *harness) download(t *testing.T, sn string, edit func(map[string]string)) *answer {
	t.Helper()
	biz, _ := json.Marshal(map[string]string{zhima.ParamAlipayCertSN: sn})
	return h.do(t, call{method: zhima.MethodAlipayCertDownload, biz: string(biz), edit: edit})
}

// content is the certificate a download answered.
func (a *answer) content(t *testing.T) []byte {
	t.Helper()
	a.wantCode(t, downloadNode, zhima.CodeSuccess, "")
	s, _ := a.fields["alipay_cert_content"].(string)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || s == "" {
		t.Fatalf("alipay_cert_content is not standard base64: %q", s)
	}
	return b
}

func TestCertDownload(t *testing.T) {
	h := newCertHarness(t, nil)
	certs := h.srv.Certs()
	t.Run("current SN returns the Alipay file, unsigned", func(t *testing.T) {
		a := h.download(t, certs.AlipayCertSN(), nil)
		if got := a.content(t); !bytes.Equal(got, readFile(t, certs.AlipayCertPath())) {
			t.Errorf("downloaded certificate differs from %s", AlipayCertFile)
		}
		if a.sign != "" || a.certSN != "" || a.env.Msg != "Success" {
			t.Errorf("download answer: %s, want no sign and no alipay_cert_sn", a.body)
		}
	})
	t.Run("unknown SN is CERT_NOT_EXIST", func(t *testing.T) {
		a := h.download(t, "00000000000000000000000000000000", nil)
		a.wantCode(t, downloadNode, zhima.CodeBusinessFailed, SubCertNotExist)
		if a.sign != "" {
			t.Error("refusal is signed")
		}
	})
	t.Run("no SN is INVALID_PARAMETER naming alipay_cert_sn", func(t *testing.T) {
		a := h.download(t, "", nil)
		a.wantCode(t, downloadNode, zhima.CodeBusinessFailed, zhima.SubInvalidParameter)
		if !strings.HasPrefix(a.env.SubMsg, "alipay_cert_sn: ") {
			t.Errorf("sub_msg = %q", a.env.SubMsg)
		}
	})
	t.Run("signature and SNs are checked as for any call", func(t *testing.T) {
		a := h.download(t, certs.AlipayCertSN(), func(p map[string]string) { delete(p, zhima.ParamAlipayRootCertSN) })
		a.wantCode(t, errorResponse, zhima.CodeMissingParameter, SubMissingRootCertSN)
		a.mustVerify(t, h.srv, zhima.RSA2)
		biz, _ := json.Marshal(map[string]string{zhima.ParamAlipayCertSN: certs.AlipayCertSN()})
		a = h.do(t, call{method: zhima.MethodAlipayCertDownload, biz: string(biz),
			tamper: func(p map[string]string) { p["biz_content"] = `{"alipay_cert_sn":"x"}` }})
		a.wantCode(t, errorResponse, zhima.CodeInvalidParameter, "isv.invalid-signature")
	})
	st := h.srv.Stats()
	if st.CertDownloads != 1 || st.Methods[zhima.MethodAlipayCertDownload] != 5 || st.Billed != 0 || st.Transactions != 0 {
		t.Errorf("stats = %+v, want 1 download of 5 calls, nothing billed", st)
	}
	t.Run("public key mode does not know the method", func(t *testing.T) {
		h := newHarness(t, nil)
		a := h.download(t, "00000000000000000000000000000000", nil)
		a.wantCode(t, errorResponse, zhima.CodeInvalidParameter, "isv.invalid-method")
	})
}

func TestRotateCert(t *testing.T) {
	h := newCertHarness(t, nil)
	certs := h.srv.Certs()
	old := certs.AlipayCertSN()
	oldFile := readFile(t, certs.AlipayCertPath())

	sn, err := h.srv.RotateCert()
	if err != nil || sn == old || sn != certs.AlipayCertSN() {
		t.Fatalf("RotateCert = %q, %v; old %q, current %q", sn, err, old, certs.AlipayCertSN())
	}
	t.Run("answers carry the new SN and verify with the new leaf", func(t *testing.T) {
		a := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("RC_1", 600)})
		a.wantCode(t, scoreNode, zhima.CodeSuccess, "")
		if a.certSN != sn {
			t.Fatalf("alipay_cert_sn = %q, want the new %q", a.certSN, sn)
		}
		newLeaf := mustCerts(t, h.download(t, sn, nil).content(t))[0]
		if err := zhima.Verify(newLeaf.PublicKey.(*rsa.PublicKey), zhima.RSA2, a.node, a.sign); err != nil {
			t.Errorf("does not verify with the downloaded new leaf: %v", err)
		}
		oldLeaf := mustCerts(t, oldFile)[0]
		if zhima.Verify(oldLeaf.PublicKey.(*rsa.PublicKey), zhima.RSA2, a.node, a.sign) == nil {
			t.Error("verifies with the old leaf")
		}
	})
	t.Run("the new leaf chains under the same intermediate", func(t *testing.T) {
		content := h.download(t, sn, nil).content(t)
		if _, err := chainToRoots(t, certs.RootCertPEM(), content); err != nil {
			t.Errorf("new leaf does not chain: %v", err)
		}
		if !bytes.Equal(mustPEMAt(t, content, 1), mustPEMAt(t, oldFile, 1)) {
			t.Error("the intermediate changed")
		}
	})
	t.Run("the old SN still downloads", func(t *testing.T) {
		if got := h.download(t, old, nil).content(t); !bytes.Equal(got, oldFile) {
			t.Error("old certificate differs")
		}
	})
	t.Run("the Alipay file holds the new leaf", func(t *testing.T) {
		if got, _ := zhima.CertSN(readFile(t, certs.AlipayCertPath())); got != sn {
			t.Errorf("file SN %s, want %s", got, sn)
		}
	})
	if got := h.srv.Stats().CertRotations; got != 1 {
		t.Errorf("cert_rotations = %d, want 1", got)
	}
	t.Run("POST /admin/rotate-cert rotates", func(t *testing.T) {
		status, body := h.adminDo(t, http.MethodPost, "/admin/rotate-cert", "")
		var got map[string]string
		if err := json.Unmarshal(body, &got); status != http.StatusOK || err != nil {
			t.Fatalf("got %d %s", status, body)
		}
		if got["alipay_cert_sn"] != certs.AlipayCertSN() || got["alipay_cert_sn"] == sn {
			t.Errorf("got %s, current %s, previous %s", body, certs.AlipayCertSN(), sn)
		}
	})
	t.Run("public key mode refuses with 409", func(t *testing.T) {
		k := newHarness(t, nil)
		if _, err := k.srv.RotateCert(); !errors.Is(err, ErrNotCertMode) {
			t.Errorf("RotateCert = %v, want ErrNotCertMode", err)
		}
		status, body := k.adminDo(t, http.MethodPost, "/admin/rotate-cert", "")
		if status != http.StatusConflict || !strings.Contains(string(body), `"error":"rotate-cert: `) {
			t.Errorf("got %d %s, want 409 with an error", status, body)
		}
	})
}

func TestRotateCertAfter(t *testing.T) {
	h := newCertHarness(t, func(c *Config) { c.RotateCertAfter = 2 })
	certs := h.srv.Certs()
	first := certs.AlipayCertSN()
	var sns []string
	for i := range 5 {
		if i == 2 {
			h.download(t, first, nil).content(t) // downloads do not count
		}
		a := h.do(t, call{method: zhima.MethodCertificationInitialize, biz: certBiz(fmt.Sprintf("RA_%d", i))})
		a.wantCode(t, certNode, zhima.CodeSuccess, "")
		a.mustVerify(t, h.srv, zhima.RSA2)
		sns = append(sns, a.certSN)
	}
	if sns[0] != first || sns[1] != first || sns[2] == first || sns[3] != sns[2] || sns[4] != sns[2] || certs.AlipayCertSN() != sns[2] {
		t.Errorf("SNs of 5 answers: %v; want 2 of %s, then 3 of one new SN", sns, first)
	}
	if st := h.srv.Stats(); st.CertRotations != 1 || st.CertDownloads != 1 {
		t.Errorf("rotations %d, downloads %d; want 1 and 1", st.CertRotations, st.CertDownloads)
	}
}

func TestRogueCertFault(t *testing.T) {
	h := newCertHarness(t, func(c *Config) { c.Faults = Faults{RogueCertRate: 1} })
	certs := h.srv.Certs()
	a := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("RG_1", 600)})
	a.wantCode(t, scoreNode, zhima.CodeSuccess, "")
	if a.certSN == certs.AlipayCertSN() {
		t.Fatal("rogue answer names the real certificate")
	}
	content := h.download(t, a.certSN, nil).content(t)
	rogue := mustCerts(t, content)
	t.Run("it verifies with the rogue certificate it names", func(t *testing.T) {
		if err := zhima.Verify(rogue[0].PublicKey.(*rsa.PublicKey), zhima.RSA2, a.node, a.sign); err != nil {
			t.Errorf("does not verify with the rogue leaf: %v", err)
		}
	})
	t.Run("the rogue certificate does not chain to the root file", func(t *testing.T) {
		if _, err := chainToRoots(t, certs.RootCertPEM(), content); err == nil {
			t.Error("rogue leaf chains to the root file")
		}
		withReal := append(bytes.Clone(content), mustPEMAt(t, certs.AlipayCertPEM(), 1)...)
		if _, err := chainToRoots(t, certs.RootCertPEM(), withReal); err == nil {
			t.Error("rogue leaf chains through the real intermediate")
		}
	})
	t.Run("its names are the real chain's", func(t *testing.T) {
		real := mustCerts(t, certs.AlipayCertPEM())
		if len(rogue) != 2 || rogue[0].Issuer.String() != real[0].Issuer.String() || rogue[1].Issuer.String() != real[1].Issuer.String() {
			t.Errorf("rogue issuers %v, real %v", rogue[0].Issuer, real[0].Issuer)
		}
	})
	st := h.srv.Stats()
	if st.Codes["rogue_cert"] != 1 || st.Billed != 0 || st.Transactions != 0 {
		t.Errorf("stats = %+v, want one rogue_cert, nothing billed or stored", st)
	}
	h.srv.SetFaults(Faults{})
	b := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("RG_1", 700)})
	b.wantCode(t, scoreNode, zhima.CodeSuccess, "")
	if b.certSN != certs.AlipayCertSN() || h.srv.Stats().Billed != 1 {
		t.Errorf("after the fault: SN %s, billed %d", b.certSN, h.srv.Stats().Billed)
	}
}

func TestRogueCertNeedsCertMode(t *testing.T) {
	app, _ := testKeys()
	if _, err := New(Config{AppPublicKey: &app.PublicKey, Faults: Faults{RogueCertRate: 0.5}}); err == nil || !strings.Contains(err.Error(), "rogue_cert_rate") {
		t.Errorf("New = %v, want a refusal naming rogue_cert_rate", err)
	}
	h := newHarness(t, nil)
	status, body := h.adminDo(t, http.MethodPut, "/admin/faults", `{"rogue_cert_rate":0.5}`)
	if status != http.StatusBadRequest || !strings.Contains(string(body), "rogue_cert_rate needs certificate mode") {
		t.Errorf("PUT = %d %s, want 400", status, body)
	}
	h.srv.SetFaults(Faults{RogueCertRate: 1, BadSignRate: 0.5})
	if f := h.srv.Faults(); f.RogueCertRate != 0 || f.BadSignRate != 0.5 {
		t.Errorf("SetFaults in key mode kept %+v", f)
	}
	c := newCertHarness(t, nil)
	if status, body := c.adminDo(t, http.MethodPut, "/admin/faults", `{"rogue_cert_rate":0.5}`); status != http.StatusOK {
		t.Errorf("PUT in certificate mode = %d %s", status, body)
	}
	if status, body := c.adminDo(t, http.MethodPut, "/admin/faults", `{"rogue":1}`); status != http.StatusBadRequest || !strings.Contains(string(body), "rogue_cert_rate") {
		t.Errorf("PUT with an unknown field = %d %s, want the fields listed", status, body)
	}
}

func TestCertModeBadSign(t *testing.T) {
	h := newCertHarness(t, func(c *Config) { c.Faults = Faults{BadSignRate: 1} })
	a := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("BS_1", 600)})
	a.wantCode(t, scoreNode, zhima.CodeSuccess, "")
	if a.certSN != h.srv.Certs().AlipayCertSN() {
		t.Errorf("alipay_cert_sn = %q, want the current one", a.certSN)
	}
	if a.verify(h.srv, zhima.RSA2) == nil {
		t.Error("bad_sign answer verifies")
	}
}
