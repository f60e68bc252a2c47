package callback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/zhimaq/zhimaq/internal/hosts"
	"github.com/zhimaq/zhimaq/internal/seal"
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

// callbackTask returns a task for summary to url, as the sweeper makes it.
func callbackTask(t *testing.T, url string) (*asynq.Task, Summary) {
	t.Helper()
	sum := Summary{BatchID: testBatchID, Lines: 3, Succeeded: 1, Failed: 1, Rejected: 1,
		FinishedAt: time.Date(2026, 11, 26, 3, 20, 0, 0, time.UTC)}
	task, err := Task(url, sum, "q", time.Hour)
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
		if err := json.Unmarshal(body, &got); err != nil || got.BatchID != testBatchID || got.Lines != 3 ||
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
	// Listing 127.0.0.1 is the documented opt-in to an internal receiver.
	d := &Deliverer{Secret: secret, Hosts: mustHosts(t, "127.0.0.1")}
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
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func TestDelivererRefusesWithoutSecret(t *testing.T) {
	t.Parallel()
	srv, calls := countingReceiver(t)
	task, _ := callbackTask(t, srv.URL)
	if err := (&Deliverer{Hosts: mustHosts(t, "127.0.0.1")}).ProcessTask(context.Background(), task); !errors.Is(err, ErrNoSecret) {
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
	list, err := hosts.Parse("hooks.lender.example, localhost")
	if err != nil {
		t.Fatal(err)
	}
	err = (&Deliverer{Secret: secret, Hosts: list}).ProcessTask(context.Background(), task)
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "CALLBACK_HOSTS") {
		t.Errorf("ProcessTask = %v, want SkipRetry naming CALLBACK_HOSTS", err)
	}
	if calls.Load() != 0 {
		t.Error("a callback went to a host CALLBACK_HOSTS does not allow")
	}
	// The same task to an allowed host is delivered.
	list, _ = hosts.Parse("127.0.0.1")
	if err := (&Deliverer{Secret: secret, Hosts: list}).ProcessTask(context.Background(), task); err != nil || calls.Load() != 1 {
		t.Errorf("ProcessTask to an allowed host = %v after %d calls, want delivered once", err, calls.Load())
	}
}

func TestDelivererDropsBadPayload(t *testing.T) {
	t.Parallel()
	err := (&Deliverer{Secret: secret}).ProcessTask(context.Background(), asynq.NewTask(TaskType, []byte(`{"batch_id":"b_x:y"}`)))
	if !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("ProcessTask = %v, want SkipRetry", err)
	}
}

// ipv6Receiver is countingReceiver on [::1]; it skips the test where the
// host has no IPv6 loopback.
func ipv6Receiver(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	var calls atomic.Int32
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) })}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &calls
}

// portOf is the port srv listens on.
func portOf(tb testing.TB, srv *httptest.Server) string {
	tb.Helper()
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

// TestDelivererRefusesInternalAddressesByDefault is the audit's second
// finding: without CALLBACK_HOSTS a token holder made the workers POST to
// a local admin endpoint and to the Redis port.
func TestDelivererRefusesInternalAddressesByDefault(t *testing.T) {
	t.Parallel()
	v4, v4calls := countingReceiver(t)
	port := portOf(t, v4)
	tests := []struct {
		name string
		url  string
	}{
		{"refused_loopback", "http://127.0.0.1:" + port + "/admin/reset"},
		{"refused_localhost", "http://localhost:" + port + "/admin/reset"},
		{"refused_unspecified", "http://0.0.0.0:" + port + "/admin/reset"},
		{"refused_mapped_loopback", "http://[::ffff:127.0.0.1]:" + port + "/admin/reset"},
		{"refused_nat64_loopback", "http://[64:ff9b::7f00:1]:" + port + "/admin/reset"},
		{"refused_redis_port", "http://127.0.0.1:6379/"},
		{"refused_link_local_metadata", "http://169.254.169.254/latest/meta-data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task, _ := callbackTask(t, tt.url)
			err := (&Deliverer{Secret: secret}).ProcessTask(context.Background(), task)
			if !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, hosts.ErrInternal) {
				t.Errorf("ProcessTask = %v, want SkipRetry for an internal address", err)
			}
		})
	}
	if n := v4calls.Load(); n != 0 {
		t.Errorf("the internal receiver got %d callbacks, want none", n)
	}
	t.Run("refused_ipv6_loopback", func(t *testing.T) {
		v6, v6calls := ipv6Receiver(t)
		task, _ := callbackTask(t, "http://[::1]:"+portOf(t, v6)+"/admin/reset")
		if err := (&Deliverer{Secret: secret}).ProcessTask(context.Background(), task); !errors.Is(err, asynq.SkipRetry) {
			t.Errorf("ProcessTask = %v, want SkipRetry", err)
		}
		if v6calls.Load() != 0 {
			t.Error("a callback reached [::1]")
		}
	})
}

