package hosts

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// errNonPublic is what the dial guard returns, wrapped in the dial's
// error, for an address that is not public.
var ErrNonPublic = errors.New("hosts: dial guard: the address is not public; list the host in CALLBACK_HOSTS to allow it")

// nonPublic are the special-purpose ranges of the IANA IPv4 and IPv6
// registries that netip.Addr's own methods (loopback, private, link-local,
// multicast, unspecified) do not cover and that are not reachable on the
// internet, or that hand the packet to a translator that may reach them.
var nonPublic = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",       // "this network"
		"100.64.0.0/10",   // shared address space (CGNAT)
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // documentation (TEST-NET-1)
		"192.88.99.0/24",  // 6to4 relay anycast
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation (TEST-NET-2)
		"203.0.113.0/24",  // documentation (TEST-NET-3)
		"240.0.0.0/4",     // reserved, and the broadcast address
		"::/96",           // IPv4-compatible (deprecated)
		"64:ff9b:1::/48",  // local-use IPv4/IPv6 translation
		"100::/64",        // discard-only
		"2001::/23",       // IETF protocol assignments (Teredo among them)
		"2001:db8::/32",   // documentation
		"2002::/16",       // 6to4
		"3fff::/20",       // documentation
		"5f00::/16",       // segment routing (SRv6) SIDs
		"fec0::/10",       // site-local (deprecated)
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

// nat64 is the well-known prefix of IPv4/IPv6 translation: its addresses
// carry an IPv4 address in their last 32 bits, which is the one reached.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// publicAddr reports whether a is a public unicast address: not loopback,
// private (RFC 1918, fc00::/7), link-local, multicast, unspecified, CGNAT
// or in another special-purpose range. An IPv4-mapped address is judged
// as IPv4, a NAT64 one by the IPv4 address it carries.
func publicAddr(a netip.Addr) bool {
	a = a.WithZone("").Unmap()
	if nat64.Contains(a) {
		b := a.As16()
		return publicAddr(netip.AddrFrom4([4]byte(b[12:])))
	}
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsMulticast() ||
		a.IsUnspecified() || a.IsInterfaceLocalMulticast() || a.IsLinkLocalMulticast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// refuseNonPublic is the dial guard, a net.Dialer ControlContext hook: it
// runs for every address the dialer is about to connect to, after DNS
// (every answer, and every redirect's host if one were followed), and
// refuses those that are not public.
func refuseNonPublic(_ context.Context, network, address string, _ syscall.RawConn) error {
	if network != "tcp4" && network != "tcp6" {
		return fmt.Errorf("%w: network %s", ErrNonPublic, network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !publicAddr(ap.Addr()) {
		return ErrNonPublic
	}
	return nil
}

// newCallbackClient returns the HTTP client of callback deliveries: no
// proxy (the dial guard must see the real destination, so HTTP_PROXY and
// HTTPS_PROXY are ignored), no redirects followed (a 3xx answer counts as
// a failure), no keep-alives (callbacks are rare), a 10s timeout. With
// guard, it connects to public addresses only. resolver nil means
// net.DefaultResolver.
func NewClient(guard bool, resolver *net.Resolver) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, Resolver: resolver}
	if guard {
		d.ControlContext = refuseNonPublic
	}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            d.DialContext,
			DisableKeepAlives:      true,
			ForceAttemptHTTP2:      true,
			TLSHandshakeTimeout:    5 * time.Second,
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
