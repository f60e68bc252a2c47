package zhimaq_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq"
)

func ExampleProducer_Submit() {
	// An embedded Redis keeps the example self-contained; in production rdb
	// is a client for the Redis your workers use.
	mr, _ := miniredis.Run()
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()

	// DataKeys seals personal data before it enters Redis; the workers hold
	// the same keys (DATA_KEYS). This one is a throwaway.
	producer, err := zhimaq.NewProducer(rdb, zhimaq.ProducerConfig{
		AppID:    "2021000000000001",
		DataKeys: "k1:7m8vZ3Q1cDJ4bWZrN2x0Y2V5dWhnYWJzZDlxcjA2dzE",
	})
	if err != nil {
		panic(err)
	}
	defer producer.Close()

	job := zhimaq.Job{
		Method: zhimaq.MethodScoreBriefGet,
		BizContent: json.RawMessage(`{"transaction_id":"LOAN_20261126_0001","product_code":"w1010100000000002733",
			"cert_type":"IDENTITY_CARD","cert_no":"11010519491231002X","name":"张三","admittance_score":650}`),
	}
	ctx := context.Background()
	for _, j := range []zhimaq.Job{job, job} {
		rec, err := producer.Submit(ctx, j)
		if err != nil {
			panic(err) // Redis failed
		}
		fmt.Println(rec.TransactionID, rec.State, "duplicate:", rec.Duplicate)
	}

	bad := job
	bad.BizContent = json.RawMessage(`{"transaction_id":"LOAN_20261126_0002","product_code":"w1010100000000002733",
		"cert_type":"IDENTITY_CARD","cert_no":"110105194912310021","name":"张三","admittance_score":650}`)
	rec, _ := producer.Submit(ctx, bad)
	fmt.Println(rec.TransactionID, rec.State, rec.Error.SubCode, rec.Error.SubMsg)

	// A worker now runs the queued job; callers poll its record:
	stored, _ := producer.Result(ctx, zhimaq.Ref{Method: job.Method, TransactionID: "LOAN_20261126_0001"})
	fmt.Println(stored.State)
	// Output:
	// LOAN_20261126_0001 queued duplicate: false
	// LOAN_20261126_0001 queued duplicate: true
	// LOAN_20261126_0002 rejected INVALID_PARAMETER cert_no: check digit does not match
	// queued
}
