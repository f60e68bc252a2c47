package results

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

var (
	beijing = time.FixedZone("CST", 8*3600)
	t0      = time.Date(2024, 5, 1, 10, 3, 4, 0, beijing)           // 02:03:04Z
	t1      = time.Date(2024, 5, 1, 10, 3, 5, 500_000_000, beijing) // 02:03:05.5Z
)

func ptr[T any](v T) *T { return &v }

func TestRecordJSON(t *testing.T) {
	tests := []struct {
		name string
		rec  Record
		want string
	}{
		{
			"queued_writes_null_response_and_error",
			Record{Method: "zhima.credit.score.brief.get", TransactionID: "T1", State: Queued, EnqueuedAt: ptr(t0), UpdatedAt: t0},
			`{"method":"zhima.credit.score.brief.get","transaction_id":"T1","state":"queued","attempts":0,"duplicate":false,"response":null,"error":null,"enqueued_at":"2024-05-01T02:03:04Z","updated_at":"2024-05-01T02:03:04Z"}`,
		},
		{
			"rejected_writes_null_enqueued_at",
			Record{Method: "zhima.credit.score.brief.get", TransactionID: "T1", State: Rejected, UpdatedAt: t0,
				Error: &ErrorInfo{Source: "local", Code: "40004", SubCode: "TRANSACTION_ID_REPEAT"}},
			`{"method":"zhima.credit.score.brief.get","transaction_id":"T1","state":"rejected","attempts":0,"duplicate":false,"response":null,"error":{"source":"local","code":"40004","sub_code":"TRANSACTION_ID_REPEAT"},"enqueued_at":null,"updated_at":"2024-05-01T02:03:04Z"}`,
		},
		{
			"succeeded_keeps_response_bytes",
			Record{Method: "zhima.credit.score.brief.get", TransactionID: "T1", State: Succeeded, Attempts: 2, Duplicate: true,
				Response:   json.RawMessage(`{"code":"10000","msg":"Success","biz_no":"a\/b<&>","is_admittance":"Y","note":"张三"}`),
				EnqueuedAt: ptr(t0), UpdatedAt: t1, FirstCallAt: ptr(t1)},
			`{"method":"zhima.credit.score.brief.get","transaction_id":"T1","state":"succeeded","attempts":2,"duplicate":true,"response":{"code":"10000","msg":"Success","biz_no":"a\/b<&>","is_admittance":"Y","note":"张三"},"error":null,"enqueued_at":"2024-05-01T02:03:04Z","updated_at":"2024-05-01T02:03:05.5Z","first_call_at":"2024-05-01T02:03:05.5Z"}`,
		},
		{
			"batch_id_written_last_when_set",
			Record{Method: "zhima.credit.score.brief.get", TransactionID: "T1", State: Queued, EnqueuedAt: ptr(t0), UpdatedAt: t0,
				BatchID: "b_20240501T020304Z_ABCDEF"},
			`{"method":"zhima.credit.score.brief.get","transaction_id":"T1","state":"queued","attempts":0,"duplicate":false,"response":null,"error":null,"enqueued_at":"2024-05-01T02:03:04Z","updated_at":"2024-05-01T02:03:04Z","batch_id":"b_20240501T020304Z_ABCDEF"}`,
		},
		{
			"empty_response_written_null",
			Record{Method: "m", TransactionID: "T1", State: Failed, Response: json.RawMessage{}, UpdatedAt: t0,
				Error: &ErrorInfo{Source: "gateway", Code: "40004", Msg: "Business Failed", SubCode: "INVALID_PARAMETER", SubMsg: "bad"}},
			`{"method":"m","transaction_id":"T1","state":"failed","attempts":0,"duplicate":false,"response":null,"error":{"source":"gateway","code":"40004","msg":"Business Failed","sub_code":"INVALID_PARAMETER","sub_msg":"bad"},"enqueued_at":null,"updated_at":"2024-05-01T02:03:04Z"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.rec.MarshalJSON()
			if err != nil {
				t.Fatalf("MarshalJSON: %v", err)
			}
			if string(got) != tt.want {
				t.Fatalf("MarshalJSON =\n%s\nwant\n%s", got, tt.want)
			}
			// Pointer and value marshal alike through encoding/json.
			a, _ := json.Marshal(tt.rec)
			b, _ := json.Marshal(&tt.rec)
			if string(a) != string(b) {
				t.Errorf("json.Marshal of value and pointer differ:\n%s\n%s", a, b)
			}
			// Every time is RFC 3339.
			var m map[string]any
			if err := json.Unmarshal(got, &m); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"enqueued_at", "updated_at", "first_call_at"} {
				if s, ok := m[f].(string); ok {
					if _, err := time.Parse(time.RFC3339, s); err != nil {
						t.Errorf("%s = %q is not RFC 3339: %v", f, s, err)
					}
				}
			}
			// And it reads back to the same record.
			var back Record
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			again, _ := back.MarshalJSON()
			if string(again) != tt.want {
				t.Errorf("round trip =\n%s\nwant\n%s", again, tt.want)
			}
			if len(tt.rec.Response) == 0 && back.Response != nil {
				t.Errorf("Response = %q after reading null, want nil", back.Response)
			}
		})
	}
}

func TestRecordJSONFieldNames(t *testing.T) {
	rec := Record{Method: "m", TransactionID: "T", State: Running, UpdatedAt: t0, FirstCallAt: ptr(t0)}
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	want := []string{"attempts", "duplicate", "enqueued_at", "error", "first_call_at", "method", "response", "state", "transaction_id", "updated_at"}
	if !slices.Equal(got, want) {
		t.Errorf("fields = %v, want %v", got, want)
	}
}

func TestRecordMarshalInvalidResponse(t *testing.T) {
	rec := Record{Method: "m", TransactionID: "T", Response: json.RawMessage(`{"code":`)}
	if _, err := rec.MarshalJSON(); err == nil {
		t.Fatal("MarshalJSON of an invalid response succeeded")
	}
}

func TestStateTerminal(t *testing.T) {
	tests := []struct {
		state State
		want  bool
	}{
		{Rejected, true}, {Queued, false}, {Running, false}, {Retrying, false}, {Succeeded, true}, {Failed, true}, {"", false},
	}
	for _, tt := range tests {
		name := "not_terminal_" + string(tt.state)
		if tt.want {
			name = "terminal_" + string(tt.state)
		}
		t.Run(name, func(t *testing.T) {
			if got := tt.state.Terminal(); got != tt.want {
				t.Errorf("%q.Terminal() = %v, want %v", tt.state, got, tt.want)
			}
		})
	}
}
