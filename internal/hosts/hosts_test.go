package hosts

import (
	"errors"
	"strings"
	"testing"
)

// mustHosts parses a CALLBACK_HOSTS value that the test knows is good.
func mustList(tb testing.TB, s string) List {
	tb.Helper()
	h, err := Parse(s)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func TestHostsAllow(t *testing.T) {
	h := mustList(t, " hooks.lender.example , *.ops.example:8443,,127.0.0.1:9000, [::1]:8080, HTTPS.Upper.Example, [::ffff:10.0.0.9], *.example.com")
	if got, want := h.String(), "hooks.lender.example,*.ops.example:8443,127.0.0.1:9000,[::1]:8080,https.upper.example,10.0.0.9,*.example.com"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	tests := []struct {
		name string
		url  string
		want bool
	}{
		{"allowed_exact_name", "https://hooks.lender.example/done?k=1", true},
		{"allowed_exact_name_any_port", "http://hooks.lender.example:8080/done", true},
		{"allowed_exact_name_in_upper_case", "https://HOOKS.Lender.Example/done", true},
		{"allowed_entry_written_in_upper_case", "https://https.upper.example/", true},
		{"allowed_under_wildcard_with_port", "https://a.ops.example:8443/x", true},
		{"allowed_two_levels_under_wildcard", "https://a.b.ops.example:8443/x", true},
		{"refused_wildcard_on_default_port", "https://a.ops.example/x", false},
		{"refused_wildcard_domain_itself", "https://ops.example:8443/x", false},
		{"refused_suffix_without_dot", "https://evilops.example:8443/x", false},
		{"allowed_exact_ip_and_port", "http://127.0.0.1:9000/hook", true},
		{"refused_exact_ip_other_port", "http://127.0.0.1:9001/hook", false},
		{"refused_exact_ip_default_port", "http://127.0.0.1/hook", false},
		{"allowed_exact_ipv6", "http://[::1]:8080/hook", true},
		{"allowed_mapped_ipv6_of_exact_ipv4", "http://[::ffff:127.0.0.1]:9000/hook", true},
		{"allowed_ipv4_of_mapped_entry", "http://10.0.0.9/hook", true},
		{"refused_metadata_address", "http://169.254.169.254/latest/meta-data", false},
		{"refused_listed_name_as_prefix", "https://hooks.lender.example.evil.example/", false},
		{"refused_userinfo_before_evil_host", "https://hooks.lender.example@evil.example/", false},
		{"refused_userinfo_before_listed_host", "https://evil.example@hooks.lender.example/", false},
		{"refused_not_a_url", "::not a url", false},
		// The audit's bypass: an IPv6 literal whose zone ends in a listed domain.
		{"refused_mapped_loopback_with_zone_under_wildcard", "http://[::ffff:127.0.0.1%25.example.com]:18184/x", false},
		{"refused_loopback_with_zone_under_wildcard", "http://[::1%25.example.com]:18184/x", false},
		{"refused_zone_on_exact_ipv6", "http://[::1%25eth0]:8080/hook", false},
		{"refused_ip_literal_against_wildcard", "http://[::ffff:7f00:1]:18184/x", false},
		{"refused_ipv4_literal_against_wildcard", "http://127.0.0.1:18184/x", false},
		{"refused_name_with_underscore", "http://a_b.example.com/x", false},
		{"refused_name_with_trailing_dot", "http://a.example.com./x", false},
		{"refused_name_with_escaped_char", "http://a%21.example.com/x", false},
		{"refused_port_zero", "http://a.example.com:0/x", false},
		{"allowed_name_under_wildcard", "https://hooks.example.com/x", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := h.Allow(tt.url); got != tt.want {
				t.Errorf("Allow(%q) = %v, want %v", tt.url, got, tt.want)
			}
		})
	}
	if h, err := Parse(" , "); err != nil || h != nil {
		t.Errorf("ParseHosts of blanks = %v, %v; want nil, nil", h, err)
	}
}

func TestNilHostsAllowPublicHostsOnly(t *testing.T) {
	var all List
	if all.String() != "any public address" {
		t.Errorf("String() of nil = %q", all.String())
	}
	tests := []struct {
		name string
		url  string
		want bool
	}{
		{"allowed_public_name", "https://hooks.lender.example/done", true},
		{"allowed_public_ipv4", "http://8.8.8.8/hook", true},
		{"allowed_public_ipv6", "http://[2606:4700::1111]/hook", true},
		{"allowed_name_that_may_resolve_internally", "http://redis:6379/", true}, // the dial guard refuses it
		{"refused_loopback", "http://127.0.0.1:18090/admin/reset", false},
		{"refused_redis_port", "http://127.0.0.1:6379/", false},
		{"refused_loopback_ipv6", "http://[::1]:18090/admin/reset", false},
		{"refused_mapped_loopback", "http://[::ffff:127.0.0.1]:18090/", false},
		{"refused_nat64_loopback", "http://[64:ff9b::7f00:1]/", false},
		{"refused_localhost", "http://localhost:18090/admin/reset", false},
		{"refused_localhost_in_upper_case", "http://LocalHost/", false},
		{"refused_under_localhost", "http://a.localhost/", false},
		{"refused_unspecified", "http://0.0.0.0:18090/", false},
		{"refused_private_10", "http://10.1.2.3/", false},
		{"refused_private_172", "http://172.16.0.1/", false},
		{"refused_private_192", "http://192.168.1.1/", false},
		{"refused_cgnat", "http://100.64.0.1/", false},
		{"refused_link_local", "http://169.254.169.254/latest/meta-data", false},
		{"refused_unique_local", "http://[fd00::1]/", false},
		{"refused_link_local_ipv6", "http://[fe80::1]/", false},
		{"refused_multicast", "http://224.0.0.1/", false},
		{"refused_zone_id", "http://[2606:4700::1111%25eth0]/", false},
		{"refused_userinfo", "http://user:pass@hooks.lender.example/", false},
		{"refused_decimal_ipv4", "http://2130706433/", false},
		{"refused_short_ipv4", "http://127.1/", false},
		{"refused_hex_ipv4", "http://0x7f000001/", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := all.Allow(tt.url); got != tt.want {
				t.Errorf("Allow(%q) = %v, want %v", tt.url, got, tt.want)
			}
		})
	}
}

