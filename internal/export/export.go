// Package export writes a batch's records as JSON Lines or as CSV for
// spreadsheets, with cells that could run as formulas neutralised.
package export

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/zhimaq/zhimaq"
)

// Formats are the export formats Exporter writes.
var Formats = []string{"jsonl", "csv"}

// ErrUnknownFormat is returned by NewExporter for a format not in Formats.
var ErrUnknownFormat = errors.New("export: unknown format; want jsonl or csv")

// CSVColumns are the columns of a CSV export, in order. They hold no
// personal data: records hold none.
var CSVColumns = []string{
	"line", "batch_id", "method", "transaction_id", "state", "attempts", "duplicate",
	"error_source", "error_sub_code", "error_sub_msg",
	"is_admittance", "relation_rank", "relation_score", "biz_no",
	"enqueued_at", "updated_at", "app_id", // app_id last: scripts that read the columns by position keep working
}

// answerFields are the response fields a CSV export has columns for.
var answerFields = []string{"is_admittance", "relation_rank", "relation_score", "biz_no"}

// Exporter writes the records of a batch, one line each, in order.
type Exporter interface {
	// Write writes the record of the batch's line-th line (1-based).
	Write(line int, sub *zhimaq.Submission) error
	// Close writes what is buffered (and, for CSV, the header when no
	// record came); it does not close the underlying writer.
	Close() error
}

// ContentType is the media type of an export format.
func ContentType(format string) string {
	if format == "csv" {
		return "text/csv; charset=utf-8"
	}
	return "application/x-ndjson"
}

// NewExporter returns an Exporter of format ("jsonl" or "csv") onto w, or
// ErrUnknownFormat.
func New(w io.Writer, format string) (Exporter, error) {
	switch format {
	case "jsonl":
		return &jsonlExporter{w: bufio.NewWriterSize(w, 64<<10)}, nil
	case "csv":
		return &csvExporter{w: csv.NewWriter(w)}, nil
	}
	return nil, ErrUnknownFormat
}

// jsonlExporter writes records as the contract's JSON, one a line.
type jsonlExporter struct{ w *bufio.Writer }

func (e *jsonlExporter) Write(_ int, sub *zhimaq.Submission) error {
	b, err := sub.MarshalJSON() // json.Marshal would escape <, > and & in the response
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if _, err := e.w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

func (e *jsonlExporter) Close() error {
	if err := e.w.Flush(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// csvExporter writes CSVColumns, a header line first.
type csvExporter struct {
	w      *csv.Writer
	header bool
}

func (e *csvExporter) Write(line int, sub *zhimaq.Submission) error {
	rec := sub.Record
	if !e.header {
		e.header = true
		if err := e.w.Write(CSVColumns); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	row := []string{strconv.Itoa(line), sub.BatchID, rec.Method, rec.TransactionID, string(rec.State),
		strconv.Itoa(rec.Attempts), strconv.FormatBool(sub.Duplicate)}
	if rec.Error != nil {
		row = append(row, rec.Error.Source, rec.Error.SubCode, firstNonEmpty(rec.Error.SubMsg, rec.Error.Msg))
	} else {
		row = append(row, "", "", "")
	}
	answers := answersOf(rec.Response)
	for _, f := range answerFields {
		row = append(row, answers[f])
	}
	row = append(row, timeCell(rec.EnqueuedAt), timeCell(&rec.UpdatedAt), rec.AppID)
	// Every column, not just those that come from the gateway today: a
	// record in Redis may hold anything.
	for i := range row {
		row[i] = cell(row[i])
	}
	if err := e.w.Write(row); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

func (e *csvExporter) Close() error {
	if !e.header {
		e.header = true
		_ = e.w.Write(CSVColumns)
	}
	e.w.Flush()
	if err := e.w.Error(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// answersOf reads the response's top-level fields: strings unquoted, other
// values as their JSON text.
func answersOf(resp json.RawMessage) map[string]string {
	var fields map[string]json.RawMessage
	if len(resp) == 0 || json.Unmarshal(resp, &fields) != nil {
		return nil
	}
	out := make(map[string]string, len(answerFields))
	for _, f := range answerFields {
		v, ok := fields[f]
		if !ok {
			continue
		}
		var s string
		if json.Unmarshal(v, &s) == nil {
			out[f] = s
		} else if string(v) != "null" {
			out[f] = string(v)
		}
	}
	return out
}

// cell keeps a spreadsheet from reading text as a formula: a value that
// starts with = + - @, a tab or a carriage return gets a leading
// apostrophe, unless it is a plain decimal number such as -12 or +0.5e3.
func cell(s string) string {
	if s == "" || !strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return s
	}
	if strings.Trim(s, "+-.0123456789eE") == "" {
		if _, err := strconv.ParseFloat(s, 64); err == nil {
			return s
		}
	}
	return "'" + s
}

func timeCell(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
