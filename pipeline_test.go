package zhimaq_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/redistest"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/worker"
	"github.com/zhimaq/zhimaq/internal/workertest"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// clock is real time plus an offset that a test can advance.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// pipeline is a producer, a worker and the sandbox gateway over one Redis.
type pipeline struct {
	producer *zhimaq.Producer
	gateway  *sandbox.Server
	clock    *clock
	logs     *zhimatest.SyncBuffer // the worker's log, JSON lines at debug level
	redis    *redistest.Server
	rdb      redis.UniversalClient
}

// startPipeline runs the whole path in-process: Submit -> Redis -> worker ->
// sandbox (really checking signatures) -> records. change adjusts the
// worker's configuration.
func startPipeline(tb testing.TB, faults sandbox.Faults, change func(*config.Config)) *pipeline {
	tb.Helper()
	clk := &clock{}
	s := workertest.Start(tb, workertest.Options{
		Gateway: sandbox.Config{Faults: faults, Seed: 7, Now: clk.Now},
		Change:  change,
		Worker:  worker.Options{Now: clk.Now},
	})
	cfg := s.Config
	p, err := zhimaq.NewProducer(s.RDB, zhimaq.ProducerConfig{AppID: zhimatest.AppID, DataKeys: cfg.DataKeys, Queue: cfg.Queue, KeyPrefix: cfg.KeyPrefix,
		DedupWindow: cfg.DedupWindow, Now: clk.Now})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return &pipeline{producer: p, gateway: s.Gateway, clock: clk, logs: s.Logs, redis: s.Redis, rdb: s.RDB}
}

// submit submits a job that must be accepted.
func (p *pipeline) submit(tb testing.TB, job zhimaq.Job) *zhimaq.Submission {
	tb.Helper()
	rec, err := p.producer.Submit(context.Background(), job)
	if err != nil {
		tb.Fatal(err)
	}
	return rec
}

