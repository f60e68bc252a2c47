package payload_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/zhimaq/zhimaq/internal/idempotency"
	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

func TestRequestNeverQuotesAnUnknownField(t *testing.T) {
	const (
		scoreFields    = "transaction_id, product_code, cert_type, cert_no, name, admittance_score"
		relationFields = "product_code, transaction_id, cert_no, name, relation_phone, relation_name, relation, linked_merchant_id"
	)
	score := `"transaction_id":"T1","product_code":"w1010100000000002733","cert_type":"IDENTITY_CARD","admittance_score":650`
	tests := []struct {
		name, method, biz, subMsg string
		input                     []string // what sub_msg must not quote
	}{
		{"a name as a field name lists the fields", zhima.MethodScoreBriefGet,
			`{` + score + `,"cert_no":"11010519491231002X","zhangsan":"张三"}`, "biz_content: unknown field; want one of " + scoreFields, []string{"zhangsan"}},
		{"an ID number as a field name lists the fields", zhima.MethodRelationQuery,
			`{"110105194912310021":"张三"}`, "biz_content: unknown field; want one of " + relationFields, []string{"110105194912310021"}},
		{"a field of another method lists the fields", zhima.MethodScoreBriefGet,
			`{` + score + `,"name":"张三","relation_name":"李四"}`, "biz_content: unknown field; want one of " + scoreFields, []string{"relation_name"}},
		{"a known field in capitals names the known one", zhima.MethodScoreBriefGet,
			`{` + score + `,"CERT_NO":"11010519491231002X","name":"张三"}`, "biz_content: unknown field; did you mean cert_no", []string{"CERT_NO"}},
		{"two in other letter case name both", zhima.MethodScoreBriefGet,
			`{` + score + `,"Cert_No":"11010519491231002X","NAME":"张三"}`, "biz_content: 2 unknown fields; did you mean cert_no, name", []string{"Cert_No", "NAME"}},
		{"one in other letter case and one unknown lists the fields", zhima.MethodScoreBriefGet,
			`{` + score + `,"CERT_NO":"11010519491231002X","lisi":"李四"}`, "biz_content: 2 unknown fields; want one of " + scoreFields, []string{"CERT_NO", "lisi"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := payload.Request(tc.method, []byte(tc.biz))
			var zerr *zhima.Error
			if !errors.As(err, &zerr) || zerr.SubCode != zhima.SubInvalidParameter {
				t.Fatalf("err = %v, want INVALID_PARAMETER", err)
			}
			if zerr.SubMsg != tc.subMsg {
				t.Errorf("sub_msg %q, want %q", zerr.SubMsg, tc.subMsg)
			}
			for _, s := range tc.input {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q quotes %q from the input", err, s)
				}
			}
			// With the names of a biz_content parsed before, the same answer.
			parsed, perr := idempotency.Parse([]byte(tc.biz))
			if perr != nil {
				t.Fatal(perr)
			}
			_, named := payload.RequestNamed(tc.method, []byte(tc.biz), parsed.Names)
			if named == nil || named.Error() != err.Error() {
				t.Errorf("RequestNamed = %v, Request = %v", named, err)
			}
		})
	}
}

func TestQueueNames(t *testing.T) {
	q := payload.QueueNames{Base: "zq", Apps: []string{"A1", "B2"}, Shards: 3}
	key := func(app, tx string) idempotency.Key {
		return idempotency.Key{AppID: app, Method: zhima.MethodScoreBriefGet, TransactionID: tx}
	}
	seen := map[string]int{}
	for i := range 300 {
		k := key("A1", "T"+strconv.Itoa(i))
		got := q.Of(k, payload.LaneBatch)
		if got != q.Of(k, payload.LaneBatch) {
			t.Fatal("a transaction's shard is not stable")
		}
		seen[got]++
	}
	if len(seen) != 3 || seen["zq"] == 0 || seen["zq:A1:1"] == 0 || seen["zq:A1:2"] == 0 {
		t.Fatalf("the first app's jobs went to %v, want zq, zq:A1:1 and zq:A1:2", seen)
	}
	if got := q.Of(key("B2", "T1"), payload.LaneInteractive); got != "zq:B2:interactive" || payload.LaneOf(got) != payload.LaneInteractive {
		t.Errorf("interactive queue of B2 = %q", got)
	}
	if got := q.Of(key("A1", "T1"), payload.LaneInteractive); got != "zq:interactive" {
		t.Errorf("interactive queue of the first app = %q", got)
	}
	batch := q.Weights(payload.LaneBatch)
	for _, want := range []string{"zq", "zq:A1:1", "zq:A1:2", "zq:B2", "zq:B2:1", "zq:B2:2"} {
		if batch[want] != 1 {
			t.Errorf("batch queues %v lack %s", batch, want)
		}
	}
	if len(batch) != 6 || len(q.Weights(payload.LaneInteractive)) != 2 {
		t.Errorf("batch queues %v, interactive %v", batch, q.Weights(payload.LaneInteractive))
	}
	if one := (payload.QueueNames{Base: "zq", Apps: []string{"A1"}}); one.Of(key("A1", "T1"), payload.LaneBatch) != "zq" || len(one.Weights(payload.LaneBatch)) != 1 {
		t.Error("one app, one shard: its jobs wait in ZHIMAQ_QUEUE itself, the only batch queue")
	}
}
