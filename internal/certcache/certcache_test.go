package certcache

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/zhimaq/zhimaq/internal/keyspace"
	"github.com/zhimaq/zhimaq/internal/redistest"
)

const sn = "0123456789abcdef0123456789abcdef"

func TestPutGetAndWhatItRefuses(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	c := New(rdb, srv.Prefix, "2021000000000001")
	other := New(rdb, srv.Prefix, "2021000000000002")

	if got, err := c.Get(ctx, sn); got != nil || err != nil {
		t.Fatalf("Get of nothing = %q, %v; want nil, nil", got, err)
	}
	pemFile := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	if err := c.Put(ctx, sn, pemFile); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx, sn); err != nil || !bytes.Equal(got, pemFile) {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if got, _ := other.Get(ctx, sn); got != nil {
		t.Fatal("another app sees the certificate")
	}
	if ttl := rdb.TTL(ctx, keyspace.New(srv.Prefix).AlipayCert("2021000000000001", sn)).Val(); ttl <= 0 || ttl > TTL {
		t.Fatalf("TTL = %v, want up to %v", ttl, TTL)
	}

	// An SN that is not hex MD5 is never a key: no key is built from it.
	for _, bad := range []string{"", "../x", sn + ":x", strings.ToUpper(sn)} {
		if err := c.Put(ctx, bad, pemFile); err == nil {
			t.Errorf("Put(%q) accepted", bad)
		}
		if got, err := c.Get(ctx, bad); got != nil || err != nil {
			t.Errorf("Get(%q) = %q, %v", bad, got, err)
		}
	}

	// A value a certificate file cannot be is not read into memory.
	big := bytes.Repeat([]byte("x"), maxBytes+1)
	rdb.Set(ctx, keyspace.New(srv.Prefix).AlipayCert("2021000000000001", sn), big, 0)
	if got, err := c.Get(ctx, sn); got != nil || err == nil {
		t.Fatalf("Get of an oversized value = %d bytes, %v; want an error", len(got), err)
	}
}
