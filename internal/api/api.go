// Package api serves zhimaq's HTTP API, for producers written in other
// languages: submit one job or a batch, read a job's record, a batch's
// status and its records (JSON Lines or CSV). api/openapi.yaml describes it.
//
// Jobs are per app: a deployment may serve several Alipay apps
// (ZHIMA_APPS_FILE), a job names its own in "app_id" and GET /v1/jobs/…
// in its query, and none means the deployment's first.
//
// Every request needs "Authorization: Bearer <token>" with one of the
// tokens of API_TOKENS; without tokens the worker serves no API at all.
// Every refusal is counted (zhimaq_api_auth_failures_total) and logged at
// most once per AuthLogInterval. A worker serves Options.MaxRequests
// authenticated requests at once; more are answered 503 busy at once.
// Errors are JSON, {"error":{"code":"…","message":"…"}}, and never quote
// the request's data. The worker's listener, not this package, holds the
// deadlines of slow clients (HTTP_STALL_TIMEOUT, 408 timeout).
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/metrics"
	"github.com/zhimaq/zhimaq/internal/wire"
)

// DefaultMaxBatchBytes bounds the body of POST /v1/batches when
// Options.MaxBatchBytes is 0: 256 MiB.
const DefaultMaxBatchBytes int64 = 256 << 20

// MaxJobBytes bounds the body of POST /v1/jobs: zhimaq.MaxJobBytes.
const MaxJobBytes int64 = zhimaq.MaxJobBytes

// submitTimeout bounds one job's submission, a few Redis round trips.
const submitTimeout = 30 * time.Second

// AuthLogInterval is how often at most a Server logs the requests it
// refused 401: one line with the count since the line before.
const AuthLogInterval = 10 * time.Second

// busyRetryAfter is the Retry-After, in seconds, of a 503 busy.
const busyRetryAfter = "1"

// Options configure a Server.
type Options struct {
	// AppID is the producer's default app (zhimaq.ProducerConfig.AppID):
	// the Location of a job of any other app names it in its query
	// (?app_id=), as GET /v1/jobs/… needs it. "" names the app in every
	// Location whose record has one.
	AppID string
	// Tokens are the bearer tokens accepted (API_TOKENS). Required: a
	// Server without tokens answers 401 to everything.
	Tokens []string
	// MaxBatchBytes bounds a batch's body; default DefaultMaxBatchBytes.
	MaxBatchBytes int64
	// MaxRequests is how many authenticated requests are served at once
	// (API_MAX_REQUESTS); more are answered 503 busy at once, with
	// Retry-After. Requests refused 401 are not counted. Default
	// config.Defaults.APIMaxRequests (32).
	MaxRequests int
	// Metrics counts the requests refused 401; nil counts nothing.
	Metrics *metrics.Metrics
	// Log defaults to a no-op logger.
	Log *zap.Logger
	// Now is the clock of the refusals' log; default time.Now.
	Now func() time.Time
}

// Server is the API's http.Handler for the paths under /v1/. It is safe
// for concurrent use.
type Server struct {
	p        *zhimaq.Producer
	appID    string // the default app, left out of a Location
	tokens   [][sha256.Size]byte
	maxBatch int64
	slots    chan struct{} // one per request being served
	metrics  *metrics.Metrics
	log      *zap.Logger
	now      func() time.Time
	mux      *http.ServeMux

	refusedMu   sync.Mutex
	refused     int       // requests refused 401 since the last log line
	refusedNext time.Time // when the next log line may be written
}

// New returns the API over p, which submits and reads the jobs of p's
// apps: a job or a GET names its app (app_id), or is for the default one.
func New(p *zhimaq.Producer, opts Options) *Server {
	s := &Server{p: p, appID: opts.AppID, maxBatch: opts.MaxBatchBytes, metrics: opts.Metrics, log: opts.Log, now: opts.Now, mux: http.NewServeMux()}
	if s.maxBatch <= 0 {
		s.maxBatch = DefaultMaxBatchBytes
	}
	maxRequests := opts.MaxRequests
	if maxRequests <= 0 {
		maxRequests = config.Defaults.APIMaxRequests
	}
	s.slots = make(chan struct{}, maxRequests)
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
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
		writeError(w, kindNotFound, "no such endpoint; see api/openapi.yaml")
	})
	return s
}

// FromConfig builds a worker's API from its configuration: a
// zhimaq.Producer on rdb for the apps, queue and limits of cfg, counting
// de-duplication hits in m, and the Server over it with API_TOKENS and
// API_MAX_REQUESTS. It is a worker.APIFunc. The closer closes the producer,
// not rdb. Errors name the setting.
func FromConfig(rdb redis.UniversalClient, cfg config.Config, m *metrics.Metrics, log *zap.Logger, now func() time.Time) (http.Handler, io.Closer, error) {
	pc := wire.ProducerConfig(cfg)
	pc.Now, pc.OnDedup = now, m.Dedup
	p, err := zhimaq.NewProducer(rdb, pc)
	if err != nil {
		return nil, nil, err
	}
	return New(p, Options{AppID: pc.AppID, Tokens: cfg.APITokens, MaxRequests: cfg.APIMaxRequests, Metrics: m, Log: log, Now: now}), p, nil
}

// ServeHTTP checks the bearer token, takes one of MaxRequests slots (or
// answers 503 busy at once), then serves the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch s.authenticate(r) {
	case authMissing:
		s.refusedLogin(r, metrics.AuthMissing)
		w.Header().Set("WWW-Authenticate", `Bearer realm="zhimaq"`)
		writeError(w, kindUnauthorized, "send Authorization: Bearer <token> with a token of API_TOKENS")
		return
	case authWrong:
		s.refusedLogin(r, metrics.AuthInvalid)
		w.Header().Set("WWW-Authenticate", `Bearer realm="zhimaq", error="invalid_token"`)
		writeError(w, kindUnauthorized, "the bearer token is not one of API_TOKENS")
		return
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		// Closing the connection spares reading a body nobody will use.
		w.Header().Set("Retry-After", busyRetryAfter)
		w.Header().Set("Connection", "close")
		writeError(w, kindBusy,
			fmt.Sprintf("this worker serves %d API requests already (API_MAX_REQUESTS); try again after Retry-After seconds", cap(s.slots)))
		return
	}
	s.mux.ServeHTTP(w, r)
}

// refusedLogin counts a request refused 401 for reason, and logs it when no
// refusal has been logged for AuthLogInterval: the count since the last
// line and this request's remote address, never the token.
func (s *Server) refusedLogin(r *http.Request, reason string) {
	s.metrics.AuthFailure(reason)
	s.refusedMu.Lock()
	s.refused++
	now := s.now()
	if now.Before(s.refusedNext) {
		s.refusedMu.Unlock()
		return
	}
	n := s.refused
	s.refused, s.refusedNext = 0, now.Add(AuthLogInterval)
	s.refusedMu.Unlock()
	s.log.Warn("api: requests refused 401, without a valid bearer token", zap.Int("refused", n),
		zap.String("reason", reason), zap.String("remote", r.RemoteAddr))
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = kindInternal.status(), []byte(`{"error":{"code":"`+string(kindInternal)+`","message":"the answer cannot be encoded"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeRecord answers with a record, its response bytes as the gateway sent them.
func writeRecord(w http.ResponseWriter, status int, rec json.Marshaler) {
	b, err := rec.MarshalJSON()
	if err != nil {
		writeError(w, kindInternal, "the record cannot be encoded")
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
	writeError(w, kindUnavailable, message)
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
