package sandbox

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

// testAESKey is the app's content-encryption key, as the console shows it.
func testAESKey(t *testing.T) *zhima.AESKey {
	t.Helper()
	k, err := zhima.ParseAESKey(base64.StdEncoding.EncodeToString([]byte("zhimaq-sandbox16")))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newAESHarness(t *testing.T, edit func(*Config)) *harness {
	t.Helper()
	key := testAESKey(t)
	return newHarness(t, func(c *Config) {
		c.AESKey = key
		if edit != nil {
			edit(c)
		}
	})
}

func TestAESSuccess(t *testing.T) {
	h := newAESHarness(t, nil)
	plain := newHarness(t, nil) // the same sandbox without encryption
	key := testAESKey(t)
	tests := []struct {
		name, method, biz, node, charset string
	}{
		{"score brief get", zhima.MethodScoreBriefGet, scoreBiz("E_1", 600), scoreNode, ""},
		{"relation query", zhima.MethodRelationQuery, relationBiz("E_2", "family"), relationNode, ""},
		{"certification initialize", zhima.MethodCertificationInitialize, certBiz("E_3"), certNode, ""},
		{"GBK with non-ASCII in and out", zhima.MethodScoreBriefGet, scoreBiz(txidWith(t, zhima.MethodScoreBriefGet, true), 600), scoreNode, "GBK"},
		{"GBK relation query", zhima.MethodRelationQuery, relationBiz("E_4", "friend"), relationNode, "GBK"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is answered with an encrypted node", func(t *testing.T) {
			a := h.do(t, call{method: tt.method, biz: tt.biz, charset: tt.charset, aes: key})
			a.wantCode(t, tt.node, zhima.CodeSuccess, "")
			if a.cipher == "" || a.node[0] != '"' || a.node[len(a.node)-1] != '"' {
				t.Fatalf("node is not a JSON string: %s", a.body)
			}
			if !bytes.Contains(a.body, []byte(`"`+tt.node+`":"`+a.cipher+`"`)) {
				t.Errorf("body does not hold the node as a string: %s", a.body)
			}
			// The sign covers the string with its quotes, not the plain text
			// nor the bare base64.
			a.mustVerify(t, h.srv, zhima.RSA2)
			for _, other := range [][]byte{[]byte(a.cipher), a.utf8} {
				if zhima.Verify(h.srv.AlipayPublicKey(), zhima.RSA2, other, a.sign) == nil {
					t.Errorf("sign verifies over %.20q…", other)
				}
			}
			want := plain.do(t, call{method: tt.method, biz: tt.biz, charset: tt.charset})
			if !bytes.Equal(a.utf8, want.utf8) {
				t.Errorf("decrypted node differs from the clear one:\n%s\n%s", a.utf8, want.utf8)
			}
			if tt.charset == "GBK" {
				clear, _ := key.Decrypt(a.cipher)
				if !bytes.Equal(clear, want.node) {
					t.Error("the plain text is not the node in GBK")
				}
			}
			noPersonalData(t, a.body)
		})
	}
	st := h.srv.Stats()
	if st.Billed != int64(len(tests)) || h.srv.Calls(zhima.MethodScoreBriefGet, "E_1") != 1 {
		t.Errorf("billed %d, calls of E_1 %d; want %d and 1 (counted by the decrypted transaction_id)",
			st.Billed, h.srv.Calls(zhima.MethodScoreBriefGet, "E_1"), len(tests))
	}
}