// TestDelivererRefusesZoneIDUnderWildcard is the audit's first finding: an
// IPv6 literal whose zone identifier ends in a listed domain passed
// "*.example.com" and was delivered to the loopback address.
func TestDelivererRefusesZoneIDUnderWildcard(t *testing.T) {
	t.Parallel()
	v4, v4calls := countingReceiver(t)
	list := mustHosts(t, "*.example.com")
	tests := []struct {
		name string
		url  string
	}{
		{"refused_mapped_loopback_with_zone", "http://[::ffff:127.0.0.1%25.example.com]:" + portOf(t, v4) + "/x"},
		{"refused_mapped_loopback_in_hex_with_zone", "http://[::ffff:7f00:1%25.example.com]:" + portOf(t, v4) + "/x"},
		{"refused_loopback_ipv6_with_zone", "http://[::1%25.example.com]:" + portOf(t, v4) + "/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if list.Allow(tt.url) {
				t.Errorf("Allow(%q) = true", tt.url)
			}
			task, _ := callbackTask(t, tt.url)
			err := (&Deliverer{Secret: secret, Hosts: list}).ProcessTask(context.Background(), task)
			if !errors.Is(err, asynq.SkipRetry) {
				t.Errorf("ProcessTask = %v, want SkipRetry", err)
			}
		})
	}
	if n := v4calls.Load(); n != 0 {
		t.Errorf("the loopback receiver got %d callbacks, want none", n)
	}
	t.Run("refused_loopback_ipv6_receiver", func(t *testing.T) {
		v6, v6calls := ipv6Receiver(t)
		task, _ := callbackTask(t, "http://[::1%25.example.com]:"+portOf(t, v6)+"/x")
		if err := (&Deliverer{Secret: secret, Hosts: list}).ProcessTask(context.Background(), task); !errors.Is(err, asynq.SkipRetry) {
			t.Errorf("ProcessTask = %v, want SkipRetry", err)
		}
		if v6calls.Load() != 0 {
			t.Error("a callback reached [::1]")
		}
	})
}

// TestDelivererDoesNotFollowRedirects: a receiver that answers 302 to an
// internal URL gets its one request; the redirect's target gets none, and
// the delivery counts as failed (asynq tries again later).
func TestDelivererDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	internal, internalCalls := countingReceiver(t)
	var calls atomic.Int32
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Redirect(w, r, internal.URL+"/admin/reset", http.StatusFound)
	}))
	t.Cleanup(redirector.Close)
	tests := []struct {
		name, hosts string
	}{
		{"failed_with_receiver_port_listed", "127.0.0.1:" + portOf(t, redirector)},
		{"failed_with_target_listed_too", "127.0.0.1"}, // the target would pass the list: only not following stops it
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := calls.Load()
			task, _ := callbackTask(t, redirector.URL+"/hook?token=abc")
			err := (&Deliverer{Secret: secret, Hosts: mustHosts(t, tt.hosts)}).ProcessTask(context.Background(), task)
			if err == nil || errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "HTTP 302") {
				t.Errorf("ProcessTask = %v, want a failure to retry (HTTP 302)", err)
			}
			if calls.Load() != before+1 {
				t.Errorf("the receiver got %d requests, want 1", calls.Load()-before)
			}
		})
	}
	if n := internalCalls.Load(); n != 0 {
		t.Errorf("the redirect's target got %d requests, want none", n)
	}
}

const testBatchID = "b_20261126T031500Z_K3QF7A"

