package batches

import (
	"strings"
	"testing"
)

func TestHostsAllow(t *testing.T) {
	h, err := ParseHosts(" hooks.lender.example , *.ops.example:8443,,127.0.0.1:9000, [::1]:8080, HTTPS.Upper.Example")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := h.String(), "hooks.lender.example,*.ops.example:8443,127.0.0.1:9000,[::1]:8080,https.upper.example"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	for _, c := range []struct {
		url  string
		want bool
	}{
		{"https://hooks.lender.example/done?k=1", true},
		{"http://hooks.lender.example:8080/done", true}, // no port in the entry: any port
		{"https://HOOKS.Lender.Example/done", true},
		{"https://https.upper.example/", true},
		{"https://a.ops.example:8443/x", true},
		{"https://a.b.ops.example:8443/x", true},
		{"https://a.ops.example/x", false},    // 443, not 8443
		{"https://ops.example:8443/x", false}, // *. needs a subdomain
		{"https://evilops.example:8443/x", false},
		{"http://127.0.0.1:9000/hook", true},
		{"http://127.0.0.1:9001/hook", false},
		{"http://127.0.0.1/hook", false},
		{"http://[::1]:8080/hook", true},
		{"http://169.254.169.254/latest/meta-data", false},
		{"https://hooks.lender.example.evil.example/", false},
		{"https://hooks.lender.example@evil.example/", false},
		{"::not a url", false},
	} {
		if got := h.Allow(c.url); got != c.want {
			t.Errorf("Allow(%q) = %v, want %v", c.url, got, c.want)
		}
	}
	var all Hosts
	if !all.Allow("http://169.254.169.254/") || all.String() != "any host" {
		t.Error("a nil list must allow every host")
	}
	if h, err := ParseHosts(" , "); err != nil || h != nil {
		t.Errorf("ParseHosts of blanks = %v, %v; want nil, nil", h, err)
	}
}

func TestParseHostsErrors(t *testing.T) {
	for _, bad := range []string{"https://hooks.example", "hooks.example/path", "*", "*.", "hooks.example:http", "hooks.example:0", "hooks.example:70000", "a.example,*.*.example", "[::1"} {
		_, err := ParseHosts(bad)
		if err == nil {
			t.Errorf("ParseHosts(%q) accepted it", bad)
			continue
		}
		if !strings.Contains(err.Error(), "want") && !strings.Contains(err.Error(), "port") && !strings.Contains(err.Error(), "not a URL") {
			t.Errorf("ParseHosts(%q) = %v; want an error saying what is expected", bad, err)
		}
	}
}
