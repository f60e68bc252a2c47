package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/export"
	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// batchTimeout bounds the submission of one batch once its body is read.
const batchTimeout = time.Hour

// postJob submits one job: 201 with its record, 200 with the first job's
// record for a duplicate, 422 with the rejected record.
func (s *Server) postJob(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > MaxJobBytes {
		writeError(w, kindTooLarge, "a job may hold at most "+bytesText(MaxJobBytes))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxJobBytes))
	switch {
	case tooLarge(err):
		writeError(w, kindTooLarge, "a job may hold at most "+bytesText(MaxJobBytes))
		return
	case err != nil:
		writeError(w, kindBadBody, "the body could not be read")
		return
	}
	job, rej := zhimaq.ParseJob(bytes.TrimSpace(body))
	if rej != nil {
		writeRecord(w, kindRejected.status(), zhimaq.Submission{Record: rej})
		return
	}
	ctx, cancel := detached(r, submitTimeout)
	defer cancel()
	sub, err := s.p.Submit(ctx, job)
	if err != nil {
		s.unavailable(w, "submit", err, "the job could not be submitted (Redis failed); send it again")
		return
	}
	status := http.StatusCreated
	switch {
	case sub.Record.State == zhimaq.Rejected:
		writeRecord(w, kindRejected.status(), sub)
		return
	case sub.Duplicate:
		status = http.StatusOK
	}
	w.Header().Set("Location", s.jobLocation(sub.Record))
	writeRecord(w, status, sub)
}

// jobLocation is the path of rec's job: its app in the query when it is not
// the default app (Options.AppID), so that GET finds it.
func (s *Server) jobLocation(rec *zhimaq.Record) string {
	loc := "/v1/jobs/" + url.PathEscape(rec.Method) + "/" + url.PathEscape(rec.TransactionID)
	if rec.AppID != "" && rec.AppID != s.appID {
		loc += "?app_id=" + url.QueryEscape(rec.AppID)
	}
	return loc
}

// getJob answers a job's record, or 404. The query's app_id names the job's
// app; none (or "") is the deployment's first.
func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	ref := zhimaq.Ref{AppID: r.URL.Query().Get("app_id"), Method: r.PathValue("method"), TransactionID: r.PathValue("transaction_id")}
	if !slices.Contains(zhima.Methods, ref.Method) {
		writeError(w, kindNotFound, "no such method; want one of the three gateway methods zhimaq runs")
		return
	}
	if !zhima.IsTransactionID(ref.TransactionID) {
		writeError(w, kindNotFound, "a transaction_id holds only letters, digits and '_', at most 64")
		return
	}
	rec, err := s.p.Result(r.Context(), ref)
	switch {
	case errors.Is(err, zhimaq.ErrUnknownApp):
		writeError(w, kindNotFound, "app_id is not one of this deployment's apps (ZHIMA_APP_ID or ZHIMA_APPS_FILE)")
	case errors.Is(err, zhimaq.ErrNotFound):
		writeError(w, kindNotFound, "no record for this job: never submitted, rejected, or expired")
	case err != nil:
		s.unavailable(w, "read record", err, "the record could not be read (Redis failed)")
	default:
		writeRecord(w, http.StatusOK, rec)
	}
}

// batchAccepted is the answer to POST /v1/batches.
type batchAccepted struct {
	BatchID  string `json:"batch_id"`
	Lines    int    `json:"lines"`
	Accepted int    `json:"accepted"`
	Rejected int    `json:"rejected"`
}