func TestAESTransactions(t *testing.T) {
	h := newAESHarness(t, nil)
	key := testAESKey(t)
	first := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("ET_1", 600), aes: key})
	first.wantCode(t, scoreNode, zhima.CodeSuccess, "")

	t.Run("same parameters spaced otherwise replay the node unbilled", func(t *testing.T) {
		again := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: " " + scoreBiz("ET_1", 600) + " ", aes: key})
		again.wantCode(t, scoreNode, zhima.CodeSuccess, "")
		if !bytes.Equal(again.utf8, first.utf8) || h.srv.Stats().Billed != 1 {
			t.Errorf("replay differs or was billed (billed %d)", h.srv.Stats().Billed)
		}
	})
	t.Run("other parameters are TRANSACTION_ID_REPEAT, encrypted", func(t *testing.T) {
		a := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("ET_1", 700), aes: key})
		a.wantCode(t, scoreNode, zhima.CodeBusinessFailed, zhima.SubTransactionIDRepeat)
		if a.cipher == "" {
			t.Error("business error is not encrypted")
		}
		a.mustVerify(t, h.srv, zhima.RSA2)
	})
	t.Run("INVALID_PARAMETER is encrypted", func(t *testing.T) {
		a := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("ET_2", 100), aes: key})
		a.wantCode(t, scoreNode, zhima.CodeBusinessFailed, zhima.SubInvalidParameter)
		if a.cipher == "" || !strings.HasPrefix(a.env.SubMsg, "admittance_score: ") {
			t.Errorf("got %s", a.body)
		}
	})
	if got := h.srv.Calls(zhima.MethodScoreBriefGet, "ET_1"); got != 3 {
		t.Errorf("calls of ET_1 = %d, want 3", got)
	}
}

func TestAESFaults(t *testing.T) {
	key := testAESKey(t)
	tests := []struct {
		name   string
		certs  bool
		faults Faults
		check  func(t *testing.T, h *harness, a *answer)
	}{
		{"SYSTEM_ERROR is encrypted", false, Faults{SystemErrorRate: 1}, func(t *testing.T, h *harness, a *answer) {
			a.wantCode(t, scoreNode, zhima.CodeBusinessFailed, zhima.SubSystemError)
			a.mustVerify(t, h.srv, zhima.RSA2)
		}},
		{"bad_sign does not verify over the string", false, Faults{BadSignRate: 1}, func(t *testing.T, h *harness, a *answer) {
			a.wantCode(t, scoreNode, zhima.CodeSuccess, "")
			if a.verify(h.srv, zhima.RSA2) == nil {
				t.Error("verifies")
			}
		}},
		{"rogue_cert names the rogue certificate", true, Faults{RogueCertRate: 1}, func(t *testing.T, h *harness, a *answer) {
			a.wantCode(t, scoreNode, zhima.CodeSuccess, "")
			a.mustVerify(t, h.srv, zhima.RSA2) // with the rogue leaf it names
			if a.certSN == h.srv.Certs().AlipayCertSN() {
				t.Error("names the real certificate")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			edit := func(c *Config) { c.AESKey, c.Faults = key, tt.faults }
			newH := newHarness
			if tt.certs {
				newH = newCertHarness
			}
			h := newH(t, edit)
			a := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("EF_1", 600), aes: key})
			if a.cipher == "" {
				t.Fatalf("answer is not encrypted: %s", a.body)
			}
			tt.check(t, h, a)
			if st := h.srv.Stats(); st.Billed != 0 {
				t.Errorf("billed %d", st.Billed)
			}
		})
	}
}

