package zhimaq_test

import (
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/worker"
	"github.com/zhimaq/zhimaq/internal/workertest"
	"github.com/zhimaq/zhimaq/internal/zhima"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// TestCertificateModeRotationMidBatch runs a batch through two workers
// against a gateway in certificate mode with AES that rotates its Alipay
// certificate part-way and signs some answers with a rogue certificate: no
// job is lost, none is billed twice, a rogue answer never becomes a record,
// and each worker downloads each new certificate once at most (they share
// what they download through Redis).
func TestCertificateModeRotationMidBatch(t *testing.T) {
	const n = 300
	aes := base64.StdEncoding.EncodeToString([]byte("pipeline-aes-key"))
	key, err := zhima.ParseAESKey(aes)
	if err != nil {
		t.Fatal(err)
	}
	s := workertest.Start(t, workertest.Options{
		Gateway: sandbox.Config{Certs: zhimatest.PKI(t), AESKey: key, RotateCertAfter: n / 3, Seed: 11,
			Faults: sandbox.Faults{RogueCertRate: 0.1, SystemErrorRate: 0.05}},
		Change: func(c *config.Config) { c.EncryptKey = aes; c.WorkerConcurrency = 10 },
	})
	s.StartWorker(t, worker.Options{})
	cfg := s.Config
	p, err := zhimaq.NewProducer(s.RDB, zhimaq.ProducerConfig{AppID: zhimatest.AppID, DataKeys: cfg.DataKeys, Queue: cfg.Queue,
		KeyPrefix: cfg.KeyPrefix, DedupWindow: cfg.DedupWindow})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pl := &pipeline{producer: p, gateway: s.Gateway}
	jobs := make([]zhimaq.Job, n)
	for i := range jobs {
		jobs[i] = scoreJob(fmt.Sprintf("CM_%04d", i), 400+i)
		pl.submit(t, jobs[i])
	}
	recs := pl.wait(t, jobs...)
	for i, rec := range recs {
		if rec.State != zhimaq.Succeeded {
			t.Fatalf("job %d: %s %+v", i, rec.State, rec.Error)
		}
	}
	st := s.Gateway.Stats()
	t.Logf("calls=%d billed=%d rogue=%d rotations=%d downloads=%d", st.Calls, st.Billed, st.Codes["rogue_cert"], st.CertRotations, st.CertDownloads)
	if st.Billed != n {
		t.Fatalf("billed %d calls for %d jobs", st.Billed, n)
	}
	if st.CertRotations != 1 || st.Codes["rogue_cert"] == 0 {
		t.Fatalf("rotations %d, rogue answers %d: the faults did not bite", st.CertRotations, st.Codes["rogue_cert"])
	}
	// Two new SNs (the rotated certificate, the rogue one), two workers.
	if st.CertDownloads < 2 || st.CertDownloads > 4 {
		t.Fatalf("%d downloads; want 2 to 4 (each new SN at most once per worker)", st.CertDownloads)
	}
}
