package launch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/procs"
)

// RedisServer says how to run a redis-server of the run's own. It always
// listens on 127.0.0.1 only, on a free port, and never snapshots (--save "").
type RedisServer struct {
	Program string   // its path: FindRedisServer
	Dir     string   // --dir, its data directory
	Log     string   // the file its output is appended to, across restarts
	AOF     bool     // --appendonly yes, as docker-compose runs it; else no persistence at all
	Args    []string // more arguments, such as --maxclients 10000
	// Config is a config file given before every argument; a sentinel
	// needs one (it rewrites it with what it learns).
	Config string
}

// FindRedisServer finds redis-server: path when set, else on PATH.
func FindRedisServer(path string) (string, error) {
	if path == "" {
		path = "redis-server"
	}
	return exec.LookPath(path)
}

// Redis is a Redis of the run's own on 127.0.0.1: a redis-server child,
// which can be shut down and started again on the same port and
// directory, or a miniredis inside this process.
type Redis struct {
	l     *Launcher
	srv   RedisServer
	addr  string
	child *procs.Child // nil when embedded

	mr        *miniredis.Miniredis
	stopClock func()
}

// StartRedisServer starts srv on a free port and waits until it answers.
func (l *Launcher) StartRedisServer(ctx context.Context, srv RedisServer) (*Redis, error) {
	r := &Redis{l: l, srv: srv}
	var err error
	for range 3 { // another process may take the port first
		var port int
		if port, err = FreePort(); err != nil {
			return nil, err
		}
		r.addr = "127.0.0.1:" + strconv.Itoa(port)
		if err = r.start(ctx); err == nil {
			l.onClose(func(time.Duration) { r.stop() })
			return r, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return nil, err
}

// StartEmbeddedRedis starts a miniredis in this process on a free port.
// Its clock follows real time, so that TTLs expire.
func (l *Launcher) StartEmbeddedRedis() (*Redis, error) {
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start embedded Redis: %w", err)
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				mr.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	r := &Redis{l: l, addr: mr.Addr(), mr: mr, stopClock: func() { close(done) }}
	l.onClose(func(time.Duration) { r.stop() })
	return r, nil
}

// Addr is host:port.
func (r *Redis) Addr() string { return r.addr }

// URL is REDIS_URL for it: database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// Embedded reports whether it is a miniredis in this process.
func (r *Redis) Embedded() bool { return r.mr != nil }

// Child is the redis-server process (the latest one after a Restart); nil
// when embedded.
func (r *Redis) Child() *procs.Child { return r.child }

// start starts redis-server on r.addr and waits until it answers PING.
func (r *Redis) start(ctx context.Context) error {
	log, err := os.OpenFile(r.srv.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(r.addr)
	aof := "no"
	if r.srv.AOF {
		aof = "yes"
	}
	var args []string
	if r.srv.Config != "" {
		args = append(args, r.srv.Config)
	}
	args = append(append(args,
		"--port", port, "--bind", "127.0.0.1", "--dir", r.srv.Dir,
		"--appendonly", aof, "--save", "", "--daemonize", "no", "--logfile", ""),
		r.srv.Args...)
	c, err := r.l.infra.Start("redis-server", r.srv.Program, args, procs.CleanEnv(), log, log)
	if err != nil {
		log.Close()
		return err
	}
	r.child = c
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := rdb.Ping(pctx).Err()
		cancel()
		switch {
		case err == nil:
			return nil
		case c.Exited():
			return fmt.Errorf("redis-server exited at start-up (%s):\n%s", procs.DescribeExit(c.Err()), procs.Tail(r.srv.Log, 8))
		case ctx.Err() != nil:
			_ = c.Stop(5 * time.Second)
			return ctx.Err()
		case time.Now().After(deadline):
			_ = c.Stop(5 * time.Second)
			return fmt.Errorf("redis-server does not answer on %s: %v (log: %s)", r.Addr(), err, r.srv.Log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Shutdown sends SHUTDOWN to the redis-server (which writes the AOF out
// first) and waits for the process to end; it kills it after 15s.
func (r *Redis) Shutdown() error {
	if r.child == nil {
		return errors.New("an embedded Redis cannot be shut down and restarted")
	}
	r.child.ExpectExit()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// SHUTDOWN answers nothing when it works: the connection just closes.
	// Only an error the server sent back means it refused.
	if err := rdb.Shutdown(ctx).Err(); err != nil {
		if _, refused := errors.AsType[redis.Error](err); refused {
			return fmt.Errorf("redis SHUTDOWN: %w", err)
		}
	}
	if !r.child.Wait(15 * time.Second) {
		_ = r.child.Signal(procs.SigKill)
		<-r.child.Done()
		return errors.New("redis-server did not exit within 15s of SHUTDOWN; killed")
	}
	return nil
}

// Kill ends the redis-server at once (SIGKILL), as a crash or a lost host
// would: nothing is written out, clients see their connections drop.
func (r *Redis) Kill() error {
	if r.child == nil {
		return errors.New("an embedded Redis cannot be killed")
	}
	r.child.ExpectExit()
	if err := r.child.Signal(procs.SigKill); err != nil {
		return fmt.Errorf("kill redis-server: %w", err)
	}
	<-r.child.Done()
	return nil
}

// Restart starts the redis-server again, on the same port and directory,
// after a Shutdown or a Kill, and waits until it answers.
func (r *Redis) Restart(ctx context.Context) error {
	if r.child == nil {
		return errors.New("an embedded Redis cannot be shut down and restarted")
	}
	if !r.child.Exited() {
		return errors.New("redis-server is still running")
	}
	return r.start(ctx)
}

// stop ends it for good: SHUTDOWN for a redis-server still running.
func (r *Redis) stop() {
	if r.mr != nil {
		r.stopClock()
		r.mr.Close()
		return
	}
	if !r.child.Exited() {
		_ = r.Shutdown()
	}
}
