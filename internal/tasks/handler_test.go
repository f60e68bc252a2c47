package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/redistest"
	"github.com/zhimaq/zhimaq/internal/results"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/seal"
	"github.com/zhimaq/zhimaq/internal/zhima"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

const applicantID = "11010519491231002X"

// fixture is a Handler wired to the sandbox and a real Redis, logging into logs.
type fixture struct {
	h       *Handler
	gateway *sandbox.Server
	url     string // the gateway's
	logs    *bytes.Buffer
	now     time.Time
	rdb     redis.UniversalClient
	prefix  string
	app     *App // the fixture's app, the handler's only one
}

func newFixture(tb testing.TB, faults sandbox.Faults) *fixture {
	tb.Helper()
	gw, url := zhimatest.StartGateway(tb, sandbox.Config{Faults: faults, Seed: 1})
	client, err := zhima.NewClient(zhima.Config{GatewayURL: url, AppID: zhimatest.AppID,
		AppPrivateKey: zhimatest.AppPrivateKeyPEM(tb), AlipayPublicKey: string(gw.AlipayPublicKeyPEM())})
	if err != nil {
		tb.Fatal(err)
	}
	srv := redistest.New(tb)
	rdb := srv.Client(tb)
	logs := new(bytes.Buffer)
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.Lock(zapcore.AddSync(logs)), zap.DebugLevel))
	f := &fixture{gateway: gw, url: url, logs: logs, now: time.Now(), rdb: rdb, prefix: srv.Prefix}
	f.app = &App{ID: zhimatest.AppID, Gateway: client}
	f.h = &Handler{Apps: map[string]*App{zhimatest.AppID: f.app}, Results: results.New(rdb, srv.Prefix, 0),
		Log: log, MaxAttempts: 3, Now: func() time.Time { return f.now }}
	return f
}

func scorePayload(tx string) *payload.Payload {
	return &payload.Payload{AppID: zhimatest.AppID, Method: zhima.MethodScoreBriefGet, TransactionID: tx, BizContent: json.RawMessage(
		`{"transaction_id":"` + tx + `","product_code":"w1010100000000002733","cert_type":"IDENTITY_CARD","cert_no":"` + applicantID + `","name":"张三","admittance_score":650}`)}
}

func task(tb testing.TB, p *payload.Payload) *asynq.Task {
	tb.Helper()
	t, err := payload.NewTask(p)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

func TestRedeliveryAfterAStoredResultMakesNoCall(t *testing.T) {
	f := newFixture(t, sandbox.Faults{})
	p := scorePayload("REDELIVER_1")
	for delivery := 1; delivery <= 3; delivery++ {
		if err := f.h.ProcessTask(context.Background(), task(t, p)); err != nil {
			t.Fatalf("delivery %d: %v", delivery, err)
		}
	}
	rec, err := f.h.Results.Get(context.Background(), p.Key())
	if err != nil || rec.State != results.Succeeded || rec.Attempts != 1 {
		t.Fatalf("record %+v, %v", rec, err)
	}
	if calls := f.gateway.Calls(p.Method, p.TransactionID); calls != 1 {
		t.Fatalf("gateway saw %d calls over 3 deliveries, want 1", calls)
	}
}

func TestTransientFailuresRetryUntilAttemptsRunOut(t *testing.T) {
	f := newFixture(t, sandbox.Faults{UnavailableRate: 1})
	p := scorePayload("EXHAUST_1")
	for attempt := 1; attempt <= 3; attempt++ {
		err := f.h.ProcessTask(context.Background(), task(t, p))
		var zerr *zhima.Error
		switch {
		case attempt < 3 && (!errors.As(err, &zerr) || !zerr.Retryable()):
			t.Fatalf("attempt %d: err = %v, want the retryable gateway error", attempt, err)
		case attempt == 3 && err != nil:
			t.Fatalf("attempt %d: err = %v, want the task ended (nil)", attempt, err)
		}
	}
	rec, _ := f.h.Results.Get(context.Background(), p.Key())
	if rec.State != results.Failed || rec.Attempts != 3 || rec.Error == nil || rec.Error.Code != "20000" {
		t.Fatalf("record %+v (error %+v)", rec, rec.Error)
	}
	if err := f.h.ProcessTask(context.Background(), task(t, p)); err != nil {
		t.Fatalf("delivery after failure: %v", err)
	}
	if calls := f.gateway.Calls(p.Method, p.TransactionID); calls != 3 {
		t.Fatalf("gateway saw %d calls, want 3", calls)
	}
}

func TestCorruptPayloadFailsOnceWithAClearError(t *testing.T) {
	f := newFixture(t, sandbox.Faults{})
	tests := []struct {
		name    string
		payload string
		record  bool
	}{
		{"not JSON", `{"app_id":"` + zhimatest.AppID + `","method":`, false},
		{"wrong method for the type", `{"app_id":"` + zhimatest.AppID + `","method":"zhima.credit.relation.query","transaction_id":"C_1","biz_content":{}}`, false},
		{"invalid biz_content", `{"app_id":"` + zhimatest.AppID + `","method":"zhima.credit.score.brief.get","transaction_id":"C_2","biz_content":{"transaction_id":"C_2","cert_no":"` + applicantID + `"}}`, true},
		{"biz_content not an object", `{"app_id":"` + zhimatest.AppID + `","method":"zhima.credit.score.brief.get","transaction_id":"C_3","biz_content":"` + applicantID + `"}`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := f.h.ProcessTask(context.Background(), asynq.NewTask(zhima.MethodScoreBriefGet, []byte(tc.payload)))
			// With a record to hold the failure the task just ends; without
			// one it is archived (SkipRetry) with the reason.
			if tc.record && err != nil || !tc.record && !errors.Is(err, asynq.SkipRetry) {
				t.Fatalf("err = %v", err)
			}
			if err != nil && strings.Contains(err.Error(), applicantID) || strings.Contains(f.logs.String(), applicantID) {
				t.Fatalf("personal data in the error or the log: %v", err)
			}
			if tc.record {
				var p payload.Payload
				_ = json.Unmarshal([]byte(tc.payload), &p)
				rec, err := f.h.Results.Get(context.Background(), p.Key())
				if err != nil || rec.State != results.Failed || rec.Error == nil || rec.Error.SubCode != zhima.SubInvalidParameter {
					t.Fatalf("record %+v, %v", rec, err)
				}
			}
		})
	}
	if st := f.gateway.Stats(); st.Calls != 0 {
		t.Fatalf("gateway saw %d calls", st.Calls)
	}
}

