// Package callback tells a producer that its batch has finished: the
// sweeper finds finished batches and enqueues a callback task; the
// Deliverer POSTs the batch's summary, signed with HMAC-SHA256, to the
// batch's callback URL, on hosts the allow-list and the dial guard of
// package hosts let it reach.
package callback

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Summary is the JSON body of a batch's callback.
type Summary struct {
	BatchID string `json:"batch_id"`
	// Lines is every line of the batch; Succeeded + Failed + Rejected = Lines.
	Lines     int `json:"lines"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Rejected  int `json:"rejected"`
	// FinishedAt is when the batch's last job finished.
	FinishedAt time.Time `json:"finished_at"`
}

// SignatureHeader is the header that carries a callback's signature:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">".
const SignatureHeader = "X-Zhimaq-Signature"

// DefaultTolerance is how far a signature's time may be from the
// receiver's clock when Verify is given 0.
const DefaultTolerance = 5 * time.Minute

// ErrBadSignature is returned, wrapped with the reason, by Verify.
var ErrBadSignature = errors.New("callback: signature does not verify")

// Sign returns the SignatureHeader value for body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks header, a SignatureHeader value, against body: one of its
// v1 signatures must be the HMAC-SHA256 of "t.body" under secret, compared
// in constant time, and t within tolerance of now (0 means
// DefaultTolerance), which stops an old callback being replayed. Errors
// wrap ErrBadSignature.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if len(secret) == 0 {
		return fmt.Errorf("%w: no secret to check it with", ErrBadSignature)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("%w: the header is not t=<unix seconds>,v1=<hex>", ErrBadSignature)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: its time is %s away from now", ErrBadSignature, d.Round(time.Second))
	}
	want := mac(secret, ts, body)
	ok := false
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			ok = true
		}
	}
	if !ok {
		return fmt.Errorf("%w: no v1 signature matches", ErrBadSignature)
	}
	return nil
}
