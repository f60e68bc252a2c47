package zhimatest

import (
	"encoding/json"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

// The product codes the sandbox accepts for each method.
const (
	ProductScore         = "w1010100000000002733"
	ProductRelation      = "w1010100001000001200"
	ProductCertification = "w1010100000000002978"
)

// ResidentID completes the first 17 characters of a resident ID number with
// their check digit (zhima.ResidentIDCheckDigit), so that it validates.
func ResidentID(first17 string) string {
	return first17 + string(zhima.ResidentIDCheckDigit(first17))
}

// ScoreBiz is the biz_content of a zhima.credit.score.brief.get job for an
// IDENTITY_CARD.
func ScoreBiz(txid, certNo, name string, admittance int) json.RawMessage {
	return marshal(struct {
		TransactionID   string `json:"transaction_id"`
		ProductCode     string `json:"product_code"`
		CertType        string `json:"cert_type"`
		CertNo          string `json:"cert_no"`
		Name            string `json:"name"`
		AdmittanceScore int    `json:"admittance_score"`
	}{txid, ProductScore, "IDENTITY_CARD", certNo, name, admittance})
}

// RelationBiz is the biz_content of a zhima.credit.relation.query job:
// name's relation to the holder of phone, called relationName. A relation
// of "" leaves that optional field out.
func RelationBiz(txid, certNo, name, phone, relationName, relation string) json.RawMessage {
	return marshal(struct {
		ProductCode   string `json:"product_code"`
		TransactionID string `json:"transaction_id"`
		CertNo        string `json:"cert_no"`
		Name          string `json:"name"`
		RelationPhone string `json:"relation_phone"`
		RelationName  string `json:"relation_name"`
		Relation      string `json:"relation,omitempty"`
	}{ProductRelation, txid, certNo, name, phone, relationName, relation})
}

// IdentityParam is a certification's identity_param: CERT_INFO for an
// IDENTITY_CARD.
func IdentityParam(certNo, name string) string {
	return string(marshal(struct {
		IdentityType string `json:"identity_type"`
		CertType     string `json:"cert_type"`
		CertName     string `json:"cert_name"`
		CertNo       string `json:"cert_no"`
	}{"CERT_INFO", "IDENTITY_CARD", name, certNo}))
}

// CertificationBiz is the biz_content of a
// zhima.customer.certification.initialize job with biz_code FACE; picture,
// when not "", is its face_contrast_picture (base64).
func CertificationBiz(txid, certNo, name, picture string) json.RawMessage {
	return marshal(struct {
		TransactionID       string `json:"transaction_id"`
		ProductCode         string `json:"product_code"`
		BizCode             string `json:"biz_code"`
		IdentityParam       string `json:"identity_param"`
		FaceContrastPicture string `json:"face_contrast_picture,omitempty"`
	}{txid, ProductCertification, "FACE", IdentityParam(certNo, name), picture})
}

// JobLine is one line of a batch file: the job {"method", "biz_content"}.
func JobLine(method string, biz json.RawMessage) []byte {
	return marshal(struct {
		Method     string          `json:"method"`
		BizContent json.RawMessage `json:"biz_content"`
	}{method, biz})
}

func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("zhimatest: " + err.Error()) // only strings and ints: cannot happen
	}
	return b
}
