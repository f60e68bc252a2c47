package zhima

import "encoding/json"

// Envelope holds the fields every response node carries, and the node's bytes
// exactly as the gateway sent and signed them.
type Envelope struct {
	Code    string `json:"code"`
	Msg     string `json:"msg"`
	SubCode string `json:"sub_code,omitempty"`
	SubMsg  string `json:"sub_msg,omitempty"`
	// Raw is the verified response node, byte for byte as received (UTF-8).
	Raw json.RawMessage `json:"-"`
	// TraceID is the gateway's trace id, when it sends one.
	TraceID string `json:"-"`
}

func (e *Envelope) envelope() *Envelope { return e }

// CertificationInitializeResponse answers zhima.customer.certification.initialize.
type CertificationInitializeResponse struct {
	Envelope
	// BizNo identifies the certification for its later steps.
	BizNo string `json:"biz_no"`
}

// ScoreBriefGetResponse answers zhima.credit.score.brief.get.
type ScoreBriefGetResponse struct {
	Envelope
	BizNo string `json:"biz_no"`
	// IsAdmittance is Y (score ≥ admittance_score), N, or N/A (cannot tell).
	IsAdmittance string `json:"is_admittance"`
}

// RelationQueryResponse answers zhima.credit.relation.query.
type RelationQueryResponse struct {
	Envelope
	BizNo        string        `json:"biz_no"`
	RelationRank string        `json:"relation_rank"`
	RelationInfo *RelationInfo `json:"relation_info,omitempty"`
	// RelationScore is 0–100; 0 when the request named no relation.
	RelationScore int `json:"relation_score"`
}

// RelationInfo describes an existing relation.
type RelationInfo struct {
	// Recency is how recent the contact is, e.g. V_CT_RL180D.
	Recency string `json:"recency"`
}