// wait blocks until every job has finished, at most 60s.
func (p *pipeline) wait(tb testing.TB, jobs ...zhimaq.Job) []*zhimaq.Record {
	tb.Helper()
	refs := make([]zhimaq.Ref, len(jobs))
	for i, j := range jobs {
		refs[i] = zhimaq.Ref{Method: j.Method, TransactionID: txid(tb, j)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	recs, err := p.producer.Wait(ctx, refs, zhimaq.WaitOptions{Interval: 20 * time.Millisecond})
	if err != nil {
		tb.Fatalf("wait: %v", err)
	}
	return recs
}

func txid(tb testing.TB, j zhimaq.Job) string {
	tb.Helper()
	var b struct {
		TransactionID string `json:"transaction_id"`
	}
	if err := json.Unmarshal(j.BizContent, &b); err != nil {
		tb.Fatal(err)
	}
	return b.TransactionID
}

// Test data: fake people with valid-format ID numbers.
const (
	applicantID = "11010519491231002X"
	contactID   = "110101199003074477"
)

func scoreJob(tx string, admittance int) zhimaq.Job {
	return zhimaq.Job{Method: zhimaq.MethodScoreBriefGet, BizContent: zhimatest.ScoreBiz(tx, applicantID, "张三", admittance)}
}

func relationJob(tx string) zhimaq.Job {
	return zhimaq.Job{Method: zhimaq.MethodRelationQuery, BizContent: zhimatest.RelationBiz(tx, applicantID, "张三", "15843991158", "李四", "family")}
}

func certificationJob(tx string) zhimaq.Job {
	return zhimaq.Job{Method: zhimaq.MethodCertificationInitialize, BizContent: zhimatest.CertificationBiz(tx, contactID, "李四", "")}
}

func TestPipelineSucceedsForEveryMethod(t *testing.T) {
	p := startPipeline(t, sandbox.Faults{}, nil)
	jobs := []zhimaq.Job{scoreJob("PS_SCORE_1", 650), relationJob("PS_REL_1"), certificationJob("PS_CERT_1")}
	for _, j := range jobs {
		if rec := p.submit(t, j); rec.State != zhimaq.Queued || rec.Duplicate || rec.EnqueuedAt == nil {
			t.Fatalf("submit: %+v", rec)
		}
	}
	for i, rec := range p.wait(t, jobs...) {
		if rec.State != zhimaq.Succeeded || rec.Attempts != 1 || rec.Error != nil {
			t.Fatalf("job %d: %+v", i, rec)
		}
		var node struct {
			Code, BizNo, IsAdmittance, RelationRank string
		}
		if err := json.Unmarshal(rec.Response, &node); err != nil || node.Code != "10000" {
			t.Fatalf("job %d response %s: %v", i, rec.Response, err)
		}
	}
	if st := p.gateway.Stats(); st.Calls != 3 || st.Billed != 3 {
		t.Fatalf("sandbox saw %d calls, %d billed; want 3, 3", st.Calls, st.Billed)
	}
}

func TestPipelineRetriesTransientErrorsUntilSuccess(t *testing.T) {
	for name, faults := range map[string]sandbox.Faults{
		"SYSTEM_ERROR":   {SystemErrorRate: 0.5},
		"20000":          {UnavailableRate: 0.5},
		"HTTP 502":       {HTTP502Rate: 0.5},
		"bad signatures": {BadSignRate: 0.5},
	} {
		t.Run(name, func(t *testing.T) {
			p := startPipeline(t, faults, nil)
			var jobs []zhimaq.Job
			for i := range 20 {
				jobs = append(jobs, scoreJob(fmt.Sprintf("RT_%d", i), 600))
				p.submit(t, jobs[i])
			}
			retried := 0
			for i, rec := range p.wait(t, jobs...) {
				if rec.State != zhimaq.Succeeded {
					t.Fatalf("job %d: %+v", i, rec)
				}
				if calls := p.gateway.Calls(zhimaq.MethodScoreBriefGet, txid(t, jobs[i])); int64(rec.Attempts) != calls {
					t.Errorf("job %d: %d attempts recorded, sandbox saw %d calls", i, rec.Attempts, calls)
				}
				if rec.Attempts > 1 {
					retried++
				}
			}
			if retried == 0 {
				t.Fatal("no job needed a retry; the fault did not bite")
			}
			if st := p.gateway.Stats(); st.Billed != 20 {
				t.Fatalf("billed %d, want 20", st.Billed)
			}
		})
	}
}

func TestPipelineDoesNotRetryBusinessErrors(t *testing.T) {
	p := startPipeline(t, sandbox.Faults{}, nil)
	job := scoreJob("BIZ_1", 650)
	job.BizContent = json.RawMessage(strings.Replace(string(job.BizContent), "w1010100000000002733", "w1010100000000009999", 1))
	p.submit(t, job)
	rec := p.wait(t, job)[0]
	if rec.State != zhimaq.Failed || rec.Attempts != 1 || rec.Error == nil ||
		rec.Error.Source != "gateway" || rec.Error.SubCode != "API_PRODUCT_NOT_MATCH" || rec.Response != nil {
		t.Fatalf("got %+v (error %+v)", rec, rec.Error)
	}
	if calls := p.gateway.Calls(job.Method, "BIZ_1"); calls != 1 {
		t.Fatalf("sandbox saw %d calls, want 1", calls)
	}
}

func TestPipelineDeduplicatesByTransactionID(t *testing.T) {
	p := startPipeline(t, sandbox.Faults{}, nil)
	first := scoreJob("DUP_1", 650)
	p.submit(t, first)
	done := p.wait(t, first)[0]

	t.Run("same parameters get the first job", func(t *testing.T) {
		reordered := zhimaq.Job{Method: first.Method, BizContent: json.RawMessage(
			`{"admittance_score":650,"name":"张三","cert_no":"` + applicantID + `","cert_type":"IDENTITY_CARD","product_code":"w1010100000000002733","transaction_id":"DUP_1"}`)}
		rec := p.submit(t, reordered)
		if !rec.Duplicate || rec.State != zhimaq.Succeeded || string(rec.Response) != string(done.Response) {
			t.Fatalf("got %+v", rec)
		}
	})
	t.Run("other parameters are rejected and never sent", func(t *testing.T) {
		rec := p.submit(t, scoreJob("DUP_1", 700))
		if rec.State != zhimaq.Rejected || rec.Error == nil || rec.Error.SubCode != "TRANSACTION_ID_REPEAT" || rec.Error.Source != "local" {
			t.Fatalf("got %+v", rec)
		}
	})
	if calls, st := p.gateway.Calls(first.Method, "DUP_1"), p.gateway.Stats(); calls != 1 || st.Billed != 1 {
		t.Fatalf("sandbox saw %d calls, billed %d; want 1, 1", calls, st.Billed)
	}
	t.Run("concurrent producers: one claim wins", func(t *testing.T) {
		var wg sync.WaitGroup
		recs := make([]*zhimaq.Submission, 8)
		for i := range recs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				recs[i] = p.submit(t, scoreJob("RACE_1", 650))
			}()
		}
		wg.Wait()
		fresh := 0
		for _, r := range recs {
			if !r.Duplicate {
				fresh++
			}
		}
		if fresh != 1 {
			t.Fatalf("%d submissions were treated as new, want 1", fresh)
		}
		p.wait(t, scoreJob("RACE_1", 650))
		if calls := p.gateway.Calls(first.Method, "RACE_1"); calls != 1 {
			t.Fatalf("sandbox saw %d calls for RACE_1, want 1", calls)
		}
	})
}

