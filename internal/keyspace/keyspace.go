// Package keyspace names every Redis key zhimaq keeps beside asynq's own,
// all under one prefix (ZHIMAQ_KEY_PREFIX, "zhimaq:" by default):
//
//	<prefix>result:<app_id>:<method>:<transaction_id>  string: the job's record, holding the transaction's claim (package results)
//	<prefix>claim:<app_id>:<method>:<transaction_id>   string: a claim of a record written before the claim moved into it (read only)
//	<prefix>batch:<id>                                 hash: a batch's metadata (package batches)
//	<prefix>batch:<id>:lines                           list: a batch's lines
//	<prefix>batches:callbacks                          sorted set: batches awaiting their callback
//	<prefix>rate:<app_id>                              the app's rate limit (package ratelimit)
//	<prefix>budget:<app_id>:<method>:<yyyymmdd>        string: billed calls reserved on that Beijing day (package budget)
//	<prefix>alipaycert:<app_id>:<sn>                   string: a downloaded Alipay certificate (package certcache)
//
// The parts of a job's key are validated by idempotency.Key; a batch id by
// batches.ValidID. asynq keeps its own keys under asynq:{<queue>}:.
package keyspace

// DefaultPrefix is the prefix when none is given (ZHIMAQ_KEY_PREFIX's default).
const DefaultPrefix = "zhimaq:"

// Space is the keys under one prefix.
type Space struct {
	prefix string
	tagged bool // a job's keys carry a hash tag (Tagged)
}

// New returns the keys under prefix; "" means DefaultPrefix.
func New(prefix string) Space {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return Space{prefix: prefix}
}

// Tagged is s for a Redis Cluster: a job's record and claim keys hold their
// transaction in a hash tag, <prefix>result:{<app_id>:<method>:<transaction_id>},
// and a batch's keys its id, <prefix>batch:{<id>}[:lines], so that one
// script or MULTI may touch both of a pair (one slot), while jobs and
// batches spread over the slots. A single Redis keeps the untagged names
// it always had.
func (s Space) Tagged() Space {
	s.tagged = true
	return s
}

// Prefix is the prefix every key of s starts with.
func (s Space) Prefix() string { return s.prefix }

// Claim is the key where a record of the JSON format (written before
// claims moved into the record) has its transaction's claim. Nothing
// writes it any more; it is read until such records have gone.
func (s Space) Claim(appID, method, transactionID string) string {
	return s.job("claim", appID, method, transactionID)
}

// Result is the key of a job's record.
func (s Space) Result(appID, method, transactionID string) string {
	return s.job("result", appID, method, transactionID)
}

func (s Space) job(kind, appID, method, transactionID string) string {
	return s.prefix + kind + ":" + s.tag(appID+":"+method+":"+transactionID)
}

// Batch is the key of a batch's metadata.
func (s Space) Batch(id string) string { return s.prefix + "batch:" + s.tag(id) }

// BatchLines is the key of a batch's lines.
func (s Space) BatchLines(id string) string { return s.prefix + "batch:" + s.tag(id) + ":lines" }

// tag is id in a hash tag when s is Tagged.
func (s Space) tag(id string) string {
	if s.tagged {
		return "{" + id + "}"
	}
	return id
}

// BatchCallbacks is the key of the batches awaiting their callback.
func (s Space) BatchCallbacks() string { return s.prefix + "batches:callbacks" }

// Rate is the key of an app's rate limit.
func (s Space) Rate(appID string) string { return s.prefix + "rate:" + appID }

// Budget is the key counting an app's billed calls of method reserved on
// one Beijing day, day as yyyymmdd.
func (s Space) Budget(appID, method, day string) string {
	return s.prefix + "budget:" + appID + ":" + method + ":" + day
}

// AlipayCert is the key of a downloaded Alipay certificate of an app.
func (s Space) AlipayCert(appID, sn string) string {
	return s.prefix + "alipaycert:" + appID + ":" + sn
}

// AppQueue is the name every asynq queue of app's jobs starts with, on
// base (ZHIMAQ_QUEUE): "<base>:<app_id>" (see payload.Queue).
func AppQueue(base, app string) string { return base + ":" + app }

// Queues is the pattern of asynq's keys for base and every queue on it.
func Queues(base string) string { return "asynq:{" + base + ":*}:*" }

// Queue is the pattern of asynq's keys for queue name.
func Queue(name string) string { return "asynq:{" + name + "}:*" }
