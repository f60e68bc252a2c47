// Package hosts decides where a batch callback may go: the CALLBACK_HOSTS
// allow-list, checked on the URL, and the dial guard, checked on the
// address a worker actually dials.
package hosts

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// Hosts are the hosts batch callbacks may go to (CALLBACK_HOSTS).
//
// The list is checked against the URL's host as written, at submission and
// again before each delivery; the address a worker then dials is checked
// too (see callback.Deliverer), so a DNS answer cannot take a callback somewhere the
// list does not mean:
//
//   - A nil Hosts allows every host, but a callback is only ever sent to a
//     public address: loopback, private, link-local, CGNAT and other
//     special-purpose addresses are refused when the worker dials them, and
//     a URL naming such an address (or "localhost") is refused at once.
//   - A wildcard entry ("*.example.com") matches DNS names under the domain,
//     never an IP address, and never opens internal addresses: a name it
//     matches that resolves to one is refused when dialled.
//   - An exact entry, a name or an IP address, is the operator's opt-in: a
//     URL whose host it matches may reach any address, internal ones
//     included.
//
// Hosts must be plain DNS names (letters, digits, '-' and '.') or IP
// addresses; a zone identifier ("%eth0"), user info or any other character
// is refused, with or without a list. Redirects are never followed, so the
// host checked is the host called.
type List []Pattern

// HostPattern is one entry of Hosts: a DNS name or IP address, or "*." and
// a domain for any name under that domain; Port, when set, must equal the
// URL's port (80 and 443 when the URL gives none).
type Pattern struct {
	Host, Port string
}

// ParseHosts reads a comma-separated list of host, host:port, *.domain or
// *.domain:port entries ("[::1]:8443" for IPv6 with a port). Spaces and
// empty entries are ignored; "" gives nil (every host, public addresses
// only). IP addresses are kept in their canonical form, an IPv4-mapped
// IPv6 address as IPv4. A malformed entry (not a plain DNS name or IP
// address, a zone identifier, a bad port) is an error that quotes it.
//
// A value is parsed once per process: Parse keeps each list it made and
// returns it again for the same value; callers must not change it.
func Parse(s string) (List, error) {
	if h, ok := parsed.Load(s); ok {
		return h.(List), nil
	}
	h, err := parse(s)
	if err == nil {
		parsed.Store(s, h)
	}
	return h, err
}

// parsed holds the lists Parse has made, by the value they came from.
var parsed sync.Map

func parse(s string) (List, error) {
	var h List
	for e := range strings.SplitSeq(s, ",") {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" {
			continue
		}
		p, err := parsePattern(e)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", e, err)
		}
		h = append(h, p)
	}
	return h, nil
}

var errHostPattern = errors.New("want host, host:port, *.domain or *.domain:port, the host a DNS name (letters, digits, '-', '.') or an IP address")

func parsePattern(e string) (Pattern, error) {
	var p Pattern
	if strings.Contains(e, "://") {
		return p, errors.New("give the host alone, not a URL")
	}
	bracketed := strings.HasPrefix(e, "[")
	switch {
	case bracketed && strings.HasSuffix(e, "]"):
		p.Host = e[1 : len(e)-1]
	case bracketed || strings.Count(e, ":") == 1:
		var err error
		if p.Host, p.Port, err = net.SplitHostPort(e); err != nil {
			return p, errHostPattern
		}
		if !validPort(p.Port) {
			return p, errors.New("the port is not a number from 1 to 65535")
		}
	default:
		p.Host = e // a name, or an IPv6 address without brackets
	}
	if strings.Contains(p.Host, "%") {
		return p, errors.New("an IP address with a zone identifier is never allowed")
	}
	if domain, ok := strings.CutPrefix(p.Host, "*."); ok {
		if !dnsName(domain) {
			return p, errHostPattern
		}
		return p, nil
	}
	if a, err := netip.ParseAddr(p.Host); err == nil {
		if bracketed && !a.Is6() {
			return p, errHostPattern
		}
		p.Host = a.Unmap().String()
		return p, nil
	}
	if bracketed || !dnsName(p.Host) {
		return p, errHostPattern
	}
	return p, nil
}

// validPort reports whether s is a port number, 1 to 65535, written
// without leading zeros.
func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == s
}

// dnsName reports whether s, in lower case, is a plain DNS name: labels of
// 1 to 63 letters, digits and '-', joined by '.', at most 253 characters,
// no trailing dot, and not ending in a number (which resolvers may read as
// an IPv4 address: "127.1", "0x7f000001").
func dnsName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	last := ""
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
		last = label
	}
	return !endsInNumber(last)
}

