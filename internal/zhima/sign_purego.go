//go:build !openssl

package zhima

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
)

// SignBackend names the code that makes request signatures in this build:
// "go" (crypto/rsa, the default build, no cgo) or "openssl" (libcrypto
// through cgo, built with -tags openssl; see sign_openssl.go).
const SignBackend = "go"

// signPKCS1v15 is the PKCS#1 v1.5 signature of content's h digest with key.
func signPKCS1v15(key *rsa.PrivateKey, h crypto.Hash, content []byte) ([]byte, error) {
	return rsa.SignPKCS1v15(rand.Reader, key, h, digest(h, content))
}