func TestNoAttemptStartsAfterTheWindow(t *testing.T) {
	f := newFixture(t, sandbox.Faults{SystemErrorRate: 1})
	f.h.MaxAttempts = 100
	p := scorePayload("WINDOW_1")
	if err := f.h.ProcessTask(context.Background(), task(t, p)); err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("first attempt: %v, want a retryable error", err)
	}
	// Just inside the window less its margin (a tenth, at most 10 minutes): another attempt starts.
	f.now = f.now.Add(24*time.Hour - 10*time.Minute - time.Second)
	f.h.ProcessTask(context.Background(), task(t, p))
	if calls := f.gateway.Calls(p.Method, p.TransactionID); calls != 2 {
		t.Fatalf("calls = %d, want 2", calls)
	}
	f.now = f.now.Add(2 * time.Second)
	if err := f.h.ProcessTask(context.Background(), task(t, p)); err != nil {
		t.Fatalf("attempt after the window: %v, want the task ended (nil)", err)
	}
	rec, _ := f.h.Results.Get(context.Background(), p.Key())
	if rec.State != results.Failed || rec.Error.SubCode != zhima.SubTransactionIDExpired || rec.Error.Source != "local" {
		t.Fatalf("record %+v (error %+v)", rec, rec.Error)
	}
	if calls := f.gateway.Calls(p.Method, p.TransactionID); calls != 2 {
		t.Fatalf("calls = %d after the window, want still 2", calls)
	}
}

// traceRecorder is an http.RoundTripper that keeps the trace_id header of
// the last answer.
type traceRecorder struct{ last string }

func (tr *traceRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		tr.last = resp.Header.Get("trace_id")
	}
	return resp, err
}

func TestGatewayFailureKeepsItsTraceID(t *testing.T) {
	f := newFixture(t, sandbox.Faults{UnavailableRate: 1})
	f.h.MaxAttempts = 2
	tr := new(traceRecorder)
	client, err := zhima.NewClient(zhima.Config{GatewayURL: f.url, AppID: zhimatest.AppID,
		AppPrivateKey: zhimatest.AppPrivateKeyPEM(t), AlipayPublicKey: string(f.gateway.AlipayPublicKeyPEM())},
		zhima.WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatal(err)
	}
	f.app.Gateway = client
	p := scorePayload("TRACE_1")
	for attempt, want := range []struct {
		state results.State
		log   string
	}{{results.Retrying, "gateway call failed; will retry"}, {results.Failed, "gateway call failed for good"}} {
		f.logs.Reset()
		f.h.ProcessTask(context.Background(), task(t, p))
		if tr.last == "" {
			t.Fatalf("attempt %d: the sandbox sent no trace_id", attempt+1)
		}
		rec, err := f.h.Results.Get(context.Background(), p.Key())
		if err != nil || rec.State != want.state || rec.Error == nil || rec.Error.Source != "gateway" || rec.Error.TraceID != tr.last {
			t.Fatalf("attempt %d: record %+v (error %+v), %v; want %s with trace_id %s", attempt+1, rec, rec.Error, err, want.state, tr.last)
		}
		b, _ := json.Marshal(rec)
		if !strings.Contains(string(b), `"trace_id":"`+tr.last+`"`) {
			t.Fatalf("attempt %d: record JSON %s lacks the trace_id", attempt+1, b)
		}
		var line struct {
			Msg     string `json:"msg"`
			TraceID string `json:"trace_id"`
		}
		if err := json.Unmarshal(bytes.TrimSpace(f.logs.Bytes()), &line); err != nil || line.Msg != want.log || line.TraceID != tr.last {
			t.Fatalf("attempt %d: log %s (%v), want %q with trace_id %s", attempt+1, f.logs.String(), err, want.log, tr.last)
		}
	}
}

