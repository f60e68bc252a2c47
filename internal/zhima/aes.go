package zhima

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// AESKey is an app's content-encryption key (接口内容加密): biz_content and
// the answer travel AES-CBC encrypted with PKCS#7 padding and an IV of 16
// zero bytes, in standard base64, as Alipay's SDKs do. It never prints its
// bytes.
type AESKey struct{ block cipher.Block }

// ParseAESKey reads the base64 text the Alipay console shows: 16 bytes (24
// and 32 are accepted too). The error never quotes the key.
func ParseAESKey(text string) (*AESKey, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil {
		return nil, errors.New("zhima: AES key is not standard base64")
	}
	switch len(raw) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("zhima: AES key decodes to %d bytes; want 16 (or 24 or 32)", len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("zhima: AES key: %v", err)
	}
	return &AESKey{block: block}, nil
}

// String hides the key.
func (k *AESKey) String() string { return "AESKey(redacted)" }

// zeroIV is the IV Alipay uses for every message.
var zeroIV = make([]byte, aes.BlockSize)

// Encrypt returns the base64 ciphertext of plain.
func (k *AESKey) Encrypt(plain []byte) string {
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	buf := make([]byte, len(plain)+pad)
	copy(buf, plain)
	for i := len(plain); i < len(buf); i++ {
		buf[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(k.block, zeroIV).CryptBlocks(buf, buf)
	return base64.StdEncoding.EncodeToString(buf)
}

// Decrypt reads a base64 ciphertext made by Encrypt (or by Alipay). It fails,
// without quoting the text, when the text is not base64, not whole blocks, or
// its padding is wrong (the wrong key, most often).
func (k *AESKey) Decrypt(text string) ([]byte, error) {
	buf, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, errors.New("zhima: AES ciphertext is not standard base64")
	}
	if len(buf) == 0 || len(buf)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("zhima: AES ciphertext is %d bytes, not whole %d-byte blocks", len(buf), aes.BlockSize)
	}
	cipher.NewCBCDecrypter(k.block, zeroIV).CryptBlocks(buf, buf)
	pad := int(buf[len(buf)-1])
	if pad == 0 || pad > aes.BlockSize || !bytes.Equal(buf[len(buf)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		return nil, errors.New("zhima: AES padding is wrong: the answer was encrypted with another key")
	}
	return buf[:len(buf)-pad], nil
}
