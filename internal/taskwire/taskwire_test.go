package taskwire

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/redistest"
)

var enqueueScript = redis.NewScript("return " + Enqueue(1, 1) + " and 1 or 0")

// enqueue runs the script for t. On a Redis Cluster it runs as
// results.Store runs it there: asynq:queues lies in a slot of its own, so
// the script gets the task's hash and pending list only, and no queue to
// list.
func enqueue(tb testing.TB, srv *redistest.Server, rdb redis.Cmdable, t Task) int {
	tb.Helper()
	keys, args := t.Keys(), t.Args(time.Now())
	if srv.Cluster {
		keys, args[3] = keys[:2], ""
	}
	n, err := enqueueScript.Run(context.Background(), rdb, keys, args...).Int()
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// TestTheTaskIsAsynqsOwn holds the layout to asynq's client: the task it
// writes is the one Client.Enqueue writes, byte for byte, and asynq reads
// it back with the options it stands for.
func TestTheTaskIsAsynqsOwn(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	task := Task{Type: "zhima.credit.score.brief.get", Payload: []byte(`{"app_id":"2021","transaction_id":"T_1"}`), ID: "AbCdEfGhIjKlMnOpQrStUv", Queue: srv.Queue, MaxRetry: 100}

	c := asynq.NewClientFromRedisClient(rdb)
	defer c.Close()
	if _, err := c.Enqueue(asynq.NewTask(task.Type, task.Payload), asynq.TaskID(task.ID), asynq.Queue(task.Queue), asynq.MaxRetry(task.MaxRetry)); err != nil {
		t.Fatal(err)
	}
	keys := task.Keys()
	want, err := rdb.HGetAll(ctx, keys[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want["msg"] != string(task.Message()) {
		t.Fatalf("message = %x, asynq's %x", task.Message(), want["msg"])
	}
	if n := enqueue(t, srv, rdb, task); n != 0 {
		t.Errorf("enqueueing a task that exists = %d, want 0 (asynq: ErrTaskIDConflict)", n)
	}
	if err := rdb.Del(ctx, keys[0], keys[1]).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.SRem(ctx, keys[2], task.Queue)

	if n := enqueue(t, srv, rdb, task); n != 1 {
		t.Fatalf("enqueue = %d, want 1", n)
	}
	got, err := rdb.HGetAll(ctx, keys[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got["msg"] != want["msg"] || got["state"] != want["state"] || len(got) != len(want) || got["pending_since"] == "" {
		t.Errorf("task hash = %q, asynq's %q", got, want)
	}
	if ids, _ := rdb.LRange(ctx, keys[1], 0, -1).Result(); len(ids) != 1 || ids[0] != task.ID {
		t.Errorf("pending list = %v, want [%s]", ids, task.ID)
	}
	if ok, _ := rdb.SIsMember(ctx, keys[2], task.Queue).Result(); !ok && !srv.Cluster { // there the script lists no queue
		t.Error("the queue is not in asynq:queues")
	}
	// Listed: the set is left alone.
	rdb.SRem(ctx, keys[2], task.Queue)
	listed := task
	listed.ID, listed.Listed = "other", true
	if n := enqueue(t, srv, rdb, listed); n != 1 {
		t.Fatalf("enqueue of a listed queue = %d", n)
	}
	if ok, _ := rdb.SIsMember(ctx, keys[2], task.Queue).Result(); ok {
		t.Error("a task of a listed queue added its queue to asynq:queues")
	}
	rdb.SAdd(ctx, keys[2], task.Queue) // asynq's inspector looks there first
	info, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo(task.Queue, task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != task.Type || string(info.Payload) != string(task.Payload) || info.MaxRetry != task.MaxRetry ||
		info.Timeout != 30*time.Minute || info.State != asynq.TaskStatePending {
		t.Errorf("asynq reads back %+v", info)
	}
}

// TestAsynqRunsTheTask: asynq's server takes the task up and runs it.
func TestAsynqRunsTheTask(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client(t)
	task := Task{Type: "t", Payload: []byte("p"), ID: "id1", Queue: srv.Queue, MaxRetry: 3}
	enqueue(t, srv, rdb, task)
	ran := make(chan string, 1)
	s := asynq.NewServerFromRedisClient(rdb, asynq.Config{Queues: map[string]int{srv.Queue: 1}, Concurrency: 1, LogLevel: asynq.FatalLevel})
	if err := s.Start(asynq.HandlerFunc(func(_ context.Context, at *asynq.Task) error {
		ran <- at.Type() + ":" + string(at.Payload())
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	select {
	case got := <-ran:
		if got != "t:p" {
			t.Errorf("asynq ran %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("asynq did not run the task")
	}
}
