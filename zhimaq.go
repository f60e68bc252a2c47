// Package zhimaq runs Zhima (Sesame Credit) checks through Alipay's gateway
// in the background. Producers submit jobs with a Producer; zhimaq's workers
// sign and send them, retry what is transient, and store a Record per job
// that callers read with Result or Wait.
//
// A job is identified by (app id, method, transaction_id). Submitting the
// same transaction again with the same parameters inside the de-duplication
// window returns the first job's record (Duplicate true) and calls the
// gateway no more; other parameters are rejected with TRANSACTION_ID_REPEAT.
package zhimaq

import (
	"encoding/json"
	"time"

	"github.com/zhimaq/zhimaq/internal/results"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// State is where a job stands.
type State string

// The states of a job.
const (
	Rejected  State = "rejected"  // never enqueued: bad input or TRANSACTION_ID_REPEAT
	Queued    State = "queued"    // waiting for a worker
	Running   State = "running"   // a gateway call is under way
	Retrying  State = "retrying"  // the last call failed transiently; another will follow
	Held      State = "held"      // the app's daily budget for the method is spent: it runs after Beijing midnight
	Succeeded State = "succeeded" // the gateway answered with code 10000, verified
	Failed    State = "failed"    // a final error, or attempts or the window ran out
)

// Terminal reports whether s is final: succeeded, failed or rejected.
func (s State) Terminal() bool { return s == Succeeded || s == Failed || s == Rejected }

// ErrorInfo is a Record's "error" object.
type ErrorInfo struct {
	// Source is local, gateway, transport or verification.
	Source string `json:"source"`
	// Code and Msg are the gateway's (for local rejections, the gateway's
	// equivalent); left out when empty.
	Code string `json:"code,omitempty"`
	Msg  string `json:"msg,omitempty"`
	// SubCode and SubMsg are the business sub-code and its message, such
	// as INVALID_PARAMETER naming the field; left out when empty.
	SubCode string `json:"sub_code,omitempty"`
	SubMsg  string `json:"sub_msg,omitempty"`
	// TraceID is the gateway's trace id of the failed call, when it sent
	// one; left out when empty (local failures have none).
	TraceID string `json:"trace_id,omitempty"`
}

// Record is one job's result as stored; its JSON form is the contract of
// DESIGN.md ("A result record"), with "duplicate" false: whether a
// submission was a duplicate is the Submission's to say. "response" and
// "error" are written null when there is none, "enqueued_at" null for a
// rejected job, "first_call_at" left out before the first gateway call;
// times in UTC, RFC 3339.
type Record struct {
	// AppID is the app the job is for; "" for a job rejected before its
	// app was known.
	AppID         string
	Method        string
	TransactionID string
	State         State
	// Attempts counts the gateway calls made for this job so far.
	Attempts int
	// Response is the verified response node as the gateway sent it, byte
	// for byte but whitespace; nil when none.
	Response json.RawMessage
	// Error is nil when there is none.
	Error *ErrorInfo
	// EnqueuedAt is nil for a rejected job.
	EnqueuedAt *time.Time
	// UpdatedAt is the record's last change.
	UpdatedAt time.Time
	// FirstCallAt is the first gateway call, which opens the transaction
	// window; nil before it.
	FirstCallAt *time.Time
	// BatchID names the batch the job was first submitted in; "" for none.
	BatchID string
}

// MarshalJSON writes r as the contract says. It calls no HTML escaping:
// the gateway's response reaches the caller as it was sent.
func (r Record) MarshalJSON() ([]byte, error) { return r.stored(false, r.BatchID).MarshalJSON() }

// UnmarshalJSON reads a record in its JSON form.
func (r *Record) UnmarshalJSON(data []byte) error {
	var s results.Record
	if err := s.UnmarshalJSON(data); err != nil {
		return err
	}
	*r = *recordOf(&s)
	return nil
}

// Submission is what submitting one job came to: the job's record, and
// the facts of this submission, which are not the record's. The record is
// embedded, so sub.State is sub.Record.State; BatchID is the submission's.
type Submission struct {
	// Record is the job's record: a new job's, Queued; for a duplicate,
	// the first job's as it stands; a Rejected one for a job refused.
	*Record
	// Duplicate is true when the same job (same parameters) was submitted
	// before within the de-duplication window: nothing was enqueued again.
	Duplicate bool
	// BatchID is the batch this submission was a line of; "" for none
	// (Record.BatchID is the batch the job was first submitted in).
	BatchID string
}

// MarshalJSON writes the line enqueue batch prints and the API answers:
// the record's JSON with this submission's "duplicate" and, for a line of
// a batch, its "batch_id".
func (s Submission) MarshalJSON() ([]byte, error) {
	batch := s.BatchID
	if batch == "" {
		batch = s.Record.BatchID
	}
	return s.Record.stored(s.Duplicate, batch).MarshalJSON()
}

// UnmarshalJSON reads a line in the form MarshalJSON writes.
func (s *Submission) UnmarshalJSON(data []byte) error {
	var st results.Record
	if err := st.UnmarshalJSON(data); err != nil {
		return err
	}
	*s = Submission{Record: recordOf(&st), Duplicate: st.Duplicate, BatchID: st.BatchID}
	return nil
}

// recordOf is the public form of a stored record.
func recordOf(s *results.Record) *Record {
	if s == nil {
		return nil
	}
	r := &Record{AppID: s.AppID, Method: s.Method, TransactionID: s.TransactionID, State: State(s.State), Attempts: s.Attempts,
		Response: s.Response, EnqueuedAt: s.EnqueuedAt, UpdatedAt: s.UpdatedAt, FirstCallAt: s.FirstCallAt, BatchID: s.BatchID}
	if s.Error != nil {
		e := ErrorInfo(*s.Error)
		r.Error = &e
	}
	return r
}

// stored is r in the stored form, with duplicate and batchID as given.
func (r *Record) stored(duplicate bool, batchID string) *results.Record {
	s := &results.Record{AppID: r.AppID, Method: r.Method, TransactionID: r.TransactionID, State: results.State(r.State), Attempts: r.Attempts,
		Duplicate: duplicate, Response: r.Response, EnqueuedAt: r.EnqueuedAt, UpdatedAt: r.UpdatedAt, FirstCallAt: r.FirstCallAt, BatchID: batchID}
	if r.Error != nil {
		e := results.ErrorInfo(*r.Error)
		s.Error = &e
	}
	return s
}

// ErrNotFound is returned by Result for a job that has no record.
var ErrNotFound = results.ErrNotFound

// The gateway methods a job may name.
const (
	MethodCertificationInitialize = zhima.MethodCertificationInitialize
	MethodScoreBriefGet           = zhima.MethodScoreBriefGet
	MethodRelationQuery           = zhima.MethodRelationQuery
)
