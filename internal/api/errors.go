package api

import "net/http"

// errorKind is a kind of failed request: the code of its answer's error
// body. statuses maps each kind to its HTTP status, the one place the API
// decides one. (The worker's listener answers 408 "timeout" for a body that
// stalls, before a request reaches the API.)
type errorKind string

const (
	kindBadBody        errorKind = "bad_body"        // the body could not be read
	kindBadCallback    errorKind = "bad_callback"    // a batch's callback URL is refused
	kindBadFormat      errorKind = "bad_format"      // an export format other than jsonl or csv
	kindBadLane        errorKind = "bad_lane"        // a batch's lane other than interactive or batch
	kindUnauthorized   errorKind = "unauthorized"    // no bearer token, or a wrong one
	kindNotFound       errorKind = "not_found"       // no such endpoint, method, job or batch
	kindLengthRequired errorKind = "length_required" // a batch without Content-Length
	kindTooLarge       errorKind = "too_large"       // a job or batch over its limit
	kindRejected       errorKind = "rejected"        // a job not enqueued: answered with its record, not an error body
	kindInternal       errorKind = "internal"        // an answer that cannot be encoded
	kindBusy           errorKind = "busy"            // every API_MAX_REQUESTS slot is taken
	kindUnavailable    errorKind = "unavailable"     // Redis failed
)

var statuses = map[errorKind]int{
	kindBadBody:        http.StatusBadRequest,
	kindBadCallback:    http.StatusBadRequest,
	kindBadFormat:      http.StatusBadRequest,
	kindBadLane:        http.StatusBadRequest,
	kindUnauthorized:   http.StatusUnauthorized,
	kindNotFound:       http.StatusNotFound,
	kindLengthRequired: http.StatusLengthRequired,
	kindTooLarge:       http.StatusRequestEntityTooLarge,
	kindRejected:       http.StatusUnprocessableEntity,
	kindInternal:       http.StatusInternalServerError,
	kindBusy:           http.StatusServiceUnavailable,
	kindUnavailable:    http.StatusServiceUnavailable,
}

// status is k's HTTP status; 500 for a kind the table lacks.
func (k errorKind) status() int {
	if s, ok := statuses[k]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// errorBody is the JSON of every 4xx and 5xx answer but a rejected job's.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// writeError answers with kind's status and {"error":{"code","message"}},
// kind as the code. message must never quote the request's data.
func writeError(w http.ResponseWriter, kind errorKind, message string) {
	var b errorBody
	b.Error.Code, b.Error.Message = string(kind), message
	writeJSON(w, kind.status(), b)
}
