package zhima

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ErrorNode is the node key the gateway uses in place of the method's node for
// some failures (bad signature, unknown app id, missing parameters).
const ErrorNode = "error_response"

// NodeKey is the key of method's node in a response body:
// "zhima.credit.score.brief.get" -> "zhima_credit_score_brief_get_response".
func NodeKey(method string) string {
	return strings.ReplaceAll(method, ".", "_") + "_response"
}

// errNoNode means a response body holds neither the method's node nor error_response.
var errNoNode = errors.New("response holds no response node")

// Answer is a gateway response body taken apart.
type Answer struct {
	// Node is method's node (or error_response) exactly as received: the
	// bytes the signature covers. An encrypted node is a JSON string,
	// double quotes included.
	Node []byte
	// IsError says Node is error_response.
	IsError bool
	// Encrypted says Node is a JSON string holding AES ciphertext.
	Encrypted bool
	// Sign is the "sign" value, "" when absent.
	Sign string
	// CertSN is "alipay_cert_sn" (certificate mode), "" when absent.
	CertSN string
}

// ExtractNode finds method's node (or error_response) in a gateway response
// body whatever the key order, with the sign and the Alipay certificate SN
// beside it. The node is a JSON object, or, when encrypted, a JSON string.
func ExtractNode(body []byte, method string) (Answer, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return Answer{}, fmt.Errorf("response is not a JSON object: %w", err)
	}
	var a Answer
	for field, dst := range map[string]*string{"sign": &a.Sign, ParamAlipayCertSN: &a.CertSN} {
		if raw, ok := top[field]; ok {
			if err := json.Unmarshal(raw, dst); err != nil {
				return Answer{}, fmt.Errorf("response %q is not a string", field)
			}
		}
	}
	if raw, ok := top[NodeKey(method)]; ok {
		a.Node = raw
	} else if raw, ok := top[ErrorNode]; ok {
		a.Node, a.IsError = raw, true
	} else {
		return Answer{}, errNoNode
	}
	switch {
	case len(a.Node) > 0 && a.Node[0] == '{':
	case len(a.Node) > 0 && a.Node[0] == '"':
		a.Encrypted = true
	default:
		return Answer{}, errors.New("response node is neither a JSON object nor an encrypted string")
	}
	return a, nil
}

// Verifier is what ParseResponse needs of a client.
type Verifier interface {
	// Verify checks sign over content (a node's bytes as received), made
	// by the Alipay certificate certSN names ("" in key mode).
	Verify(content []byte, sign, certSN string) error
	// Decrypt opens an encrypted node's text into the node's JSON; it fails
	// when the client does not encrypt.
	Decrypt(text string) ([]byte, error)
}

// ParseResponse extracts, verifies, decrypts and decodes method's node from
// a response body into out (an *…Response embedding Envelope); out is
// written only when the node is a verified success. The signature is
// checked first, over the node as received, whenever the body carries one;
// an encrypted node is opened after that.
//
// A node whose signature does not verify, or that cannot be decrypted, is a
// SourceVerification error. So is a success node with no signature: only
// error codes may come unsigned (the gateway does not sign some of them),
// and they are returned as SourceGateway errors.
func ParseResponse(body []byte, method string, v Verifier, out envelopeHolder) error {
	a, err := ExtractNode(body, method)
	if err != nil {
		return &Error{Source: SourceTransport, Method: method, Err: err}
	}
	signed := a.Sign != ""
	if signed {
		if err := v.Verify(a.Node, a.Sign, a.CertSN); err != nil {
			return &Error{Source: SourceVerification, Method: method, Err: err}
		}
	}
	node := a.Node
	if a.Encrypted {
		var text string
		if err := json.Unmarshal(a.Node, &text); err != nil {
			return &Error{Source: SourceTransport, Method: method, Err: fmt.Errorf("decode %s: %w", NodeKey(method), err)}
		}
		if node, err = v.Decrypt(text); err != nil {
			return &Error{Source: SourceVerification, Method: method, Err: err}
		}
		if len(node) == 0 || node[0] != '{' {
			return &Error{Source: SourceVerification, Method: method, Err: errors.New("decrypted node is not a JSON object")}
		}
	}
	var env Envelope
	if err := json.Unmarshal(node, &env); err != nil {
		return &Error{Source: SourceTransport, Method: method, Err: fmt.Errorf("decode %s: %w", NodeKey(method), err)}
	}
	if env.Code != CodeSuccess {
		return &Error{Source: SourceGateway, Method: method, Code: env.Code, Msg: env.Msg, SubCode: env.SubCode, SubMsg: env.SubMsg}
	}
	if a.IsError { // an error node that claims success
		return &Error{Source: SourceVerification, Method: method, Err: errors.New("error_response claims success")}
	}
	if !signed {
		return &Error{Source: SourceVerification, Method: method, Err: errors.New("success response carries no signature")}
	}
	if err := json.Unmarshal(node, out); err != nil {
		return &Error{Source: SourceTransport, Method: method, Err: fmt.Errorf("decode %s: %w", NodeKey(method), err)}
	}
	out.envelope().Raw = node
	return nil
}

// envelopeHolder is a typed response: it embeds Envelope.
type envelopeHolder interface{ envelope() *Envelope }
