package main

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

// redisBackend is the Redis every drill uses: a private redis-server when
// one is installed, else an embedded miniredis.
type redisBackend interface {
	// Addr is host:port on 127.0.0.1.
	Addr() string
	// Describe says what it is, for the output.
	Describe() string
	// Close stops it.
	Close()
}

// redisServer is a redis-server process of chaos's own: its own port on
// 127.0.0.1 and its own directory, AOF on as docker-compose runs it, no RDB
// snapshots. It can be shut down and started again on the same port and
// directory (the restart-redis drill).
type redisServer struct {
	reg     *procs.Group
	path    string
	dir     string
	logPath string
	port    int
	child   *procs.Child
	starts  int
}

// startRedisServer starts path (a redis-server) on a free loopback port with
// its data in dir and its log in logPath.
func startRedisServer(ctx context.Context, reg *procs.Group, path, dir, logPath string) (*redisServer, error) {
	r := &redisServer{reg: reg, path: path, dir: dir, logPath: logPath}
	var err error
	for try := 0; try < 3; try++ {
		if r.port, err = freePort(); err != nil {
			return nil, err
		}
		if err = r.start(ctx); err == nil {
			return r, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return nil, err
}

func (r *redisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *redisServer) Describe() string {
	return fmt.Sprintf("private redis-server %s (pid %d, --appendonly yes --save \"\", dir %s)", r.Addr(), r.child.Pid(), r.dir)
}

// start starts the server and waits until it answers PING.
func (r *redisServer) start(ctx context.Context) error {
	log, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	r.starts++
	args := []string{
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--appendonly", "yes", "--save", "", "--daemonize", "no", "--logfile", "",
	}
	c, err := r.reg.Start("redis-server", r.path, args, procs.CleanEnv(), log, log)
	if err != nil {
		log.Close()
		return err
	}
	r.child = c
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := rdb.Ping(pctx).Err()
		cancel()
		switch {
		case err == nil:
			return nil
		case c.Exited():
			return fmt.Errorf("redis-server exited at start-up (%s):\n%s", procs.DescribeExit(c.Err()), procs.Tail(r.logPath, 8))
		case ctx.Err() != nil:
			return ctx.Err()
		case time.Now().After(deadline):
			_ = c.Stop(5 * time.Second)
			return fmt.Errorf("redis-server does not answer on %s: %v", r.Addr(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shutdown sends SHUTDOWN (which writes the AOF out) and waits for the
// process to end.
func (r *redisServer) shutdown() error {
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

// Close stops the server for good.
func (r *redisServer) Close() {
	if r.child != nil && !r.child.Exited() {
		_ = r.shutdown()
	}
}

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// lookRedisServer finds redis-server: path when set, else on PATH.
func lookRedisServer(path string) (string, error) {
	if path == "" {
		path = "redis-server"
	}
	return exec.LookPath(path)
}

// embeddedRedis is a miniredis inside chaos, for when redis-server is
// missing. Its clock follows real time so that TTLs expire.
type embeddedRedis struct {
	mr   *miniredis.Miniredis
	stop chan struct{}
}

func startEmbeddedRedis() (*embeddedRedis, error) {
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start embedded Redis: %w", err)
	}
	e := &embeddedRedis{mr: mr, stop: make(chan struct{})}
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-e.stop:
				return
			case now := <-t.C:
				mr.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return e, nil
}

func (e *embeddedRedis) Addr() string { return e.mr.Addr() }

func (e *embeddedRedis) Describe() string {
	return "embedded miniredis " + e.mr.Addr() + " (redis-server is not installed)"
}

func (e *embeddedRedis) Close() {
	close(e.stop)
	e.mr.Close()
}
