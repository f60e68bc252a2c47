package batches

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/results"
)

func TestExportCSV(t *testing.T) {
	at := time.Date(2026, 11, 26, 3, 15, 0, 500_000_000, time.UTC)
	recs := []*results.Record{
		{Method: testMethod, TransactionID: "T1", State: results.Succeeded, Attempts: 2, BatchID: "b_x", EnqueuedAt: &at, UpdatedAt: at,
			Response: json.RawMessage(`{"code":"10000","msg":"Success","biz_no":"ZM2026","is_admittance":"Y"}`)},
		{Method: "zhima.credit.relation.query", TransactionID: "T2", State: results.Succeeded, Duplicate: true, BatchID: "b_x", UpdatedAt: at,
			Response: json.RawMessage(`{"code":"10000","relation_rank":"high","relation_score":0.87,"relation_info":{"recency":"recent"}}`)},
		{State: results.Rejected, BatchID: "b_x", UpdatedAt: at,
			Error: &results.ErrorInfo{Source: "local", Code: "40004", SubCode: "INVALID_PARAMETER", SubMsg: "=cert_no: bad, \"quoted\""}},
		{Method: testMethod, TransactionID: "T3", State: results.Failed, BatchID: "b_x", UpdatedAt: at,
			Error: &results.ErrorInfo{Source: "transport", Msg: "HTTP 502"}},
	}
	var buf bytes.Buffer
	e, err := NewExporter(&buf, "csv")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if err := e.Write(i+1, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		CSVColumns,
		{"1", "b_x", testMethod, "T1", "succeeded", "2", "false", "", "", "", "Y", "", "", "ZM2026", "2026-11-26T03:15:00.5Z", "2026-11-26T03:15:00.5Z"},
		{"2", "b_x", "zhima.credit.relation.query", "T2", "succeeded", "0", "true", "", "", "", "", "high", "0.87", "", "", "2026-11-26T03:15:00.5Z"},
		{"3", "b_x", "", "", "rejected", "0", "false", "local", "INVALID_PARAMETER", `'=cert_no: bad, "quoted"`, "", "", "", "", "", "2026-11-26T03:15:00.5Z"},
		{"4", "b_x", testMethod, "T3", "failed", "0", "false", "transport", "", "HTTP 502", "", "", "", "", "", "2026-11-26T03:15:00.5Z"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i := range want {
		if strings.Join(rows[i], "|") != strings.Join(want[i], "|") {
			t.Errorf("row %d =\n%q\nwant\n%q", i, rows[i], want[i])
		}
	}
}

func TestExportEmptyAndJSONL(t *testing.T) {
	var buf bytes.Buffer
	e, _ := NewExporter(&buf, "csv")
	if err := e.Close(); err != nil || buf.String() != strings.Join(CSVColumns, ",")+"\n" {
		t.Errorf("empty CSV = %q, %v; want the header", buf.String(), err)
	}
	buf.Reset()
	e, _ = NewExporter(&buf, "jsonl")
	rec := &results.Record{Method: testMethod, TransactionID: "T1", State: results.Succeeded, BatchID: "b_x",
		Response: json.RawMessage(`{"biz_no":"a\/b<&>"}`)}
	if err := e.Write(1, rec); err != nil {
		t.Fatal(err)
	}
	e.Close()
	if !strings.Contains(buf.String(), `"response":{"biz_no":"a\/b<&>"}`) || !strings.HasSuffix(buf.String(), `"batch_id":"b_x"}`+"\n") {
		t.Errorf("JSONL = %s", buf.String())
	}
	if _, err := NewExporter(&buf, "xml"); err != ErrUnknownFormat {
		t.Errorf("NewExporter(xml) = %v", err)
	}
}
