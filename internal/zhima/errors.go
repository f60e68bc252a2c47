package zhima

import (
	"fmt"
	"net/http"
	"strings"
)

// Source says where an Error came from.
type Source string

const (
	// SourceLocal: the request was refused before anything was sent.
	SourceLocal Source = "local"
	// SourceGateway: the gateway answered with a non-success code.
	SourceGateway Source = "gateway"
	// SourceTransport: no usable answer (network, timeout, HTTP status, unreadable body).
	SourceTransport Source = "transport"
	// SourceVerification: an answer came whose signature does not verify.
	SourceVerification Source = "verification"
)

// Gateway codes that zhimaq branches on.
const (
	CodeSuccess            = "10000"
	CodeServiceUnavailable = "20000"
	CodeAuthTokenInvalid   = "20001"
	CodeMissingParameter   = "40001"
	CodeInvalidParameter   = "40002"
	CodeBusinessFailed     = "40004"
	CodeNoPermission       = "40006"
)

// Business sub-codes of code 40004 that zhimaq branches on or produces.
const (
	SubSystemError          = "SYSTEM_ERROR"
	SubTransactionError     = "TRANSACTION_ERROR"
	SubInvalidParameter     = "INVALID_PARAMETER"
	SubTransactionIDRepeat  = "TRANSACTION_ID_REPEAT"
	SubTransactionIDExpired = "TRANSACTION_ID_EXPIRED"
)

// Error is every failure of a gateway call: a local refusal, a gateway error
// code, a transport failure or a response that does not verify. Reach it with
// errors.As. Its text never holds request data, only codes and messages.
type Error struct {
	Source     Source `json:"source"`
	Method     string `json:"-"`
	Code       string `json:"code,omitempty"`
	Msg        string `json:"msg,omitempty"`
	SubCode    string `json:"sub_code,omitempty"`
	SubMsg     string `json:"sub_msg,omitempty"`
	HTTPStatus int    `json:"http_status,omitempty"`
	TraceID    string `json:"trace_id,omitempty"`
	// Err is the underlying cause of a transport or verification error.
	Err error `json:"-"`
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("zhima")
	if e.Method != "" {
		b.WriteString(" ")
		b.WriteString(e.Method)
	}
	fmt.Fprintf(&b, ": %s", e.Source)
	if e.Code != "" {
		fmt.Fprintf(&b, " code=%s", e.Code)
	}
	if e.Msg != "" {
		fmt.Fprintf(&b, " msg=%q", e.Msg)
	}
	if e.SubCode != "" {
		fmt.Fprintf(&b, " sub_code=%s", e.SubCode)
	}
	if e.SubMsg != "" {
		fmt.Fprintf(&b, " sub_msg=%q", e.SubMsg)
	}
	if e.HTTPStatus != 0 {
		fmt.Fprintf(&b, " http=%d", e.HTTPStatus)
	}
	if e.TraceID != "" {
		fmt.Fprintf(&b, " trace_id=%s", e.TraceID)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether calling again with the same transaction_id can
// help: network errors, timeouts, HTTP 5xx and 429, code 20000, 40004 with
// SYSTEM_ERROR or TRANSACTION_ERROR, and responses that fail verification.
// Everything else — configuration, input and business errors, and anything
// not known to be transient — is final.
func (e *Error) Retryable() bool {
	switch e.Source {
	case SourceVerification:
		return true
	case SourceTransport:
		if e.HTTPStatus == 0 {
			return true // network error or timeout: no answer came
		}
		// An answer came: only overload statuses are transient; an
		// unreadable 200 body is not known to be.
		return e.HTTPStatus >= 500 || e.HTTPStatus == http.StatusTooManyRequests
	case SourceGateway:
		switch e.Code {
		case CodeServiceUnavailable:
			return true
		case CodeBusinessFailed:
			sub := subCodeName(e.SubCode)
			return sub == SubSystemError || sub == SubTransactionError
		}
	}
	return false
}

// subCodeName drops a namespace prefix such as "isv." or "zhima.xxx." from a
// sub_code, so SYSTEM_ERROR matches however the gateway qualifies it.
func subCodeName(s string) string {
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// MsgBusinessFailed is the msg of code 40004, which local refusals of a
// request carry too.
const MsgBusinessFailed = "Business Failed"

// BusinessFailure is a local refusal that the gateway would answer with code
// 40004: source local, code 40004, msg "Business Failed", subCode and detail
// as sub_msg. detail must not quote request data.
func BusinessFailure(method, subCode, detail string) *Error {
	return &Error{Source: SourceLocal, Method: method, Code: CodeBusinessFailed, Msg: MsgBusinessFailed,
		SubCode: subCode, SubMsg: detail}
}

// InvalidParameter is the local refusal of a request field, sub_code
// INVALID_PARAMETER; detail names the field and must not quote its value.
func InvalidParameter(method, detail string) *Error {
	return BusinessFailure(method, SubInvalidParameter, detail)
}

// TransactionIDRepeat is the local refusal of a transaction_id already used
// with other parameters inside the window, sub_code TRANSACTION_ID_REPEAT.
func TransactionIDRepeat(method, detail string) *Error {
	return BusinessFailure(method, SubTransactionIDRepeat, detail)
}

// TransactionIDExpired is the local refusal of a transaction_id whose window
// is over, sub_code TRANSACTION_ID_EXPIRED.
func TransactionIDExpired(method, detail string) *Error {
	return BusinessFailure(method, SubTransactionIDExpired, detail)
}

// LocalFailure is a local failure that is none of the gateway's codes (a
// store or a payload that fails, a record that expired): source local, no
// code, msg as given. msg must not quote request data.
func LocalFailure(method, msg string) *Error {
	return &Error{Source: SourceLocal, Method: method, Msg: msg}
}

// invalidParam is the local refusal of a request field. detail must not
// quote the field's value.
func invalidParam(method, field, detail string) *Error {
	return InvalidParameter(method, field+": "+detail)
}
