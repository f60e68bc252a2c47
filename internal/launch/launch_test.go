package launch

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/procs"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

func TestCloseStopsChildrenFirstThenTheRestLastFirst(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs a POSIX shell")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	var l Launcher
	c, err := l.Children.Start("sleeper", sh, []string{"-c", "exec sleep 30"}, procs.CleanEnv(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, name := range []string{"redis", "sandbox"} {
		l.onClose(func(time.Duration) {
			if !c.Exited() {
				t.Errorf("%s stopped while a child still ran", name)
			}
			order = append(order, name)
		})
	}
	l.Close(5 * time.Second)
	l.Close(5 * time.Second) // nothing left to stop
	if got := strings.Join(order, ","); got != "sandbox,redis" {
		t.Errorf("stopped %s, want sandbox,redis", got)
	}
}

func ping(addr string) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()
	return rdb.Ping(context.Background()).Err()
}

func TestEmbeddedRedisExpiresKeysInRealTime(t *testing.T) {
	var l Launcher
	r, err := l.StartEmbeddedRedis()
	if err != nil {
		t.Fatal(err)
	}
	if !r.Embedded() || r.Child() != nil || r.URL() != "redis://"+r.Addr()+"/0" {
		t.Errorf("embedded %v, child %v, URL %s", r.Embedded(), r.Child(), r.URL())
	}
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "v", 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for rdb.Exists(ctx, "k").Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatal("a key with a TTL of 300ms still exists after 5s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := r.Shutdown(); err == nil {
		t.Error("Shutdown of an embedded Redis succeeded")
	}
	l.Close(time.Second)
	if ping(r.Addr()) == nil {
		t.Error("the embedded Redis answers after Close")
	}
}

func TestRedisServerRestartsOnItsPortWithItsData(t *testing.T) {
	path, err := FindRedisServer("")
	if err != nil {
		t.Skip("redis-server is not installed")
	}
	dir := t.TempDir()
	var l Launcher
	defer l.Close(5 * time.Second)
	ctx := context.Background()
	r, err := l.StartRedisServer(ctx, RedisServer{Program: path, Dir: dir, Log: filepath.Join(dir, "redis.log"), AOF: true})
	if err != nil {
		t.Fatal(err)
	}
	first := r.Child()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer rdb.Close()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if !first.Exited() || first.UnexpectedExit() {
		t.Fatalf("after Shutdown: exited %v, unexpected %v", first.Exited(), first.UnexpectedExit())
	}
	if err := r.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if r.Child() == first {
		t.Error("Restart kept the old child")
	}
	if v, err := rdb.Get(ctx, "k").Result(); v != "v" {
		t.Errorf("after the restart GET k = %q, %v; want the AOF's v", v, err)
	}
	l.Close(5 * time.Second)
	if !r.Child().Exited() {
		t.Error("redis-server runs after Close")
	}
}

func TestSandboxStartsAndAnswers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds zhima-sandbox; skipped with -short")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go tool on PATH")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bin := t.TempDir()
	var log bytes.Buffer
	progs, err := Build(ctx, root, bin, &log, "zhima-sandbox")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "building") {
		t.Errorf("Build logged %q", log.String())
	}
	log.Reset()
	if _, err := Build(ctx, root, bin, &log, "zhima-sandbox"); err != nil || log.Len() > 0 {
		t.Errorf("a second Build: %v, logged %q (want no build)", err, log.String())
	}

	dir := t.TempDir()
	var l Launcher
	defer l.Close(5 * time.Second)
	sb, err := l.StartSandbox(ctx, SandboxConfig{
		Program: progs["zhima-sandbox"], AppID: zhimatest.AppID, AppPublicKey: zhimatest.KeyFile("app_public.pem"),
		AlipayPublicKey: filepath.Join(dir, "alipay.pem"), Log: filepath.Join(dir, "sandbox.log"), Seed: 7,
		Args: []string{"--system-error-rate", "0.5"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sb.URL, sb.AdminURL+"/") || !strings.HasSuffix(sb.URL, "/gateway.do") {
		t.Errorf("URL %s, AdminURL %s", sb.URL, sb.AdminURL)
	}
	if _, err := os.Stat(sb.AlipayPublicKey); err != nil {
		t.Errorf("Alipay public key: %v", err)
	}
	if err := sb.SetFaults(ctx, sandbox.Faults{UnavailableRate: 1}); err != nil {
		t.Fatal(err)
	}
	if err := sb.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sb.SetFaults(ctx, sandbox.Faults{UnavailableRate: 2}); err == nil {
		t.Error("SetFaults with a rate of 2 succeeded")
	}
	if st, err := sb.Stats(ctx); err != nil || st.Calls != 0 {
		t.Errorf("Stats = %+v, %v", st, err)
	}
	if n, err := sb.Calls(ctx, "zhima.credit.score.brief.get", "T_1"); err != nil || n != 0 {
		t.Errorf("Calls = %d, %v", n, err)
	}
	l.Close(5 * time.Second)
	if err := sb.Child.Err(); !sb.Child.Exited() || err != nil {
		t.Errorf("after Close: exited %v, %v (want exit status 0 on SIGTERM)", sb.Child.Exited(), err)
	}
}
