package worker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/logging"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

func TestStallHandler(t *testing.T) {
	const stall = 200 * time.Millisecond

	t.Run("client_that_takes_nothing_is_dropped", func(t *testing.T) {
		logs := new(zhimatest.SyncBuffer)
		log, err := logging.New("json", "debug", logs)
		if err != nil {
			t.Fatal(err)
		}
		wrote := make(chan error, 1)
		srv := httptest.NewServer(stallHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			chunk := bytes.Repeat([]byte("x"), 1<<20)
			for {
				if _, err := w.Write(chunk); err != nil {
					wrote <- err
					return
				}
			}
		}), stall, log))
		defer srv.Close()
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprint(conn, "GET /export HTTP/1.1\r\nHost: zhimaq\r\n\r\n") // and read nothing
		select {
		case err := <-wrote:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("the write failed with %v, want a deadline", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the handler still writes to a client that takes nothing")
		}
		if !strings.Contains(logs.String(), "took no byte of the answer") || !strings.Contains(logs.String(), `"remote":"127.0.0.1:`) {
			t.Errorf("no log line naming the client:\n%s", logs.String())
		}
	})

	t.Run("body_that_stalls_is_answered_408_timeout", func(t *testing.T) {
		srv := httptest.NewServer(stallHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.ReadAll(r.Body); err == nil {
				t.Error("the stalled body was read to its end")
			}
			w.Header().Set("Location", "/v1/jobs/x")
			w.WriteHeader(http.StatusCreated) // replaced by the 408
		}), stall, nil))
		defer srv.Close()
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprint(conn, "POST /v1/jobs HTTP/1.1\r\nHost: zhimaq\r\nContent-Length: 100\r\n\r\n{") // and then nothing
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusRequestTimeout || !resp.Close || resp.Header.Get("Location") != "" ||
			resp.Header.Get("Content-Type") != "application/json" || body.Error.Code != "timeout" || body.Error.Message == "" {
			t.Errorf("answer %d (close %v, headers %v) %+v, want 408 timeout closing the connection", resp.StatusCode, resp.Close, resp.Header, body)
		}
	})

	t.Run("flush_and_deadlines_reach_the_server", func(t *testing.T) {
		read := make(chan struct{})
		srv := httptest.NewServer(stallHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rc := http.NewResponseController(w)
			if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
				t.Errorf("SetWriteDeadline: %v", err)
			}
			io.WriteString(w, "first\n")
			if err := rc.Flush(); err != nil {
				t.Errorf("Flush: %v", err)
				return
			}
			<-read // the client has the first line before the second is written
			io.WriteString(w, "second\n")
		}), stall, nil))
		defer srv.Close()
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		if line, err := br.ReadString('\n'); line != "first\n" {
			close(read)
			t.Fatalf("first line %q, %v", line, err)
		}
		close(read)
		if rest, _ := io.ReadAll(br); string(rest) != "second\n" {
			t.Errorf("rest %q", rest)
		}
	})
}
