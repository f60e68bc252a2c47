// Package taskwire writes an asynq task the way asynq's Client.Enqueue does,
// so that a producer can enqueue a job in the same Redis script that claims
// its transaction (one round trip instead of two). It knows asynq v0.26's
// layout of a pending task: the hash asynq:{<queue>}:t:<id> holding the
// protobuf TaskMessage, "state" pending and "pending_since", the id pushed
// on asynq:{<queue>}:pending, and the queue's name in asynq:queues. The
// conformance test holds it to asynq's own client: same keys, same bytes,
// and a task asynq's server runs.
package taskwire

import (
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Task is a task to enqueue: what asynq's Client.Enqueue would write for
// asynq.NewTask(Type, Payload) with TaskID(ID), Queue(Queue),
// MaxRetry(MaxRetry) and no timeout or deadline (asynq then gives it its
// default timeout, 30 minutes).
type Task struct {
	Type     string
	Payload  []byte
	ID       string
	Queue    string
	MaxRetry int
	// Listed says the queue is in asynq:queues already, as asynq's client
	// remembers once it has added it: the script then leaves the set alone.
	Listed bool
}

// defaultTimeout is asynq's default task timeout, in seconds.
const defaultTimeout = int64(30 * time.Minute / time.Second)

// QueuesKey is asynq's set of queue names. It has no hash tag: on a Redis
// Cluster it lies in a slot of its own.
const QueuesKey = "asynq:queues"

// Keys are the task's hash, its queue's pending list and asynq's set of
// queues, in the order the enqueue script takes them.
func (t Task) Keys() []string {
	prefix := "asynq:{" + t.Queue + "}:"
	return []string{prefix + "t:" + t.ID, prefix + "pending", QueuesKey}
}

// Message is the task's TaskMessage in protobuf, as asynq encodes it:
// fields in number order, those at their zero value left out.
func (t Task) Message() []byte {
	b := make([]byte, 0, 32+len(t.Type)+len(t.Payload)+len(t.ID)+len(t.Queue))
	b = appendBytes(b, 1, []byte(t.Type))
	b = appendBytes(b, 2, t.Payload)
	b = appendBytes(b, 3, []byte(t.ID))
	b = appendBytes(b, 4, []byte(t.Queue))
	if t.MaxRetry != 0 {
		b = protowire.AppendTag(b, 5, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int32(t.MaxRetry)))
	}
	b = protowire.AppendTag(b, 8, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(defaultTimeout))
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// Enqueue returns Lua that enqueues the task, for a script whose keys
// k, k+1, k+2 are Keys() and whose arguments a to a+3 are Args(). It
// evaluates to true when it enqueued, false when the task exists already
// (where asynq's Enqueue fails with ErrTaskIDConflict).
func Enqueue(k, a int) string {
	return "(function()\n" +
		"  if ARGV[" + strconv.Itoa(a+3) + "] ~= '' then redis.call('SADD', KEYS[" + strconv.Itoa(k+2) + "], ARGV[" + strconv.Itoa(a+3) + "]) end\n" +
		"  if redis.call('EXISTS', KEYS[" + strconv.Itoa(k) + "]) == 1 then return false end\n" +
		"  redis.call('HSET', KEYS[" + strconv.Itoa(k) + "], 'msg', ARGV[" + strconv.Itoa(a) + "], 'state', 'pending', 'pending_since', ARGV[" + strconv.Itoa(a+2) + "])\n" +
		"  redis.call('LPUSH', KEYS[" + strconv.Itoa(k+1) + "], ARGV[" + strconv.Itoa(a+1) + "])\n" +
		"  return true\n" +
		"end)()"
}

// Args are the script's arguments for the task at now, in Enqueue's order:
// the message, the id, pending_since and the queue's name ("" when Listed).
func (t Task) Args(now time.Time) []any {
	queue := t.Queue
	if t.Listed {
		queue = ""
	}
	return []any{t.Message(), t.ID, now.UnixNano(), queue}
}
