package sandbox

import (
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// Content encryption on the wire (接口内容加密, Config.AESKey):
//
//   - A Zhima-method request carries encrypt_type=AES and biz_content = the
//     base64 AES ciphertext (zhima.AESKey) of the biz JSON encoded in the
//     request's charset. The signature covers the parameters as sent, the
//     ciphertext included.
//   - Its answer's method node is a JSON string: the base64 ciphertext of
//     the node's JSON encoded in the charset, e.g.
//     {"zhima_credit_score_brief_get_response":"q83v…==","sign":"…"}; the
//     signature covers that string as it stands in the body, quotes
//     included. Business errors in the method node are encrypted alike;
//     error_response never is.
//   - Refusals, all 40002 Invalid Arguments in a plain error_response:
//     no encrypt_type on a Zhima method when the key is set,
//     isv.invalid-encrypt; encrypt_type other than AES,
//     isv.invalid-encrypt-type; encrypt_type on
//     alipay.open.app.alipaycert.download (never encrypted),
//     isv.invalid-encrypt; encrypt_type=AES without a key configured,
//     isv.encrypt-not-enabled; a biz_content that does not decrypt (or whose
//     plain text is not valid in the charset), isv.decryption-error. None
//     quotes the ciphertext or the plain text.

// Sub-codes of content encryption.
const (
	SubInvalidEncrypt     = "isv.invalid-encrypt"
	SubInvalidEncryptType = "isv.invalid-encrypt-type"
	SubEncryptNotEnabled  = "isv.encrypt-not-enabled"
	SubDecryptionError    = "isv.decryption-error"
)

// openBizContent applies the content-encryption rules to a request. It
// returns biz_content in plain text (UTF-8) and whether it was encrypted,
// or the refusal to answer once the other checks have passed. It runs before
// them, so that a call is counted under its decrypted transaction_id.
func (s *Server) openBizContent(ex *exchange) (biz string, encrypted bool, fail *outcome) {
	p := ex.params
	biz = p["biz_content"]
	et, method := p[zhima.ParamEncryptType], p["method"]
	switch {
	case et == "" && s.aes != nil && method != zhima.MethodAlipayCertDownload:
		return biz, false, protocolError(zhima.CodeInvalidParameter, SubInvalidEncrypt,
			"this app requires content encryption: send encrypt_type=AES and biz_content encrypted with the app's AES key")
	case et == "":
		return biz, false, nil
	case et != zhima.EncryptAES:
		return biz, false, protocolError(zhima.CodeInvalidParameter, SubInvalidEncryptType, "encrypt_type must be AES")
	case method == zhima.MethodAlipayCertDownload:
		return biz, false, protocolError(zhima.CodeInvalidParameter, SubInvalidEncrypt,
			zhima.MethodAlipayCertDownload+" is never encrypted: send its biz_content in clear, without encrypt_type")
	case s.aes == nil:
		return biz, false, protocolError(zhima.CodeInvalidParameter, SubEncryptNotEnabled,
			"content encryption is not enabled for this app: send biz_content in clear, without encrypt_type")
	}
	decryptionError := protocolError(zhima.CodeInvalidParameter, SubDecryptionError,
		"biz_content does not decrypt with the app's AES key: check the key, and that biz_content is the base64 AES ciphertext of the JSON in the request charset ("+string(ex.cs)+")")
	plain, err := s.aes.Decrypt(biz)
	if err != nil {
		return biz, false, decryptionError
	}
	text, err := ex.cs.decode(string(plain))
	if err != nil {
		return biz, false, decryptionError
	}
	return text, true, nil
}
