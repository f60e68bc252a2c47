package hosts

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

func TestPublicAddr(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"8.8.8.8", true}, {"1.1.1.1", true}, {"203.0.114.1", true}, {"2606:4700::1111", true},
		{"2001:4860:4860::8888", true}, {"::ffff:8.8.8.8", true}, {"64:ff9b::808:808", true},
		{"127.0.0.1", false}, {"127.255.255.254", false}, {"0.0.0.0", false}, {"0.1.2.3", false},
		{"10.0.0.1", false}, {"172.16.0.1", false}, {"172.31.255.255", false}, {"192.168.0.1", false},
		{"100.64.0.1", false}, {"100.127.255.255", false}, {"169.254.169.254", false}, {"192.0.0.8", false},
		{"192.0.2.1", false}, {"198.18.0.1", false}, {"198.51.100.1", false}, {"203.0.113.1", false},
		{"224.0.0.1", false}, {"239.255.255.250", false}, {"240.0.0.1", false}, {"255.255.255.255", false},
		{"::", false}, {"::1", false}, {"::ffff:127.0.0.1", false}, {"::ffff:10.0.0.1", false},
		{"::127.0.0.1", false}, {"64:ff9b::7f00:1", false}, {"64:ff9b::a00:1", false}, {"64:ff9b:1::1", false},
		{"fc00::1", false}, {"fd12:3456::1", false}, {"fe80::1", false}, {"fe80::1%eth0", false}, {"fec0::1", false},
		{"ff02::1", false}, {"ff05::2", false}, {"2001:db8::1", false}, {"2001::1", false}, {"2002:7f00:1::1", false},
		{"100::1", false}, {"3fff::1", false},
	}
	for _, tt := range tests {
		name := "public_" + tt.addr
		if !tt.want {
			name = "not_public_" + tt.addr
		}
		t.Run(name, func(t *testing.T) {
			if got := publicAddr(netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Errorf("publicAddr(%s) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}

// TestDialGuardRefusesNonPublicAddresses: the default client checks the
// address it dials, whatever the URL names: an IP literal or a name that
// DNS (here /etc/hosts) answers with a loopback address.
func TestDialGuardRefusesNonPublicAddresses(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls.Add(1) }))
	t.Cleanup(srv.Close)
	port := strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
	tests := []struct {
		name string
		url  string
	}{
		{"refused_loopback", "http://127.0.0.1:" + port + "/x"},
		{"refused_localhost", "http://localhost:" + port + "/x"},
		{"refused_unspecified", "http://0.0.0.0:" + port + "/x"},
		{"refused_mapped_loopback", "http://[::ffff:127.0.0.1]:" + port + "/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := NewClient(true, nil).Post(tt.url, "application/json", strings.NewReader("{}"))
			if err == nil {
				resp.Body.Close()
			}
			if !errors.Is(err, ErrNonPublic) {
				t.Errorf("POST = %v, want the dial guard's refusal", err)
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the loopback receiver got %d requests through the guard, want none", n)
	}
	resp, err := NewClient(false, nil).Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("without the guard: %v", err)
	}
	resp.Body.Close()
	if calls.Load() != 1 {
		t.Errorf("without the guard the receiver got %d requests, want 1", calls.Load())
	}
}

func TestCallbackClientUsesNoProxy(t *testing.T) {
	for _, guard := range []bool{true, false} {
		c := NewClient(guard, nil)
		tr, ok := c.Transport.(*http.Transport)
		if !ok || tr.Proxy != nil || !tr.DisableKeepAlives || c.CheckRedirect == nil {
			t.Errorf("guard %v: transport %T, proxy set %v; want an http.Transport without a proxy, keep-alives or redirects", guard, c.Transport, ok && tr.Proxy != nil)
		}
	}
}
