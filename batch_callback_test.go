package zhimaq_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/redistest"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// TestNewBatchRefusesInternalCallbacks: the submission check refuses the
// audit's callback URLs before anything is written.
func TestNewBatchRefusesInternalCallbacks(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client(t)
	tests := []struct {
		name, hosts, url string
		want             error
	}{
		{"refused_zone_id_under_wildcard", "*.example.com", "http://[::ffff:127.0.0.1%25.example.com]:18184/x", zhimaq.ErrInvalidCallbackURL},
		{"refused_loopback_zone_id_under_wildcard", "*.example.com", "http://[::1%25.example.com]:18184/x", zhimaq.ErrInvalidCallbackURL},
		{"refused_userinfo", "*.example.com", "http://hooks.example.com@127.0.0.1/x", zhimaq.ErrInvalidCallbackURL},
		{"refused_ip_literal_under_wildcard", "*.example.com", "http://[::ffff:7f00:1]:18184/x", zhimaq.ErrCallbackHostNotAllowed},
		{"refused_loopback_without_list", "", "http://127.0.0.1:18090/admin/reset", zhimaq.ErrCallbackHostNotAllowed},
		{"refused_redis_port_without_list", "", "http://127.0.0.1:6379/", zhimaq.ErrCallbackHostNotAllowed},
		{"refused_localhost_without_list", "", "http://localhost:18090/admin/reset", zhimaq.ErrCallbackHostNotAllowed},
		{"refused_private_without_list", "", "http://10.0.0.7/hook", zhimaq.ErrCallbackHostNotAllowed},
		{"refused_metadata_without_list", "", "http://169.254.169.254/latest/meta-data", zhimaq.ErrCallbackHostNotAllowed},
		{"accepted_public_name_without_list", "", "https://hooks.lender.example/done?token=t", nil},
		{"accepted_listed_loopback", "127.0.0.1", "http://127.0.0.1:18090/hook", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := zhimaq.NewProducer(rdb, zhimaq.ProducerConfig{AppID: zhimatest.AppID, DataKeys: zhimatest.DataKeys,
				Queue: srv.Queue, KeyPrefix: srv.Prefix, CallbackHosts: tt.hosts})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			_, err = p.NewBatch(zhimaq.BatchOptions{CallbackURL: tt.url})
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Errorf("NewBatch(%q) = %v, want %v", tt.url, err, tt.want)
			}
		})
	}
}

// TestBatchCallbackURLIsSealedInRedis: the callback URL's token is sealed
// like personal data, and kept in clear only with DATA_KEYS=plaintext.
func TestBatchCallbackURLIsSealedInRedis(t *testing.T) {
	const token = "cb-token-0123456789abcdef"
	tests := []struct {
		name, dataKeys string
		inClear        bool
	}{
		{"sealed_with_data_keys", zhimatest.DataKeys, false},
		{"in_clear_with_plaintext", "plaintext", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.New(t)
			rdb := srv.Client(t)
			ctx := context.Background()
			p, err := zhimaq.NewProducer(rdb, zhimaq.ProducerConfig{AppID: zhimatest.AppID, DataKeys: tt.dataKeys,
				Queue: srv.Queue, KeyPrefix: srv.Prefix, CallbackHosts: "hooks.lender.example"})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			b, err := p.NewBatch(zhimaq.BatchOptions{CallbackURL: "https://hooks.lender.example/done/lender-42?token=" + token})
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Close(ctx); err != nil {
				t.Fatal(err)
			}
			dump, keys := dumpRedis(t, rdb, srv)
			if keys == 0 {
				t.Fatal("the batch wrote nothing to Redis")
			}
			if got := strings.Contains(dump, token) || strings.Contains(dump, "lender-42"); got != tt.inClear {
				t.Errorf("callback URL in clear in Redis: %v, want %v:\n%s", got, tt.inClear, dump)
			}
		})
	}
}
