package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/api"
	"github.com/zhimaq/zhimaq/internal/batches"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/export"
	"github.com/zhimaq/zhimaq/internal/idempotency"
	"github.com/zhimaq/zhimaq/internal/logging"
	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/redistest"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/worker"
	"github.com/zhimaq/zhimaq/internal/workertest"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

const (
	token  = "test-token-0123456789abcdef"
	secret = "test-callback-secret-0123456789"
	certNo = "11010519491231002X"
	name   = "张三"
)

// startWorker runs a worker with the API on a free port against the
// sandbox gateway; change adjusts its configuration. It returns the API's
// base URL and the worker's log.
func startWorker(tb testing.TB, faults sandbox.Faults, change func(*config.Config)) (string, *zhimatest.SyncBuffer) {
	tb.Helper()
	s := workertest.Start(tb, workertest.Options{
		Gateway: sandbox.Config{Faults: faults, Seed: 3},
		Change: func(cfg *config.Config) {
			cfg.HTTPAddr = "127.0.0.1:0"
			cfg.APITokens = []string{"another-token-0123456789", token}
			cfg.CallbackSecret = secret
			cfg.CallbackHosts = "127.0.0.1" // the test's receiver, any port
			if change != nil {
				change(cfg)
			}
		},
		Worker: worker.Options{SweepInterval: 50 * time.Millisecond, ShutdownTimeout: time.Second, API: api.FromConfig},
	})
	return "http://" + s.Worker.Addr(), s.Logs
}

// client sends requests through a spec check.
type client struct {
	tb   testing.TB
	base string
	http *http.Client
}

// answer is one response, read whole.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) record(tb testing.TB) zhimaq.Submission {
	tb.Helper()
	var rec zhimaq.Submission
	if err := json.Unmarshal(a.body, &rec); err != nil {
		tb.Fatalf("answer %d is not a record: %v\n%s", a.status, err, a.body)
	}
	return rec
}

func (a answer) errorCode(tb testing.TB) string {
	tb.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(a.body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		tb.Fatalf("answer %d is not an error: %s", a.status, a.body)
	}
	return e.Error.Code
}

