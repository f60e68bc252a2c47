package idempotency

import (
	"strings"
	"testing"
)

var testKey = Key{AppID: "2015000000000001", Method: "zhima.credit.score.brief.get", TransactionID: "T_001"}

func TestKey(t *testing.T) {
	if got, want := testKey.String(), "2015000000000001/zhima.credit.score.brief.get/T_001"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	tests := []struct {
		name    string
		key     Key
		wantErr string
	}{
		{"valid", testKey, ""},
		{"invalid_when_app_id_empty", Key{"", "m", "T"}, "app_id is empty"},
		{"invalid_when_method_empty", Key{"a", "", "T"}, "method is empty"},
		{"invalid_when_transaction_id_empty", Key{"a", "m", ""}, "transaction_id is empty"},
		{"invalid_when_app_id_has_colon", Key{"a:b", "m", "T"}, "app_id holds"},
		{"invalid_when_method_has_space", Key{"a", "m x", "T"}, "method holds"},
		{"invalid_when_transaction_id_has_dash", Key{"a", "m", "T-1"}, "transaction_id may hold only"},
		{"invalid_when_transaction_id_has_non_ascii", Key{"a", "m", "张三"}, "transaction_id may hold only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.key.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{Claimed: "claimed", Duplicate: "duplicate", Conflict: "conflict", 0: "Outcome(0)", 9: "Outcome(9)"} {
		if got := o.String(); got != want {
			t.Errorf("Outcome(%d).String() = %q, want %q", int(o), got, want)
		}
	}
}
