package zhima

import (
	"errors"
	"testing"
)

func TestLocalErrorConstructors(t *testing.T) {
	const method = MethodScoreBriefGet
	tests := []struct {
		name      string
		err       *Error
		code, msg string
		subCode   string
		subMsg    string
	}{
		{"invalid parameter", InvalidParameter(method, "cert_no: is required"),
			CodeBusinessFailed, MsgBusinessFailed, SubInvalidParameter, "cert_no: is required"},
		{"transaction id repeat", TransactionIDRepeat(method, "used with other parameters"),
			CodeBusinessFailed, MsgBusinessFailed, SubTransactionIDRepeat, "used with other parameters"},
		{"transaction id expired", TransactionIDExpired(method, "the window closed"),
			CodeBusinessFailed, MsgBusinessFailed, SubTransactionIDExpired, "the window closed"},
		{"business failure with another sub_code", BusinessFailure(method, "NO_VALID_ARRANGEMENT", "no arrangement"),
			CodeBusinessFailed, MsgBusinessFailed, "NO_VALID_ARRANGEMENT", "no arrangement"},
		{"local failure", LocalFailure(method, "payload cannot be opened"),
			"", "payload cannot be opened", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.err
			if e.Source != SourceLocal || e.Method != method || e.Code != tt.code || e.Msg != tt.msg ||
				e.SubCode != tt.subCode || e.SubMsg != tt.subMsg {
				t.Fatalf("got %+v, want local code=%q msg=%q sub_code=%q sub_msg=%q", e, tt.code, tt.msg, tt.subCode, tt.subMsg)
			}
			if e.HTTPStatus != 0 || e.TraceID != "" || e.Err != nil {
				t.Fatalf("got %+v: a local error has no HTTP status, trace id or cause", e)
			}
			if e.Retryable() {
				t.Fatal("a local error is retryable")
			}
			var zerr *Error
			if !errors.As(error(e), &zerr) || zerr != e {
				t.Fatal("errors.As does not reach the *Error")
			}
		})
	}
}
