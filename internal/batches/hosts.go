package batches

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Hosts are the hosts batch callbacks may go to (CALLBACK_HOSTS). A nil
// Hosts allows every host.
//
// The check is on the URL's host as written, before any DNS lookup: a name
// on the list that resolves to an internal address is the operator's
// choice. Redirects are never followed, so the host checked is the host
// called.
type Hosts []HostPattern

// HostPattern is one entry of Hosts: a host name or IP address, or "*." and
// a domain for any host under that domain; Port, when set, must equal the
// URL's port (80 and 443 when the URL gives none).
type HostPattern struct {
	Host, Port string
}

// ParseHosts reads a comma-separated list of host, host:port, *.domain or
// *.domain:port entries ("[::1]:8443" for IPv6 with a port). Spaces and
// empty entries are ignored; "" gives nil, every host allowed. A malformed
// entry is an error that quotes it.
func ParseHosts(s string) (Hosts, error) {
	var h Hosts
	for e := range strings.SplitSeq(s, ",") {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" {
			continue
		}
		p, err := parseHostPattern(e)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", e, err)
		}
		h = append(h, p)
	}
	return h, nil
}

var errHostPattern = errors.New("want host, host:port, *.domain or *.domain:port")

func parseHostPattern(e string) (HostPattern, error) {
	var p HostPattern
	if strings.Contains(e, "://") {
		return p, errors.New("give the host alone, not a URL")
	}
	switch {
	case strings.HasPrefix(e, "[") && strings.HasSuffix(e, "]"):
		p.Host = e[1 : len(e)-1]
	case strings.HasPrefix(e, "[") || strings.Count(e, ":") == 1:
		var err error
		if p.Host, p.Port, err = net.SplitHostPort(e); err != nil {
			return p, errHostPattern
		}
		if n, err := strconv.Atoi(p.Port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != p.Port {
			return p, errors.New("the port is not a number from 1 to 65535")
		}
	default:
		p.Host = e // a name, or an IPv6 address without brackets
	}
	name := strings.TrimPrefix(p.Host, "*.")
	if name == "" || strings.ContainsAny(name, "*/?#@[] \t") {
		return p, errHostPattern
	}
	return p, nil
}

// Allow reports whether callbackURL's host is on the list; a nil list
// allows every host. A URL that does not parse is not allowed.
func (h Hosts) Allow(callbackURL string) bool {
	if h == nil {
		return true
	}
	u, err := url.Parse(callbackURL)
	if err != nil || u.Host == "" {
		return false
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	switch {
	case port != "":
	case u.Scheme == "http":
		port = "80"
	case u.Scheme == "https":
		port = "443"
	}
	for _, p := range h {
		if p.Port != "" && p.Port != port {
			continue
		}
		if domain, ok := strings.CutPrefix(p.Host, "*."); ok {
			if strings.HasSuffix(host, "."+domain) {
				return true
			}
		} else if host == p.Host {
			return true
		}
	}
	return false
}

// String is the list as CALLBACK_HOSTS would write it; "any host" when nil.
func (h Hosts) String() string {
	if h == nil {
		return "any host"
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