func TestPipelineStopsRetryingWhenTheWindowCloses(t *testing.T) {
	p := startPipeline(t, sandbox.Faults{SystemErrorRate: 1}, func(c *config.Config) {
		c.RetryBaseDelay, c.RetryMaxDelay = 200*time.Millisecond, 200*time.Millisecond
		c.RetryMaxAttempts = 1000
	})
	job := relationJob("WIN_1")
	p.submit(t, job)
	ref := zhimaq.Ref{Method: job.Method, TransactionID: "WIN_1"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec, err := p.producer.Result(context.Background(), ref)
		if err == nil && rec.Attempts >= 2 && rec.State == zhimaq.Retrying {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job never retried: %+v %v", rec, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.clock.Advance(24 * time.Hour)
	rec := p.wait(t, job)[0]
	if rec.State != zhimaq.Failed || rec.Error == nil || rec.Error.Source != "local" || rec.Error.SubCode != "TRANSACTION_ID_EXPIRED" {
		t.Fatalf("got %+v (error %+v)", rec, rec.Error)
	}
	if calls := p.gateway.Calls(job.Method, "WIN_1"); int64(rec.Attempts) != calls {
		t.Fatalf("record says %d attempts, sandbox saw %d calls", rec.Attempts, calls)
	}
}

func TestPipelineRejectsBadInputWithoutCalling(t *testing.T) {
	p := startPipeline(t, sandbox.Faults{}, nil)
	bad := scoreJob("BAD_1", 650)
	bad.BizContent = json.RawMessage(strings.Replace(string(bad.BizContent), applicantID, "110105194912310021", 1))
	rec := p.submit(t, bad)
	if rec.State != zhimaq.Rejected || rec.Error == nil || rec.Error.SubCode != "INVALID_PARAMETER" || !strings.HasPrefix(rec.Error.SubMsg, "cert_no:") {
		t.Fatalf("got %+v (error %+v)", rec, rec.Error)
	}
	if b, _ := json.Marshal(rec); strings.Contains(string(b), "11010519491231") || strings.Contains(string(b), "张三") {
		t.Fatalf("record holds personal data: %s", b)
	}
	if _, err := p.producer.Result(context.Background(), zhimaq.Ref{Method: bad.Method, TransactionID: "BAD_1"}); !errors.Is(err, zhimaq.ErrNotFound) {
		t.Fatalf("a rejected job left a record: %v", err)
	}
	if st := p.gateway.Stats(); st.Calls != 0 {
		t.Fatalf("sandbox saw %d calls", st.Calls)
	}
}

// TestBatchOf1000WithSystemErrors is the acceptance run of a batch: 1,000
// jobs, 10% SYSTEM_ERROR. Every job must succeed, the gateway must bill
// exactly 1,000 calls, and no record may claim more attempts than the calls
// the gateway saw for it. Run it alone with
// go test -run TestBatchOf1000WithSystemErrors -v .
func TestBatchOf1000WithSystemErrors(t *testing.T) {
	const n = 1000
	p := startPipeline(t, sandbox.Faults{SystemErrorRate: 0.1}, func(c *config.Config) { c.WorkerConcurrency = 50 })
	start := time.Now()
	jobs := make([]zhimaq.Job, n)
	for i := range jobs {
		switch i % 3 {
		case 0:
			jobs[i] = scoreJob(fmt.Sprintf("B1K_%04d", i), 350+i%600)
		case 1:
			jobs[i] = relationJob(fmt.Sprintf("B1K_%04d", i))
		default:
			jobs[i] = certificationJob(fmt.Sprintf("B1K_%04d", i))
		}
		p.submit(t, jobs[i])
	}
	recs := p.wait(t, jobs...)
	elapsed := time.Since(start)
	succeeded, attempts, retried, overCounted := 0, 0, 0, 0
	for i, rec := range recs {
		if rec.State == zhimaq.Succeeded {
			succeeded++
		}
		attempts += rec.Attempts
		if rec.Attempts > 1 {
			retried++
		}
		if calls := p.gateway.Calls(jobs[i].Method, txid(t, jobs[i])); int64(rec.Attempts) > calls {
			overCounted++
		}
	}
	st := p.gateway.Stats()
	t.Logf("jobs=%d succeeded=%d retried=%d attempts=%d gateway_calls=%d billed=%d system_errors=%d attempts_over_calls=%d elapsed=%s",
		n, succeeded, retried, attempts, st.Calls, st.Billed, st.Codes["40004/SYSTEM_ERROR"], overCounted, elapsed.Round(time.Millisecond))
	if succeeded != n || st.Billed != n || overCounted != 0 {
		t.Fatalf("want every job succeeded, %d billed, no over-counted attempts", n)
	}
	if retried == 0 {
		t.Fatal("no job was retried; the fault did not bite")
	}
}

func TestPersonalDataStaysOutOfLogsAndRecords(t *testing.T) {
	p := startPipeline(t, sandbox.Faults{SystemErrorRate: 0.3, UnavailableRate: 0.2, BadSignRate: 0.1}, nil)
	jobs := []zhimaq.Job{scoreJob("PII_1", 650), relationJob("PII_2"), certificationJob("PII_3")}
	badProduct := relationJob("PII_4")
	badProduct.BizContent = json.RawMessage(strings.Replace(string(badProduct.BizContent), "w1010100001000001200", "w1010100001000009999", 1))
	jobs = append(jobs, badProduct)
	var out bytes.Buffer
	for _, j := range jobs {
		rec := p.submit(t, j)
		json.NewEncoder(&out).Encode(rec)
	}
	badID := scoreJob("PII_5", 650)
	badID.BizContent = json.RawMessage(strings.Replace(string(badID.BizContent), applicantID, "110105194912310021", 1))
	rec := p.submit(t, badID)
	json.NewEncoder(&out).Encode(rec)
	for _, rec := range p.wait(t, jobs...) {
		json.NewEncoder(&out).Encode(rec)
	}
	logs := p.logs.String()
	if !strings.Contains(logs, "PII_1") {
		t.Fatalf("the worker logged nothing about the jobs:\n%s", logs)
	}
	for _, pii := range []string{applicantID, "11010519491231", contactID, "张三", "李四", "15843991158"} {
		if strings.Contains(logs, pii) {
			t.Errorf("worker log holds %q", pii)
		}
		if strings.Contains(out.String(), pii) {
			t.Errorf("a record holds %q", pii)
		}
	}
}
