// Package seal seals a job's personal data (ID numbers, names, phone numbers,
// face pictures) before it enters Redis, so that only a worker holding the
// data keys can read it back.
//
// The keys come from DATA_KEYS (or the file DATA_KEYS_FILE) as a
// comma-separated list of id:base64-of-32-bytes entries; the first key seals
// and every key opens, so a new key is rotated in by putting it first while
// the old one stays listed until the jobs it sealed have drained. The literal
// value "plaintext" opts out of sealing.
//
// Sealed text is AES-256-GCM with a random 96-bit nonce, written as
// "zq1." + key id + "." + base64url(nonce||ciphertext||tag) without padding,
// which is safe inside JSON strings. No error, String or GoString output of
// this package ever holds key bytes, sealed bytes or opened bytes.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
)

// PlaintextValue is the DATA_KEYS value by which an operator opts out of
// sealing: Parse returns a keyring whose Plaintext method reports true.
const PlaintextValue = "plaintext"

const (
	// KeySize is the size in bytes of a data key (AES-256).
	KeySize = 32
	// MaxIDLen is the longest key id Parse accepts.
	MaxIDLen = 32
)

// Keyring holds the data keys; a nil *Keyring or one made from "plaintext"
// seals nothing. A Keyring is immutable once Parse returns it and is safe for
// concurrent use by any number of goroutines. Its String, GoString and Format
// methods show key ids only, so logging a Keyring never shows key material.
type Keyring struct {
	keys []dataKey // keys[0] seals; all open
}

// dataKey is one key with its AEAD built once at Parse time.
type dataKey struct {
	id     string
	header string // "zq1." + id + ".", the prefix of every text it seals
	aead   cipher.AEAD
	macKey []byte // HMAC key for Digests, derived from the data key
}

// ParseError reports a malformed DATA_KEYS value. It names the entry by its
// position and, when the id itself is well formed, by its id; it never holds
// key bytes or the text of a malformed id (which may be a misplaced key).
type ParseError struct {
	Entry   int    // 1-based position of the entry at fault; 0 when the whole value is
	ID      string // the entry's id when it is well formed, else ""
	Problem string // what is wrong, e.g. "key is 16 bytes, want 32"
}

// Error returns e.g. `seal: data keys: entry 2 (id "k2025"): key is 16 bytes, want 32`.
func (e *ParseError) Error() string {
	switch {
	case e.Entry == 0:
		return "seal: data keys: " + e.Problem
	case e.ID != "":
		return fmt.Sprintf("seal: data keys: entry %d (id %q): %s", e.Entry, e.ID, e.Problem)
	default:
		return fmt.Sprintf("seal: data keys: entry %d: %s", e.Entry, e.Problem)
	}
}

// Parse reads a DATA_KEYS value: comma-separated id:key entries where id is
// 1 to 32 characters of [A-Za-z0-9_-] and key is 32 bytes in standard or URL
// base64, with or without padding. Spaces around the value, an entry, an id
// or a key are ignored, and so is a trailing newline. The first entry's key
// seals; every key opens. The value "plaintext" returns a keyring that seals
// nothing (Plaintext reports true).
//
// Errors are *ParseError and name the problem and the entry's position (and
// id when well formed), never key bytes: an empty value or entry, an entry
// without ':', an empty, malformed, over-long or duplicate id, a key that is
// empty or not base64, a key that is not 32 bytes.
//
// A value is parsed once per process: Parse keeps each keyring it made and
// returns it again for the same value, so config, the worker and its
// producers share one.
func Parse(s string) (*Keyring, error) {
	if k, ok := parsed.Load(s); ok {
		return k.(*Keyring), nil
	}
	k, err := parse(s)
	if err == nil {
		parsed.Store(s, k)
	}
	return k, err
}

// parsed holds the keyrings Parse has made, by the value they came from.
var parsed sync.Map

func parse(s string) (*Keyring, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "":
		return nil, &ParseError{Problem: `empty value (want id:base64-key,... or "plaintext")`}
	case PlaintextValue:
		return &Keyring{}, nil
	}
	entries := strings.Split(s, ",")
	k := &Keyring{keys: make([]dataKey, 0, len(entries))}
	seen := make(map[string]int, len(entries))
	for i, entry := range entries {
		pos := i + 1
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return nil, &ParseError{Entry: pos, Problem: "empty entry"}
		}
		rawID, rawKey, ok := strings.Cut(entry, ":")
		if !ok {
			return nil, &ParseError{Entry: pos, Problem: "no ':' (want id:base64-key)"}
		}
		id := strings.TrimSpace(rawID)
		if err := checkID(id); err != "" {
			return nil, &ParseError{Entry: pos, Problem: err}
		}
		if first, dup := seen[id]; dup {
			return nil, &ParseError{Entry: pos, ID: id, Problem: fmt.Sprintf("duplicate id (also entry %d)", first)}
		}
		seen[id] = pos
		key, problem := decodeKey(strings.TrimSpace(rawKey))
		if problem != "" {
			return nil, &ParseError{Entry: pos, ID: id, Problem: problem}
		}
		dk, err := newDataKey(id, key)
		clear(key)
		if err != nil {
			return nil, &ParseError{Entry: pos, ID: id, Problem: "cannot build AES-256-GCM: " + err.Error()}
		}
		k.keys = append(k.keys, dk)
	}
	return k, nil
}

