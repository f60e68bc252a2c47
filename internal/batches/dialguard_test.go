package batches

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
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
	srv, calls := countingReceiver(t)
	port := portOf(t, srv)
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
			resp, err := newCallbackClient(true, nil).Post(tt.url, "application/json", strings.NewReader("{}"))
			if err == nil {
				resp.Body.Close()
			}
			if !errors.Is(err, errNonPublic) {
				t.Errorf("POST = %v, want the dial guard's refusal", err)
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the loopback receiver got %d requests through the guard, want none", n)
	}
	resp, err := newCallbackClient(false, nil).Post(srv.URL, "application/json", strings.NewReader("{}"))
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
		c := newCallbackClient(guard, nil)
		tr, ok := c.Transport.(*http.Transport)
		if !ok || tr.Proxy != nil || !tr.DisableKeepAlives || c.CheckRedirect == nil {
			t.Errorf("guard %v: transport %T, proxy set %v; want an http.Transport without a proxy, keep-alives or redirects", guard, c.Transport, ok && tr.Proxy != nil)
		}
	}
}

// fakeDNS answers every A query with addr and every other query with no
// answer, over UDP on the loopback address; it returns a Go resolver that
// asks it and nothing else.
func fakeDNS(tb testing.TB, addr netip.Addr) *net.Resolver {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := dnsAnswer(buf[:n], addr); resp != nil {
				pc.WriteTo(resp, from)
			}
		}
	}()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

// dnsAnswer is the answer to DNS query q: one A record of addr for an A
// query, no record otherwise; nil for a query it cannot read.
func dnsAnswer(q []byte, addr netip.Addr) []byte {
	if len(q) < 12 {
		return nil
	}
	i := 12
	for i < len(q) && q[i] != 0 {
		i += int(q[i]) + 1
	}
	i++ // the root label
	if i+4 > len(q) {
		return nil
	}
	resp := append([]byte{q[0], q[1], 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0}, q[12:i+4]...)
	if binary.BigEndian.Uint16(q[i:]) == 1 && addr.Is4() {
		resp[7] = 1 // one answer
		a := addr.As4()
		resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4) // the question's name, A, IN, TTL 60s
		resp = append(resp, a[:]...)
	}
	return resp
}

// TestDelivererChecksTheAddressDNSGives: a name that a wildcard entry
// allows, or that any host allows, and that DNS answers with a loopback
// address is refused when dialled; an exact entry opens it.
func TestDelivererChecksTheAddressDNSGives(t *testing.T) {
	t.Parallel()
	srv, calls := countingReceiver(t)
	port := portOf(t, srv)
	resolver := fakeDNS(t, netip.MustParseAddr("127.0.0.1"))
	hookURL := "http://hooks.example.com:" + port + "/hook?token=abc"
	tests := []struct {
		name      string
		hosts     string
		delivered bool
	}{
		{"refused_under_wildcard", "*.example.com", false},
		{"refused_under_wildcard_with_port", "*.example.com:" + port, false},
		{"refused_without_a_list", "", false},
		{"delivered_to_exact_name", "hooks.example.com", true},
		{"delivered_to_exact_name_and_port", "hooks.example.com:" + port, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := calls.Load()
			task, _ := callbackTask(t, hookURL)
			d := &Deliverer{Secret: secret, Hosts: mustHosts(t, tt.hosts), resolver: resolver}
			err := d.ProcessTask(context.Background(), task)
			got := calls.Load() - before
			if tt.delivered {
				if err != nil || got != 1 {
					t.Errorf("ProcessTask = %v after %d requests, want delivered once", err, got)
				}
				return
			}
			if !errors.Is(err, errNonPublic) || !errors.Is(err, asynq.SkipRetry) || got != 0 {
				t.Errorf("ProcessTask = %v after %d requests, want the dial guard's refusal, not retried", err, got)
			}
			if err != nil && (strings.Contains(err.Error(), "token") || strings.Contains(err.Error(), "/hook")) {
				t.Errorf("error %q holds the URL's path or query", err)
			}
		})
	}
}