// do sends a request with the bearer token tok ("" for none); body may be
// nil, a string or an io.Reader (sent without a Content-Length).
func (c *client) do(method, path, tok string, body any, contentType string) answer {
	c.tb.Helper()
	var r io.Reader
	switch b := body.(type) {
	case string:
		r = strings.NewReader(b)
	case io.Reader:
		r = b
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		c.tb.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.tb.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

func scoreJob(tid string, admittance int) string {
	return fmt.Sprintf(`{"method":"zhima.credit.score.brief.get","biz_content":{"transaction_id":%q,"product_code":"w1010100000000002733","cert_type":"IDENTITY_CARD","cert_no":%q,"name":%q,"admittance_score":%d}}`,
		tid, certNo, name, admittance)
}

func relationJob(tid string) string {
	return fmt.Sprintf(`{"method":"zhima.credit.relation.query","biz_content":{"product_code":"w1010100001000001200","transaction_id":%q,"cert_no":%q,"name":%q,"relation_phone":"15843991158","relation_name":"李四","relation":"family"}}`,
		tid, certNo, name)
}

// noPersonalData fails when b quotes the tests' personal data.
func noPersonalData(tb testing.TB, b []byte) {
	tb.Helper()
	for _, s := range []string{certNo, name, "李四", "15843991158"} {
		if bytes.Contains(b, []byte(s)) {
			tb.Errorf("answer quotes personal data %q: %.300s", s, b)
		}
	}
}

// callbackReceiver answers the first callback 500 and the others 204,
// verifying each signature; got delivers the summaries it accepted.
type callbackReceiver struct {
	mu    sync.Mutex
	calls int
	got   chan zhimaq.CallbackSummary
}

func (cr *callbackReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sum, err := zhimaq.ReadCallback(r, secret, 0)
	cr.mu.Lock()
	cr.calls++
	first := cr.calls == 1
	cr.mu.Unlock()
	switch {
	case err != nil:
		http.Error(w, err.Error(), http.StatusUnauthorized)
	case first:
		http.Error(w, "not now", http.StatusInternalServerError)
	default:
		w.WriteHeader(http.StatusNoContent)
		cr.got <- *sum
	}
}

func TestAPIAgainstSpec(t *testing.T) {
	base, logs := startWorker(t, sandbox.Faults{SystemErrorRate: 0.3}, nil)
	recv := &callbackReceiver{got: make(chan zhimaq.CallbackSummary, 4)}
	hook := httptest.NewServer(recv)
	defer hook.Close()
	small := httptest.NewServer(smallAPI(t))
	defer small.Close()
	spec := newSpecCheck(t, loadSpec(t), base, small.URL)
	c := &client{tb: t, base: base, http: &http.Client{Transport: spec, Timeout: 30 * time.Second}}

	t.Run("auth", func(t *testing.T) {
		for _, tt := range []struct{ name, tok, challenge string }{
			{"missing_token", "", `Bearer realm="zhimaq"`},
			{"wrong_token", "not-a-token-0123456789", `Bearer realm="zhimaq", error="invalid_token"`},
		} {
			for _, path := range []string{"/v1/jobs/zhima.credit.score.brief.get/T1", "/v1/batches/b_20260101T000000Z_AAAAAA"} {
				a := c.do(http.MethodGet, path, tt.tok, nil, "")
				if a.status != http.StatusUnauthorized || a.header.Get("WWW-Authenticate") != tt.challenge || a.errorCode(t) != "unauthorized" {
					t.Errorf("%s %s: %d %q %s", tt.name, path, a.status, a.header.Get("WWW-Authenticate"), a.body)
				}
			}
		}
		if a := c.do(http.MethodPost, "/v1/jobs", "", scoreJob("AUTH1", 600), "application/json"); a.status != http.StatusUnauthorized {
			t.Errorf("POST without a token: %d", a.status)
		}
	})

	t.Run("one_job", func(t *testing.T) {
		a := c.do(http.MethodPost, "/v1/jobs", token, scoreJob("API_J1", 600), "application/json")
		rec := a.record(t)
		if a.status != http.StatusCreated || rec.State != zhimaq.Queued || rec.Duplicate || a.header.Get("Location") != "/v1/jobs/zhima.credit.score.brief.get/API_J1" {
			t.Fatalf("new job: %d %s", a.status, a.body)
		}
		a = c.do(http.MethodPost, "/v1/jobs", token, scoreJob("API_J1", 600)+"\n", "application/json")
		if rec := a.record(t); a.status != http.StatusOK || !rec.Duplicate {
			t.Errorf("duplicate: %d %s", a.status, a.body)
		}
		for _, tt := range []struct{ name, body, subCode string }{
			{"other_parameters", scoreJob("API_J1", 700), "TRANSACTION_ID_REPEAT"},
			{"bad_score", scoreJob("API_J2", 200), "INVALID_PARAMETER"},
			{"unknown_field", `{"method":"zhima.credit.score.brief.get","biz_content":{"transaction_id":"API_J3","cert_no":"` + certNo + `","nmae":"x"}}`, "INVALID_PARAMETER"},
		} {
			a := c.do(http.MethodPost, "/v1/jobs", token, tt.body, "application/json")
			if rec := a.record(t); a.status != http.StatusUnprocessableEntity || rec.State != zhimaq.Rejected || rec.Error == nil || rec.Error.SubCode != tt.subCode {
				t.Errorf("%s: %d %s", tt.name, a.status, a.body)
			}
			noPersonalData(t, a.body)
		}
		huge := `{"method":"zhima.customer.certification.initialize","biz_content":{"transaction_id":"API_BIG","face_contrast_picture":"` +
			strings.Repeat("A", int(api.MaxJobBytes)) + `"}}`
		if a := c.do(http.MethodPost, "/v1/jobs", token, huge, "application/json"); a.status != http.StatusRequestEntityTooLarge || a.errorCode(t) != "too_large" {
			t.Errorf("too large: %d %.200s", a.status, a.body)
		}

		deadline := time.Now().Add(30 * time.Second)
		for {
			a := c.do(http.MethodGet, "/v1/jobs/zhima.credit.score.brief.get/API_J1", token, nil, "")
			if a.status != http.StatusOK {
				t.Fatalf("get: %d %s", a.status, a.body)
			}
			if rec := a.record(t); rec.State == zhimaq.Succeeded {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job not done: %s", a.body)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, path := range []string{"/v1/jobs/zhima.credit.score.brief.get/NEVER", "/v1/jobs/zhima.credit.score.brief.get/T-1"} {
			if a := c.do(http.MethodGet, path, token, nil, ""); a.status != http.StatusNotFound || a.errorCode(t) != "not_found" {
				t.Errorf("GET %s: %d %s", path, a.status, a.body)
			}
		}
	})

	t.Run("batch_with_callback", func(t *testing.T) {
		var lines []string
		for i := range 30 {
			if i%2 == 0 {
				lines = append(lines, scoreJob(fmt.Sprintf("API_B%d", i), 600))
			} else {
				lines = append(lines, relationJob(fmt.Sprintf("API_B%d", i)))
			}
		}
		lines = append(lines, "", "{not a job", scoreJob("API_B0", 600), scoreJob("API_J1", 600))
		body := strings.Join(lines, "\n") + "\n"
		a := c.do(http.MethodPost, "/v1/batches?callback="+url.QueryEscape(hook.URL+"/done?k=1"), token, body, "application/x-ndjson")
		var acc struct {
			BatchID                   string `json:"batch_id"`
			Lines, Accepted, Rejected int
		}
		if err := json.Unmarshal(a.body, &acc); err != nil || a.status != http.StatusAccepted {
			t.Fatalf("POST /v1/batches: %d %s", a.status, a.body)
		}
		if !batches.ValidID(acc.BatchID) || acc.Lines != 33 || acc.Accepted != 32 || acc.Rejected != 1 || a.header.Get("Location") != "/v1/batches/"+acc.BatchID {
			t.Fatalf("accepted %+v, Location %q", acc, a.header.Get("Location"))
		}

		var st struct {
			Done, Complete bool
			Lines, Total   int
			Finished       int
			Counts         map[string]int
			FinishedAt     *time.Time `json:"finished_at"`
			ETASeconds     *int64     `json:"eta_seconds"`
		}
		deadline := time.Now().Add(60 * time.Second)
		for !st.Done {
			if time.Now().After(deadline) {
				t.Fatalf("batch not done: %+v", st)
			}
			time.Sleep(50 * time.Millisecond)
			a := c.do(http.MethodGet, "/v1/batches/"+acc.BatchID, token, nil, "")
			if err := json.Unmarshal(a.body, &st); err != nil || a.status != http.StatusOK {
				t.Fatalf("status: %d %s", a.status, a.body)
			}
		}
		if st.Lines != 33 || st.Total != 32 || st.Finished != 32 || !st.Complete || st.Counts["succeeded"] != 32 || st.Counts["rejected"] != 1 ||
			st.FinishedAt == nil || st.ETASeconds == nil || *st.ETASeconds != 0 {
			t.Errorf("status when done: %+v", st)
		}

		a = c.do(http.MethodGet, "/v1/batches/"+acc.BatchID+"/records?format=csv", token, nil, "")
		if a.status != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), "text/csv") {
			t.Fatalf("csv: %d %s", a.status, a.body)
		}
		rows, err := csv.NewReader(bytes.NewReader(a.body)).ReadAll()
		if err != nil || len(rows) != 34 || strings.Join(rows[0], ",") != strings.Join(export.CSVColumns, ",") {
			t.Fatalf("csv (%v):\n%s", err, a.body)
		}
		col := func(row []string, name string) string { return row[slices.Index(export.CSVColumns, name)] }
		for i, row := range rows[1:] {
			tid, state := col(row, "transaction_id"), col(row, "state")
			switch {
			case i < 30 && (tid != fmt.Sprintf("API_B%d", i) || state != "succeeded"):
				t.Errorf("row %d: %q", i+1, row)
			case i == 30 && state != "rejected":
				t.Errorf("row %d: %q, want the rejected line", i+1, row)
			case i >= 31 && (state != "succeeded" || col(row, "duplicate") != "true"):
				t.Errorf("row %d: %q, want a duplicate", i+1, row)
			}
			if row[0] != fmt.Sprint(i+1) || row[1] != acc.BatchID {
				t.Errorf("row %d: line %q batch %q", i+1, row[0], row[1])
			}
		}
		noPersonalData(t, a.body)

		a = c.do(http.MethodGet, "/v1/batches/"+acc.BatchID+"/records", token, nil, "")
		if a.status != http.StatusOK || strings.Count(string(a.body), "\n") != 33 || !strings.HasPrefix(a.header.Get("Content-Type"), "application/x-ndjson") {
			t.Errorf("jsonl: %d %.300s", a.status, a.body)
		}
		noPersonalData(t, a.body)

		select {
		case sum := <-recv.got:
			want := zhimaq.CallbackSummary{BatchID: acc.BatchID, Lines: 33, Succeeded: 32, Rejected: 1, FinishedAt: st.FinishedAt.UTC()}
			if sum != want {
				t.Errorf("callback summary %+v, want %+v", sum, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no callback accepted; worker log:\n%s", logs.String())
		}
		recv.mu.Lock()
		calls := recv.calls
		recv.mu.Unlock()
		if calls != 2 {
			t.Errorf("%d callback deliveries, want 2 (the first answered 500)", calls)
		}
		if strings.Contains(logs.String(), "k=1") {
			t.Error("the worker logged the callback URL's query")
		}
	})

	t.Run("batch_not_found", func(t *testing.T) {
		for _, path := range []string{"/v1/batches/b_20260101T000000Z_AAAAAA", "/v1/batches/b_20260101T000000Z_AAAAAA/records", "/v1/batches/nope"} {
			if a := c.do(http.MethodGet, path, token, nil, ""); a.status != http.StatusNotFound || a.errorCode(t) != "not_found" {
				t.Errorf("GET %s: %d %s", path, a.status, a.body)
			}
		}
	})

	t.Run("batch_limits", func(t *testing.T) {
		s := &client{tb: t, base: small.URL, http: c.http}
		if a := s.do(http.MethodPost, "/v1/batches", token, strings.Repeat(scoreJob("LIM1", 600)+"\n", 10), "application/x-ndjson"); a.status != http.StatusRequestEntityTooLarge || a.errorCode(t) != "too_large" {
			t.Errorf("too large: %d %s", a.status, a.body)
		}
		chunked := iotest.HalfReader(strings.NewReader(scoreJob("LIM2", 600) + "\n"))
		if a := s.do(http.MethodPost, "/v1/batches", token, chunked, "application/x-ndjson"); a.status != http.StatusLengthRequired || a.errorCode(t) != "length_required" {
			t.Errorf("no length: %d %s", a.status, a.body)
		}
		if a := s.do(http.MethodPost, "/v1/batches?callback=%2Fhook", token, scoreJob("LIM3", 600), "application/x-ndjson"); a.status != http.StatusBadRequest || a.errorCode(t) != "bad_callback" {
			t.Errorf("bad callback: %d %s", a.status, a.body)
		}
		if a := s.do(http.MethodPost, "/v1/batches?callback="+url.QueryEscape("http://169.254.169.254/latest"), token, scoreJob("LIM4", 600), "application/x-ndjson"); a.status != http.StatusBadRequest ||
			a.errorCode(t) != "bad_callback" || !strings.Contains(string(a.body), "CALLBACK_HOSTS") {
			t.Errorf("callback to a host not allowed: %d %s", a.status, a.body)
		}
	})

	spec.requireSeen(
		"submitJob Created", "submitJob OK", "submitJob Unprocessable Entity", "submitJob Request Entity Too Large", "submitJob Unauthorized",
		"getJob OK", "getJob Not Found", "getJob Unauthorized",
		"submitBatch Accepted", "submitBatch Request Entity Too Large", "submitBatch Length Required", "submitBatch Bad Request",
		"getBatch OK", "getBatch Not Found", "getBatch Unauthorized",
		"getBatchRecords OK", "getBatchRecords Not Found",
	)

	t.Run("outside_the_spec", func(t *testing.T) {
		plain := &client{tb: t, base: base, http: http.DefaultClient}
		if a := plain.do(http.MethodGet, "/v1/nothing", token, nil, ""); a.status != http.StatusNotFound || a.errorCode(t) != "not_found" {
			t.Errorf("unknown endpoint: %d %s", a.status, a.body)
		}
		if a := plain.do(http.MethodGet, "/v1/nothing", "", nil, ""); a.status != http.StatusUnauthorized {
			t.Errorf("unknown endpoint without a token: %d", a.status)
		}
		if a := plain.do(http.MethodGet, "/v1/batches/b_20260101T000000Z_AAAAAA/records?format=xml", token, nil, ""); a.status != http.StatusBadRequest || a.errorCode(t) != "bad_format" {
			t.Errorf("bad format: %d %s", a.status, a.body)
		}
	})
}

// smallAPI is the API over a producer on its own Redis with a 1 KiB batch
// limit, allowing callbacks to one host only.
func smallAPI(tb testing.TB) http.Handler {
	tb.Helper()
	return api.New(testProducer(tb, zhimaq.ProducerConfig{CallbackHosts: "hooks.lender.example"}), api.Options{Tokens: []string{token}, MaxBatchBytes: 1 << 10})
}

func TestAPINotServedWithoutTokens(t *testing.T) {
	base, logs := startWorker(t, sandbox.Faults{}, func(c *config.Config) { c.APITokens = nil })
	for _, path := range []string{"/v1/jobs/zhima.credit.score.brief.get/T1", "/v1/batches/b_x"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, resp.StatusCode)
		}
	}
	resp, err := http.Get(base + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	if n := strings.Count(logs.String(), "HTTP API not served: API_TOKENS is not set"); n != 1 {
		t.Errorf("the worker said %d times that the API is off, want once:\n%s", n, logs.String())
	}
}

func TestWorkerWarnsWhenAPIClientsMayNameAnyCallbackHost(t *testing.T) {
	_, logs := startWorker(t, sandbox.Faults{}, func(c *config.Config) { c.CallbackHosts = "" })
	if !strings.Contains(logs.String(), `"level":"warn"`) || !strings.Contains(logs.String(), "set CALLBACK_HOSTS") {
		t.Errorf("no warning about CALLBACK_HOSTS in the worker's log:\n%s", logs.String())
	}
	_, logs = startWorker(t, sandbox.Faults{}, nil)
	if strings.Contains(logs.String(), "CALLBACK_HOSTS") {
		t.Errorf("a warning about CALLBACK_HOSTS although it is set:\n%s", logs.String())
	}
}

// withFields is job with the top-level fields fields ("\"lane\":\"batch\"", …) before its own.
func withFields(job string, fields ...string) string {
	return "{" + strings.Join(fields, ",") + "," + job[1:]
}

// offSpec sends a request the spec refuses (a value outside an enum) with
// the token, past the spec's request check, and checks the answer against
// the spec.
func offSpec(tb testing.TB, spec *specCheck, method, url, body, contentType string) answer {
	tb.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	spec.checkAnswer(req, resp)
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// queueOf is the asynq queue, of queues, whose pending list holds the task
// of key's job; "" when none does.
func queueOf(tb testing.TB, rdb redis.UniversalClient, key idempotency.Key, queues ...string) string {
	tb.Helper()
	id := payload.TaskID(key)
	var found []string
	for _, q := range queues {
		ctx := context.Background()
		n, err := rdb.Exists(ctx, "asynq:{"+q+"}:t:"+id).Result()
		if err != nil {
			tb.Fatal(err)
		}
		pending, err := rdb.LRange(ctx, "asynq:{"+q+"}:pending", 0, -1).Result()
		if err != nil {
			tb.Fatal(err)
		}
		if n == 1 && slices.Contains(pending, id) {
			found = append(found, q)
		}
	}
	if len(found) > 1 {
		tb.Fatalf("the task of %s is in queues %q", key, found)
	}
	if len(found) == 0 {
		return ""
	}
	return found[0]
}

func TestAPIAppsAndLanes(t *testing.T) {
	const other = "2021000000000002" // the deployment's second app
	srv := redistest.New(t)
	rdb := srv.Client(t)
	names := payload.QueueNames{Base: srv.Queue, Apps: []string{zhimatest.AppID}}
	interactive := names.Of(idempotency.Key{AppID: zhimatest.AppID}, payload.LaneInteractive)
	batch := names.Of(idempotency.Key{AppID: zhimatest.AppID}, payload.LaneBatch)
	p, err := zhimaq.NewProducer(rdb, zhimaq.ProducerConfig{AppID: zhimatest.AppID, OtherAppIDs: []string{other},
		DataKeys: zhimatest.DataKeys, Queue: srv.Queue, KeyPrefix: srv.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	h := httptest.NewServer(api.New(p, api.Options{AppID: zhimatest.AppID, Tokens: []string{token}}))
	defer h.Close()
	spec := newSpecCheck(t, loadSpec(t), h.URL)
	c := &client{tb: t, base: h.URL, http: &http.Client{Transport: spec, Timeout: 30 * time.Second}}
	const method = "zhima.credit.score.brief.get"
	key := func(app, tid string) idempotency.Key {
		return idempotency.Key{AppID: app, Method: method, TransactionID: tid}
	}

	t.Run("lanes", func(t *testing.T) {
		for _, tt := range []struct{ name, body, tid, queue string }{
			{"job_of_the_interactive_lane_is_queued_interactive", withFields(scoreJob("LANE_J1", 600), `"lane":"interactive"`), "LANE_J1", interactive},
			{"job_of_the_batch_lane_is_queued_batch", withFields(scoreJob("LANE_J2", 600), `"lane":"batch"`), "LANE_J2", batch},
			{"job_without_a_lane_is_queued_batch", scoreJob("LANE_J3", 600), "LANE_J3", batch},
		} {
			t.Run(tt.name, func(t *testing.T) {
				a := c.do(http.MethodPost, "/v1/jobs", token, tt.body, "application/json")
				if rec := a.record(t); a.status != http.StatusCreated || rec.State != zhimaq.Queued || rec.AppID != zhimatest.AppID {
					t.Fatalf("POST /v1/jobs: %d %s", a.status, a.body)
				}
				if q := queueOf(t, rdb, key(zhimatest.AppID, tt.tid), batch, interactive); q != tt.queue {
					t.Errorf("task in queue %q, want %q", q, tt.queue)
				}
			})
		}
		t.Run("job_of_another_lane_is_rejected", func(t *testing.T) {
			a := offSpec(t, spec, http.MethodPost, h.URL+"/v1/jobs", withFields(scoreJob("LANE_J4", 600), `"lane":"fast"`), "application/json")
			if rec := a.record(t); a.status != http.StatusUnprocessableEntity || rec.State != zhimaq.Rejected || rec.Error == nil ||
				rec.Error.SubCode != "INVALID_PARAMETER" || !strings.HasPrefix(rec.Error.SubMsg, "lane:") {
				t.Errorf("POST /v1/jobs: %d %s, want 422 INVALID_PARAMETER naming lane", a.status, a.body)
			}
		})
		t.Run("batch_with_lane_interactive_queues_lines_without_one_interactive", func(t *testing.T) {
			body := scoreJob("LANE_B1", 600) + "\n" + withFields(scoreJob("LANE_B2", 600), `"lane":"batch"`) + "\n"
			if a := c.do(http.MethodPost, "/v1/batches?lane=interactive", token, body, "application/x-ndjson"); a.status != http.StatusAccepted {
				t.Fatalf("POST /v1/batches?lane=interactive: %d %s", a.status, a.body)
			}
			for tid, want := range map[string]string{"LANE_B1": interactive, "LANE_B2": batch} {
				if q := queueOf(t, rdb, key(zhimatest.AppID, tid), batch, interactive); q != want {
					t.Errorf("task of %s in queue %q, want %q", tid, q, want)
				}
			}
		})
		t.Run("batch_with_lane_batch_queues_batch", func(t *testing.T) {
			if a := c.do(http.MethodPost, "/v1/batches?lane=batch", token, scoreJob("LANE_B3", 600)+"\n", "application/x-ndjson"); a.status != http.StatusAccepted {
				t.Fatalf("POST /v1/batches?lane=batch: %d %s", a.status, a.body)
			}
			if q := queueOf(t, rdb, key(zhimatest.AppID, "LANE_B3"), batch, interactive); q != batch {
				t.Errorf("task in queue %q, want %q", q, batch)
			}
		})
		t.Run("batch_with_another_lane_is_400_bad_lane", func(t *testing.T) {
			for _, lane := range []string{"fast", "", "Interactive"} {
				a := offSpec(t, spec, http.MethodPost, h.URL+"/v1/batches?lane="+url.QueryEscape(lane), scoreJob("LANE_B4", 600)+"\n", "application/x-ndjson")
				if a.status != http.StatusBadRequest || a.errorCode(t) != "bad_lane" || !strings.Contains(string(a.body), "interactive or batch") {
					t.Errorf("lane %q: %d %s, want 400 bad_lane", lane, a.status, a.body)
				}
				if lane != "" && strings.Contains(string(a.body), lane) {
					t.Errorf("the answer quotes the lane: %s", a.body)
				}
			}
			if a := c.do(http.MethodGet, "/v1/jobs/"+method+"/LANE_B4", token, nil, ""); a.status != http.StatusNotFound {
				t.Errorf("a line of the refused batch was submitted: %d %s", a.status, a.body)
			}
		})
	})

	t.Run("apps", func(t *testing.T) {
		var otherLocation string
		t.Run("job_of_the_other_app_is_accepted_with_its_app_id", func(t *testing.T) {
			a := c.do(http.MethodPost, "/v1/jobs", token, withFields(scoreJob("APP_J1", 600), `"app_id":"`+other+`"`), "application/json")
			rec := a.record(t)
			otherLocation = a.header.Get("Location")
			if a.status != http.StatusCreated || rec.AppID != other || rec.State != zhimaq.Queued || !strings.HasPrefix(string(a.body), `{"app_id":"`+other+`",`) {
				t.Fatalf("POST /v1/jobs: %d %s", a.status, a.body)
			}
			if want := "/v1/jobs/" + method + "/APP_J1?app_id=" + other; otherLocation != want {
				t.Errorf("Location %q, want %q", otherLocation, want)
			}
		})
		t.Run("job_of_the_default_app_has_a_location_without_app_id", func(t *testing.T) {
			// The same transaction_id: jobs are per app, so this is a new job.
			a := c.do(http.MethodPost, "/v1/jobs", token, withFields(scoreJob("APP_J1", 700), `"app_id":"`+zhimatest.AppID+`"`), "application/json")
			if rec := a.record(t); a.status != http.StatusCreated || rec.Duplicate || rec.AppID != zhimatest.AppID {
				t.Fatalf("POST /v1/jobs: %d %s", a.status, a.body)
			}
			if loc, want := a.header.Get("Location"), "/v1/jobs/"+method+"/APP_J1"; loc != want {
				t.Errorf("Location %q, want %q", loc, want)
			}
		})
		t.Run("job_of_an_app_not_served_is_rejected", func(t *testing.T) {
			a := c.do(http.MethodPost, "/v1/jobs", token, withFields(scoreJob("APP_J2", 600), `"app_id":"2021000000000009"`), "application/json")
			if rec := a.record(t); a.status != http.StatusUnprocessableEntity || rec.Error == nil || rec.Error.SubCode != "INVALID_PARAMETER" ||
				!strings.HasPrefix(rec.Error.SubMsg, "app_id:") {
				t.Errorf("POST /v1/jobs: %d %s, want 422 INVALID_PARAMETER naming app_id", a.status, a.body)
			}
		})
		for _, tt := range []struct{ name, path, app string }{
			{"get_at_the_location_finds_the_other_apps_record", otherLocation, other},
			{"get_with_the_default_apps_id_finds_its_record", "/v1/jobs/" + method + "/APP_J1?app_id=" + zhimatest.AppID, zhimatest.AppID},
			{"get_without_app_id_finds_the_default_apps_record", "/v1/jobs/" + method + "/APP_J1", zhimatest.AppID},
			{"get_with_an_empty_app_id_finds_the_default_apps_record", "/v1/jobs/" + method + "/APP_J1?app_id=", zhimatest.AppID},
		} {
			t.Run(tt.name, func(t *testing.T) {
				a := c.do(http.MethodGet, tt.path, token, nil, "")
				if rec := a.record(t); a.status != http.StatusOK || rec.AppID != tt.app || rec.TransactionID != "APP_J1" {
					t.Errorf("GET %s: %d %s, want app %s's record", tt.path, a.status, a.body, tt.app)
				}
			})
		}
		t.Run("get_of_a_job_of_the_other_app_only_is_404_under_the_default", func(t *testing.T) {
			c.do(http.MethodPost, "/v1/jobs", token, withFields(scoreJob("APP_J3", 600), `"app_id":"`+other+`"`), "application/json")
			if a := c.do(http.MethodGet, "/v1/jobs/"+method+"/APP_J3", token, nil, ""); a.status != http.StatusNotFound || a.errorCode(t) != "not_found" {
				t.Errorf("GET without app_id: %d %s, want 404", a.status, a.body)
			}
			if a := c.do(http.MethodGet, "/v1/jobs/"+method+"/APP_J3?app_id="+other, token, nil, ""); a.status != http.StatusOK {
				t.Errorf("GET with app_id: %d %s, want 200", a.status, a.body)
			}
		})
		t.Run("get_with_an_unknown_app_id_is_404", func(t *testing.T) {
			for _, app := range []string{"2021000000000009", "20210000:bad", "2021 0009"} {
				a := c.do(http.MethodGet, "/v1/jobs/"+method+"/APP_J1?app_id="+url.QueryEscape(app), token, nil, "")
				if a.status != http.StatusNotFound || a.errorCode(t) != "not_found" || !strings.Contains(string(a.body), "not one of this deployment's apps") {
					t.Errorf("app_id %q: %d %s, want 404 saying the app is not the deployment's", app, a.status, a.body)
				}
				if strings.Contains(string(a.body), "0009") || strings.Contains(string(a.body), ":bad") {
					t.Errorf("the answer quotes the app_id: %s", a.body)
				}
			}
		})
		t.Run("batch_records_carry_each_lines_app_id", func(t *testing.T) {
			body := withFields(scoreJob("APP_B1", 600), `"app_id":"`+other+`"`) + "\n" + scoreJob("APP_B2", 600) + "\n"
			a := c.do(http.MethodPost, "/v1/batches", token, body, "application/x-ndjson")
			var acc struct {
				BatchID  string `json:"batch_id"`
				Accepted int
			}
			if err := json.Unmarshal(a.body, &acc); err != nil || a.status != http.StatusAccepted || acc.Accepted != 2 {
				t.Fatalf("POST /v1/batches: %d %s", a.status, a.body)
			}
			a = c.do(http.MethodGet, "/v1/batches/"+acc.BatchID+"/records", token, nil, "")
			var apps []string
			for _, line := range strings.Split(strings.TrimSpace(string(a.body)), "\n") {
				var sub zhimaq.Submission
				if err := json.Unmarshal([]byte(line), &sub); err != nil {
					t.Fatalf("records: %v\n%s", err, a.body)
				}
				apps = append(apps, sub.AppID)
			}
			if a.status != http.StatusOK || !slices.Equal(apps, []string{other, zhimatest.AppID}) {
				t.Errorf("records: %d, apps %q, want %q\n%s", a.status, apps, []string{other, zhimatest.AppID}, a.body)
			}
		})
	})
	spec.requireSeen("submitJob Created", "submitJob Unprocessable Entity", "submitBatch Accepted", "submitBatch Bad Request",
		"getJob OK", "getJob Not Found", "getBatchRecords OK")
}

func TestAPIBatchLineLimit(t *testing.T) {
	srv := redistest.New(t)
	p, err := zhimaq.NewProducer(srv.Client(t), zhimaq.ProducerConfig{AppID: zhimatest.AppID, DataKeys: zhimatest.DataKeys,
		Queue: srv.Queue, KeyPrefix: srv.Prefix, MaxBatchLines: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	h := httptest.NewServer(api.New(p, api.Options{Tokens: []string{token}}))
	defer h.Close()
	spec := newSpecCheck(t, loadSpec(t), h.URL)
	c := &client{tb: t, base: h.URL, http: &http.Client{Transport: spec, Timeout: 30 * time.Second}}
	batchID := regexp.MustCompile(`\bb_[A-Za-z0-9_]+`)
	tests := []struct {
		name   string
		lines  []string
		status int
		held   int // lines the batch holds
	}{
		{"beyond_the_limit_is_too_large", []string{scoreJob("LL1", 600), "{}", "", scoreJob("LL2", 600), scoreJob("LL3", 600), scoreJob("LL4", 600)},
			http.StatusRequestEntityTooLarge, 3},
		{"exactly_the_limit_is_accepted", []string{scoreJob("LL5", 600), "{}", scoreJob("LL6", 600), ""}, http.StatusAccepted, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := c.do(http.MethodPost, "/v1/batches", token, strings.Join(tt.lines, "\n")+"\n", "application/x-ndjson")
			if a.status != tt.status {
				t.Fatalf("POST /v1/batches: %d %s, want %d", a.status, a.body, tt.status)
			}
			noPersonalData(t, a.body)
			id := batchID.FindString(string(a.body))
			if tt.status == http.StatusRequestEntityTooLarge {
				want := fmt.Sprintf("a batch may hold at most 3 lines (BATCH_MAX_LINES); batch %s holds the 3 lines before the limit", id)
				if a.errorCode(t) != "too_large" || !strings.Contains(string(a.body), want) {
					t.Errorf("answer %s, want too_large saying %q", a.body, want)
				}
			}
			var st struct {
				Lines    int  `json:"lines"`
				Complete bool `json:"complete"`
			}
			a = c.do(http.MethodGet, "/v1/batches/"+id, token, nil, "")
			if err := json.Unmarshal(a.body, &st); err != nil || a.status != http.StatusOK || st.Lines != tt.held || !st.Complete {
				t.Errorf("batch %q: %d %s, want %d lines, complete", id, a.status, a.body, tt.held)
			}
		})
	}
	for _, tid := range []string{"LL3", "LL4"} {
		if a := c.do(http.MethodGet, "/v1/jobs/zhima.credit.score.brief.get/"+tid, token, nil, ""); a.status != http.StatusNotFound {
			t.Errorf("the job of %s, beyond the limit, was submitted: %d %s", tid, a.status, a.body)
		}
	}
	spec.requireSeen("submitBatch Request Entity Too Large", "submitBatch Accepted", "getBatch OK", "getJob Not Found")
}

// testProducer is a producer of the test app on its own Redis, with cfg's
// other settings; the test's cleanup closes it.
func testProducer(tb testing.TB, cfg zhimaq.ProducerConfig) *zhimaq.Producer {
	tb.Helper()
	srv := redistest.New(tb)
	cfg.AppID, cfg.DataKeys, cfg.Queue, cfg.KeyPrefix = zhimatest.AppID, zhimatest.DataKeys, srv.Queue, srv.Prefix
	p, err := zhimaq.NewProducer(srv.Client(tb), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// sendHead opens a connection to base and sends the header of a POST to
// path with the token and a Content-Length of length; the caller sends the
// body. It returns the connection and a reader of its answer.
func sendHead(tb testing.TB, base, path string, length int) (net.Conn, *bufio.Reader) {
	tb.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: zhimaq\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		path, token, length)
	return conn, bufio.NewReader(conn)
}

// readAnswer reads the answer to a POST to path on r, waiting up to 10s.
func readAnswer(tb testing.TB, conn net.Conn, r *bufio.Reader, base, path string) (*http.Request, *http.Response, answer) {
	tb.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest(http.MethodPost, base+path, nil)
	resp, err := http.ReadResponse(r, req)
	if err != nil {
		tb.Fatalf("no answer to POST %s: %v", path, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("answer to POST %s: %v", path, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return req, resp, answer{status: resp.StatusCode, header: resp.Header, body: body}
}

func TestAPIStalledBodies(t *testing.T) {
	const stall = 250 * time.Millisecond
	base, logs := startWorker(t, sandbox.Faults{}, func(c *config.Config) { c.HTTPStallTimeout = stall })
	spec := newSpecCheck(t, loadSpec(t), base)

	for _, tt := range []struct{ name, path, op, part string }{
		{"job_body_that_stalls_is_answered_408", "/v1/jobs", "submitJob", scoreJob("STALL_J", 600)[:120]},
		{"batch_body_that_stalls_is_answered_408", "/v1/batches", "submitBatch", scoreJob("STALL_B1", 600) + "\n" + scoreJob("STALL_B2", 600)[:120]},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, r := sendHead(t, base, tt.path, 2*len(tt.part))
			io.WriteString(conn, tt.part) // and then nothing
			req, resp, a := readAnswer(t, conn, r, base, tt.path)
			spec.checkAnswer(req, resp)
			if a.status != http.StatusRequestTimeout || a.errorCode(t) != "timeout" || !resp.Close {
				t.Errorf("answer %d (close %v) %s, want 408 timeout closing the connection", a.status, resp.Close, a.body)
			}
		})
	}
	t.Run("batch_body_that_trickles_is_answered_408", func(t *testing.T) {
		// A byte every 20 ms, never a pause of HTTP_STALL_TIMEOUT, but far
		// below worker.MinBodyRate: it must not hold its slot for long.
		body := scoreJob("TRICKLE", 600) + "\n"
		conn, r := sendHead(t, base, "/v1/batches", len(body))
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := range len(body) {
				if _, err := io.WriteString(conn, body[i:i+1]); err != nil {
					return // dropped, as it should be
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		req, resp, a := readAnswer(t, conn, r, base, "/v1/batches")
		spec.checkAnswer(req, resp)
		if a.status != http.StatusRequestTimeout || a.errorCode(t) != "timeout" {
			t.Errorf("answer %d %s, want 408 timeout for a body far below %d bytes/s", a.status, a.body, worker.MinBodyRate)
		}
		conn.Close()
		<-done
	})
	if !strings.Contains(logs.String(), "came slower than MinBodyRate; request dropped") {
		t.Errorf("no log line about the stalled bodies:\n%s", logs.String())
	}
	noPersonalData(t, []byte(logs.String()))
	spec.requireSeen("submitJob Request Timeout", "submitBatch Request Timeout")

	t.Run("batch_that_keeps_coming_is_not_cut", func(t *testing.T) {
		// A line every few milliseconds, for three times the stall timeout.
		var lines []string
		for i := range 300 {
			lines = append(lines, scoreJob(fmt.Sprintf("STEADY%d", i), 600)+"\n")
		}
		conn, r := sendHead(t, base, "/v1/batches", len(strings.Join(lines, "")))
		start := time.Now()
		for _, line := range lines {
			if time.Since(start) < 3*stall {
				time.Sleep(5 * time.Millisecond)
			}
			if _, err := io.WriteString(conn, line); err != nil {
				t.Fatalf("the worker stopped reading a batch that kept coming: %v", err)
			}
		}
		_, _, a := readAnswer(t, conn, r, base, "/v1/batches")
		var acc struct{ Accepted int }
		if json.Unmarshal(a.body, &acc); a.status != http.StatusAccepted || acc.Accepted != len(lines) {
			t.Errorf("answer %d %s, want 202 accepting all %d lines", a.status, a.body, len(lines))
		}
	})
}

func TestAPIBusy(t *testing.T) {
	const slots = 2
	base, _ := startWorker(t, sandbox.Faults{}, func(c *config.Config) { c.APIMaxRequests = slots })
	spec := newSpecCheck(t, loadSpec(t), base)
	c := &client{tb: t, base: base, http: &http.Client{Transport: spec, Timeout: 30 * time.Second}}
	plain := &client{tb: t, base: base, http: http.DefaultClient}
	const probe = "/v1/jobs/zhima.credit.score.brief.get/NEVER"

	// hold sends a request that holds a slot: its head and then part of
	// its body, and then nothing.
	hold := func(i int) net.Conn {
		conn, _ := sendHead(t, base, "/v1/jobs", 1000)
		io.WriteString(conn, scoreJob(fmt.Sprintf("BUSY%d", i), 600)[:40])
		return conn
	}
	var held []net.Conn
	for i := range slots {
		held = append(held, hold(i))
	}
	// rehold sends again each held request that was answered: a probe in
	// flight when it arrived took its slot, and it was answered busy.
	rehold := func() {
		for i, conn := range held {
			conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if n, _ := conn.Read(make([]byte, 1)); n > 0 {
				conn.Close()
				held[i] = hold(i)
			}
		}
	}

	// until polls probe with the token until its answer has status want.
	until := func(t *testing.T, want int) answer {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if want == http.StatusServiceUnavailable {
				rehold()
			}
			a := c.do(http.MethodGet, probe, token, nil, "")
			if a.status == want {
				return a
			}
			if a.status != http.StatusNotFound && a.status != http.StatusServiceUnavailable {
				t.Fatalf("GET %s: %d %s", probe, a.status, a.body)
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s still answers %d %s, want %d", probe, a.status, a.body, want)
			}
		}
	}

	t.Run("request_beyond_the_slots_is_answered_503_busy", func(t *testing.T) {
		a := until(t, http.StatusServiceUnavailable)
		if a.errorCode(t) != "busy" || a.header.Get("Retry-After") == "" {
			t.Errorf("answer %d %v %s, want busy with Retry-After", a.status, a.header, a.body)
		}
	})
	t.Run("request_without_a_token_is_still_401", func(t *testing.T) {
		if a := c.do(http.MethodGet, probe, "", nil, ""); a.status != http.StatusUnauthorized {
			t.Errorf("without a token: %d %s, want 401", a.status, a.body)
		}
	})
	t.Run("health_and_metrics_are_not_counted", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			if a := plain.do(http.MethodGet, path, "", nil, ""); a.status != http.StatusOK {
				t.Errorf("GET %s: %d %s", path, a.status, a.body)
			}
		}
	})
	for _, conn := range held {
		conn.Close()
	}
	t.Run("freed_slot_serves_again", func(t *testing.T) {
		until(t, http.StatusNotFound)
	})
	spec.requireSeen("getJob Service Unavailable", "getJob Unauthorized", "getJob Not Found")
}

func TestAPIRefusedLogins(t *testing.T) {
	// Tokens of no recognisable words, so any five characters of one in a
	// log would be a leak.
	bad := []string{"Qx7Zv9Kp2Wm4Rt8Yj3Hn", "Lw5Tb8Nc1Vf6Gd0Sa2Xe", "Pm3Ry7Ku9Jq4Hz6Bt1Wo"}

	t.Run("each_refusal_is_counted_by_reason", func(t *testing.T) {
		base, _ := startWorker(t, sandbox.Faults{}, nil)
		c := &client{tb: t, base: base, http: http.DefaultClient}
		for range 3 {
			c.do(http.MethodGet, "/v1/batches/b_x", "", nil, "")
		}
		for _, tok := range bad[:2] {
			c.do(http.MethodGet, "/v1/batches/b_x", tok, nil, "")
		}
		c.do(http.MethodGet, "/v1/batches/b_x", token, nil, "")
		metrics := string(c.do(http.MethodGet, "/metrics", "", nil, "").body)
		for _, want := range []string{`zhimaq_api_auth_failures_total{reason="missing"} 3`, `zhimaq_api_auth_failures_total{reason="invalid"} 2`} {
			if !strings.Contains(metrics, want+"\n") {
				t.Errorf("/metrics lacks %s:\n%s", want, metrics)
			}
		}
	})

	t.Run("logged_at_most_once_per_interval_without_the_token", func(t *testing.T) {
		var now atomic.Int64 // unix nanoseconds
		now.Store(time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC).UnixNano())
		logs := new(zhimatest.SyncBuffer)
		log, err := logging.New("json", "debug", logs)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(api.New(testProducer(t, zhimaq.ProducerConfig{}), api.Options{Tokens: []string{token}, Log: log,
			Now: func() time.Time { return time.Unix(0, now.Load()) }}))
		defer srv.Close()
		c := &client{tb: t, base: srv.URL, http: http.DefaultClient}
		refused := func() []int {
			var counts []int
			for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				var l struct {
					Msg     string `json:"msg"`
					Refused int    `json:"refused"`
					Remote  string `json:"remote"`
				}
				if json.Unmarshal([]byte(line), &l) == nil && strings.Contains(l.Msg, "refused 401") {
					if !strings.HasPrefix(l.Remote, "127.0.0.1:") {
						t.Errorf("log line without the client's address: %s", line)
					}
					counts = append(counts, l.Refused)
				}
			}
			return counts
		}
		for i, step := range []struct {
			name    string
			advance time.Duration
			tokens  []string // "" sends none
			want    []int    // the counts of every line so far
		}{
			{"first_refusal_is_logged", 0, []string{bad[0]}, []int{1}},
			{"refusals_inside_the_interval_are_not", api.AuthLogInterval / 2, []string{"", bad[1], bad[2]}, []int{1}},
			{"next_line_counts_them_all", api.AuthLogInterval / 2, []string{bad[0]}, []int{1, 4}},
			{"after_a_quiet_while_one_is_logged", 10 * api.AuthLogInterval, []string{""}, []int{1, 4, 1}},
		} {
			t.Run(step.name, func(t *testing.T) {
				now.Add(int64(step.advance))
				for _, tok := range step.tokens {
					if a := c.do(http.MethodGet, "/v1/batches/b_x", tok, nil, ""); a.status != http.StatusUnauthorized {
						t.Fatalf("step %d: %d %s", i, a.status, a.body)
					}
				}
				if got := refused(); !slices.Equal(got, step.want) {
					t.Errorf("refusal lines count %v, want %v:\n%s", got, step.want, logs.String())
				}
			})
		}
		for _, tok := range bad {
			for i := 0; i+5 <= len(tok); i++ {
				if strings.Contains(logs.String(), tok[i:i+5]) {
					t.Fatalf("the log holds %q, part of a token:\n%s", tok[i:i+5], logs.String())
				}
			}
		}
	})
}
