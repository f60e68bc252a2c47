package zhimatest_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/zhima"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

func TestBuiltJobsAreValid(t *testing.T) {
	id := zhimatest.ResidentID("11010519491231002")
	for _, c := range []struct {
		method string
		biz    json.RawMessage
	}{
		{zhima.MethodScoreBriefGet, zhimatest.ScoreBiz("T_1", id, "张三", 650)},
		{zhima.MethodRelationQuery, zhimatest.RelationBiz("T_2", id, "张三", "13800138000", "李四", "family")},
		{zhima.MethodRelationQuery, zhimatest.RelationBiz("T_3", id, "张三", "13800138000", "李四", "")},
		{zhima.MethodCertificationInitialize, zhimatest.CertificationBiz("T_4", id, "张三", "")},
		{zhima.MethodCertificationInitialize, zhimatest.CertificationBiz("T_5", id, "张三", "aGVsbG8=")},
	} {
		if _, err := payload.Request(c.method, c.biz); err != nil {
			t.Errorf("%s %s: %v", c.method, c.biz, err)
		}
		var line struct {
			Method     string          `json:"method"`
			BizContent json.RawMessage `json:"biz_content"`
		}
		if err := json.Unmarshal(zhimatest.JobLine(c.method, c.biz), &line); err != nil || line.Method != c.method || !bytes.Equal(line.BizContent, c.biz) {
			t.Errorf("JobLine(%s) = %+v, %v", c.method, line, err)
		}
	}
}

func TestResidentIDMakesTheCheckDigit(t *testing.T) {
	id := zhimatest.ResidentID("11010519491231002")
	if id != "11010519491231002X" {
		t.Fatalf("ResidentID = %s, want 11010519491231002X", id)
	}
	wrong := id[:17] + "0"
	if _, err := payload.Request(zhima.MethodScoreBriefGet, zhimatest.ScoreBiz("T_6", wrong, "张三", 650)); err == nil {
		t.Error("a wrong check digit was accepted")
	}
}