func TestRetryDelayGrowsWithJitterUpToTheCap(t *testing.T) {
	delay := RetryDelay(100*time.Millisecond, 2*time.Second)
	for n, want := range map[int]time.Duration{0: 100 * time.Millisecond, 1: 200 * time.Millisecond, 3: 800 * time.Millisecond, 5: 2 * time.Second, 80: 2 * time.Second} {
		for range 50 {
			if d := delay(n, nil, nil); d < want/2 || d > want {
				t.Fatalf("retry %d: delay %s outside [%s, %s]", n, d, want/2, want)
			}
		}
	}
}

func TestSealedPayloads(t *testing.T) {
	keys, err := seal.Parse(zhimatest.DataKeys)
	if err != nil {
		t.Fatal(err)
	}
	sealedTask := func(t *testing.T, tx string) *asynq.Task {
		p := scorePayload(tx)
		if err := p.Seal(keys); err != nil {
			t.Fatal(err)
		}
		if p.Sealed == "" || p.BizContent != nil {
			t.Fatalf("payload not sealed: %+v", p)
		}
		return task(t, p)
	}
	t.Run("a worker with the key opens and runs it", func(t *testing.T) {
		f := newFixture(t, sandbox.Faults{})
		f.h.Keys = keys
		if err := f.h.ProcessTask(context.Background(), sealedTask(t, "SEALED_1")); err != nil {
			t.Fatal(err)
		}
		if rec, _ := f.h.Results.Get(context.Background(), scorePayload("SEALED_1").Key()); rec.State != results.Succeeded {
			t.Fatalf("record %+v", rec)
		}
	})
	t.Run("a worker without the key hands the task back", func(t *testing.T) {
		f := newFixture(t, sandbox.Faults{})
		other, _ := seal.Generate("other")
		f.h.Keys, _ = seal.Parse(other)
		err := f.h.ProcessTask(context.Background(), sealedTask(t, "SEALED_2"))
		if !errors.Is(err, seal.ErrUnknownKey) || errors.Is(err, asynq.SkipRetry) {
			t.Fatalf("err = %v, want a retryable unknown-key error", err)
		}
		if _, err := f.h.Results.Get(context.Background(), scorePayload("SEALED_2").Key()); !errors.Is(err, results.ErrNotFound) {
			t.Fatalf("the job was given up: %v", err)
		}
	})
	t.Run("a payload moved to another transaction fails", func(t *testing.T) {
		f := newFixture(t, sandbox.Faults{})
		f.h.Keys = keys
		p := scorePayload("SEALED_3")
		p.Seal(keys)
		p.TransactionID = "SEALED_4" // the sealed part is bound to SEALED_3
		if err := f.h.ProcessTask(context.Background(), task(t, p)); err != nil {
			t.Fatal(err)
		}
		rec, _ := f.h.Results.Get(context.Background(), p.Key())
		if rec.State != results.Failed || !strings.Contains(rec.Error.Msg, "corrupt") {
			t.Fatalf("record %+v (error %+v)", rec, rec.Error)
		}
		if f.gateway.Stats().Calls != 0 {
			t.Fatal("a payload that failed to open reached the gateway")
		}
	})
}

