package zhima

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// ParsePrivateKey reads an RSA private key written as PKCS#1 or PKCS#8 PEM, or
// as the bare base64 body that Alipay's key tool prints. A public key or a
// certificate is refused with an error saying what it is.
func ParsePrivateKey(text string) (*rsa.PrivateKey, error) {
	der, kind, err := keyDER(text)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "PUBLIC KEY", "RSA PUBLIC KEY":
		return nil, errors.New("zhima: got a public key where a private key belongs")
	case "CERTIFICATE":
		return nil, errors.New("zhima: got a certificate where a private key belongs")
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		if _, pubErr := x509.ParsePKIXPublicKey(der); pubErr == nil {
			return nil, errors.New("zhima: got a public key where a private key belongs")
		}
		return nil, errors.New("zhima: private key is neither PKCS#1 nor PKCS#8")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("zhima: private key is %T, want RSA", k)
	}
	return rk, nil
}

// ParsePublicKey reads an RSA public key written as PKIX ("PUBLIC KEY") or
// PKCS#1 ("RSA PUBLIC KEY") PEM, or as the bare base64 body Alipay prints. A
// private key or a certificate is refused with an error saying what it is.
func ParsePublicKey(text string) (*rsa.PublicKey, error) {
	der, kind, err := keyDER(text)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "RSA PRIVATE KEY", "PRIVATE KEY":
		return nil, errors.New("zhima: got a private key where a public key belongs")
	case "CERTIFICATE":
		return nil, errors.New("zhima: got a certificate where a public key belongs (certificate mode is not supported)")
	}
	if k, err := x509.ParsePKIXPublicKey(der); err == nil {
		rk, ok := k.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("zhima: public key is %T, want RSA", k)
		}
		return rk, nil
	}
	if k, err := x509.ParsePKCS1PublicKey(der); err == nil {
		return k, nil
	}
	if _, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return nil, errors.New("zhima: got a private key where a public key belongs")
	}
	if _, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return nil, errors.New("zhima: got a private key where a public key belongs")
	}
	return nil, errors.New("zhima: public key is neither PKIX nor PKCS#1")
}

// keyDER returns the DER bytes of a PEM block or a bare base64 body, and the
// PEM block type ("" for a bare body).
func keyDER(text string) ([]byte, string, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, "", errors.New("zhima: key is empty")
	}
	if strings.HasPrefix(text, "-----BEGIN") {
		block, _ := pem.Decode([]byte(text))
		if block == nil {
			return nil, "", errors.New("zhima: key looks like PEM but does not decode")
		}
		return block.Bytes, block.Type, nil
	}
	body := strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, text)
	der, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		return nil, "", errors.New("zhima: key is neither PEM nor base64")
	}
	return der, "", nil
}
