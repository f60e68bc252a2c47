package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zhimaq/zhimaq/internal/procs"
)

// gateway is one drill's zhima-sandbox process with a counting reverse
// proxy in front of it: the workers call the proxy, chaos calls the
// sandbox's admin endpoints directly.
type gateway struct {
	sandbox  *procs.Child
	logPath  string
	adminURL string // http://host:port of the sandbox
	proxy    *countingProxy
	client   *http.Client
}

var gatewayURLField = regexp.MustCompile(`gateway_url="?([^"\s]+)`)

// startGateway starts zhima-sandbox with args (besides its address, app id
// and keys) and the proxy in front of it.
func startGateway(ctx context.Context, e *env, dir, logDir string, seed int64, args []string) (*gateway, error) {
	logPath := logDir + "/sandbox.log"
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	found := make(chan string, 1)
	var once sync.Once
	tap := procs.NewLineTap(f, func(line []byte) {
		if m := gatewayURLField.FindSubmatch(line); m != nil {
			once.Do(func() { found <- string(m[1]) })
		}
	})
	all := append([]string{"--addr", "127.0.0.1:0", "--app-id", appID, "--app-public-key-file", e.appPub,
		"--write-alipay-public-key", dir + "/alipay_public.pem", "--seed", fmt.Sprint(seed)}, args...)
	sb, err := e.reg.Start("zhima-sandbox", e.bins["zhima-sandbox"], all, procs.CleanEnv(), tap, tap)
	if err != nil {
		f.Close()
		return nil, err
	}
	g := &gateway{sandbox: sb, logPath: logPath, client: &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	var gwURL string
	select {
	case gwURL = <-found:
	case <-sb.Done():
		return nil, fmt.Errorf("zhima-sandbox exited at start-up (%s):\n%s", procs.DescribeExit(sb.Err()), procs.Tail(logPath, 8))
	case <-time.After(20 * time.Second):
		g.close()
		return nil, fmt.Errorf("zhima-sandbox printed no gateway_url within 20s:\n%s", procs.Tail(logPath, 8))
	case <-ctx.Done():
		g.close()
		return nil, ctx.Err()
	}
	u, err := url.Parse(gwURL)
	if err != nil || u.Host == "" {
		g.close()
		return nil, fmt.Errorf("zhima-sandbox printed an unusable gateway_url %q", gwURL)
	}
	g.adminURL = "http://" + u.Host
	if g.proxy, err = newCountingProxy(u); err != nil {
		g.close()
		return nil, err
	}
	return g, nil
}

// URL is what the workers get as ZHIMA_GATEWAY_URL: the proxy's.
func (g *gateway) URL() string { return g.proxy.url + "/gateway.do" }

// close stops the proxy and the sandbox.
func (g *gateway) close() error {
	if g.proxy != nil {
		g.proxy.close()
	}
	return g.sandbox.Stop(10 * time.Second)
}

// sandboxStats is GET /admin/stats.
type sandboxStats struct {
	Calls  int64            `json:"calls"`
	Billed int64            `json:"billed"`
	Codes  map[string]int64 `json:"codes"`
}

func (g *gateway) stats(ctx context.Context) (sandboxStats, error) {
	var st sandboxStats
	err := g.admin(ctx, http.MethodGet, "/admin/stats", nil, &st)
	return st, err
}

// setFaults replaces the sandbox's faults (PUT /admin/faults).
func (g *gateway) setFaults(ctx context.Context, faults map[string]any) error {
	b, err := json.Marshal(faults)
	if err != nil {
		return err
	}
	return g.admin(ctx, http.MethodPut, "/admin/faults", b, nil)
}

// calls is how many gateway calls the sandbox counted for one transaction.
func (g *gateway) calls(ctx context.Context, method, txid string) (int64, error) {
	var out struct {
		Calls int64 `json:"calls"`
	}
	q := url.Values{"method": {method}, "transaction_id": {txid}}
	err := g.admin(ctx, http.MethodGet, "/admin/calls?"+q.Encode(), nil, &out)
	return out.Calls, err
}

func (g *gateway) admin(ctx context.Context, method, path string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.adminURL+path, rd)
	if err != nil {
		return err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return fmt.Errorf("sandbox %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("sandbox %s %s: HTTP %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("sandbox %s %s: %w", method, path, err)
		}
	}
	return nil
}

// countingProxy forwards gateway calls to the sandbox and counts those in
// flight: a request is in flight from the moment the proxy reads it until
// its answer is written or its client goes away. The sandbox itself exposes
// no such count.
type countingProxy struct {
	url string
	srv *http.Server
	ln  net.Listener

	inflight atomic.Int64
	peak     atomic.Int64
	requests atomic.Int64
	slowest  atomic.Int64 // nanoseconds

	mu      sync.Mutex
	sampled int64 // the highest in-flight count a sample saw
	samples int
	stopped chan struct{}
	once    sync.Once
}

func newCountingProxy(target *url.URL) (*countingProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(&url.URL{Scheme: target.Scheme, Host: target.Host}) },
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
		},
		ErrorLog: log.New(io.Discard, "", 0),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p := &countingProxy{url: "http://" + ln.Addr().String(), ln: ln, stopped: make(chan struct{})}
	p.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := p.inflight.Add(1)
			for {
				old := p.peak.Load()
				if n <= old || p.peak.CompareAndSwap(old, n) {
					break
				}
			}
			p.requests.Add(1)
			start := time.Now()
			defer func() {
				d := int64(time.Since(start))
				for {
					old := p.slowest.Load()
					if d <= old || p.slowest.CompareAndSwap(old, d) {
						break
					}
				}
				p.inflight.Add(-1)
			}()
			rp.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go p.srv.Serve(ln)
	go p.sample(50 * time.Millisecond)
	return p, nil
}

// sample reads the in-flight count every interval and keeps the highest.
func (p *countingProxy) sample(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-p.stopped:
			return
		case <-t.C:
			n := p.inflight.Load()
			p.mu.Lock()
			p.sampled = max(p.sampled, n)
			p.samples++
			p.mu.Unlock()
		}
	}
}

// proxyStats is what the proxy saw.
type proxyStats struct {
	Requests   int64
	InFlight   int64         // now
	SampledMax int64         // the highest count of the samples taken every 50ms
	Samples    int           // how many samples
	Peak       int64         // the highest count at any request's start
	Slowest    time.Duration // the longest request
}

func (p *countingProxy) stats() proxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return proxyStats{Requests: p.requests.Load(), InFlight: p.inflight.Load(), SampledMax: p.sampled,
		Samples: p.samples, Peak: p.peak.Load(), Slowest: time.Duration(p.slowest.Load())}
}

func (p *countingProxy) close() {
	p.once.Do(func() {
		close(p.stopped)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if p.srv.Shutdown(ctx) != nil {
			p.srv.Close()
		}
	})
}