func TestUnsealedPayloads(t *testing.T) {
	keys, err := seal.Parse(zhimatest.DataKeys)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("a worker with keys fails them without a call and logs once", func(t *testing.T) {
		f := newFixture(t, sandbox.Faults{})
		f.h.Keys = keys
		const jobs = 25
		for i := range jobs {
			p := scorePayload(fmt.Sprintf("UNSEALED_%d", i))
			if err := f.h.ProcessTask(context.Background(), task(t, p)); err != nil {
				t.Fatalf("job %d: %v, want the task ended (nil)", i, err)
			}
			rec, err := f.h.Results.Get(context.Background(), p.Key())
			if err != nil {
				t.Fatalf("job %d: %v", i, err)
			}
			if rec.State != results.Failed || rec.Attempts != 0 || rec.Error == nil ||
				rec.Error.Source != string(zhima.SourceLocal) || !strings.HasSuffix(rec.Error.Msg, payload.ErrNotSealed.Error()) {
				t.Fatalf("job %d: state %s after %d attempts, error %+v; want failed with ErrNotSealed", i, rec.State, rec.Attempts, rec.Error)
			}
		}
		if st := f.gateway.Stats(); st.Calls != 0 {
			t.Fatalf("the gateway saw %d calls for unsealed payloads", st.Calls)
		}
		logs := f.logs.String()
		if n := strings.Count(logs, "not sealed"); n != 1 || strings.Count(logs, "\n") != 1 {
			t.Errorf("%d jobs left %d lines naming the refusal, want 1:\n%s", jobs, n, logs)
		}
		for _, pd := range []string{applicantID, "张三"} {
			if strings.Contains(logs, pd) {
				t.Errorf("the log holds personal data %q:\n%s", pd, logs)
			}
		}
	})
	t.Run("a worker that runs plaintext too runs them", func(t *testing.T) {
		plain, err := seal.Parse("plaintext")
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []*seal.Keyring{plain, nil} {
			f := newFixture(t, sandbox.Faults{})
			f.h.Keys = k
			p := scorePayload("PLAIN_1")
			if err := f.h.ProcessTask(context.Background(), task(t, p)); err != nil {
				t.Fatal(err)
			}
			if rec, _ := f.h.Results.Get(context.Background(), p.Key()); rec == nil || rec.State != results.Succeeded {
				t.Fatalf("keys %v: record %+v", k, rec)
			}
		}
	})
}

func TestShortRetriesAreMadeWithinTheDelivery(t *testing.T) {
	f := newFixture(t, sandbox.Faults{UnavailableRate: 1})
	f.h.Backoff = func(n int, _ error, _ *asynq.Task) time.Duration { return time.Duration(n+1) * time.Millisecond }

	// Every retry is due within InlineBelow: one delivery makes all three
	// attempts and ends the task with the job failed.
	f.h.InlineBelow = 50 * time.Millisecond
	p := scorePayload("INLINE_1")
	if err := f.h.ProcessTask(context.Background(), task(t, p)); err != nil {
		t.Fatalf("one delivery: %v; want the task ended", err)
	}
	rec, _ := f.h.Results.Get(context.Background(), p.Key())
	if rec.State != results.Failed || rec.Attempts != 3 || f.gateway.Calls(p.Method, p.TransactionID) != 3 {
		t.Fatalf("record %+v after %d calls; want failed after 3", rec, f.gateway.Calls(p.Method, p.TransactionID))
	}

	// The second retry is due later than InlineBelow: the delivery makes two
	// attempts and hands the task to asynq with the gateway's error.
	f.h.InlineBelow = 2 * time.Millisecond
	p = scorePayload("INLINE_2")
	err := f.h.ProcessTask(context.Background(), task(t, p))
	if zerr, ok := errors.AsType[*zhima.Error](err); !ok || !zerr.Retryable() {
		t.Fatalf("delivery: %v; want the retryable gateway error", err)
	}
	if rec, _ := f.h.Results.Get(context.Background(), p.Key()); rec.State != results.Retrying || rec.Attempts != 2 {
		t.Fatalf("record %+v; want retrying after 2 attempts", rec)
	}
}

// TestAJobOfAnotherAppFailsWithoutACall: a task whose app_id is not the
// worker's is never signed as the worker's app.
func TestAJobOfAnotherAppFailsWithoutACall(t *testing.T) {
	f := newFixture(t, sandbox.Faults{})
	p := scorePayload("OTHER_APP_1")
	p.AppID = "2021009999999999"
	if err := f.h.ProcessTask(context.Background(), task(t, p)); err != nil {
		t.Fatalf("ProcessTask = %v, want the task ended", err)
	}
	rec, err := f.h.Results.Get(context.Background(), p.Key())
	if err != nil || rec.State != results.Failed || rec.Error == nil || rec.Error.Source != "local" || !strings.Contains(rec.Error.Msg, "not one of this worker's apps") {
		t.Fatalf("record %+v (error %+v), %v; want failed locally, saying the app is not the worker's", rec, rec.Error, err)
	}
	if strings.Contains(rec.Error.Msg, p.AppID) || strings.Contains(f.logs.String(), p.AppID) {
		t.Error("the task's app_id was echoed")
	}
	if n := f.gateway.Stats().Calls; n != 0 {
		t.Errorf("gateway saw %d calls, want none", n)
	}
	// The worker's own app still runs.
	own := scorePayload("OWN_APP_1")
	if err := f.h.ProcessTask(context.Background(), task(t, own)); err != nil {
		t.Fatalf("own app's job: %v", err)
	}
}
