package sandbox

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

// Certificate mode on the wire (Config.Certs):
//
//   - Every request carries app_cert_sn and alipay_root_cert_sn, signed like
//     every parameter. Either missing is 40001 Missing Required Arguments,
//     isv.missing-app-cert-sn or isv.missing-alipay-root-cert-sn; a value
//     other than PKI.AppCertSN or PKI.RootCertSN is 40002 Invalid Arguments,
//     isv.app-cert-sn-not-match or isv.alipay-root-cert-sn-not-match. These
//     come before the signature check, as the gateway picks the app key by
//     the SN.
//   - Every signed answer carries "alipay_cert_sn" beside "sign": the SN of
//     the Alipay certificate whose key signed it.
//   - alipay.open.app.alipaycert.download, biz_content
//     {"alipay_cert_sn":"…"}, answers
//     {"alipay_open_app_alipaycert_download_response":{"code":"10000",
//     "msg":"Success","alipay_cert_content":"<base64 of the PEM>"}} with no
//     sign and no alipay_cert_sn: what makes the certificate trusted is its
//     chain to the root file. An SN never issued is 40004 Business Failed,
//     sub_code CERT_NOT_EXIST; a biz_content without alipay_cert_sn is 40004
//     INVALID_PARAMETER naming it; both unsigned too. Downloads are never
//     encrypted, never faulted, never billed; Stats.CertDownloads counts
//     those that returned a certificate.

// ErrNotCertMode is returned by Server.RotateCert when the sandbox is in
// public key mode.
var ErrNotCertMode = errors.New("sandbox: not in certificate mode")

// Sub-codes of certificate mode.
const (
	SubMissingAppCertSN     = "isv.missing-app-cert-sn"
	SubMissingRootCertSN    = "isv.missing-alipay-root-cert-sn"
	SubAppCertSNNotMatch    = "isv.app-cert-sn-not-match"
	SubRootCertSNNotMatch   = "isv.alipay-root-cert-sn-not-match"
	SubCertNotExist         = "CERT_NOT_EXIST"
	subMsgAppCertSNMismatch = "app_cert_sn does not match the app public key certificate of this app: " +
		"check that app_cert_sn is the SN of the app certificate file (appCertPublicKey_<app_id>.crt) issued for this app and key"
	subMsgRootCertSNMismatch = "alipay_root_cert_sn does not match the Alipay root certificate: " +
		"check that it is the SN of alipayRootCert.crt, the RSA roots' SNs joined by _ in file order"
)

// certRequired are the parameters certificate mode adds to required.
var certRequired = []requiredParam{
	{zhima.ParamAppCertSN, SubMissingAppCertSN},
	{zhima.ParamAlipayRootCertSN, SubMissingRootCertSN},
}

// checkCerts checks that cfg.Certs fits the rest of cfg.
func (s *Server) checkCerts(cfg Config) error {
	switch c := cfg.Certs; {
	case cfg.AlipayKey != nil:
		return errors.New("sandbox: Config.AlipayKey must be nil in certificate mode: the Alipay certificate's key signs")
	case c.AppID() != cfg.AppID:
		return fmt.Errorf("sandbox: Config.Certs was opened for app id %q, Config.AppID is %q", c.AppID(), cfg.AppID)
	case !cfg.AppPublicKey.Equal(c.appCert.PublicKey):
		return errors.New("sandbox: Config.Certs' app certificate holds another key than Config.AppPublicKey")
	}
	return nil
}

// checkCertSNs checks a request's SNs in certificate mode (their presence
// is checked with the other required parameters).
func (s *Server) checkCertSNs(p map[string]string) *outcome {
	switch {
	case s.certs == nil:
		return nil
	case p[zhima.ParamAppCertSN] != s.certs.AppCertSN():
		return protocolError(zhima.CodeInvalidParameter, SubAppCertSNNotMatch, subMsgAppCertSNMismatch)
	case p[zhima.ParamAlipayRootCertSN] != s.certs.RootCertSN():
		return protocolError(zhima.CodeInvalidParameter, SubRootCertSNNotMatch, subMsgRootCertSNMismatch)
	}
	return nil
}

// signer returns the key an answer is signed with and the SN to name
// beside the sign ("" in public key mode).
func (s *Server) signer(how signing) (*rsa.PrivateKey, string, error) {
	switch {
	case s.certs == nil:
		return s.alipayKey, "", nil
	case how == signRogue:
		l, err := s.certs.rogueLeaf()
		if err != nil {
			return nil, "", err
		}
		return l.key, l.sn, nil
	}
	l := s.certs.current()
	return l.key, l.sn, nil
}

// certDownload answers alipay.open.app.alipaycert.download. Its answers are
// never signed.
func (s *Server) certDownload(bizContent string) *outcome {
	method := zhima.MethodAlipayCertDownload
	var b struct {
		SN string `json:"alipay_cert_sn"`
	}
	var o *outcome
	if err := json.Unmarshal([]byte(bizContent), &b); err != nil {
		o = invalidParameter(method, "biz_content: is not a JSON object")
	} else if b.SN == "" {
		o = invalidParameter(method, zhima.ParamAlipayCertSN+": is required")
	} else if content, ok := s.certs.CertContent(b.SN); !ok {
		o = businessError(method, zhima.CodeBusinessFailed, msgBusiness, SubCertNotExist,
			"no Alipay public key certificate has this alipay_cert_sn")
	} else {
		s.count.certDownloads.Add(1)
		node := new(node).str("code", zhima.CodeSuccess).str("msg", msgSuccess).
			str("alipay_cert_content", base64.StdEncoding.EncodeToString(content)).bytes()
		o = &outcome{name: nodeName(method), node: node, key: zhima.CodeSuccess}
	}
	o.signing = signNone
	return o
}

// RotateCert issues a new Alipay certificate (new key, new serial) under the
// same intermediate, persists it to the PKI's directory (AlipayCertFile is
// rewritten) and signs every answer from now on with it. Every earlier
// certificate stays downloadable by its SN. It returns the new SN, or
// ErrNotCertMode in public key mode, or an error when the certificate
// cannot be made or written.
func (s *Server) RotateCert() (string, error) {
	if s.certs == nil {
		return "", ErrNotCertMode
	}
	sn, err := s.certs.rotate()
	if err == nil {
		s.count.certRotations.Add(1)
	}
	return sn, err
}

// rotateIfDue rotates once, when Config.RotateCertAfter Zhima-method calls
// have been answered: the calls after them wait for the new certificate, so
// the next one is the first signed by it. When the rotation fails, the call
// that tried it is answered HTTP 500 and the old certificate stays.
func (s *Server) rotateIfDue() error {
	if s.rotateAfter <= 0 || s.zhimaCalls.Add(1) <= s.rotateAfter {
		return nil
	}
	var err error
	s.rotateOnce.Do(func() { _, err = s.RotateCert() })
	return err
}

// Certs is the PKI of certificate mode, nil in public key mode.
func (s *Server) Certs() *PKI { return s.certs }

// validFaults is Faults.Validate plus what depends on the mode: the
// rogue_cert fault needs certificate mode.
func (s *Server) validFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if f.RogueCertRate > 0 && s.certs == nil {
		return errors.New("sandbox: faults: rogue_cert_rate needs certificate mode (--cert-mode)")
	}
	return nil
}
