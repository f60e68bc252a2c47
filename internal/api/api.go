// Package api serves zhimaq's HTTP API, for producers written in other
// languages: submit one job or a batch, read a job's record, a batch's
// status and its records (JSON Lines or CSV). api/openapi.yaml describes it.
//
// Every request needs "Authorization: Bearer <token>" with one of the
// tokens of API_TOKENS; without tokens the worker serves no API at all.
// Every refusal is counted (zhimaq_api_auth_failures_total) and logged at
// most once per AuthLogInterval. A worker serves Options.MaxRequests
// authenticated requests at once; more are answered 503 busy at once.
// Errors are JSON, {"error":{"code":"…","message":"…"}}, and never quote
// the request's data.
//
// StallHandler puts the listener's per-read and per-write deadlines
// (HTTP_STALL_TIMEOUT) around every route of the worker's listener.
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
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/metrics"
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

// New returns the API over p, which submits and reads the jobs of p's app.
func New(p *zhimaq.Producer, opts Options) *Server {
	s := &Server{p: p, maxBatch: opts.MaxBatchBytes, metrics: opts.Metrics, log: opts.Log, now: opts.Now, mux: http.NewServeMux()}
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
func writeRecord(w http.ResponseWriter, status int, rec *zhimaq.Record) {
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

// StallHandler returns h behind per-read and per-write deadlines of stall
// (HTTP_STALL_TIMEOUT; 0 means config.Defaults.HTTPStallTimeout, 30s):
// every read of a request body and every write of an answer must move
// within stall of the one before, and a body must average MinBodyRate
// once its first stall has passed. A 256 MiB batch that keeps coming is
// never cut; a client that stops sending its body or trickles it, or stops
// taking the answer, is dropped. A body that stalls is
// answered 408 timeout with Connection: close, in place of whatever h
// answers, unless h's answer has begun; each stall is logged once to log
// with the client's address, never the request's data. An answer that
// starts before h has read the body to its end closes the connection: it
// goes out at once, instead of after the server has read what is left of
// the body. The ResponseWriter h sees keeps Flush and Unwrap, so
// http.NewResponseController works on it.
func StallHandler(h http.Handler, stall time.Duration, log *zap.Logger) http.Handler {
	if stall <= 0 {
		stall = config.Defaults.HTTPStallTimeout
	}
	if log == nil {
		log = zap.NewNop()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &stallWriter{ResponseWriter: w, rc: http.NewResponseController(w), stall: stall, log: log, remote: r.RemoteAddr}
		sw.extend()
		defer sw.extend() // for the flush of what h left buffered
		if r.Body != nil && r.Body != http.NoBody {
			sw.body = &stallBody{ReadCloser: r.Body, w: sw, start: time.Now()}
			r2 := *r
			r2.Body = sw.body
			r = &r2
			// Also bounds the server's own read of a body h leaves unread.
			sw.rc.SetReadDeadline(time.Now().Add(stall))
		}
		h.ServeHTTP(sw, r)
		if sw.stalled.Load() && !sw.wrote {
			sw.answerStall()
		}
	})
}

// stallWriter moves the write deadline forward before each write, and
// replaces the answer with a 408 once the request body has stalled.
type stallWriter struct {
	http.ResponseWriter
	rc     *http.ResponseController
	stall  time.Duration
	log    *zap.Logger
	remote string
	body   *stallBody // nil for a request without one

	stalled  atomic.Bool // a read of the body ran out of time
	wrote    bool        // the status has gone on
	replaced bool        // the 408 went out in place of h's answer: h's writes are dropped
	dropped  bool        // a write ran out of time (logged)
}

// Unwrap lets http.ResponseController reach the server's ResponseWriter.
func (w *stallWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *stallWriter) extend() { w.rc.SetWriteDeadline(time.Now().Add(w.stall)) }

func (w *stallWriter) WriteHeader(code int) {
	switch {
	case w.replaced: // the 408 has gone out in place of h's answer
	case w.wrote || code < 200: // informational, or superfluous: as net/http has it
		w.ResponseWriter.WriteHeader(code)
	case w.stalled.Load():
		w.answerStall()
	default:
		w.wrote = true
		if w.body != nil && !w.body.done.Load() {
			w.Header().Set("Connection", "close")
		}
		w.extend()
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *stallWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.replaced {
		return len(p), nil
	}
	w.extend()
	n, err := w.ResponseWriter.Write(p)
	w.check(err)
	return n, err
}

// FlushError is http.ResponseController's Flush.
func (w *stallWriter) FlushError() error {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.replaced {
		return nil
	}
	w.extend()
	err := w.rc.Flush()
	w.check(err)
	return err
}

// Flush is http.Flusher's.
func (w *stallWriter) Flush() { w.FlushError() }

// check logs the first write that ran out of time.
func (w *stallWriter) check(err error) {
	if err != nil && !w.dropped && errors.Is(err, os.ErrDeadlineExceeded) {
		w.dropped = true
		w.log.Warn("http: the client took no byte of the answer for HTTP_STALL_TIMEOUT; connection dropped",
			zap.String("remote", w.remote), zap.Duration("stall_timeout", w.stall))
	}
}

// answerStall answers 408 and closes the connection: what else the client
// sent cannot be told from the next request.
func (w *stallWriter) answerStall() {
	w.wrote, w.replaced = true, true
	w.Header().Del("Location")
	w.Header().Set("Connection", "close")
	w.extend()
	writeError(w.ResponseWriter, kindTimeout,
		fmt.Sprintf("the request body stopped for %s (HTTP_STALL_TIMEOUT) or came slower than %d bytes/s; send the request again",
			w.stall, MinBodyRate))
}

// MinBodyRate is the slowest a request body may come, on average, once the
// first HTTP_STALL_TIMEOUT of it has passed, in bytes per second: a client
// that sends a byte now and then cannot hold an API slot for hours.
const MinBodyRate = 1024

// stallBody moves the read deadline forward before each read of the body,
// until the body ends: from then on the server reads the connection, with
// deadlines of its own.
type stallBody struct {
	io.ReadCloser
	w     *stallWriter
	start time.Time
	read  int64
	done  atomic.Bool // the body has ended, or failed
}

// deadline is when the next read must have returned: within stall of now,
// and no later than the body's first stall plus the time MinBodyRate needs
// for what has come so far.
func (b *stallBody) deadline(now time.Time) time.Time {
	budget := b.start.Add(b.w.stall + time.Duration(b.read)*time.Second/MinBodyRate)
	if next := now.Add(b.w.stall); next.Before(budget) {
		return next
	}
	return budget
}

func (b *stallBody) Read(p []byte) (int, error) {
	if b.done.Load() {
		return b.ReadCloser.Read(p)
	}
	b.w.rc.SetReadDeadline(b.deadline(time.Now()))
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	if err != nil {
		b.done.Store(true)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			b.w.stalled.Store(true)
			b.w.log.Warn("http: the request body stopped for HTTP_STALL_TIMEOUT or came slower than MinBodyRate; request dropped",
				zap.String("remote", b.w.remote), zap.Int64("body_bytes_read", b.read), zap.Duration("stall_timeout", b.w.stall))
		}
	}
	return n, err
}
