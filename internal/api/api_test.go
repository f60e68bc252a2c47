package api_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/api"
	"github.com/zhimaq/zhimaq/internal/batches"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/redistest"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/worker"
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
	srv := redistest.New(tb)
	gw, gwURL := zhimatest.StartGateway(tb, sandbox.Config{Faults: faults, Seed: 3})
	cfg := zhimatest.WorkerConfig(tb, srv, gw, gwURL)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.APITokens = []string{"another-token-0123456789", token}
	cfg.CallbackSecret = secret
	cfg.CallbackHosts = "127.0.0.1" // the test's receiver, any port
	if change != nil {
		change(&cfg)
	}
	logs := new(zhimatest.SyncBuffer)
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(logs), zap.DebugLevel))
	w, err := worker.New(worker.Options{Config: cfg, Log: log, PollInterval: 20 * time.Millisecond, SweepInterval: 50 * time.Millisecond,
		ShutdownTimeout: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	if err := w.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(w.Close)
	return "http://" + w.Addr(), logs
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

func (a answer) record(tb testing.TB) zhimaq.Record {
	tb.Helper()
	var rec zhimaq.Record
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
		if err != nil || len(rows) != 34 || strings.Join(rows[0], ",") != strings.Join(batches.CSVColumns, ",") {
			t.Fatalf("csv (%v):\n%s", err, a.body)
		}
		for i, row := range rows[1:] {
			tid, state := row[3], row[4]
			switch {
			case i < 30 && (tid != fmt.Sprintf("API_B%d", i) || state != "succeeded"):
				t.Errorf("row %d: %q", i+1, row)
			case i == 30 && state != "rejected":
				t.Errorf("row %d: %q, want the rejected line", i+1, row)
			case i >= 31 && (state != "succeeded" || row[6] != "true"):
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
	srv := redistest.New(tb)
	p, err := zhimaq.NewProducer(srv.Client(tb), zhimaq.ProducerConfig{AppID: zhimatest.AppID, DataKeys: zhimatest.DataKeys,
		Queue: srv.Queue, KeyPrefix: srv.Prefix, CallbackHosts: "hooks.lender.example"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return api.New(p, api.Options{Tokens: []string{token}, MaxBatchBytes: 1 << 10})
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
