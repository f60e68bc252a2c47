package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zhimaq/zhimaq/internal/launch"
)

// gateway is one drill's zhima-sandbox process with a counting reverse
// proxy in front of it: the workers call the proxy, chaos calls the
// sandbox's admin endpoints directly.
type gateway struct {
	sb    *launch.Sandbox
	proxy *countingProxy
}

// startGateway starts zhima-sandbox with args (besides its address, app id,
// keys and seed) and the proxy in front of it.
func startGateway(ctx context.Context, e *env, dir, logDir string, seed int64, args []string) (*gateway, error) {
	sb, err := e.l.StartSandbox(ctx, launch.SandboxConfig{
		Program: e.bins["zhima-sandbox"], AppID: appID, AppPublicKey: e.appPub,
		AlipayPublicKey: filepath.Join(dir, "alipay_public.pem"), Log: filepath.Join(logDir, "sandbox.log"),
		Seed: seed, Args: args,
	})
	if err != nil {
		return nil, err
	}
	g := &gateway{sb: sb}
	u, _ := url.Parse(sb.AdminURL)
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
	return g.sb.Stop(10 * time.Second)
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
