package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/zhimaq/zhimaq/internal/config"
)

// stallHandler returns h behind per-read and per-write deadlines of stall
// (HTTP_STALL_TIMEOUT; 0 means config.Defaults.HTTPStallTimeout, 30s):
// every read of a request body and every write of an answer must move
// within stall of the one before, and a body must average MinBodyRate
// once its first stall has passed. A 256 MiB batch that keeps coming is
// never cut; a client that stops sending its body or trickles it, or stops
// taking the answer, is dropped. A body that stalls is answered 408 with
// the API's error body (code "timeout") and Connection: close, in place of
// whatever h answers, unless h's answer has begun; each stall is logged
// once to log with the client's address, never the request's data. An
// answer that starts before h has read the body to its end closes the
// connection: it goes out at once, instead of after the server has read
// what is left of the body. The ResponseWriter h sees keeps Flush and
// Unwrap, so http.NewResponseController works on it.
func stallHandler(h http.Handler, stall time.Duration, log *zap.Logger) http.Handler {
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
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body.Error.Code = "timeout" // api/openapi.yaml's error body, as package api writes it
	body.Error.Message = fmt.Sprintf("the request body stopped for %s (HTTP_STALL_TIMEOUT) or came slower than %d bytes/s; send the request again",
		w.stall, MinBodyRate)
	b, _ := json.Marshal(body)
	w.ResponseWriter.Header().Set("Content-Type", "application/json")
	w.ResponseWriter.WriteHeader(http.StatusRequestTimeout)
	w.ResponseWriter.Write(append(b, '\n'))
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
