package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/zhimaq/zhimaq/internal/sandbox"
)

// record is the part of enqueue's result record (DESIGN.md "A result
// record") the demo shows.
type record struct {
	Method        string          `json:"method"`
	TransactionID string          `json:"transaction_id"`
	State         string          `json:"state"`
	Attempts      int             `json:"attempts"`
	Duplicate     bool            `json:"duplicate"`
	Response      json.RawMessage `json:"response"`
	Error         *struct {
		Source  string `json:"source"`
		Code    string `json:"code"`
		Msg     string `json:"msg"`
		SubCode string `json:"sub_code"`
		SubMsg  string `json:"sub_msg"`
	} `json:"error"`
}

// parseRecords reads enqueue's JSONL output: exactly want records, each
// with a state.
func parseRecords(out []byte, want int) ([]record, error) {
	var recs []record
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var r record
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, fmt.Errorf("enqueue output line %d is not a result record: %v", len(recs)+1, err)
		}
		if r.State == "" {
			return nil, fmt.Errorf("enqueue output line %d has no state", len(recs)+1)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read enqueue output: %w", err)
	}
	if len(recs) != want {
		return nil, fmt.Errorf("enqueue printed %d result records for %d input lines", len(recs), want)
	}
	return recs, nil
}

var shortMethods = map[string]string{
	"zhima.customer.certification.initialize": "certification",
	"zhima.credit.score.brief.get":            "score",
	"zhima.credit.relation.query":             "relation",
}

func shortMethod(m string) string {
	if s, ok := shortMethods[m]; ok {
		return s
	}
	if m == "" {
		return "-"
	}
	return m
}

// outcome is the last column: the answer of a success, the error of a
// failure or rejection. It may hold Chinese text, which is why it is last:
// tabwriter counts runes, not display width.
func outcome(r record) string {
	switch r.State {
	case "succeeded":
		var resp struct {
			BizNo         string      `json:"biz_no"`
			IsAdmittance  string      `json:"is_admittance"`
			RelationRank  string      `json:"relation_rank"`
			RelationScore json.Number `json:"relation_score"`
			RelationInfo  *struct {
				Recency string `json:"recency"`
			} `json:"relation_info"`
		}
		if err := json.Unmarshal(r.Response, &resp); err != nil {
			return "(response unreadable)"
		}
		switch shortMethod(r.Method) {
		case "score":
			return "is_admittance=" + resp.IsAdmittance
		case "relation":
			s := "relation_rank=" + resp.RelationRank + " relation_score=" + string(resp.RelationScore)
			if resp.RelationInfo != nil && resp.RelationInfo.Recency != "" {
				s += " recency=" + resp.RelationInfo.Recency
			}
			return s
		default:
			return "biz_no=" + resp.BizNo
		}
	case "failed", "rejected":
		if r.Error == nil {
			return "(no error given)"
		}
		e := r.Error
		switch {
		case e.SubCode != "":
			return strings.TrimSpace(e.SubCode + " " + e.SubMsg)
		case e.Code != "" || e.Msg != "":
			return strings.TrimSpace(e.Code + " " + e.Msg)
		}
		return e.Source + " error"
	}
	return "(not finished)"
}

// summary counts a run's records.
type summary struct {
	jobs, succeeded, failed, rejected, unfinished int
	retried, duplicates                           int
	// distinctSucceeded are the succeeded (method, transaction_id) pairs:
	// what the gateway should have billed.
	distinctSucceeded int
}

func summarize(recs []record) summary {
	s := summary{jobs: len(recs)}
	seen := map[[2]string]bool{}
	for _, r := range recs {
		switch r.State {
		case "succeeded":
			s.succeeded++
			k := [2]string{r.Method, r.TransactionID}
			if !seen[k] {
				seen[k] = true
				s.distinctSucceeded++
			}
		case "failed":
			s.failed++
		case "rejected":
			s.rejected++
		default:
			s.unfinished++
		}
		if r.Duplicate {
			s.duplicates++
		} else if r.Attempts > 1 {
			s.retried++ // a duplicate shows its first job's attempts: count them once
		}
	}
	return s
}

// printTable writes one aligned row per record.
func printTable(w io.Writer, recs []record) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tmethod\ttransaction_id\tstate\tattempts\tduplicate\toutcome")
	for i, r := range recs {
		txid, dup := r.TransactionID, ""
		if txid == "" {
			txid = "-"
		}
		if r.Duplicate {
			dup = "yes"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n",
			i+1, shortMethod(r.Method), txid, r.State, r.Attempts, dup, outcome(r))
	}
	return tw.Flush()
}

// printSummary writes the counts and the sandbox's, and reports whether
// billed equals the distinct succeeded transactions.
func printSummary(w io.Writer, s summary, st sandbox.Stats) bool {
	fmt.Fprintf(w, "%d jobs · %d succeeded · %d failed · %d rejected · %d retried (attempts > 1) · %d duplicate",
		s.jobs, s.succeeded, s.failed, s.rejected, s.retried, s.duplicates)
	if s.unfinished > 0 {
		fmt.Fprintf(w, " · %d unfinished", s.unfinished)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "sandbox gateway: %d calls, %d billed; answers: %s\n", st.Calls, st.Billed, formatCodes(st.Codes))
	ok := st.Billed == int64(s.distinctSucceeded)
	if ok {
		fmt.Fprintf(w, "billed %d = %d distinct succeeded transactions: retries and duplicates were not billed again\n",
			st.Billed, s.distinctSucceeded)
	} else {
		fmt.Fprintf(w, "MISMATCH: billed %d ≠ %d distinct succeeded transactions\n", st.Billed, s.distinctSucceeded)
	}
	return ok
}

// formatCodes lists the sandbox's answers by code, most frequent first.
func formatCodes(codes map[string]int64) string {
	if len(codes) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(codes))
	for k := range codes {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if codes[keys[i]] != codes[keys[j]] {
			return codes[keys[i]] > codes[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s ×%d", k, codes[k])
	}
	return strings.Join(parts, ", ")
}
