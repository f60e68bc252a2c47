package zhima

import (
	"errors"
	"strings"
	"testing"
)

// A resident ID number from GB 11643's worked example; its check digit is X.
const (
	validID   = "11010519491231002X"
	validName = "张三"
	validTxID = "ZQ20261126000001"
)

func validScore() *ScoreBriefGetRequest {
	return &ScoreBriefGetRequest{TransactionID: validTxID, ProductCode: "w1010100000000002733",
		CertType: "IDENTITY_CARD", CertNo: validID, Name: validName, AdmittanceScore: 650}
}

func validRelation() *RelationQueryRequest {
	return &RelationQueryRequest{ProductCode: "w1010100001000001200", TransactionID: validTxID,
		CertNo: validID, Name: validName, RelationPhone: "15843991158", RelationName: "李四", Relation: "family"}
}

func validCertification() *CertificationInitializeRequest {
	return &CertificationInitializeRequest{TransactionID: validTxID, ProductCode: "w1010100000000002978", BizCode: "FACE",
		IdentityParam:  `{"identity_type":"CERT_INFO","cert_type":"IDENTITY_CARD","cert_name":"张三","cert_no":"` + validID + `"}`,
		MerchantConfig: "{}", FaceContrastPicture: "aGVsbG8="}
}

func TestValidateAcceptsDocumentedExamples(t *testing.T) {
	lower := validScore()
	lower.CertNo = strings.ToLower(validID)
	old := validRelation()
	old.CertNo = "110105491231002"
	uid := validScore()
	uid.CertType, uid.CertNo, uid.Name = "ALIPAY_USER_ID", "2088102146225135", ""
	for name, r := range map[string]Request{
		"score": validScore(), "relation": validRelation(), "certification": validCertification(),
		"lowercase x": lower, "15-digit id": old, "alipay uid without name": uid,
	} {
		if err := r.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestResidentIDCheckDigit(t *testing.T) {
	// Known-valid numbers: GB 11643's worked example, a few of other
	// districts, and one sequence that ends in each of the eleven check
	// characters (X is the worked example).
	tests := []struct{ name, id string }{
		{"gb_11643_example_check_X", validID},
		{"beijing_chaoyang", "110105198803124517"},
		{"shanghai_xuhui", "310104199207253625"},
		{"shenzhen_nanshan", "440305198501187333"},
		{"beijing_dongcheng", "110101199003074477"},
		{"check_0", "110105194912310089"},
		{"check_1", "110105194912310011"},
		{"check_2", "110105194912310062"},
		{"check_3", "110105194912310003"},
		{"check_4", "110105194912310054"},
		{"check_5", "110105194912310185"},
		{"check_6", "110105194912310046"},
		{"check_7", "110105194912310097"},
		{"check_8", "110105194912310038"},
		{"check_9", "110105194912310070"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ResidentIDCheckDigit(tt.id[:17]); got != tt.id[17] {
				t.Errorf("ResidentIDCheckDigit(%s) = %c, want %c", tt.id[:17], got, tt.id[17])
			}
			if detail := residentIDProblem(tt.id); detail != "" {
				t.Errorf("residentIDProblem(%s) = %q, want none", tt.id, detail)
			}
		})
	}
}

func TestValidateNamesTheBadField(t *testing.T) {
	tests := []struct {
		name  string
		req   Request
		field string
	}{
		{"missing transaction_id", with(validScore(), func(r *ScoreBriefGetRequest) { r.TransactionID = "" }), "transaction_id"},
		{"transaction_id with dash", with(validScore(), func(r *ScoreBriefGetRequest) { r.TransactionID = "T-1" }), "transaction_id"},
		{"transaction_id 65 chars", with(validScore(), func(r *ScoreBriefGetRequest) { r.TransactionID = strings.Repeat("a", 65) }), "transaction_id"},
		{"certification transaction_id 33 chars", with(validCertification(), func(r *CertificationInitializeRequest) { r.TransactionID = strings.Repeat("a", 33) }), "transaction_id"},
		{"bad check digit", with(validScore(), func(r *ScoreBriefGetRequest) { r.CertNo = "110105194912310021" }), "cert_no"},
		{"17-digit id", with(validRelation(), func(r *RelationQueryRequest) { r.CertNo = validID[:17] }), "cert_no"},
		{"letters in id", with(validRelation(), func(r *RelationQueryRequest) { r.CertNo = "11010519491231A02X" }), "cert_no"},
		{"unknown cert_type", with(validScore(), func(r *ScoreBriefGetRequest) { r.CertType = "DRIVER" }), "cert_type"},
		{"missing name", with(validScore(), func(r *ScoreBriefGetRequest) { r.Name = "" }), "name"},
		{"name with pipe", with(validScore(), func(r *ScoreBriefGetRequest) { r.Name = "张|三" }), "name"},
		{"name with \\u0001", with(validRelation(), func(r *RelationQueryRequest) { r.RelationName = "李\u0001四" }), "relation_name"},
		{"name 65 chars", with(validRelation(), func(r *RelationQueryRequest) { r.Name = strings.Repeat("张", 65) }), "name"},
		{"score 349", with(validScore(), func(r *ScoreBriefGetRequest) { r.AdmittanceScore = 349 }), "admittance_score"},
		{"score 951", with(validScore(), func(r *ScoreBriefGetRequest) { r.AdmittanceScore = 951 }), "admittance_score"},
		{"phone 10 digits", with(validRelation(), func(r *RelationQueryRequest) { r.RelationPhone = "1584399115" }), "relation_phone"},
		{"phone starting 12", with(validRelation(), func(r *RelationQueryRequest) { r.RelationPhone = "12843991158" }), "relation_phone"},
		{"phone with country code", with(validRelation(), func(r *RelationQueryRequest) { r.RelationPhone = "+8615843991158" }), "relation_phone"},
		{"unknown relation", with(validRelation(), func(r *RelationQueryRequest) { r.Relation = "spouse" }), "relation"},
		{"product_code too long", with(validScore(), func(r *ScoreBriefGetRequest) { r.ProductCode = strings.Repeat("w", 21) }), "product_code"},
		{"identity_param not JSON", with(validCertification(), func(r *CertificationInitializeRequest) { r.IdentityParam = "{cert_no" }), "identity_param"},
		{"identity_param bad id", with(validCertification(), func(r *CertificationInitializeRequest) {
			r.IdentityParam = `{"identity_type":"CERT_INFO","cert_type":"IDENTITY_CARD","cert_name":"张三","cert_no":"110105194912310021"}`
		}), "identity_param.cert_no"},
		{"merchant_config not JSON", with(validCertification(), func(r *CertificationInitializeRequest) { r.MerchantConfig = "[1]" }), "merchant_config"},
		{"picture over 1 MiB", with(validCertification(), func(r *CertificationInitializeRequest) { r.FaceContrastPicture = strings.Repeat("A", MaxFacePicture+4) }), "face_contrast_picture"},
		{"picture not base64", with(validCertification(), func(r *CertificationInitializeRequest) { r.FaceContrastPicture = "not base64!" }), "face_contrast_picture"},
		{"missing biz_code", with(validCertification(), func(r *CertificationInitializeRequest) { r.BizCode = "" }), "biz_code"},
		{"invalid UTF-8 name", with(validScore(), func(r *ScoreBriefGetRequest) { r.Name = "\xff\xfe" }), "name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.req.Validate()
			var zerr *Error
			if !errors.As(err, &zerr) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if zerr.Source != SourceLocal || zerr.SubCode != SubInvalidParameter || zerr.Retryable() {
				t.Errorf("got %+v, want a final local INVALID_PARAMETER", zerr)
			}
			if !strings.HasPrefix(zerr.SubMsg, tc.field+": ") {
				t.Errorf("sub_msg %q does not start with the field %q", zerr.SubMsg, tc.field)
			}
			assertNoPersonalData(t, err.Error())
		})
	}
}

func with[R any](r *R, change func(*R)) *R {
	change(r)
	return r
}

// assertNoPersonalData fails when s holds any of the test's personal values.
func assertNoPersonalData(tb testing.TB, s string) {
	tb.Helper()
	for _, pii := range []string{validID, "110105194912310021", "11010519491231002", validName, "李四", "张", "15843991158", "1584399115"} {
		if strings.Contains(s, pii) {
			tb.Errorf("%q holds personal data %q", s, pii)
		}
	}
}
