// Package results keeps the result records that callers poll: one JSON
// string per job in Redis at <prefix>result:<app_id>:<method>:<transaction_id>,
// expiring RESULT_TTL after its last write, independent of asynq's retention.
package results

import (
	"bytes"
	"encoding/json"
	"time"
)

// State is where a job stands.
type State string

const (
	// Rejected: never enqueued (bad input or TRANSACTION_ID_REPEAT). Terminal.
	Rejected State = "rejected"
	// Queued: enqueued, no attempt started yet.
	Queued State = "queued"
	// Running: a gateway attempt is under way.
	Running State = "running"
	// Retrying: an attempt failed transiently; another is scheduled.
	Retrying State = "retrying"
	// Held: the app's daily budget for the method is spent; the job waits,
	// no attempt used, for the next Beijing day.
	Held State = "held"
	// Succeeded: the gateway answered with a verified success. Terminal.
	Succeeded State = "succeeded"
	// Failed: a permanent error, or the attempts or the window ran out. Terminal.
	Failed State = "failed"
)

// States are every state, in the order a job goes through them, the
// terminal ones last.
var States = []State{Queued, Running, Retrying, Held, Succeeded, Failed, Rejected}

// Terminal reports whether s is final: succeeded, failed or rejected.
func (s State) Terminal() bool {
	return s == Succeeded || s == Failed || s == Rejected
}

// ErrorInfo is the "error" object of a record.
type ErrorInfo struct {
	// Source is local, gateway, transport or verification.
	Source string `json:"source"`
	// Code and Msg are the gateway's (or, for local rejections, the
	// gateway's equivalent); left out when empty.
	Code string `json:"code,omitempty"`
	Msg  string `json:"msg,omitempty"`
	// SubCode and SubMsg are the business sub-code and its message, such
	// as INVALID_PARAMETER naming the field; left out when empty.
	SubCode string `json:"sub_code,omitempty"`
	SubMsg  string `json:"sub_msg,omitempty"`
	// TraceID is the gateway's trace id for the failed call, when it sent
	// one; left out when empty (local failures have none).
	TraceID string `json:"trace_id,omitempty"`
}

// Record is one job's result as callers read it (DESIGN.md "A result
// record"). Its JSON always holds "response" and "error", null when there
// is none, and "enqueued_at", null for rejected jobs; "first_call_at" is left
// out until the first gateway call. Times are written in UTC, RFC 3339 with
// the fraction of a second that is not zero.
type Record struct {
	// AppID is the app the job is for: the key's, filled in by the store
	// (which keeps it in the key only); left out when unknown (a job
	// rejected before its app was known).
	AppID string `json:"app_id,omitempty"`
	// Method and TransactionID name the job; a store keeps a record only
	// under the key with the same method and transaction id.
	Method        string `json:"method"`
	TransactionID string `json:"transaction_id"`
	// State is where the job stands.
	State State `json:"state"`
	// Attempts counts the gateway calls made for this job so far.
	Attempts int `json:"attempts"`
	// Duplicate is true on a record returned for a resubmission that was
	// not enqueued again.
	Duplicate bool `json:"duplicate"`
	// Response is the verified response node as the gateway sent it; nil
	// (written null) when none. Whitespace aside its bytes are kept: no HTML
	// escaping, "\/" and non-ASCII as received.
	Response json.RawMessage `json:"response"`
	// Error is nil (written null) when there is none.
	Error *ErrorInfo `json:"error"`
	// EnqueuedAt is nil (written null) for rejected jobs.
	EnqueuedAt *time.Time `json:"enqueued_at"`
	// UpdatedAt is the record's last change, set by whoever writes it.
	UpdatedAt time.Time `json:"updated_at"`
	// FirstCallAt is the first gateway call, which opens the transaction
	// window; nil (left out) before it.
	FirstCallAt *time.Time `json:"first_call_at,omitempty"`
	// BatchID names the batch the record was created in (left out when
	// none). A record printed or exported for a line of a batch carries
	// that batch's id instead, even when the job was first submitted in
	// another batch.
	BatchID string `json:"batch_id,omitempty"`
}

// clone is a copy of r that changes to its fields do not reach r through.
func (r *Record) clone() *Record {
	c := *r
	if r.Error != nil {
		e := *r.Error
		c.Error = &e
	}
	return &c
}

// recordJSON is Record without its methods.
type recordJSON Record

// MarshalJSON writes r as the contract says: null response and error when
// there are none, RFC 3339 UTC times. It fails when Response is not valid
// JSON or a time's year is outside 0–9999.
func (r Record) MarshalJSON() ([]byte, error) {
	j := recordJSON(r)
	if len(bytes.TrimSpace(j.Response)) == 0 {
		j.Response = nil
	}
	j.EnqueuedAt = utc(j.EnqueuedAt)
	j.FirstCallAt = utc(j.FirstCallAt)
	j.UpdatedAt = j.UpdatedAt.UTC()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(j); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON reads a record; a "response" of null becomes nil.
func (r *Record) UnmarshalJSON(data []byte) error {
	var j recordJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	if string(j.Response) == "null" {
		j.Response = nil
	}
	*r = Record(j)
	return nil
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
