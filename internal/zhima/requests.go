package zhima

import (
	"encoding/json"
	"fmt"
)

// Method names of the three gateway APIs.
const (
	MethodCertificationInitialize = "zhima.customer.certification.initialize"
	MethodScoreBriefGet           = "zhima.credit.score.brief.get"
	MethodRelationQuery           = "zhima.credit.relation.query"
)

// Methods lists the gateway methods zhimaq speaks.
var Methods = []string{MethodCertificationInitialize, MethodScoreBriefGet, MethodRelationQuery}

// Request is the biz_content of one gateway call.
type Request interface {
	// Method is the gateway method the request belongs to.
	Method() string
	// Transaction is the request's transaction_id.
	Transaction() string
	// Validate mirrors the gateway's documented limits; it returns an *Error
	// with sub_code INVALID_PARAMETER naming the first bad field.
	Validate() error
}

// NewRequest returns an empty request of method's type, ready for
// json.Unmarshal of a biz_content, or an error for an unknown method.
func NewRequest(method string) (Request, error) {
	switch method {
	case MethodCertificationInitialize:
		return new(CertificationInitializeRequest), nil
	case MethodScoreBriefGet:
		return new(ScoreBriefGetRequest), nil
	case MethodRelationQuery:
		return new(RelationQueryRequest), nil
	}
	return nil, fmt.Errorf("zhima: unknown method %q", method)
}

// CertificationInitializeRequest starts a face certification
// (zhima.customer.certification.initialize).
type CertificationInitializeRequest struct {
	TransactionID string `json:"transaction_id"`
	ProductCode   string `json:"product_code"`
	BizCode       string `json:"biz_code"`
	// IdentityParam is a JSON object as a string, e.g.
	// {"identity_type":"CERT_INFO","cert_type":"IDENTITY_CARD","cert_name":"…","cert_no":"…"}.
	IdentityParam       string `json:"identity_param"`
	MerchantConfig      string `json:"merchant_config,omitempty"`
	ExtBizParam         string `json:"ext_biz_param,omitempty"`
	LinkedMerchantID    string `json:"linked_merchant_id,omitempty"`
	FaceContrastPicture string `json:"face_contrast_picture,omitempty"`
}

// MaxFacePicture is the gateway's limit on face_contrast_picture (base64 characters).
const MaxFacePicture = 1 << 20

func (r *CertificationInitializeRequest) Method() string      { return MethodCertificationInitialize }
func (r *CertificationInitializeRequest) Transaction() string { return r.TransactionID }

// Validate checks the documented limits; see Request.
func (r *CertificationInitializeRequest) Validate() error {
	c := fieldCheck{method: r.Method()}
	c.transactionID(r.TransactionID, 32)
	c.text("product_code", r.ProductCode, true, 32)
	c.text("biz_code", r.BizCode, true, 32)
	if c.jsonObject("identity_param", r.IdentityParam, true, 4096) {
		c.identityParam(r.IdentityParam)
	}
	c.jsonObject("merchant_config", r.MerchantConfig, false, 1024)
	c.jsonObject("ext_biz_param", r.ExtBizParam, false, 4096)
	c.text("linked_merchant_id", r.LinkedMerchantID, false, 16)
	c.base64Text("face_contrast_picture", r.FaceContrastPicture, MaxFacePicture)
	return c.result()
}

// identityParam checks the certificate fields of a CERT_INFO identity.
func (c *fieldCheck) identityParam(v string) {
	var id struct {
		IdentityType string `json:"identity_type"`
		CertType     string `json:"cert_type"`
		CertName     string `json:"cert_name"`
		CertNo       string `json:"cert_no"`
	}
	if err := json.Unmarshal([]byte(v), &id); err != nil {
		c.fail("identity_param", "fields must be strings")
		return
	}
	if id.IdentityType == "" {
		c.fail("identity_param.identity_type", "is required")
		return
	}
	if id.IdentityType != "CERT_INFO" {
		return
	}
	c.oneOf("identity_param.cert_type", id.CertType, true, "IDENTITY_CARD")
	c.personName("identity_param.cert_name", id.CertName, true)
	c.residentID("identity_param.cert_no", id.CertNo)
}

// ScoreBriefGetRequest asks whether a user's score reaches AdmittanceScore
// (zhima.credit.score.brief.get).
type ScoreBriefGetRequest struct {
	TransactionID string `json:"transaction_id"`
	ProductCode   string `json:"product_code"`
	// CertType is IDENTITY_CARD, PASSPORT or ALIPAY_USER_ID.
	CertType string `json:"cert_type"`
	CertNo   string `json:"cert_no"`
	// Name is required unless CertType is ALIPAY_USER_ID.
	Name            string `json:"name,omitempty"`
	AdmittanceScore int    `json:"admittance_score"`
}

func (r *ScoreBriefGetRequest) Method() string      { return MethodScoreBriefGet }
func (r *ScoreBriefGetRequest) Transaction() string { return r.TransactionID }

// Validate checks the documented limits; see Request.
func (r *ScoreBriefGetRequest) Validate() error {
	c := fieldCheck{method: r.Method()}
	c.transactionID(r.TransactionID, 64)
	c.text("product_code", r.ProductCode, true, 20)
	c.oneOf("cert_type", r.CertType, true, "IDENTITY_CARD", "PASSPORT", "ALIPAY_USER_ID")
	switch r.CertType {
	case "IDENTITY_CARD":
		c.residentID("cert_no", r.CertNo)
	case "ALIPAY_USER_ID":
		if c.text("cert_no", r.CertNo, true, 32) && !allDigits(r.CertNo) {
			c.fail("cert_no", "an Alipay user id is all digits")
		}
	default:
		c.text("cert_no", r.CertNo, true, 32)
	}
	c.personName("name", r.Name, r.CertType != "ALIPAY_USER_ID")
	if r.AdmittanceScore < 350 || r.AdmittanceScore > 950 {
		c.fail("admittance_score", "must be between 350 and 950")
	}
	return c.result()
}

// RelationQueryRequest asks how strongly a contact is related to an applicant
// (zhima.credit.relation.query).
type RelationQueryRequest struct {
	ProductCode   string `json:"product_code"`
	TransactionID string `json:"transaction_id"`
	CertNo        string `json:"cert_no"`
	Name          string `json:"name"`
	RelationPhone string `json:"relation_phone"`
	RelationName  string `json:"relation_name"`
	// Relation is family, workmate, schoolmate or friend; optional.
	Relation         string `json:"relation,omitempty"`
	LinkedMerchantID string `json:"linked_merchant_id,omitempty"`
}

func (r *RelationQueryRequest) Method() string      { return MethodRelationQuery }
func (r *RelationQueryRequest) Transaction() string { return r.TransactionID }

// Validate checks the documented limits; see Request.
func (r *RelationQueryRequest) Validate() error {
	c := fieldCheck{method: r.Method()}
	c.text("product_code", r.ProductCode, true, 32)
	c.transactionID(r.TransactionID, 64)
	c.residentID("cert_no", r.CertNo)
	c.personName("name", r.Name, true)
	c.mobile("relation_phone", r.RelationPhone)
	c.personName("relation_name", r.RelationName, true)
	c.oneOf("relation", r.Relation, false, "family", "workmate", "schoolmate", "friend")
	c.text("linked_merchant_id", r.LinkedMerchantID, false, 32)
	return c.result()
}
