package zhimaq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/config"
	"github.com/zhimaq/zhimaq/internal/keyspace"
	"github.com/zhimaq/zhimaq/internal/redistest"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/seal"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// personalData is every personal value the test jobs carry.
var personalData = []string{applicantID, contactID, "张三", "李四", "15843991158", "RkFDRVBJQ1RVUkVfb2ZfYXBwbGljYW50XzAwMA==", "auth-token-of-merchant-b"}

func piiJobs() []zhimaq.Job {
	cert := certificationJob("SEAL_CERT")
	var biz map[string]string
	json.Unmarshal(cert.BizContent, &biz)
	biz["face_contrast_picture"] = "RkFDRVBJQ1RVUkVfb2ZfYXBwbGljYW50XzAwMA=="
	cert.BizContent, _ = json.Marshal(biz)
	score := scoreJob("SEAL_SCORE", 650)
	score.AppAuthToken = "auth-token-of-merchant-b"
	return []zhimaq.Job{score, relationJob("SEAL_REL"), cert}
}

// dumpRedis returns every value under the test's prefix and asynq queue,
// whatever its type, as one string.
func dumpRedis(tb testing.TB, rdb redis.UniversalClient, srv *redistest.Server) (string, int) {
	tb.Helper()
	ctx := context.Background()
	var all strings.Builder
	keys := 0
	for _, k := range srv.Keys(tb, srv.Prefix+"*", keyspace.Queue(srv.Queue), keyspace.Queues(srv.Queue)) {
		var v any
		var err error
		typ := rdb.Type(ctx, k).Val()
		if typ == "none" {
			continue // deleted since SCAN saw it (asynq drops finished tasks)
		}
		keys++
		switch typ {
		case "string":
			v, err = rdb.Get(ctx, k).Result()
		case "hash":
			v, err = rdb.HGetAll(ctx, k).Result()
		case "list":
			v, err = rdb.LRange(ctx, k, 0, -1).Result()
		case "set":
			v, err = rdb.SMembers(ctx, k).Result()
		case "zset":
			v, err = rdb.ZRange(ctx, k, 0, -1).Result()
		default:
			tb.Fatalf("key %s has type %s", k, typ)
		}
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			tb.Fatal(err)
		}
		fmt.Fprintf(&all, "%s=%v\n", k, v)
	}
	return all.String(), keys
}

func TestRedisHoldsNoPersonalDataInClear(t *testing.T) {
	submitAll := func(t *testing.T, dataKeys string) (string, int) {
		srv := redistest.New(t)
		rdb := srv.Client(t)
		p, err := zhimaq.NewProducer(rdb, zhimaq.ProducerConfig{AppID: zhimatest.AppID, DataKeys: dataKeys, Queue: srv.Queue, KeyPrefix: srv.Prefix})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		for _, j := range piiJobs() {
			if rec, err := p.Submit(context.Background(), j); err != nil || rec.State != zhimaq.Queued {
				t.Fatalf("submit: %+v %v", rec, err)
			}
		}
		return dumpRedis(t, rdb, srv)
	}
	t.Run("queued jobs are sealed", func(t *testing.T) {
		dump, keys := submitAll(t, zhimatest.DataKeys)
		if keys < 7 { // 3 tasks, 3 records (each holding its claim), and the queue itself
			t.Fatalf("only %d keys to scan:\n%s", keys, dump)
		}
		for _, pii := range personalData {
			if strings.Contains(dump, pii) {
				t.Errorf("Redis holds %q in clear", pii)
			}
		}
	})
	t.Run("the scan finds personal data when the operator opts out", func(t *testing.T) {
		dump, _ := submitAll(t, "plaintext")
		for _, pii := range []string{applicantID, "15843991158", "RkFDRVBJQ1RVUkVfb2ZfYXBwbGljYW50XzAwMA=="} {
			if !strings.Contains(dump, pii) {
				t.Errorf("plaintext payloads should hold %q; the scan does not see task payloads", pii)
			}
		}
	})
	t.Run("after a full run with retries", func(t *testing.T) {
		p := startPipeline(t, sandbox.Faults{SystemErrorRate: 0.5}, nil)
		jobs := piiJobs()
		for _, j := range jobs {
			p.submit(t, j)
		}
		for _, rec := range p.wait(t, jobs...) {
			if rec.State != zhimaq.Succeeded {
				t.Fatalf("%+v", rec)
			}
		}
		dump, _ := dumpRedis(t, p.rdb, p.redis)
		for _, pii := range personalData {
			if strings.Contains(dump, pii) {
				t.Errorf("Redis holds %q in clear after the run", pii)
			}
		}
	})
}

// A key rotation (a new key put first, the old one kept) loses no queued
// job and keeps de-duplication across the change.
func TestDataKeyRotationKeepsQueuedJobsAndDuplicates(t *testing.T) {
	newKey, err := seal.Generate("rotated")
	if err != nil {
		t.Fatal(err)
	}
	// The worker already holds both keys; the old producer has only the old one.
	p := startPipeline(t, sandbox.Faults{}, func(c *config.Config) { c.DataKeys = newKey + "," + zhimatest.DataKeys })
	old, err := zhimaq.NewProducer(p.rdb, zhimaq.ProducerConfig{AppID: zhimatest.AppID, DataKeys: zhimatest.DataKeys,
		Queue: p.redis.Queue, KeyPrefix: p.redis.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	job := relationJob("ROTATE_1")
	if rec, err := old.Submit(context.Background(), job); err != nil || rec.State != zhimaq.Queued {
		t.Fatalf("submit with the old key: %+v %v", rec, err)
	}
	if rec := p.wait(t, job)[0]; rec.State != zhimaq.Succeeded {
		t.Fatalf("a job sealed with the old key: %+v (error %+v)", rec, rec.Error)
	}
	if rec := p.submit(t, job); !rec.Duplicate || rec.State != zhimaq.Succeeded {
		t.Fatalf("resubmitted under the new key: %+v, want the first job's record", rec)
	}
	if calls := p.gateway.Calls(job.Method, "ROTATE_1"); calls != 1 {
		t.Fatalf("gateway saw %d calls, want 1", calls)
	}
}