// endsInNumber reports whether the last label of a name is a number, in
// decimal or 0x hex, as the WHATWG URL standard's host parser does.
func endsInNumber(label string) bool {
	digits := "0123456789"
	if rest, ok := strings.CutPrefix(label, "0x"); ok {
		label, digits = rest, "0123456789abcdef"
	}
	for i := 0; i < len(label); i++ {
		if !strings.ContainsRune(digits, rune(label[i])) {
			return false
		}
	}
	return true
}

// target is the host and port a callback URL names.
type Target struct {
	Host string     // lower case: a DNS name, or the canonical text of addr
	Addr netip.Addr // the address of an IP literal, unmapped; invalid for a name
	Port string     // the URL's port, or its scheme's
}

var (
	errNotHTTP   = errors.New("not an absolute http or https URL")
	errUserInfo  = errors.New("the URL holds user info")
	errZone      = errors.New("the host has a zone identifier")
	errHostName  = errors.New("the host is not a plain DNS name or IP address")
	errPort      = errors.New("the port is not a number from 1 to 65535")
	ErrNotListed = errors.New("the host is not one CALLBACK_HOSTS allows")
	ErrInternal  = errors.New("the host is an internal address; list it in CALLBACK_HOSTS to allow it")
)

// maxURLBytes bounds a callback URL.
const maxURLBytes = 2048

// parseTarget reads the host and port of a callback URL, refusing what
// ValidURL refuses. Its errors never quote the URL.
func ParseTarget(raw string) (Target, error) {
	var t Target
	u, err := url.Parse(raw)
	if err != nil || len(raw) > maxURLBytes || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return t, errNotHTTP
	}
	if u.User != nil {
		return t, errUserInfo
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, "%") {
		return t, errZone
	}
	switch t.Port = u.Port(); {
	case t.Port != "":
		if !validPort(t.Port) {
			return t, errPort
		}
	case u.Scheme == "http":
		t.Port = "80"
	default:
		t.Port = "443"
	}
	bracketed := strings.HasPrefix(u.Host, "[")
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() == bracketed {
		t.Addr = a.Unmap()
		t.Host = t.Addr.String()
		return t, nil
	}
	if bracketed || !dnsName(host) {
		return t, errHostName
	}
	t.Host = host
	return t, nil
}

// Allow reports whether a callback may go to callbackURL's host: the list
// allows it, or, for a nil list, it is not an internal IP address or
// "localhost". A URL that does not parse, holds user info, or whose host
// is not a plain DNS name or IP address is never allowed.
func (h List) Allow(callbackURL string) bool {
	t, err := ParseTarget(callbackURL)
	if err != nil {
		return false
	}
	_, err = h.Check(t)
	return err == nil
}

// check returns why a callback may not go to t, or nil; listed reports
// whether an exact entry allows it, which opens internal addresses to it.
func (h List) Check(t Target) (listed bool, err error) {
	if h == nil {
		if t.Addr.IsValid() && !publicAddr(t.Addr) || t.Host == "localhost" || strings.HasSuffix(t.Host, ".localhost") {
			return false, ErrInternal
		}
		return false, nil
	}
	for _, p := range h {
		if p.Port != "" && p.Port != t.Port {
			continue
		}
		if domain, ok := strings.CutPrefix(p.Host, "*."); ok {
			if !t.Addr.IsValid() && strings.HasSuffix(t.Host, "."+domain) {
				return false, nil
			}
			continue
		}
		if a, err := netip.ParseAddr(p.Host); err == nil {
			if t.Addr.IsValid() && a.Zone() == "" && a.Unmap() == t.Addr {
				return true, nil
			}
		} else if !t.Addr.IsValid() && t.Host == p.Host {
			return true, nil
		}
	}
	return false, ErrNotListed
}

// String is the list as CALLBACK_HOSTS would write it; "any public
// address" when nil.
func (h List) String() string {
	if h == nil {
		return "any public address"
	}
	s := make([]string, len(h))
	for i, p := range h {
		s[i] = p.Host
		if p.Port != "" {
			s[i] = net.JoinHostPort(p.Host, p.Port)
		}
	}
	return strings.Join(s, ",")
}

// ValidURL reports whether u can receive callbacks: an absolute http or
// https URL of at most 2048 bytes, without user info, whose host is a plain
// DNS name (letters, digits, '-', '.') or an IP address without a zone
// identifier, and whose port, if given, is 1 to 65535.
func ValidURL(u string) bool {
	_, err := ParseTarget(u)
	return err == nil
}
