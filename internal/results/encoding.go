package results

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A stored record is a header of '|'-separated fields that Lua can read and
// rewrite, then the record's error object and its response, which no script
// touches:
//
//	2|<version>|<state>|<attempts>|<claim_until>|<fingerprint>|<enqueued_at>|<updated_at>|<first_call_at>|<batch_id>|<error JSON>\n<response>
//
// Times are Unix milliseconds, "" when none; state is one letter (see
// stateLetters); the version counts the writes and is what a compare-and-set
// compares; claim_until and fingerprint are the transaction's claim (see
// Store.Claim), kept with the record so that one key holds both. The method
// and transaction id are the key's and are not repeated. Compact JSON never
// holds a raw newline, so the first '\n' ends the error object; the response
// follows as the gateway sent it.
//
// Records written before this format are JSON objects (they start with '{')
// with their claim in a key of its own; they are still read (decodeLegacy)
// and are rewritten in this format by their next update.
const (
	formatV2    = "2|"
	headerParts = 10 // the fields before the error object
)

// stateLetters are the states as the header writes them; the scripts test
// for the terminal ones (s, f, x).
var stateLetters = map[State]byte{Queued: 'q', Running: 'r', Retrying: 't', Held: 'h', Succeeded: 's', Failed: 'f', Rejected: 'x'}

func letterState(c byte) (State, bool) {
	for s, l := range stateLetters {
		if l == c {
			return s, true
		}
	}
	return "", false
}

// meta is what a stored value holds beside the record: its version and the
// transaction's claim.
type meta struct {
	version    int64
	claimUntil int64  // Unix ms; 0 when the record holds no claim
	claim      string // the claimed fingerprint's stored form; "" when none
}

// encodeV2 returns rec in the stored format with m's header fields, or why
// it cannot, quoting nothing of the record.
func encodeV2(rec *Record, m meta) ([]byte, string) {
	letter, ok := stateLetters[rec.State]
	if !ok {
		return nil, "its state is not one of the six"
	}
	if strings.ContainsAny(rec.BatchID, "|\n") || strings.ContainsAny(m.claim, "|\n") {
		return nil, "its batch_id or fingerprint holds '|' or a newline"
	}
	var errJSON []byte
	if rec.Error != nil {
		var err error
		if errJSON, err = json.Marshal(rec.Error); err != nil {
			return nil, "its error cannot be encoded"
		}
	}
	resp := bytes.TrimSpace(rec.Response)
	if len(resp) > 0 && !json.Valid(resp) {
		return nil, "response is not valid JSON"
	}
	b := make([]byte, 0, 96+len(rec.BatchID)+len(m.claim)+len(errJSON)+len(resp))
	b = append(b, formatV2...)
	b = strconv.AppendInt(b, m.version, 10)
	b = append(b, '|', letter, '|')
	b = strconv.AppendInt(b, int64(rec.Attempts), 10)
	b = append(b, '|')
	if m.claimUntil > 0 {
		b = strconv.AppendInt(b, m.claimUntil, 10)
	}
	b = append(b, '|')
	b = append(b, m.claim...)
	b = append(b, '|')
	b = appendMillis(b, rec.EnqueuedAt)
	b = append(b, '|')
	b = appendMillis(b, &rec.UpdatedAt)
	b = append(b, '|')
	b = appendMillis(b, rec.FirstCallAt)
	b = append(b, '|')
	b = append(b, rec.BatchID...)
	b = append(b, '|')
	b = append(b, errJSON...)
	b = append(b, '\n')
	return append(b, resp...), ""
}

func appendMillis(b []byte, t *time.Time) []byte {
	if t == nil || t.IsZero() {
		return b
	}
	return strconv.AppendInt(b, t.UnixMilli(), 10)
}

// decodeV2 reads a value in the stored format. The reason it returns on
// failure names the part at fault, never its contents.
func decodeV2(data []byte) (*Record, meta, string) {
	var m meta
	head, body, ok := bytes.Cut(data, []byte{'\n'})
	if !ok {
		return nil, m, "the header has no end"
	}
	parts := strings.SplitN(string(head), "|", headerParts+1)
	if len(parts) != headerParts+1 || parts[0] != "2" {
		return nil, m, "the header has too few fields"
	}
	var rec Record
	var err error
	if m.version, err = strconv.ParseInt(parts[1], 10, 64); err != nil {
		return nil, m, "its version is not a number"
	}
	st, ok := State(""), len(parts[2]) == 1
	if ok {
		st, ok = letterState(parts[2][0])
	}
	if !ok {
		return nil, m, "its state is not one of the six"
	}
	rec.State = st
	if rec.Attempts, err = strconv.Atoi(parts[3]); err != nil || rec.Attempts < 0 {
		return nil, m, "its attempts are not a number"
	}
	if m.claimUntil, err = millis(parts[4]); err != nil {
		return nil, m, "its claim_until is not a time"
	}
	m.claim = parts[5]
	times := []struct {
		s   string
		dst **time.Time
	}{{parts[6], &rec.EnqueuedAt}, {parts[7], nil}, {parts[8], &rec.FirstCallAt}}
	for i, f := range times {
		ms, err := millis(f.s)
		if err != nil {
			return nil, m, fmt.Sprintf("time field %d is not a time", i+1)
		}
		if ms == 0 {
			continue
		}
		t := time.UnixMilli(ms).UTC()
		if f.dst == nil {
			rec.UpdatedAt = t
		} else {
			*f.dst = &t
		}
	}
	rec.BatchID = parts[9]
	if e := parts[10]; e != "" {
		rec.Error = new(ErrorInfo)
		if err := json.Unmarshal([]byte(e), rec.Error); err != nil {
			return nil, m, "its error object is not valid JSON"
		}
	}
	if len(body) > 0 {
		if !json.Valid(body) {
			return nil, m, "its response is not valid JSON"
		}
		rec.Response = json.RawMessage(body)
	}
	return &rec, m, ""
}

func millis(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

// isLegacy reports whether a stored value is a record of the JSON format
// written before the current one.
func isLegacy(data []byte) bool { return len(data) > 0 && data[0] == '{' }

// storedForm is the form a claim keeps its fingerprint in: the first 128
// bits of the 64 hex digits, in 22 characters of base64url. A fingerprint
// that is not 64 hex digits (none is) is kept as it is.
func storedForm(fp string) string {
	b, err := hex.DecodeString(fp)
	if err != nil || len(b) != 32 {
		return fp
	}
	return base64.RawURLEncoding.EncodeToString(b[:16])
}
