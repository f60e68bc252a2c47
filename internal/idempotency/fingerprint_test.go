package idempotency

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func mustFingerprint(tb testing.TB, biz, token string) string {
	tb.Helper()
	fp, err := Fingerprint(json.RawMessage(biz), token)
	if err != nil {
		tb.Fatalf("Fingerprint(%q, %q): %v", biz, token, err)
	}
	return fp
}

func TestFingerprint(t *testing.T) {
	const base = `{"transaction_id":"T1","product_code":"w1","cert_no":"110101199003074518","name":"张三","admittance_score":650,"extra":{"a":[1,2],"b":null}}`
	tests := []struct {
		name     string
		biz      string
		token    string
		wantSame bool
	}{
		{"same_when_identical", base, "", true},
		{"same_when_keys_reordered", `{"admittance_score":650,"name":"张三","cert_no":"110101199003074518","product_code":"w1","transaction_id":"T1","extra":{"b":null,"a":[1,2]}}`, "", true},
		{"same_when_whitespace_added", "{ \"transaction_id\" : \"T1\",\n\t\"product_code\":\"w1\", \"cert_no\":\"110101199003074518\", \"name\":\"张三\", \"admittance_score\": 650 , \"extra\":{ \"a\":[ 1 , 2 ], \"b\":null } }\n", "", true},
		{"same_when_string_escape_differs", `{"transaction_id":"\u0054\u0031","product_code":"w1","cert_no":"110101199003074518","name":"\u5f20\u4e09","admittance_score":650,"extra":{"a":[1,2],"b":null}}`, "", true},
		{"differs_when_value_changed", strings.Replace(base, "650", "700", 1), "", false},
		{"differs_when_name_changed", strings.Replace(base, "张三", "李四", 1), "", false},
		{"differs_when_token_added", base, "tok", false},
		{"differs_when_array_reordered", strings.Replace(base, "[1,2]", "[2,1]", 1), "", false},
		{"differs_when_null_becomes_missing", strings.Replace(base, `,"b":null`, "", 1), "", false},
		// Numbers are kept exactly as written: 650.0 and 6.5e2 are not 650.
		{"differs_when_number_written_650.0", strings.Replace(base, "650", "650.0", 1), "", false},
		{"differs_when_number_written_6.5e2", strings.Replace(base, "650", "6.5e2", 1), "", false},
		{"differs_when_number_becomes_string", strings.Replace(base, "650", `"650"`, 1), "", false},
	}
	want := mustFingerprint(t, base, "")
	if len(want) != 64 || strings.Trim(want, "0123456789abcdef") != "" {
		t.Fatalf("fingerprint %q is not 64 lower-case hex digits", want)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustFingerprint(t, tt.biz, tt.token)
			if (got == want) != tt.wantSame {
				t.Errorf("same fingerprint = %v, want %v", got == want, tt.wantSame)
			}
		})
	}
}

func TestFingerprintTokenIsSeparate(t *testing.T) {
	// Moving bytes between biz_content and token must not keep the hash.
	a := mustFingerprint(t, `"ab"`, "c")
	b := mustFingerprint(t, `"a"`, "bc")
	if a == b {
		t.Fatal("fingerprints of different (biz_content, token) pairs collide")
	}
}

func TestFingerprintKeepsLargeNumbersExactly(t *testing.T) {
	// float64 would make these equal; UseNumber keeps them apart.
	a := mustFingerprint(t, `{"n":12345678901234567890}`, "")
	b := mustFingerprint(t, `{"n":12345678901234567891}`, "")
	if a == b {
		t.Fatal("large integers differing in the last digit have one fingerprint")
	}
}

func TestFingerprintInvalid(t *testing.T) {
	tests := []struct {
		name string
		biz  string
	}{
		{"error_when_empty", ""},
		{"error_when_truncated", `{"transaction_id":"T1"`},
		{"error_when_trailing_data", `{"a":1} {"b":2}`},
		{"error_when_trailing_garbage", `{"a":1}x`},
		{"error_when_single_quotes", `{'a':1}`},
		{"error_when_invalid_utf8", "{\"a\":\"\xff\"}"},
		{"error_when_bare_word", `secret110101199003074518`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp, err := Fingerprint(json.RawMessage(tt.biz), "")
			if err == nil {
				t.Fatalf("Fingerprint = %q, want an error", fp)
			}
			if strings.Contains(err.Error(), "1101011990") {
				t.Errorf("error %q quotes the input", err)
			}
		})
	}
}

func FuzzFingerprint(f *testing.F) {
	for _, s := range []string{
		`{"transaction_id":"T1","admittance_score":650}`,
		`{"b":1,"a":[true,false,null,"x<>&\u2028"],"c":{"z":-0.0e+1}}`,
		`[1, 2.50, 1e400]`,
		`"\ud800"`,
		`{"a":1,"a":2}`,
		`  null  `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		canon, err := canonicalJSON(data)
		if err != nil {
			return
		}
		again, err := canonicalJSON(canon)
		if err != nil {
			t.Fatalf("canonical form %q does not parse: %v", canon, err)
		}
		if string(again) != string(canon) {
			t.Fatalf("canonical form not stable: %q then %q", canon, again)
		}
		if a, b := mustFingerprint(t, string(data), "t"), mustFingerprint(t, string(canon), "t"); a != b {
			t.Fatalf("fingerprint of input and of its canonical form differ")
		}
	})
}

// TestParse: a biz_content parsed once gives Fingerprint's fingerprint and,
// for an object, its member names.
func TestParse(t *testing.T) {
	for _, c := range []struct {
		biz   string
		names []string
	}{
		{`{"b":1,"a":"x","a":"y"}`, []string{"a", "b"}},
		{`{}`, []string{}},
		{`["not","an","object"]`, nil},
		{`"text"`, nil},
	} {
		p, err := Parse([]byte(c.biz))
		if err != nil {
			t.Fatalf("Parse(%s): %v", c.biz, err)
		}
		want, _ := Fingerprint([]byte(c.biz), "token")
		if got := p.Fingerprint("token"); got != want {
			t.Errorf("Parse(%s).Fingerprint = %s, Fingerprint = %s", c.biz, got, want)
		}
		names := slices.Sorted(slices.Values(p.Names))
		if (p.Names == nil) != (c.names == nil) || !slices.Equal(names, c.names) {
			t.Errorf("Parse(%s).Names = %#v, want %#v", c.biz, p.Names, c.names)
		}
	}
	if _, err := Parse([]byte(`{"a":`)); err == nil {
		t.Error("Parse of broken JSON: no error")
	}
}