func TestAESRefusals(t *testing.T) {
	h := newAESHarness(t, nil)
	key := testAESKey(t)
	set := func(k, v string) func(map[string]string) {
		return func(p map[string]string) { p[k] = v }
	}
	// truncated keeps the first two blocks of a ciphertext: the last one
	// then ends in JSON text, never in valid padding.
	truncated := func(p map[string]string) {
		b, _ := base64.StdEncoding.DecodeString(p["biz_content"])
		p["biz_content"] = base64.StdEncoding.EncodeToString(b[:32])
	}
	tests := []struct {
		name    string
		c       call
		code    string
		subCode string
	}{
		{"clear biz_content is invalid-encrypt", call{}, zhima.CodeInvalidParameter, SubInvalidEncrypt},
		{"encrypt_type DES is invalid-encrypt-type", call{aes: key, edit: set(zhima.ParamEncryptType, "DES")}, zhima.CodeInvalidParameter, SubInvalidEncryptType},
		{"ciphertext not base64 is decryption-error", call{aes: key, sent: set("biz_content", "@@not base64@@")}, zhima.CodeInvalidParameter, SubDecryptionError},
		{"ciphertext of part of a block is decryption-error", call{aes: key, sent: set("biz_content", "AAECAwQ=")}, zhima.CodeInvalidParameter, SubDecryptionError},
		{"ciphertext with bad padding is decryption-error", call{aes: key, sent: truncated}, zhima.CodeInvalidParameter, SubDecryptionError},
		{"empty ciphertext is decryption-error", call{aes: key, sent: set("biz_content", "")}, zhima.CodeInvalidParameter, SubDecryptionError},
		{"ciphertext changed after signing is invalid-signature", call{aes: key, tamper: truncated}, zhima.CodeInvalidParameter, "isv.invalid-signature"},
		{"missing timestamp comes before decryption", call{aes: key, edit: func(p map[string]string) { delete(p, "timestamp") }, sent: truncated},
			zhima.CodeMissingParameter, "isv.missing-timestamp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.c
			c.method, c.biz = zhima.MethodScoreBriefGet, scoreBiz("ER_1", 600)
			a := h.do(t, c)
			a.wantCode(t, errorResponse, tt.code, tt.subCode)
			if a.cipher != "" {
				t.Fatal("error_response is encrypted")
			}
			a.mustVerify(t, h.srv, zhima.RSA2)
			if a.env.SubMsg == "" {
				t.Error("sub_msg is empty")
			}
			noPersonalData(t, a.body)
			enc := key.Encrypt([]byte(c.biz))
			if bytes.Contains(a.body, []byte(enc[:16])) || bytes.Contains(a.body, []byte("ER_1")) {
				t.Errorf("answer quotes the ciphertext or the plain text: %s", a.body)
			}
		})
	}
	if st := h.srv.Stats(); st.Billed != 0 || st.Transactions != 0 {
		t.Errorf("refusals billed %d, stored %d", st.Billed, st.Transactions)
	}
}

func TestAESNotEnabled(t *testing.T) {
	h := newHarness(t, nil)
	a := h.do(t, call{method: zhima.MethodScoreBriefGet, biz: scoreBiz("EN_1", 600), aes: testAESKey(t)})
	a.wantCode(t, errorResponse, zhima.CodeInvalidParameter, SubEncryptNotEnabled)
	a.mustVerify(t, h.srv, zhima.RSA2)
	if h.srv.Stats().Billed != 0 {
		t.Error("billed")
	}
}

func TestAESWithCertMode(t *testing.T) {
	key := testAESKey(t)
	h := newCertHarness(t, func(c *Config) { c.AESKey = key })
	certs := h.srv.Certs()
	t.Run("an encrypted answer carries alipay_cert_sn", func(t *testing.T) {
		a := h.do(t, call{method: zhima.MethodRelationQuery, biz: relationBiz("EC_1", "family"), aes: key})
		a.wantCode(t, relationNode, zhima.CodeSuccess, "")
		if a.cipher == "" || a.certSN != certs.AlipayCertSN() {
			t.Fatalf("got %s", a.body)
		}
		a.mustVerify(t, h.srv, zhima.RSA2)
	})
	t.Run("the download is never encrypted", func(t *testing.T) {
		a := h.download(t, certs.AlipayCertSN(), nil)
		if !bytes.Equal(a.content(t), certs.AlipayCertPEM()) {
			t.Error("download differs")
		}
		biz := `{"alipay_cert_sn":"` + certs.AlipayCertSN() + `"}`
		a = h.do(t, call{method: zhima.MethodAlipayCertDownload, biz: biz, aes: key})
		a.wantCode(t, errorResponse, zhima.CodeInvalidParameter, SubInvalidEncrypt)
	})
}
