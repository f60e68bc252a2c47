// Package tasks turns verification jobs into asynq tasks and back, and holds
// the handler that calls the gateway and maps its outcomes onto asynq's
// retry control and the results store.
package tasks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/zhimaq/zhimaq/internal/idempotency"
	"github.com/zhimaq/zhimaq/internal/seal"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// DefaultQueue is the asynq queue zhimaq's tasks go to.
const DefaultQueue = "zhimaq"

// Payload is what a task carries: one gateway call, ready to sign. In Redis
// its personal data is sealed: BizContent and AppAuthToken travel inside
// Sealed, and only a worker holding the data key opens them.
type Payload struct {
	AppID         string          `json:"app_id"`
	Method        string          `json:"method"`
	TransactionID string          `json:"transaction_id"`
	AppAuthToken  string          `json:"app_auth_token,omitempty"`
	BizContent    json.RawMessage `json:"biz_content,omitempty"`
	Sealed        string          `json:"sealed,omitempty"`
}

// sealedPart is what Sealed holds.
type sealedPart struct {
	BizContent   json.RawMessage `json:"biz_content"`
	AppAuthToken string          `json:"app_auth_token,omitempty"`
}

// aad binds a sealed part to its transaction, so it cannot be moved to another.
func (p *Payload) aad() []byte {
	return []byte(p.AppID + "\x00" + p.Method + "\x00" + p.TransactionID)
}

// Seal moves BizContent and AppAuthToken into Sealed under keys' sealing
// key. With a plaintext keyring it leaves p as it is.
func (p *Payload) Seal(keys *seal.Keyring) error {
	if keys.Plaintext() || p.Sealed != "" {
		return nil
	}
	part, err := json.Marshal(sealedPart{BizContent: p.BizContent, AppAuthToken: p.AppAuthToken})
	if err != nil {
		return fmt.Errorf("tasks: seal: %w", err)
	}
	if p.Sealed, err = keys.Seal(part, p.aad()); err != nil {
		return fmt.Errorf("tasks: seal: %w", err)
	}
	p.BizContent, p.AppAuthToken = nil, ""
	return nil
}

// Open reverses Seal. Errors wrap seal.ErrUnknownKey (this process lacks the
// key the payload was sealed with) or seal.ErrCorrupt.
func (p *Payload) Open(keys *seal.Keyring) error {
	if p.Sealed == "" {
		return nil
	}
	plain, err := keys.Open(p.Sealed, p.aad())
	if err != nil {
		return fmt.Errorf("tasks: open payload: %w", err)
	}
	var part sealedPart
	if err := json.Unmarshal(plain, &part); err != nil {
		return fmt.Errorf("tasks: open payload: %w: %s", seal.ErrCorrupt, JSONProblem(err))
	}
	p.BizContent, p.AppAuthToken, p.Sealed = part.BizContent, part.AppAuthToken, ""
	return nil
}

// Key is the transaction the payload belongs to.
func (p *Payload) Key() idempotency.Key {
	return idempotency.Key{AppID: p.AppID, Method: p.Method, TransactionID: p.TransactionID}
}

// TaskType is the asynq task type of a method: the method name itself, so
// queues read plainly in asynq's tools.
func TaskType(method string) string { return method }

// TaskID is the asynq task id of a transaction. It is derived from the key,
// so enqueueing the same transaction twice can never make two tasks.
func TaskID(k idempotency.Key) string {
	return k.AppID + ":" + k.Method + ":" + k.TransactionID
}

// NewTask builds the task for p. opts are asynq options (queue, retries).
func NewTask(p *Payload, opts ...asynq.Option) (*asynq.Task, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("tasks: encode payload: %w", err)
	}
	opts = append([]asynq.Option{asynq.TaskID(TaskID(p.Key()))}, opts...)
	return asynq.NewTask(TaskType(p.Method), b, opts...), nil
}

// ErrBadPayload marks a task payload that cannot be decoded; such a task can
// never succeed.
var ErrBadPayload = errors.New("bad task payload")

// DecodePayload reads a task's payload and checks that it names a known
// method and a transaction. Errors wrap ErrBadPayload and quote no data.
func DecodePayload(taskType string, b []byte) (*Payload, error) {
	var p Payload
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("tasks: %w: %s", ErrBadPayload, JSONProblem(err))
	}
	switch {
	case p.AppID == "" || p.TransactionID == "":
		return nil, fmt.Errorf("tasks: %w: app_id and transaction_id are required", ErrBadPayload)
	case p.Method != taskType:
		return nil, fmt.Errorf("tasks: %w: method does not match task type %s", ErrBadPayload, taskType)
	case len(p.BizContent) == 0 && p.Sealed == "":
		return nil, fmt.Errorf("tasks: %w: biz_content is missing", ErrBadPayload)
	}
	return &p, nil
}

// Request decodes biz_content into method's typed request and validates it.
// Errors are *zhima.Error (INVALID_PARAMETER naming the field).
func Request(method string, biz json.RawMessage) (zhima.Request, error) {
	req, err := zhima.NewRequest(method)
	if err != nil {
		return nil, &zhima.Error{Source: zhima.SourceLocal, Method: method, Code: zhima.CodeBusinessFailed,
			Msg: "Business Failed", SubCode: zhima.SubInvalidParameter, SubMsg: "method: unknown method; want one of " + strings.Join(zhima.Methods, ", ")}
	}
	dec := json.NewDecoder(bytes.NewReader(biz))
	dec.DisallowUnknownFields()
	if err := dec.Decode(req); err != nil {
		return nil, &zhima.Error{Source: zhima.SourceLocal, Method: method, Code: zhima.CodeBusinessFailed,
			Msg: "Business Failed", SubCode: zhima.SubInvalidParameter, SubMsg: "biz_content: " + JSONProblem(err)}
	}
	if dec.More() {
		return nil, &zhima.Error{Source: zhima.SourceLocal, Method: method, Code: zhima.CodeBusinessFailed,
			Msg: "Business Failed", SubCode: zhima.SubInvalidParameter, SubMsg: "biz_content: trailing data after the object"}
	}
	return req, req.Validate()
}

// JSONProblem describes a JSON decoding error without quoting the input.
func JSONProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return "must be a JSON object, not " + typ.Value
		}
		return fmt.Sprintf("%s must be a JSON %s, not %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.Is(err, io.EOF), strings.Contains(err.Error(), "unexpected EOF"):
		return "truncated JSON"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "cannot be decoded"
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int64", "float64":
		return "number"
	case "string":
		return "string"
	case "struct", "map":
		return "object"
	}
	return goKind
}
