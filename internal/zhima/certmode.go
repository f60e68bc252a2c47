package zhima

// MethodAlipayCertDownload fetches an Alipay public key certificate by its
// SN, in certificate mode. Its answer is not signed: what makes the
// certificate trusted is that it chains to the root file.
const MethodAlipayCertDownload = "alipay.open.app.alipaycert.download"

// The parameters of certificate mode and content encryption.
const (
	ParamAppCertSN        = "app_cert_sn"
	ParamAlipayRootCertSN = "alipay_root_cert_sn"
	// ParamAlipayCertSN is the answer's field beside "sign": the SN of the
	// Alipay certificate that signed it.
	ParamAlipayCertSN = "alipay_cert_sn"
	ParamEncryptType  = "encrypt_type"
	// EncryptAES is the only encrypt_type zhimaq sends.
	EncryptAES = "AES"
)
