package zhimaq

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/zhimaq/zhimaq/internal/payload"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// Job is one verification to run: a gateway method and its biz_content, with
// field names exactly as in Alipay's pages.
type Job struct {
	Method     string          `json:"method"`
	BizContent json.RawMessage `json:"biz_content"`
	// AppAuthToken is sent as app_auth_token when set.
	AppAuthToken string `json:"app_auth_token,omitempty"`
	// AppID names the app the job is for, one of the producer's
	// (ZHIMA_APPS_FILE); "" is the producer's first, ProducerConfig.AppID.
	AppID string `json:"app_id,omitempty"`
	// Lane is "interactive" for a job an applicant waits for: it goes
	// before batch jobs in the queue and at the rate limiter. "" is
	// "batch".
	Lane string `json:"lane,omitempty"`
}

// MaxJobBytes bounds one job line: a 1 MiB face picture plus room for the rest.
const MaxJobBytes = zhima.MaxFacePicture + 64<<10

// ParseJob reads one job line (JSON). A malformed line returns a Rejected
// record that names the problem, with the method and transaction_id filled
// in where they could be read; it never quotes personal data.
func ParseJob(line []byte) (Job, *Record) {
	var job Job
	if len(line) > MaxJobBytes {
		return job, rejection(job, "", zhima.InvalidParameter("", fmt.Sprintf("job: line is larger than %d bytes", MaxJobBytes)))
	}
	if !utf8.Valid(line) {
		return job, rejection(job, "", zhima.InvalidParameter("", "job: line is not valid UTF-8"))
	}
	if err := payload.DecodeStrict(line, &job); err != nil {
		job = Job{}
		var probe struct {
			Method string `json:"method"`
		}
		_ = json.Unmarshal(line, &probe)
		job.Method = probe.Method
		return job, rejection(job, "", zhima.InvalidParameter("", "job: "+err.Error()))
	}
	if job.Method == "" {
		return job, rejection(job, "", zhima.InvalidParameter("", "method: is required"))
	}
	if b := bytes.TrimSpace(job.BizContent); len(b) == 0 || b[0] != '{' {
		return job, rejection(job, "", zhima.InvalidParameter("", "biz_content: must be a JSON object"))
	}
	return job, nil
}
