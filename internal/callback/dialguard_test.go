package callback

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/zhimaq/zhimaq/internal/hosts"
)

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
			if !errors.Is(err, hosts.ErrNonPublic) || !errors.Is(err, asynq.SkipRetry) || got != 0 {
				t.Errorf("ProcessTask = %v after %d requests, want the dial guard's refusal, not retried", err, got)
			}
			if err != nil && (strings.Contains(err.Error(), "token") || strings.Contains(err.Error(), "/hook")) {
				t.Errorf("error %q holds the URL's path or query", err)
			}
		})
	}
}
