// Package api serves zhimaq's HTTP API, for producers written in other
// languages: submit one job or a batch, read a job's record, a batch's
// status and its records (JSON Lines or CSV). api/openapi.yaml describes it.
//
// Every request needs "Authorization: Bearer <token>" with one of the
// tokens of API_TOKENS; without tokens the worker serves no API at all.
// Errors are JSON, {"error":{"code":"…","message":"…"}}, and never quote
// the request's data.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/zhimaq/zhimaq"
)

// DefaultMaxBatchBytes bounds the body of POST /v1/batches when
// Options.MaxBatchBytes is 0: 256 MiB.
const DefaultMaxBatchBytes int64 = 256 << 20

// MaxJobBytes bounds the body of POST /v1/jobs: zhimaq.MaxJobBytes.
const MaxJobBytes int64 = zhimaq.MaxJobBytes

// submitTimeout bounds one job's submission, a few Redis round trips.
const submitTimeout = 30 * time.Second

// Options configure a Server.
type Options struct {
	// Tokens are the bearer tokens accepted (API_TOKENS). Required: a
	// Server without tokens answers 401 to everything.
	Tokens []string
	// MaxBatchBytes bounds a batch's body; default DefaultMaxBatchBytes.
	MaxBatchBytes int64
	// Log defaults to a no-op logger.
	Log *zap.Logger
}

// Server is the API's http.Handler for the paths under /v1/. It is safe
// for concurrent use.
type Server struct {
	p        *zhimaq.Producer
	tokens   [][sha256.Size]byte
	maxBatch int64
	log      *zap.Logger
	mux      *http.ServeMux
}

// New returns the API over p, which submits and reads the jobs of p's app.
func New(p *zhimaq.Producer, opts Options) *Server {
	s := &Server{p: p, maxBatch: opts.MaxBatchBytes, log: opts.Log, mux: http.NewServeMux()}
	if s.maxBatch <= 0 {
		s.maxBatch = DefaultMaxBatchBytes
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	for _, t := range opts.Tokens {
		s.tokens = append(s.tokens, sha256.Sum256([]byte(t)))
	}
	s.mux.HandleFunc("POST /v1/jobs", s.postJob)
	s.mux.HandleFunc("GET /v1/jobs/{method}/{transaction_id}", s.getJob)
	s.mux.HandleFunc("POST /v1/batches", s.postBatch)
	s.mux.HandleFunc("GET /v1/batches/{id}", s.getBatch)
	s.mux.HandleFunc("GET /v1/batches/{id}/records", s.getRecords)
	s.mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint; see api/openapi.yaml")
	})
	return s
}

// ServeHTTP checks the bearer token, then serves the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch s.authenticate(r) {
	case authMissing:
		w.Header().Set("WWW-Authenticate", `Bearer realm="zhimaq"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "send Authorization: Bearer <token> with a token of API_TOKENS")
		return
	case authWrong:
		w.Header().Set("WWW-Authenticate", `Bearer realm="zhimaq", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "the bearer token is not one of API_TOKENS")
		return
	}
	s.mux.ServeHTTP(w, r)
}

type auth int

const (
	authOK auth = iota
	authMissing
	authWrong
)

// authenticate compares the request's bearer token with every token, in
// constant time: digests of equal length, and no early exit.
func (s *Server) authenticate(r *http.Request) auth {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return authMissing
	}
	d := sha256.Sum256([]byte(strings.TrimSpace(token)))
	match := 0
	for _, t := range s.tokens {
		match |= subtle.ConstantTimeCompare(d[:], t[:])
	}
	if match != 1 {
		return authWrong
	}
	return authOK
}

// errorBody is the JSON of every 4xx and 5xx answer.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// writeError answers with status and {"error":{"code","message"}}. message
// must never quote the request's data.
func writeError(w http.ResponseWriter, status int, code, message string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, message
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"the answer cannot be encoded"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeRecord answers with a record, its response bytes as the gateway sent them.
func writeRecord(w http.ResponseWriter, status int, rec *zhimaq.Record) {
	b, err := rec.MarshalJSON()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "the record cannot be encoded")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// unavailable answers 503 for a Redis failure, which it logs.
func (s *Server) unavailable(w http.ResponseWriter, op string, err error, message string) {
	s.log.Error("api: "+op+" failed", zap.Error(err))
	w.Header().Set("Retry-After", "5")
	writeError(w, http.StatusServiceUnavailable, "unavailable", message)
}

// tooLarge reports whether err is http.MaxBytesReader's.
func tooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// detached is the request's context without its cancellation, bounded: a
// submission that has started finishes even if the client goes away.
func detached(r *http.Request, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), d)
}

func bytesText(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
