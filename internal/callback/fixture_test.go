package callback

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/batches"
	"github.com/zhimaq/zhimaq/internal/hosts"
	"github.com/zhimaq/zhimaq/internal/idempotency"
	"github.com/zhimaq/zhimaq/internal/keyspace"
	"github.com/zhimaq/zhimaq/internal/redistest"
	"github.com/zhimaq/zhimaq/internal/results"
)

const (
	testApp    = "2021000000000001"
	testMethod = "zhima.credit.score.brief.get"
	testTTL    = 2 * time.Hour
)

// fixture is a batch store and a results store on the test's Redis.
type fixture struct {
	store   *batches.Store
	results *results.Store
	rdb     redis.UniversalClient
	srv     *redistest.Server
	keys    keyspace.Space
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	srv := redistest.New(tb)
	rdb := srv.Client(tb)
	keys := keyspace.New(srv.Prefix)
	if srv.Cluster {
		keys = keys.Tagged() // as the stores name them there
	}
	return &fixture{store: batches.New(rdb, srv.Prefix, testTTL), results: results.New(rdb, srv.Prefix, testTTL), rdb: rdb, srv: srv, keys: keys}
}

// putRecord stores tid's record in state, last changed at.
func (f *fixture) putRecord(tb testing.TB, tid string, state results.State, batchID string, at time.Time) {
	tb.Helper()
	rec := &results.Record{Method: testMethod, TransactionID: tid, State: state, EnqueuedAt: &at, UpdatedAt: at, BatchID: batchID}
	key := idempotency.Key{AppID: testApp, Method: testMethod, TransactionID: tid}
	if _, err := f.results.Put(context.Background(), key, rec); err != nil {
		tb.Fatal(err)
	}
}

// rejected is a rejected line's record.
func rejected(msg string) *results.Record {
	return &results.Record{State: results.Rejected, UpdatedAt: time.Unix(1700000000, 0).UTC(),
		Error: &results.ErrorInfo{Source: "local", SubCode: "INVALID_PARAMETER", SubMsg: msg}}
}

func mustHosts(tb testing.TB, s string) hosts.List {
	tb.Helper()
	h, err := hosts.Parse(s)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}
