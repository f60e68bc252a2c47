package seal

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// prefix starts every sealed text; the "1" is the format version.
const prefix = "zq1."

// overhead is what sealing adds to the plaintext: 12-byte nonce + 16-byte tag.
const overhead = 12 + 16

// b64 encodes the nonce||ciphertext||tag part of a sealed text. Strict
// decoding refuses non-zero trailing bits, so each byte string has exactly
// one accepted text.
var b64 = base64.RawURLEncoding.Strict()

var (
	// ErrUnknownKey means a sealed text names a key id the keyring does not
	// hold: the key was dropped from DATA_KEYS before the jobs it sealed were
	// done, or the keyring is plaintext. Open wraps it with the id.
	ErrUnknownKey = errors.New("seal: unknown data key")
	// ErrCorrupt means a text is not sealed text, is malformed, or does not
	// authenticate (altered text, wrong aad, or another key under the same id).
	ErrCorrupt = errors.New("seal: corrupt sealed text")

	errPlaintext = errors.New("seal: keyring is plaintext (DATA_KEYS=plaintext): nothing seals; check Plaintext first")
)

// Seal encrypts plaintext with AES-256-GCM under the first key, with a random
// 96-bit nonce, binding aad (callers pass e.g. app_id|method|transaction_id)
// as additional data so that a sealed text moved to another job does not
// open. The output is text safe for JSON:
// "zq1." + keyID + "." + base64url(nonce||ciphertext||tag), no padding.
// With a plaintext keyring it returns an error: callers check Plaintext
// first. Seal does not keep plaintext or aad.
func (k *Keyring) Seal(plaintext, aad []byte) (string, error) {
	if k.Plaintext() {
		return "", errPlaintext
	}
	dk := &k.keys[0]
	sealed := dk.aead.Seal(make([]byte, 0, len(plaintext)+overhead), nil, plaintext, aad)
	out := make([]byte, 0, len(dk.header)+b64.EncodedLen(len(sealed)))
	out = append(out, dk.header...)
	out = b64.AppendEncode(out, sealed)
	return string(out), nil
}

// Open reverses Seal with whichever key the text names, given the same aad.
// Errors never quote the sealed or opened bytes: ErrUnknownKey wrapped with
// the key id when the keyring does not hold that key (always so for a
// plaintext keyring), ErrCorrupt for text that is not Seal's output, is
// malformed, or fails authentication (wrong aad included).
func (k *Keyring) Open(sealed string, aad []byte) ([]byte, error) {
	rest, ok := strings.CutPrefix(sealed, prefix)
	if !ok {
		return nil, corrupt("not sealed text (no " + prefix + " prefix)")
	}
	id, payload, ok := strings.Cut(rest, ".")
	if !ok || !validID(id) {
		return nil, corrupt("malformed key id")
	}
	n := len(payload)
	if n < b64.EncodedLen(overhead) || n%4 == 1 || !urlAlphabet(payload) {
		return nil, corrupt("malformed body")
	}
	dk, ok := k.lookup(id)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, id)
	}
	body, err := b64.DecodeString(payload)
	if err != nil || len(body) < overhead {
		return nil, corrupt("malformed body")
	}
	opened, err := dk.aead.Open(body[:0], nil, body, aad)
	if err != nil {
		return nil, corrupt("authentication failed (altered text, wrong aad or wrong key)")
	}
	return opened, nil
}

// corrupt wraps ErrCorrupt with a reason that quotes nothing of the text.
func corrupt(reason string) error { return fmt.Errorf("%w: %s", ErrCorrupt, reason) }

// urlAlphabet reports whether s holds only base64url characters, [A-Za-z0-9_-].
// Open checks it first because the decoder skips CR and LF, which would let
// two texts open the same.
func urlAlphabet(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// IsSealed reports whether s looks like Seal's output (prefix "zq1."). It
// does not check the rest; Open does.
func IsSealed(s string) bool { return strings.HasPrefix(s, prefix) }
