package sandbox

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

// Gateway messages that go with each code.
const (
	msgSuccess     = "Success"
	msgUnavailable = "Service Currently Unavailable"
	msgMissing     = "Missing Required Arguments"
	msgInvalid     = "Invalid Arguments"
	msgBusiness    = "Business Failed"
)

// sandboxNote is written into some success nodes as raw JSON: an escaped
// slash and non-ASCII text, so a client that re-serializes the node instead
// of verifying the bytes it received fails verification.
const sandboxNote = `"签名 a\/b"`

// node writes a JSON object field by field, in order, so the sandbox
// controls the exact bytes it signs.
type node struct{ b []byte }

func (n *node) key(k string) {
	if len(n.b) == 0 {
		n.b = append(n.b, '{')
	} else {
		n.b = append(n.b, ',')
	}
	n.b = appendJSONString(n.b, k)
	n.b = append(n.b, ':')
}

func (n *node) str(k, v string) *node {
	n.key(k)
	n.b = appendJSONString(n.b, v)
	return n
}

func (n *node) num(k string, v int) *node {
	n.key(k)
	n.b = strconv.AppendInt(n.b, int64(v), 10)
	return n
}

func (n *node) raw(k, v string) *node {
	n.key(k)
	n.b = append(n.b, v...)
	return n
}

func (n *node) bytes() []byte {
	if len(n.b) == 0 {
		return []byte("{}")
	}
	return append(n.b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

// errorNode is a failure node: code, msg, sub_code, sub_msg.
func errorNode(code, msg, subCode, subMsg string) []byte {
	n := new(node).str("code", code).str("msg", msg)
	if subCode != "" {
		n.str("sub_code", subCode)
	}
	if subMsg != "" {
		n.str("sub_msg", subMsg)
	}
	return n.bytes()
}

// digest hashes parts with separators, the root of every deterministic
// choice the sandbox makes.
func digest(parts ...string) [sha256.Size]byte {
	return sha256.Sum256([]byte(strings.Join(parts, "\x00")))
}

func pick(d [sha256.Size]byte, at int) uint64 {
	return binary.BigEndian.Uint64(d[at : at+8])
}

// bizNo is "ZM" and 30 digits derived from method and transaction_id.
func bizNo(method, transactionID string) string {
	d := digest("biz_no", method, transactionID)
	var b strings.Builder
	b.Grow(32)
	b.WriteString("ZM")
	for i := 0; i < 30; i++ {
		b.WriteByte('0' + d[i]%10)
	}
	return b.String()
}

// withNote reports whether the success node of (method, transaction_id)
// carries sandboxNote: one in four do.
func withNote(method, transactionID string) bool {
	return digest("note", method, transactionID)[0]&3 == 0
}

// successNode is the deterministic answer to a valid request: the same
// request always gets the same bytes.
func successNode(req zhima.Request) []byte {
	method, txid := req.Method(), req.Transaction()
	n := new(node).str("code", zhima.CodeSuccess).str("msg", msgSuccess).str("biz_no", bizNo(method, txid))
	switch r := req.(type) {
	case *zhima.ScoreBriefGetRequest:
		n.str("is_admittance", admittance(r))
	case *zhima.RelationQueryRequest:
		rank, recency, score := relation(r)
		n.str("relation_rank", rank)
		if recency != "" {
			n.raw("relation_info", string(new(node).str("recency", recency).bytes()))
		}
		n.num("relation_score", score)
	}
	if withNote(method, txid) {
		n.raw("sandbox_note", sandboxNote)
	}
	return n.bytes()
}

// admittance derives a pseudo score of 350..950 from the person and compares
// it with the admittance score; one person in sixteen cannot be assessed.
func admittance(r *zhima.ScoreBriefGetRequest) string {
	d := digest("score", r.CertType, r.CertNo, r.Name)
	if d[0]&15 == 0 {
		return "N/A"
	}
	score := 350 + int(pick(d, 1)%601)
	if score >= r.AdmittanceScore {
		return "Y"
	}
	return "N"
}

// relationRanks run from strongest to none, with the score band each gives
// when the request names a relation.
var relationRanks = []struct {
	rank     string
	min, max int
}{
	{"V_CT_RL_SG", 80, 100},
	{"V_CT_RL_MD", 50, 79},
	{"V_CT_RL_WK", 20, 49},
	{"V_CT_RL_NO", 0, 19},
}

var recencies = []string{"V_CT_RL30D", "V_CT_RL90D", "V_CT_RL180D", "V_CT_RL360D"}

// relation derives rank, recency ("" when unrelated) and score (0 when the
// request names no relation) from the applicant and the contact.
func relation(r *zhima.RelationQueryRequest) (rank, recency string, score int) {
	d := digest("relation", r.CertNo, r.Name, r.RelationPhone, r.RelationName, r.Relation)
	band := relationRanks[pick(d, 0)%uint64(len(relationRanks))]
	if band.rank != "V_CT_RL_NO" {
		recency = recencies[pick(d, 8)%uint64(len(recencies))]
	}
	if r.Relation != "" {
		score = band.min + int(pick(d, 16)%uint64(band.max-band.min+1))
	}
	return band.rank, recency, score
}

// nodeName is the JSON key of a method's answer.
func nodeName(method string) string {
	return strings.ReplaceAll(method, ".", "_") + "_response"
}

const errorResponse = "error_response"
