// withcluster CMD [ARGS…] starts a local Redis Cluster of 3 masters with a
// replica each from redis-server on PATH (launch.StartRedisCluster, free
// ports on 127.0.0.1, a temp dir), runs CMD with REDIS_URL set to its
// redis-cluster:// URL, stops the cluster and exits with CMD's status.
//
// CMD runs in a process group of its own: SIGINT and SIGTERM sent to
// withcluster reach all of it (go test and its test binaries alike), and
// the cluster stops only once CMD has ended. make test-cluster runs the
// test suite with it.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/zhimaq/zhimaq/internal/launch"
	"github.com/zhimaq/zhimaq/internal/procs"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: withcluster CMD [ARGS...]")
		return 2
	}
	program, err := launch.FindRedisServer("")
	if err != nil {
		fmt.Fprintf(os.Stderr, "withcluster: a local Redis Cluster needs redis-server on PATH (Debian: apt-get install redis-server): %v\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "zhimaq-withcluster-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "withcluster: %v\n", err)
		return 1
	}
	keepDir := false // the nodes' logs, when the cluster did not start
	defer func() {
		if !keepDir {
			os.RemoveAll(dir)
		}
	}()
	l := &launch.Launcher{}
	defer l.Close(10 * time.Second) // before the directory goes

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start, cancel := context.WithTimeout(ctx, 2*time.Minute)
	cluster, err := l.StartRedisCluster(start, program, dir, 3, 1)
	cancel()
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "withcluster: interrupted while the cluster started")
		return 130
	case err != nil:
		keepDir = true
		fmt.Fprintf(os.Stderr, "withcluster: start a Redis Cluster (node logs under %s): %v\n", dir, err)
		return 1
	}
	// From here on signals are CMD's: passed on, not acted on.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	stop()
	url := cluster.URL()
	fmt.Fprintf(os.Stderr, "withcluster: REDIS_URL=%s\n", url)

	env := []string{"REDIS_URL=" + url}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REDIS_URL=") {
			env = append(env, kv)
		}
	}
	// Wrapped: procs closes the writers it is given that are io.Closers.
	child, err := l.Children.StartIn(args[0], args[0], args[1:], env, os.Stdin,
		struct{ io.Writer }{os.Stdout}, struct{ io.Writer }{os.Stderr})
	if err != nil {
		fmt.Fprintf(os.Stderr, "withcluster: %v\n", err)
		return 1
	}
	for running := true; running; {
		select {
		case sig := <-sigs:
			_ = child.Signal(sig.(syscall.Signal))
		case <-child.Done():
			running = false
		}
	}
	code := procs.ExitCode(child.Err())
	if code < 0 { // ended by a signal
		fmt.Fprintf(os.Stderr, "withcluster: %s: %s\n", args[0], procs.DescribeExit(child.Err()))
		code = 1
	}
	return code
}
