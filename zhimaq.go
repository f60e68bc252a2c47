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
	"github.com/zhimaq/zhimaq/internal/results"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// Record is one job's result as callers read it; its JSON form is the
// contract of DESIGN.md ("A result record").
type Record = results.Record

// ErrorInfo is a Record's "error" object.
type ErrorInfo = results.ErrorInfo

// State is where a job stands.
type State = results.State

// The states of a job.
const (
	Rejected  = results.Rejected  // never enqueued: bad input or TRANSACTION_ID_REPEAT
	Queued    = results.Queued    // waiting for a worker
	Running   = results.Running   // a gateway call is under way
	Retrying  = results.Retrying  // the last call failed transiently; another will follow
	Succeeded = results.Succeeded // the gateway answered with code 10000, verified
	Failed    = results.Failed    // a final error, or attempts or the window ran out
)

// ErrNotFound is returned by Result for a job that has no record.
var ErrNotFound = results.ErrNotFound

// The gateway methods a job may name.
const (
	MethodCertificationInitialize = zhima.MethodCertificationInitialize
	MethodScoreBriefGet           = zhima.MethodScoreBriefGet
	MethodRelationQuery           = zhima.MethodRelationQuery
)