// checkID returns "" when id is a valid key id, else the problem, which
// never quotes id (a malformed id may be a key pasted in the wrong place).
func checkID(id string) string {
	if id == "" {
		return "empty id"
	}
	if len(id) > MaxIDLen {
		return fmt.Sprintf("id longer than %d characters", MaxIDLen)
	}
	if !validID(id) {
		return "id has characters other than [A-Za-z0-9_-]"
	}
	return ""
}

// validID reports whether id is 1 to MaxIDLen characters of [A-Za-z0-9_-].
func validID(id string) bool {
	return id != "" && len(id) <= MaxIDLen && urlAlphabet(id)
}

// decodeKey decodes a key in standard or URL base64, padded or not. The
// problem it returns never quotes s.
func decodeKey(s string) ([]byte, string) {
	if s == "" {
		return nil, "empty key"
	}
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if !strings.HasSuffix(s, "=") {
		enc = enc.WithPadding(base64.NoPadding)
	}
	// Reject what the decoders silently skip (CR, LF) or report by offset
	// only after partial decoding; a key has no business holding either.
	if strings.ContainsAny(s, "\r\n") {
		return nil, "key is not valid base64 (standard or URL alphabet)"
	}
	key, err := enc.DecodeString(s)
	if err != nil {
		return nil, "key is not valid base64 (standard or URL alphabet)"
	}
	if len(key) != KeySize {
		n := len(key)
		clear(key)
		return nil, fmt.Sprintf("key is %d bytes, want %d", n, KeySize)
	}
	return key, ""
}

// newDataKey builds the AEAD for one key. cipher.NewGCMWithRandomNonce draws
// a fresh 96-bit nonce from crypto/rand for every Seal and lays the output
// out as nonce||ciphertext||tag; the AEAD keeps no per-call state.
func newDataKey(id string, key []byte) (dataKey, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return dataKey{}, err
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return dataKey{}, err
	}
	derive := hmac.New(sha256.New, key)
	derive.Write([]byte("zhimaq digest key v1"))
	return dataKey{id: id, header: prefix + id + ".", aead: aead, macKey: derive.Sum(nil)}, nil
}

// Digests returns a keyed digest (hex HMAC-SHA256) of msg under every key,
// the sealing key's first; nil for a plaintext keyring. A digest stored in
// Redis in place of a plain hash cannot be checked against guessed inputs
// without a key, and the older keys' digests still match after a rotation.
func (k *Keyring) Digests(msg []byte) []string {
	if k.Plaintext() {
		return nil
	}
	out := make([]string, len(k.keys))
	for i, dk := range k.keys {
		m := hmac.New(sha256.New, dk.macKey)
		m.Write(msg)
		out[i] = hex.EncodeToString(m.Sum(nil))
	}
	return out
}

// Generate returns a fresh DATA_KEYS value, "id:" + standard base64 of 32
// random bytes, for `make demo`, tests and operators rotating keys. id must
// be 1 to 32 characters of [A-Za-z0-9_-], else Generate returns an error.
func Generate(id string) (string, error) {
	if problem := checkID(id); problem != "" {
		return "", fmt.Errorf("seal: generate key %q: %s", id, problem)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("seal: generate key %q: %w", id, err)
	}
	defer clear(key)
	return id + ":" + base64.StdEncoding.EncodeToString(key), nil
}

// Plaintext reports whether the keyring seals nothing: it is nil or was
// parsed from "plaintext". Callers then store personal data as is.
func (k *Keyring) Plaintext() bool { return k == nil || len(k.keys) == 0 }

// SealingKeyID is the id of the key that seals, the first listed; "" when
// the keyring is plaintext.
func (k *Keyring) SealingKeyID() string {
	if k.Plaintext() {
		return ""
	}
	return k.keys[0].id
}

// IDs returns the key ids in DATA_KEYS order, the sealing key first; nil
// when the keyring is plaintext. The slice is the caller's to keep.
func (k *Keyring) IDs() []string {
	if k.Plaintext() {
		return nil
	}
	ids := make([]string, len(k.keys))
	for i, dk := range k.keys {
		ids[i] = dk.id
	}
	return ids
}

// lookup returns the key named id, if the keyring holds it. Keyrings hold a
// handful of keys, so a scan beats a map.
func (k *Keyring) lookup(id string) (*dataKey, bool) {
	if k == nil {
		return nil, false
	}
	for i := range k.keys {
		if k.keys[i].id == id {
			return &k.keys[i], true
		}
	}
	return nil, false
}

// String shows the key ids only, e.g. "seal.Keyring{ids: k2026,k2025}", or
// "seal.Keyring{plaintext}" for a nil or plaintext keyring.
func (k *Keyring) String() string {
	if k.Plaintext() {
		return "seal.Keyring{plaintext}"
	}
	return "seal.Keyring{ids: " + strings.Join(k.IDs(), ",") + "}"
}

// GoString is what %#v prints: "&" + String(), or "(*seal.Keyring)(nil)".
// Like String it never shows key material.
func (k *Keyring) GoString() string {
	if k == nil {
		return "(*seal.Keyring)(nil)"
	}
	return "&" + k.String()
}

// Format makes every fmt verb (%v, %+v, %s, %d, %x, ...) print String, and
// %#v print GoString, so no verb reaches the key material.
func (k *Keyring) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, k.GoString())
		return
	}
	fmt.Fprint(f, k.String())
}
