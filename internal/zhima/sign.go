package zhima

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
	"time"
)

// SignType names the signature algorithm of a request and its response.
type SignType string

const (
	// RSA2 is SHA256withRSA (PKCS#1 v1.5), the type Alipay recommends.
	RSA2 SignType = "RSA2"
	// RSA is SHA1withRSA (PKCS#1 v1.5), kept for old apps.
	RSA SignType = "RSA"
)

func (t SignType) hash() (crypto.Hash, error) {
	switch t {
	case RSA2:
		return crypto.SHA256, nil
	case RSA:
		return crypto.SHA1, nil
	}
	return 0, fmt.Errorf("zhima: sign type %q: want RSA2 or RSA", string(t))
}

func digest(h crypto.Hash, content []byte) []byte {
	if h == crypto.SHA1 {
		d := sha1.Sum(content)
		return d[:]
	}
	d := sha256.Sum256(content)
	return d[:]
}

// SigningString is the text Alipay signs for a request: every parameter but
// "sign", empty values left out, sorted by key, key=value with raw values,
// joined by '&'.
func SigningString(params map[string]string) string {
	keys := make([]string, 0, len(params))
	size := 0
	for k, v := range params {
		if k == "sign" || v == "" {
			continue
		}
		keys = append(keys, k)
		size += len(k) + len(v) + 2
	}
	sort.Strings(keys)
	var b strings.Builder
	b.Grow(size)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(params[k])
	}
	return b.String()
}

// Sign signs content with key and returns the standard base64 signature.
// It signs with crypto/rsa, or with OpenSSL's libcrypto in a build with
// -tags openssl (SignBackend says which); the signatures are the same.
// key must not be modified once it has signed (crypto/rsa's rule).
func Sign(key *rsa.PrivateKey, t SignType, content []byte) (string, error) {
	h, err := t.hash()
	if err != nil {
		return "", err
	}
	sig, err := signPKCS1v15(key, h, content)
	if err != nil {
		return "", fmt.Errorf("zhima: sign: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// Verify checks a base64 signature over content. It returns nil only when the
// signature is valid for key.
func Verify(key *rsa.PublicKey, t SignType, content []byte, signature string) error {
	h, err := t.hash()
	if err != nil {
		return err
	}
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil {
		return fmt.Errorf("zhima: verify: signature is not base64")
	}
	if err := rsa.VerifyPKCS1v15(key, h, digest(h, content), sig); err != nil {
		return fmt.Errorf("zhima: verify: %w", err)
	}
	return nil
}

// Beijing is UTC+8, the zone of every gateway timestamp and of the days
// budgets count. A fixed zone keeps the host's zone database out of it.
var Beijing = time.FixedZone("UTC+8", 8*60*60)

// TimestampLayout is the gateway's timestamp format, yyyy-MM-dd HH:mm:ss.
const TimestampLayout = "2006-01-02 15:04:05"

// Timestamp formats t as the gateway expects: Beijing time, whatever the
// host's zone.
func Timestamp(t time.Time) string {
	return t.In(Beijing).Format(TimestampLayout)
}

// ParseTimestamp reads a gateway timestamp as Beijing time.
func ParseTimestamp(s string) (time.Time, error) {
	return time.ParseInLocation(TimestampLayout, s, Beijing)
}
