package batches

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

var secret = []byte("cb-secret-0123456789")

func TestSignVerify(t *testing.T) {
	now := time.Unix(1764126900, 0)
	body := []byte(`{"batch_id":"b_x","lines":3}`)
	good := Sign(secret, now, body)
	if !strings.HasPrefix(good, "t=1764126900,v1=") || len(good) != len("t=1764126900,v1=")+64 {
		t.Fatalf("Sign = %q", good)
	}
	tests := []struct {
		name   string
		secret []byte
		header string
		body   []byte
		now    time.Time
		ok     bool
	}{
		{"verifies", secret, good, body, now, true},
		{"verifies_within_tolerance", secret, good, body, now.Add(4 * time.Minute), true},
		{"verifies_with_another_v1_first", secret, "t=1764126900,v1=00ff," + good[len("t=1764126900,"):], body, now, true},
		{"refused_with_other_secret", []byte("another-secret-0123"), good, body, now, false},
		{"refused_when_body_changed", secret, good, []byte(`{"batch_id":"b_x","lines":4}`), now, false},
		{"refused_when_too_old", secret, good, body, now.Add(6 * time.Minute), false},
		{"refused_from_the_future", secret, good, body, now.Add(-6 * time.Minute), false},
		{"refused_when_time_changed", secret, strings.Replace(good, "t=1764126900", "t=1764126901", 1), body, now, false},
		{"refused_without_v1", secret, "t=1764126900", body, now, false},
		{"refused_when_empty", secret, "", body, now, false},
		{"refused_without_secret", nil, good, body, now, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.secret, tt.header, tt.body, tt.now, 0)
			if (err == nil) != tt.ok {
				t.Fatalf("Verify = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadSignature) {
				t.Errorf("error %v does not wrap ErrBadSignature", err)
			}
		})
	}
}

func TestValidCallbackURL(t *testing.T) {
	for u, want := range map[string]bool{
		"https://example.com/hook": true, "http://10.0.0.1:8080/x?y=1": true,
		"": false, "/hook": false, "ftp://example.com/x": false, "https://": false, "example.com/hook": false,
	} {
		if got := ValidCallbackURL(u); got != want {
			t.Errorf("ValidCallbackURL(%q) = %v, want %v", u, got, want)
		}
	}
}

// callbackTask returns a task for summary to url, as the sweeper makes it.
func callbackTask(t *testing.T, url string) (*asynq.Task, Summary) {
	t.Helper()
	sum := Summary{BatchID: "b_20261126T031500Z_K3QF7A", Lines: 3, Succeeded: 1, Failed: 1, Rejected: 1,
		FinishedAt: time.Date(2026, 11, 26, 3, 20, 0, 0, time.UTC)}
	task, err := CallbackTask(url, sum, "q", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return task, sum
}

func TestDelivererPostsSignedSummary(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	statuses := []int{http.StatusInternalServerError, http.StatusFound, http.StatusNoContent}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if err := Verify(secret, r.Header.Get(SignatureHeader), body, time.Now(), 0); err != nil {
			t.Errorf("call %d: %v", n, err)
		}
		var got Summary
		if err := json.Unmarshal(body, &got); err != nil || got.BatchID != "b_20261126T031500Z_K3QF7A" || got.Lines != 3 ||
			r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.URL.RawQuery != "token=abc" {
			t.Errorf("call %d: %s %s %q", n, r.Method, r.URL, body)
		}
		if n == 2 {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(statuses[min(int(n), len(statuses))-1])
	}))
	defer srv.Close()
	task, _ := callbackTask(t, srv.URL+"/hook?token=abc")
	d := &Deliverer{Secret: secret}
	for i, wantErr := range []bool{true, true, false} { // 500, then a redirect that is not followed, then 204
		err := d.ProcessTask(context.Background(), task)
		if (err != nil) != wantErr {
			t.Fatalf("delivery %d: %v, want error %v", i+1, err, wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "token=abc") {
			t.Errorf("error %q quotes the URL", err)
		}
	}
	if calls.Load() != 3 {
		t.Errorf("%d calls, want 3", calls.Load())
	}
}

// countingReceiver answers every request 200 and counts them.
func countingReceiver(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func TestDelivererRefusesWithoutSecret(t *testing.T) {
	t.Parallel()
	srv, calls := countingReceiver(t)
	task, _ := callbackTask(t, srv.URL)
	if err := (&Deliverer{}).ProcessTask(context.Background(), task); !errors.Is(err, ErrNoSecret) {
		t.Errorf("ProcessTask = %v, want ErrNoSecret", err)
	}
	if calls.Load() != 0 {
		t.Error("an unsigned callback was sent")
	}
}

func TestDelivererDropsHostNotAllowed(t *testing.T) {
	t.Parallel()
	srv, calls := countingReceiver(t)
	task, _ := callbackTask(t, srv.URL)
	hosts, err := ParseHosts("hooks.lender.example, localhost")
	if err != nil {
		t.Fatal(err)
	}
	err = (&Deliverer{Secret: secret, Hosts: hosts}).ProcessTask(context.Background(), task)
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "CALLBACK_HOSTS") {
		t.Errorf("ProcessTask = %v, want SkipRetry naming CALLBACK_HOSTS", err)
	}
	if calls.Load() != 0 {
		t.Error("a callback went to a host CALLBACK_HOSTS does not allow")
	}
	// The same task to an allowed host is delivered.
	hosts, _ = ParseHosts("127.0.0.1")
	if err := (&Deliverer{Secret: secret, Hosts: hosts}).ProcessTask(context.Background(), task); err != nil || calls.Load() != 1 {
		t.Errorf("ProcessTask to an allowed host = %v after %d calls, want delivered once", err, calls.Load())
	}
}

func TestDelivererDropsBadPayload(t *testing.T) {
	t.Parallel()
	err := (&Deliverer{Secret: secret}).ProcessTask(context.Background(), asynq.NewTask(CallbackTaskType, []byte(`{"batch_id":"b_x:y"}`)))
	if !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("ProcessTask = %v, want SkipRetry", err)
	}
}
