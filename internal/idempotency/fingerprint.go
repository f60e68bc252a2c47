package idempotency

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// fingerprintVersion starts every hashed input, so a future change of the
// canonical form cannot collide with fingerprints stored by this one.
const fingerprintVersion = "zhimaq-fingerprint-v1\x00"

// Fingerprint hashes the canonical form of a job's parameters: bizContent
// parsed as JSON and re-encoded with object keys sorted, no insignificant
// whitespace and no HTML escaping, followed by appAuthToken. It returns the
// SHA-256 of that as 64 lower-case hex digits.
//
// Two biz_contents that differ only in key order or whitespace have the same
// fingerprint; a changed value or token changes it. Numbers are kept exactly
// as written (json.Decoder.UseNumber), so 650, 650.0 and 6.5e2 are three
// different fingerprints: the gateway receives the literal the producer
// wrote, and a resubmission that changes it is treated as other parameters
// (a Conflict) rather than guessed to be the same. String escapes are
// normalised (`"\u0041"` and `"A"` are the same string). Of duplicate object keys
// the last one counts, as in encoding/json.
//
// It returns an error, naming no data, when bizContent is not exactly one
// valid JSON value in UTF-8.
func Fingerprint(bizContent json.RawMessage, appAuthToken string) (string, error) {
	p, err := Parse(bizContent)
	if err != nil {
		return "", err
	}
	return p.Fingerprint(appAuthToken), nil
}

// Parsed is a biz_content parsed once, for its fingerprint and, when it is
// a JSON object, the names of its members (for a caller that checks them,
// so that it need not parse the biz_content again).
type Parsed struct {
	canon []byte
	// Names are the object's member names, each once, in no order; nil
	// when the biz_content is not an object.
	Names []string
}

// Parse parses bizContent into its canonical form (see Fingerprint). Its
// errors are Fingerprint's.
func Parse(bizContent json.RawMessage) (Parsed, error) {
	v, err := decodeAny(bizContent)
	if err != nil {
		return Parsed{}, err
	}
	canon, err := encodeCanonical(v)
	if err != nil {
		return Parsed{}, err
	}
	p := Parsed{canon: canon}
	if obj, ok := v.(map[string]any); ok {
		p.Names = make([]string, 0, len(obj))
		for name := range obj {
			p.Names = append(p.Names, name)
		}
	}
	return p, nil
}

// Fingerprint is Fingerprint(bizContent, appAuthToken) of the parsed
// bizContent.
func (p Parsed) Fingerprint(appAuthToken string) string {
	h := sha256.New()
	io.WriteString(h, fingerprintVersion)
	h.Write(p.canon)
	// Canonical JSON never holds a raw NUL, so this separator is unambiguous.
	io.WriteString(h, "\x00")
	io.WriteString(h, appAuthToken)
	return hex.EncodeToString(h.Sum(nil))
}

// canonicalJSON returns data re-encoded in canonical form (see Fingerprint).
func canonicalJSON(data []byte) ([]byte, error) {
	v, err := decodeAny(data)
	if err != nil {
		return nil, err
	}
	return encodeCanonical(v)
}

// decodeAny decodes exactly one JSON value in UTF-8, numbers as
// json.Number.
func decodeAny(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("idempotency: fingerprint: biz_content is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("idempotency: fingerprint: biz_content is not valid JSON%s", offsetOf(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("idempotency: fingerprint: biz_content has data after its JSON value")
	}
	return v, nil
}

// encodeCanonical encodes v with object keys sorted, no insignificant
// whitespace and no HTML escaping.
func encodeCanonical(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	// encoding/json writes map keys sorted and json.Number as its literal.
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("idempotency: fingerprint: re-encoding biz_content: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// offsetOf describes where a syntax error is without quoting the input.
func offsetOf(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf(" (at byte %d)", se.Offset)
	}
	return ""
}
