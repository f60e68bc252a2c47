package worker_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/worker"
	"github.com/zhimaq/zhimaq/internal/workertest"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// startListener starts a worker whose HTTP listener is on a free loopback
// port; change adjusts its configuration. The test's cleanup closes it, and
// a test may close it first.
func startListener(tb testing.TB, change func(*config.Config)) (*worker.Worker, *zhimatest.SyncBuffer) {
	tb.Helper()
	s := workertest.Start(tb, workertest.Options{
		Change: func(c *config.Config) {
			c.HTTPAddr = "127.0.0.1:0"
			if change != nil {
				change(c)
			}
		},
		Worker: worker.Options{ShutdownTimeout: time.Second},
	})
	return s.Worker, s.Logs
}

// dial connects to the worker's listener, with the test's cleanup closing it.
func dial(tb testing.TB, w *worker.Worker) (net.Conn, *bufio.Reader) {
	tb.Helper()
	conn, err := net.Dial("tcp", strings.Replace(w.Addr(), "[::]", "127.0.0.1", 1))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn, bufio.NewReader(conn)
}

// closedByServer reports whether the server closes conn (after whatever it
// still had to send), waiting up to 10s.
func closedByServer(tb testing.TB, conn net.Conn, r io.Reader) bool {
	tb.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, r)
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

func TestListenerDropsWhatHoldsAConnection(t *testing.T) {
	const short = 200 * time.Millisecond
	healthz := "GET /healthz HTTP/1.1\r\nHost: zhimaq\r\n"
	unread := "POST /healthz HTTP/1.1\r\nHost: zhimaq\r\nContent-Length: 100\r\n\r\nx" // a body the handler does not read
	for _, tt := range []struct {
		name   string
		change func(*config.Config)
		send   string
		status int  // of the answer before the close; 0 for none
		wait   bool // for the close, rather than an answer that says it closes
	}{
		{"idle_keepalive_connection_is_closed", func(c *config.Config) { c.HTTPIdleTimeout = short }, healthz + "\r\n", http.StatusOK, true},
		{"header_that_stalls_is_dropped", func(c *config.Config) { c.HTTPStallTimeout = short }, healthz + "X-Slow: 1", 0, true},
		{"unread_body_that_stalls_is_dropped", func(c *config.Config) { c.HTTPStallTimeout = short }, unread, http.StatusMethodNotAllowed, true},
		{"answer_to_an_unread_body_goes_out_at_once_and_closes", nil, unread, http.StatusMethodNotAllowed, false},
		{"header_over_the_limit_is_refused", func(c *config.Config) { c.HTTPMaxHeaderBytes = 1 << 10 },
			healthz + "X-Filler: " + strings.Repeat("a", 16<<10) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w, _ := startListener(t, tt.change)
			defer w.Close()
			conn, r := dial(t, w)
			io.WriteString(conn, tt.send)
			if tt.status != 0 {
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				resp, err := http.ReadResponse(r, nil)
				if err != nil {
					t.Fatalf("no answer: %v", err)
				}
				io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != tt.status || !tt.wait && !resp.Close {
					t.Errorf("answer %d (close %v), want %d", resp.StatusCode, resp.Close, tt.status)
				}
			}
			if tt.wait && !closedByServer(t, conn, r) {
				t.Error("the connection is still open")
			}
		})
	}
}

func TestListenerWithinItsLimitsIsServed(t *testing.T) {
	w, _ := startListener(t, func(c *config.Config) { c.HTTPMaxHeaderBytes = 1 << 10 })
	defer w.Close()
	conn, r := dial(t, w)
	for i := range 2 { // one connection, kept alive
		fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: zhimaq\r\nX-Filler: %s\r\n\r\n", strings.Repeat("a", 512))
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("request %d: %d (close %v), want 200 on a connection kept alive", i+1, resp.StatusCode, resp.Close)
		}
	}
}

func TestStartSaysWhenMetricsAreServedBeyondLoopback(t *testing.T) {
	const warning = "/metrics, /healthz and /readyz are served there without authentication"
	for _, tt := range []struct {
		name, addr string
		warned     bool
	}{
		{"loopback_is_not_warned", "127.0.0.1:0", false},
		{"every_interface_is_warned", ":0", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w, logs := startListener(t, func(c *config.Config) { c.HTTPAddr = tt.addr })
			w.Close()
			if got := strings.Contains(logs.String(), warning); got != tt.warned {
				t.Errorf("warned %v, want %v:\n%s", got, tt.warned, logs.String())
			}
		})
	}
}

func TestCloseDropsConnectionsStillHeld(t *testing.T) {
	w, _ := startListener(t, nil) // HTTP_STALL_TIMEOUT 30s: the connection would be held that long
	conn, r := dial(t, w)
	io.WriteString(conn, "POST /healthz HTTP/1.1\r\nHost: zhimaq\r\nContent-Length: 100\r\n\r\nx")
	w.Close()
	if !closedByServer(t, conn, r) {
		t.Error("the connection is still open after Close")
	}
}
