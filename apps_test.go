package zhimaq_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/worker"
	"github.com/zhimaq/zhimaq/internal/workertest"
	"github.com/zhimaq/zhimaq/internal/zhima"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// appB is the second app of the tests with two apps.
const appB = "2021000000000002"

// twoApps is a deployment of two apps, each against a sandbox of its own:
// zhimatest.AppID in public-key mode, appB in certificate mode with AES.
type twoApps struct {
	stack    *workertest.Stack
	gatewayB *sandbox.Server
	producer *zhimaq.Producer
}

// startTwoApps writes the apps file (qpsA and qpsB, 0 = no limit) and
// starts a worker that reads it.
func startTwoApps(t *testing.T, qpsA, qpsB float64) *twoApps {
	t.Helper()
	aes := base64.StdEncoding.EncodeToString([]byte("second-app-key16"))
	key, err := zhima.ParseAESKey(aes)
	if err != nil {
		t.Fatal(err)
	}
	pki, err := sandbox.OpenPKI(t.TempDir(), appB, zhimatest.AppPublicKey(t))
	if err != nil {
		t.Fatal(err)
	}
	gwB, urlB := zhimatest.StartGateway(t, sandbox.Config{AppID: appB, Certs: pki, AESKey: key, Seed: 5})
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	s := workertest.Start(t, workertest.Options{
		Gateway: sandbox.Config{Seed: 4},
		Change: func(c *config.Config) {
			key := write("app.pem", c.AppPrivateKey)
			apps := fmt.Sprintf(`apps:
  - app_id: %q
    gateway_url: %s
    app_private_key_file: %s
    alipay_public_key_file: %s
    qps: %g
  - app_id: %q
    gateway_url: %s
    app_private_key_file: %s
    app_cert_file: %s
    alipay_cert_file: %s
    alipay_root_cert_file: %s
    encrypt_key: %s
    qps: %g
`, zhimatest.AppID, c.GatewayURL, key, write("alipay-a.pem", c.AlipayPublicKey), qpsA,
				appB, urlB, key, pki.AppCertPath(), pki.AlipayCertPath(), pki.RootCertPath(), aes, qpsB)
			// Fewer handlers than either app's backlog: an app queued
			// behind another's jobs would wait for them.
			c.WorkerConcurrency = 6
			if err := c.UseAppsFile(write("apps.yaml", apps)); err != nil {
				t.Fatal(err)
			}
		},
	})
	cfg := s.Config
	p, err := zhimaq.NewProducer(s.RDB, zhimaq.ProducerConfig{AppID: zhimatest.AppID, OtherAppIDs: []string{appB},
		DataKeys: cfg.DataKeys, Queue: cfg.Queue, KeyPrefix: cfg.KeyPrefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &twoApps{stack: s, gatewayB: gwB, producer: p}
}

// submitBoth submits n score jobs for each app, the same transaction ids
// for both, and returns their refs (app A's first).
func (d *twoApps) submitBoth(t *testing.T, prefix string, n int) []zhimaq.Ref {
	t.Helper()
	return append(d.submit(t, zhimatest.AppID, prefix, n), d.submit(t, appB, prefix, n)...)
}

// submit submits n score jobs for app and returns their refs.
func (d *twoApps) submit(t *testing.T, app, prefix string, n int) []zhimaq.Ref {
	t.Helper()
	var refs []zhimaq.Ref
	for i := range n {
		tx := fmt.Sprintf("%s_%03d", prefix, i)
		job := scoreJob(tx, 600)
		job.AppID = app
		sub, err := d.producer.Submit(context.Background(), job)
		if err != nil || sub.State != zhimaq.Queued || sub.AppID != app {
			t.Fatalf("submit %s of %s: %+v, %v", tx, app, sub, err)
		}
		refs = append(refs, zhimaq.Ref{AppID: app, Method: job.Method, TransactionID: tx})
	}
	return refs
}

func (d *twoApps) wait(t *testing.T, refs []zhimaq.Ref) []*zhimaq.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	recs, err := d.producer.Wait(ctx, refs, zhimaq.WaitOptions{Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return recs
}

// TestTwoAppsTwoModesTwoSandboxes: one worker serves two apps in different
// modes, each job signed as its own app and sent to its own gateway; the
// same transaction_id in both apps is two transactions, each billed once.
func TestTwoAppsTwoModesTwoSandboxes(t *testing.T) {
	d := startTwoApps(t, 0, 0)
	d.stack.Gateway.SetFaults(sandbox.Faults{SystemErrorRate: 0.2})
	d.gatewayB.SetFaults(sandbox.Faults{SystemErrorRate: 0.2})
	const n = 25
	recs := d.wait(t, d.submitBoth(t, "TWO", n))
	for i, rec := range recs {
		want := zhimatest.AppID
		if i >= n {
			want = appB
		}
		if rec.State != zhimaq.Succeeded || rec.AppID != want {
			t.Fatalf("job %d: %s of app %q (%+v), want succeeded of %s", i, rec.State, rec.AppID, rec.Error, want)
		}
	}
	for name, gw := range map[string]*sandbox.Server{"A": d.stack.Gateway, "B": d.gatewayB} {
		if st := gw.Stats(); st.Billed != n {
			t.Errorf("gateway %s billed %d calls, want %d (calls %d, codes %v)", name, st.Billed, n, st.Calls, st.Codes)
		}
	}
	// A job naming no app is the first app's; one naming another app is refused.
	job := scoreJob("TWO_000", 600)
	if sub, err := d.producer.Submit(context.Background(), job); err != nil || !sub.Duplicate || sub.AppID != zhimatest.AppID {
		t.Errorf("job without app_id: %+v, %v; want the first app's duplicate", sub, err)
	}
	job.AppID = "2021000000000009"
	if sub, err := d.producer.Submit(context.Background(), job); err != nil || sub.State != zhimaq.Rejected || sub.Error.SubMsg == "" || sub.AppID != "" {
		t.Errorf("job of an unknown app: %+v, %v; want rejected", sub, err)
	}
}

// TestAppsKeepTheirOwnQuotaAcrossWorkers: two workers share each app's
// quota, and one app's backlog does not slow the other's calls.
func TestAppsKeepTheirOwnQuotaAcrossWorkers(t *testing.T) {
	const qpsA, qpsB, n = 10, 5, 20
	d := startTwoApps(t, qpsA, qpsB)
	d.stack.StartWorker(t, worker.Options{})
	// A's 2n jobs are queued before B's n, and A's quota is twice B's.
	refs := d.submit(t, zhimatest.AppID, "QUOTA", 2*n)
	submittedB := time.Now()
	refs = append(refs, d.submit(t, appB, "QUOTA", n)...)
	recs := d.wait(t, refs)
	calls := map[string][]time.Time{}
	for _, rec := range recs {
		if rec.State != zhimaq.Succeeded || rec.FirstCallAt == nil {
			t.Fatalf("%s of %s: %s", rec.TransactionID, rec.AppID, rec.State)
		}
		calls[rec.AppID] = append(calls[rec.AppID], *rec.FirstCallAt)
	}
	for app, qps := range map[string]int{zhimatest.AppID: qpsA, appB: qpsB} {
		ts := calls[app]
		slices.SortFunc(ts, time.Time.Compare)
		// The first call of a job is when the worker began it, just after
		// its slot: a few ms of scheduling may join two slots' calls.
		if most := zhimatest.MostInWindow(ts, time.Second); most > qps+1 {
			t.Errorf("app %s: %d calls in one second, quota %d", app, most, qps)
		}
		// Each app drains at its own quota: B is not held behind A's backlog.
		if app == appB && ts[0].Sub(submittedB) > time.Second {
			t.Errorf("app B's first call came %s after its jobs: they waited behind A's", ts[0].Sub(submittedB))
		}
		span, want := ts[len(ts)-1].Sub(ts[0]), time.Duration(len(ts)-1)*time.Second/time.Duration(qps)
		if span < want*9/10 || span > want+1500*time.Millisecond {
			t.Errorf("app %s: %d calls over %s, want about %s at %d/s", app, len(ts), span, want, qps)
		}
	}
}

// TestInteractiveJobsGoFirst: jobs of the interactive lane, submitted
// behind a batch backlog of several seconds, run within about a second,
// and the batch goes on at the quota.
func TestInteractiveJobsGoFirst(t *testing.T) {
	const qps, backlog = 10, 60
	p := startPipeline(t, sandbox.Faults{}, func(c *config.Config) { c.QPS = qps })
	ctx := context.Background()
	var batch []zhimaq.Job
	for i := range backlog {
		batch = append(batch, scoreJob(fmt.Sprintf("LANE_BATCH_%03d", i), 600))
		p.submit(t, batch[i])
	}
	time.Sleep(500 * time.Millisecond)
	var interactive []zhimaq.Job
	submitted := map[string]time.Time{}
	for i := range 3 {
		job := scoreJob(fmt.Sprintf("LANE_LIVE_%d", i), 600)
		job.Lane = "interactive"
		submitted[txid(t, job)] = time.Now()
		if sub, err := p.producer.Submit(ctx, job); err != nil || sub.State != zhimaq.Queued {
			t.Fatalf("interactive submit: %+v, %v", sub, err)
		}
		interactive = append(interactive, job)
		time.Sleep(200 * time.Millisecond)
	}
	for _, rec := range p.wait(t, interactive...) {
		took := rec.UpdatedAt.Sub(submitted[rec.TransactionID])
		if rec.State != zhimaq.Succeeded || took > 1500*time.Millisecond {
			t.Errorf("interactive %s: %s after %s, want succeeded within 1.5 s (the batch backlog is %d s)", rec.TransactionID, rec.State, took, backlog/qps)
		}
	}
	recs := p.wait(t, batch...)
	last := recs[0].UpdatedAt
	for _, rec := range recs {
		if rec.UpdatedAt.After(last) {
			last = rec.UpdatedAt
		}
	}
	for _, job := range interactive {
		if submitted[txid(t, job)].After(last) {
			t.Fatal("the batch drained before the interactive jobs came: the test proves nothing")
		}
	}
}