// keyring parses a DATA_KEYS value made of keys, generated under ids.
func keyring(tb testing.TB, keys ...string) *seal.Keyring {
	tb.Helper()
	k, err := seal.Parse(strings.Join(keys, ","))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// dataKey generates a DATA_KEYS entry under id.
func dataKey(tb testing.TB, id string) string {
	tb.Helper()
	k, err := seal.Generate(id)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// sealed seals u for batch id with keys.
func sealed(tb testing.TB, keys *seal.Keyring, id, u string) string {
	tb.Helper()
	s, err := SealURL(keys, id, u)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestSealCallbackURL(t *testing.T) {
	keys := keyring(t, dataKey(t, "k1"))
	const u = "https://hooks.example.com/done?token=tok-0123456789"
	s := sealed(t, keys, testBatchID, u)
	if !seal.IsSealed(s) || strings.Contains(s, "token") || strings.Contains(s, "hooks") {
		t.Errorf("SealCallbackURL = %q, want sealed text", s)
	}
	if got, err := openURL(keys, testBatchID, s); err != nil || got != u {
		t.Errorf("openCallbackURL = %q, %v; want the URL", got, err)
	}
	if got := sealed(t, keyring(t, seal.PlaintextValue), testBatchID, u); got != u {
		t.Errorf("with a plaintext keyring SealCallbackURL = %q, want the URL in clear", got)
	}
	if got := sealed(t, keys, testBatchID, ""); got != "" {
		t.Errorf("SealCallbackURL of no URL = %q", got)
	}
}

// TestDelivererOpensSealedURLs: a URL sealed by the producer is opened with
// the worker's keys and delivered; one the worker cannot open is never sent
// and never logged.
func TestDelivererOpensSealedURLs(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	var gotQuery atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		gotQuery.Store(r.URL.RawQuery)
	}))
	t.Cleanup(srv.Close)
	const token = "tok-s3cret-0123456789"
	hookURL := srv.URL + "/hook?token=" + token
	oldKey, newKey, otherKey := dataKey(t, "old"), dataKey(t, "new"), dataKey(t, "other")
	producerKeys := keyring(t, oldKey)
	listed := mustHosts(t, "127.0.0.1")
	corrupt := []byte(sealed(t, producerKeys, testBatchID, hookURL))
	corrupt[len(corrupt)-3] ^= 1
	tests := []struct {
		name       string
		stored     string // the URL as the task carries it
		keys       *seal.Keyring
		hosts      hosts.List
		delivered  bool
		skipRetry  bool
		wantErrKey error
	}{
		{"delivered_when_sealed_with_its_key", sealed(t, producerKeys, testBatchID, hookURL), producerKeys, listed, true, false, nil},
		{"delivered_with_the_old_key_after_a_rotation", sealed(t, producerKeys, testBatchID, hookURL), keyring(t, newKey, oldKey), listed, true, false, nil},
		{"delivered_when_in_clear_from_before_sealing", hookURL, producerKeys, listed, true, false, nil},
		{"handed_back_when_the_key_is_missing", sealed(t, producerKeys, testBatchID, hookURL), keyring(t, otherKey), listed, false, false, seal.ErrUnknownKey},
		{"handed_back_on_a_worker_without_keys", sealed(t, producerKeys, testBatchID, hookURL), nil, listed, false, false, seal.ErrUnknownKey},
		{"dropped_when_sealed_for_another_batch", sealed(t, producerKeys, "b_20261126T031500Z_OTHER1", hookURL), producerKeys, listed, false, true, seal.ErrCorrupt},
		{"dropped_when_corrupt", string(corrupt), producerKeys, listed, false, true, seal.ErrCorrupt},
		{"dropped_when_in_clear_to_an_internal_address", hookURL, producerKeys, nil, false, true, hosts.ErrInternal},
		{"dropped_when_sealed_to_an_internal_address", sealed(t, producerKeys, testBatchID, hookURL), producerKeys, nil, false, true, hosts.ErrInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zap.DebugLevel)
			before := calls.Load()
			task, _ := callbackTask(t, tt.stored)
			err := (&Deliverer{Secret: secret, Keys: tt.keys, Hosts: tt.hosts, Log: zap.New(core)}).ProcessTask(context.Background(), task)
			want := int32(0)
			if tt.delivered {
				want = 1
			}
			if got := calls.Load() - before; got != want {
				t.Fatalf("%d deliveries (error %v), want delivered %v", got, err, tt.delivered)
			}
			if tt.delivered {
				if err != nil || gotQuery.Load() != "token="+token {
					t.Errorf("ProcessTask = %v, query %v; want delivered with its token", err, gotQuery.Load())
				}
			} else if err == nil || errors.Is(err, asynq.SkipRetry) != tt.skipRetry || !errors.Is(err, tt.wantErrKey) {
				t.Errorf("ProcessTask = %v; want an error wrapping %v, SkipRetry %v", err, tt.wantErrKey, tt.skipRetry)
			}
			if err != nil && (strings.Contains(err.Error(), token) || strings.Contains(err.Error(), "/hook")) {
				t.Errorf("error %q holds the URL's path or query", err)
			}
			for _, e := range logs.All() {
				line := fmt.Sprint(e.Message, e.ContextMap())
				if strings.Contains(line, token) || strings.Contains(line, "/hook") || strings.Contains(line, tt.stored) {
					t.Errorf("log line %q holds the URL's path, query or sealed text", line)
				}
			}
		})
	}
}
