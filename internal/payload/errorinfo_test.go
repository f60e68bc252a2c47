package payload

import (
	"errors"
	"fmt"
	"testing"

	"github.com/zhimaq/zhimaq/internal/results"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

func TestErrorInfo(t *testing.T) {
	const m = zhima.MethodScoreBriefGet
	tests := []struct {
		name string
		err  error
		want results.ErrorInfo
	}{
		{"invalid parameter", zhima.InvalidParameter(m, "cert_no: is required"),
			results.ErrorInfo{Source: "local", Code: "40004", Msg: "Business Failed", SubCode: "INVALID_PARAMETER", SubMsg: "cert_no: is required"}},
		{"transaction id repeat", zhima.TransactionIDRepeat(m, "used before"),
			results.ErrorInfo{Source: "local", Code: "40004", Msg: "Business Failed", SubCode: "TRANSACTION_ID_REPEAT", SubMsg: "used before"}},
		{"transaction id expired", zhima.TransactionIDExpired(m, "window closed"),
			results.ErrorInfo{Source: "local", Code: "40004", Msg: "Business Failed", SubCode: "TRANSACTION_ID_EXPIRED", SubMsg: "window closed"}},
		{"local failure", zhima.LocalFailure(m, "cannot open"), results.ErrorInfo{Source: "local", Msg: "cannot open"}},
		{"wrapped local failure", fmt.Errorf("op: %w", zhima.LocalFailure(m, "cannot open")), results.ErrorInfo{Source: "local", Msg: "cannot open"}},
		{"plain error becomes a local failure", errors.New("redis down"), results.ErrorInfo{Source: "local", Msg: "redis down"}},
		{"gateway error keeps its trace id",
			&zhima.Error{Source: zhima.SourceGateway, Method: m, Code: "40004", Msg: "Business Failed", SubCode: "SYSTEM_ERROR", SubMsg: "busy",
				HTTPStatus: 200, TraceID: "0b5f6a7c"},
			results.ErrorInfo{Source: "gateway", Code: "40004", Msg: "Business Failed", SubCode: "SYSTEM_ERROR", SubMsg: "busy", TraceID: "0b5f6a7c"}},
		{"transport error with a status", &zhima.Error{Source: zhima.SourceTransport, Method: m, HTTPStatus: 502, TraceID: "0c1d"},
			results.ErrorInfo{Source: "transport", Msg: "HTTP 502", TraceID: "0c1d"}},
		{"transport error with a cause", &zhima.Error{Source: zhima.SourceTransport, Method: m, Err: errors.New("connection refused")},
			results.ErrorInfo{Source: "transport", Msg: "connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ErrorInfo(tt.err); got == nil || *got != tt.want {
				t.Fatalf("ErrorInfo = %+v, want %+v", got, tt.want)
			}
		})
	}
}