// TestHostsOpenInternalOnlyForExactEntries checks the rule the dial guard
// follows: an exact entry opens internal addresses, a wildcard never does.
func TestHostsOpenInternalOnlyForExactEntries(t *testing.T) {
	h := mustList(t, "hooks.lender.example,10.0.0.7:8443,*.example.com")
	tests := []struct {
		name       string
		url        string
		wantListed bool
		wantErr    error
	}{
		{"exact_name_opens_internal", "https://hooks.lender.example/x", true, nil},
		{"exact_ip_opens_internal", "https://10.0.0.7:8443/x", true, nil},
		{"wildcard_keeps_public_only", "https://a.example.com/x", false, nil},
		{"unlisted_host_refused", "https://other.example/x", false, ErrNotListed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tgt, err := ParseTarget(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			listed, err := h.Check(tgt)
			if listed != tt.wantListed || !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("check(%q) = %v, %v; want %v, %v", tt.url, listed, err, tt.wantListed, tt.wantErr)
			}
		})
	}
	var all List
	tgt, _ := ParseTarget("https://hooks.lender.example/x")
	if listed, err := all.Check(tgt); listed || err != nil {
		t.Errorf("nil Hosts: check = %v, %v; want a public-only delivery", listed, err)
	}
}

func TestParseHostsErrors(t *testing.T) {
	tests := []struct {
		name, value, want string
	}{
		{"url", "https://hooks.example", "not a URL"},
		{"path", "hooks.example/path", "want"},
		{"star_alone", "*", "want"},
		{"star_dot", "*.", "want"},
		{"port_name", "hooks.example:http", "port"},
		{"port_zero", "hooks.example:0", "port"},
		{"port_too_big", "hooks.example:70000", "port"},
		{"port_leading_zero", "hooks.example:080", "port"},
		{"double_wildcard", "a.example,*.*.example", "want"},
		{"open_bracket", "[::1", "want"},
		{"zone_bracketed", "[fe80::1%eth0]", "zone"},
		{"zone_with_port", "[::1%25.example.com]:8080", "zone"},
		{"zone_bare", "fe80::1%eth0", "zone"},
		{"zone_in_wildcard", "*.example.com%eth0", "zone"},
		{"underscore", "hooks_1.example", "want"},
		{"empty_label", "hooks..example", "want"},
		{"trailing_dot", "hooks.example.", "want"},
		{"bang", "hooks!.example", "want"},
		{"at_sign", "user@hooks.example", "want"},
		{"bracketed_ipv4", "[127.0.0.1]", "want"},
		{"short_ipv4", "127.1", "want"},
		{"wildcard_of_number", "*.127.0.0.1", "want"},
	}
	for _, tt := range tests {
		t.Run("refused_"+tt.name, func(t *testing.T) {
			_, err := Parse(tt.value)
			if err == nil {
				t.Fatalf("ParseHosts(%q) accepted it", tt.value)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseHosts(%q) = %v; want an error saying %q", tt.value, err, tt.want)
			}
		})
	}
}

func TestValidURL(t *testing.T) {
	tests := []struct {
		name string
		url  string
		want bool
	}{
		{"valid_https", "https://example.com/hook", true},
		{"valid_ip_and_query", "http://10.0.0.1:8080/x?y=1", true},
		{"valid_ipv6", "http://[2001:4860::8888]:8080/x", true},
		{"refused_empty", "", false},
		{"refused_relative", "/hook", false},
		{"refused_ftp", "ftp://example.com/x", false},
		{"refused_no_host", "https://", false},
		{"refused_no_scheme", "example.com/hook", false},
		{"refused_too_long", "https://example.com/" + strings.Repeat("a", 2048), false},
		{"refused_zone_id", "http://[::ffff:127.0.0.1%25.example.com]:18184/x", false},
		{"refused_zone_id_of_loopback", "http://[::1%25.example.com]:18184/x", false},
		{"refused_userinfo", "https://hooks.example.com@evil.example/x", false},
		{"refused_user_and_password", "https://u:p@hooks.example.com/x", false},
		{"refused_underscore_host", "https://a_b.example.com/x", false},
		{"refused_bracketed_ipv4", "http://[127.0.0.1]/x", false},
		{"refused_port_out_of_range", "http://example.com:65536/x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidURL(tt.url); got != tt.want {
				t.Errorf("ValidURL(%q) = %v, want %v", tt.url, got, tt.want)
			}
		})
	}
}

// TestParseOncePerValue: the same value gives the same list, parsed once.
func TestParseOncePerValue(t *testing.T) {
	a, b := mustList(t, "once.example.com,*.once.example:8443"), mustList(t, "once.example.com,*.once.example:8443")
	if &a[0] != &b[0] {
		t.Error("the same CALLBACK_HOSTS value was parsed twice")
	}
	if _, err := Parse("bad host"); err == nil {
		t.Error(`Parse("bad host") succeeded`)
	}
}