// postBatch submits a JSON Lines body as a batch and answers 202 with its
// id and counts; the records are read with GET /v1/batches/{id}/records.
// The query's lane is the lane of the lines that name none (batch when
// absent); another value gets 400 bad_lane. A body over the byte limit or
// with more lines than the batch may hold gets 413, and the batch keeps the
// lines before the limit.
func (s *Server) postBatch(w http.ResponseWriter, r *http.Request) {
	lane := r.URL.Query().Get("lane")
	if r.URL.Query().Has("lane") && lane != payload.LaneBatch && lane != payload.LaneInteractive {
		writeError(w, kindBadLane, "lane must be interactive or batch")
		return
	}
	// NewBatch fails only for a bad callback URL, and writes nothing before
	// the first line: the batch is dropped unwritten if the body is refused.
	b, err := s.p.NewBatch(zhimaq.BatchOptions{CallbackURL: r.URL.Query().Get("callback")})
	if errors.Is(err, zhimaq.ErrCallbackHostNotAllowed) {
		writeError(w, kindBadCallback, "callback's host is not one this server's CALLBACK_HOSTS allows")
		return
	}
	if err != nil {
		writeError(w, kindBadCallback, "callback must be an absolute http or https URL without user info, its host a plain DNS name or an IP address without a zone")
		return
	}
	switch {
	case r.ContentLength < 0:
		writeError(w, kindLengthRequired, "send the batch with a Content-Length")
		return
	case r.ContentLength > s.maxBatch:
		writeError(w, kindTooLarge, "a batch may hold at most "+bytesText(s.maxBatch))
		return
	}
	ctx, cancel := detached(r, batchTimeout)
	defer cancel()
	body := http.MaxBytesReader(w, r.Body, s.maxBatch)
	_, err = b.SubmitJSONL(ctx, body, zhimaq.SubmitOptions{Lane: lane})
	if cerr := b.Close(ctx); err == nil {
		err = cerr
	}
	c := b.Counts()
	log := s.log.With(zap.String("batch_id", b.ID()), zap.Int("lines", c.Lines))
	switch {
	case tooLarge(err):
		writeError(w, kindTooLarge,
			fmt.Sprintf("a batch may hold at most %s; batch %s holds the %d lines before the limit", bytesText(s.maxBatch), b.ID(), c.Lines))
		return
	case errors.Is(err, zhimaq.ErrTooManyLines):
		writeError(w, kindTooLarge,
			fmt.Sprintf("a batch may hold at most %d lines (BATCH_MAX_LINES); batch %s holds the %d lines before the limit", b.MaxLines(), b.ID(), c.Lines))
		return
	case errors.As(err, new(*zhimaq.ReadError)):
		log.Warn("api: batch body could not be read", zap.Error(err))
		writeError(w, kindBadBody,
			fmt.Sprintf("the body could not be read; batch %s holds the %d lines before the problem", b.ID(), c.Lines))
		return
	case err != nil:
		s.unavailable(w, "submit batch", err, fmt.Sprintf("Redis failed; batch %s holds the %d lines before the failure", b.ID(), c.Lines))
		return
	}
	log.Info("api: batch submitted", zap.Int("accepted", c.Accepted), zap.Int("rejected", c.Rejected))
	w.Header().Set("Location", "/v1/batches/"+b.ID())
	writeJSON(w, http.StatusAccepted, batchAccepted{BatchID: b.ID(), Lines: c.Lines, Accepted: c.Accepted, Rejected: c.Rejected})
}

// batchStatus is the JSON of GET /v1/batches/{id}.
type batchStatus struct {
	BatchID    string         `json:"batch_id"`
	Lines      int            `json:"lines"`
	Total      int            `json:"total"`
	Finished   int            `json:"finished"`
	Counts     map[string]int `json:"counts"`
	Apps       map[string]int `json:"apps"`
	Complete   bool           `json:"complete"`
	Done       bool           `json:"done"`
	CreatedAt  time.Time      `json:"created_at"`
	FinishedAt *time.Time     `json:"finished_at"`
	ETASeconds *int64         `json:"eta_seconds"`
}

// getBatch answers a batch's status, or 404.
func (s *Server) getBatch(w http.ResponseWriter, r *http.Request) {
	st, err := s.p.BatchStatus(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, zhimaq.ErrNotFound):
		writeError(w, kindNotFound, "no such batch: never submitted, another app's, or expired")
		return
	case err != nil:
		s.unavailable(w, "batch status", err, "the batch could not be read (Redis failed)")
		return
	}
	out := batchStatus{BatchID: st.ID, Lines: st.Lines, Total: st.Total, Finished: st.Finished, Counts: map[string]int{}, Apps: st.Apps,
		Complete: st.Complete, Done: st.Done, CreatedAt: st.CreatedAt.UTC()}
	for state, n := range st.Counts {
		out.Counts[string(state)] = n
	}
	if st.Done {
		f := st.FinishedAt.UTC()
		out.FinishedAt = &f
	}
	if st.ETA >= 0 {
		secs := int64((st.ETA + time.Second - 1) / time.Second)
		out.ETASeconds = &secs
	}
	writeJSON(w, http.StatusOK, out)
}

// getRecords streams a batch's records in input order as JSON Lines or CSV.
func (s *Server) getRecords(w http.ResponseWriter, r *http.Request) {
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "jsonl"
	}
	if !slices.Contains(export.Formats, format) {
		writeError(w, kindBadFormat, "format must be jsonl or csv")
		return
	}
	id := r.PathValue("id")
	recs, err := s.p.BatchRecords(r.Context(), id)
	switch {
	case errors.Is(err, zhimaq.ErrNotFound):
		writeError(w, kindNotFound, "no such batch: never submitted, another app's, or expired")
		return
	case err != nil:
		s.unavailable(w, "batch records", err, "the batch could not be read (Redis failed)")
		return
	}
	w.Header().Set("Content-Type", export.ContentType(format))
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.%s"`, url.PathEscape(id), format))
	exp, _ := export.New(w, format)
	line := 0
	for sub, err := range recs {
		if err == nil {
			line++
			err = exp.Write(line, sub)
		}
		if err != nil {
			// The status has gone out: cut the answer short so the client
			// sees it is incomplete.
			s.log.Error("api: batch records cut short", zap.String("batch_id", id), zap.Int("line", line), zap.Error(err))
			panic(http.ErrAbortHandler)
		}
	}
	if err := exp.Close(); err != nil {
		panic(http.ErrAbortHandler)
	}
}
