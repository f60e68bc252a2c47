package zhima

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
)

// responseSeeds are bodies shaped like the gateway's, good and bad; go test
// runs them on every run, go test -fuzz grows from them.
var responseSeeds = []string{
	`{"zhima_credit_score_brief_get_response":{"code":"10000","msg":"Success","biz_no":"ZM1","is_admittance":"Y"},"sign":"AAAA"}`,
	`{"sign":"AAAA","zhima_credit_score_brief_get_response":{"code":"10000","msg":"a\/b 中","biz_no":"ZM1","is_admittance":"N\/A"}}`,
	`{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature"}}`,
	`{"zhima_credit_score_brief_get_response":{"code":"40004","sub_code":"SYSTEM_ERROR"},"sign":"%%"}`,
	`{"zhima_credit_score_brief_get_response":"10000","sign":"AAAA"}`,
	`{"zhima_credit_score_brief_get_response":{"code":10000},"sign":1}`,
	`{"a":{"b":[1,2,{"c":null}]}}`,
	`[]`, `{`, `null`, ``, "\xff\xfe{}",
	`{"zhima_credit_score_brief_get_response":"eyJjb2RlIjoiMTAwMDAifQ==","sign":"AAAA","alipay_cert_sn":"ab"}`,
	`{"zhima_credit_score_brief_get_response":"","sign":"AAAA"}`,
}

// fuzzVerifier accepts every signature or none, and "decrypts" base64.
type fuzzVerifier bool

func (v fuzzVerifier) Verify([]byte, string, string) error {
	if v {
		return nil
	}
	return errors.New("bad signature")
}

func (fuzzVerifier) Decrypt(text string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(text)
}

func FuzzExtractNode(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := ExtractNode(body, MethodScoreBriefGet)
		if err != nil {
			return
		}
		node := a.Node
		if !bytes.Contains(body, node) {
			t.Fatalf("node %q is not the body's own bytes", node)
		}
		if !json.Valid(node) || (node[0] != '{') != a.Encrypted || (a.Encrypted && node[0] != '"') {
			t.Fatalf("node %q is neither a JSON object nor an encrypted string (encrypted %v)", node, a.Encrypted)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, signatureValid bool) {
		var resp ScoreBriefGetResponse
		err := ParseResponse(body, MethodScoreBriefGet, fuzzVerifier(signatureValid), &resp)
		if err == nil {
			if !signatureValid || resp.Code != CodeSuccess || resp.Raw == nil {
				t.Fatalf("accepted %q (signature valid %v) as %+v", body, signatureValid, resp)
			}
			return
		}
		var zerr *Error
		if !errors.As(err, &zerr) {
			t.Fatalf("error %v is not *Error", err)
		}
		if resp.Raw != nil || resp.BizNo != "" {
			t.Fatalf("failed parse wrote the response: %+v", resp)
		}
		if zerr.Source == SourceGateway && !signatureValid && bytes.Contains(body, []byte(`"sign"`)) {
			// A signed error whose signature fails must not be trusted either,
			// unless the sign value is not a string at all (then parsing fails first).
			if a, _ := ExtractNode(body, MethodScoreBriefGet); a.Sign != "" {
				t.Fatalf("trusted a gateway error with a bad signature: %v", zerr)
			}
		}
	})
}
