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

// ExtractNode finds method's node (or error_response) in a gateway response
// body whatever the key order, and returns its bytes exactly as received,
// whether it was the error node, and the "sign" value ("" when absent).
func ExtractNode(body []byte, method string) (node []byte, isError bool, sign string, err error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, false, "", fmt.Errorf("response is not a JSON object: %w", err)
	}
	if raw, ok := top["sign"]; ok {
		if err := json.Unmarshal(raw, &sign); err != nil {
			return nil, false, "", errors.New(`response "sign" is not a string`)
		}
	}
	if raw, ok := top[NodeKey(method)]; ok {
		node = raw
	} else if raw, ok := top[ErrorNode]; ok {
		node, isError = raw, true
	} else {
		return nil, false, "", errNoNode
	}
	if len(node) == 0 || node[0] != '{' {
		return nil, false, "", errors.New("response node is not a JSON object")
	}
	return node, isError, sign, nil
}

// ParseResponse extracts, verifies and decodes method's node from a response
// body into out (an *…Response embedding Envelope); out is written only
// when the node is a verified success. verify checks a signature
// over the node's bytes; it is called whenever the body carries a sign.
//
// A node whose signature does not verify is a SourceVerification error. So is
// a success node with no signature: only error codes may come unsigned (the
// gateway does not sign some of them), and they are returned as
// SourceGateway errors.
func ParseResponse(body []byte, method string, verify func(node []byte, sign string) error, out envelopeHolder) error {
	node, isError, sign, err := ExtractNode(body, method)
	if err != nil {
		return &Error{Source: SourceTransport, Method: method, Err: err}
	}
	signed := sign != ""
	if signed {
		if err := verify(node, sign); err != nil {
			return &Error{Source: SourceVerification, Method: method, Err: err}
		}
	}
	var env Envelope
	if err := json.Unmarshal(node, &env); err != nil {
		return &Error{Source: SourceTransport, Method: method, Err: fmt.Errorf("decode %s: %w", NodeKey(method), err)}
	}
	if env.Code != CodeSuccess {
		return &Error{Source: SourceGateway, Method: method, Code: env.Code, Msg: env.Msg, SubCode: env.SubCode, SubMsg: env.SubMsg}
	}
	if isError { // an error node that claims success
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
