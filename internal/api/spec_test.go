package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

func init() {
	// JSON Lines bodies are checked as strings; each record line is checked
	// against the Record schema by checkJSONL.
	openapi3filter.RegisterBodyDecoder("application/x-ndjson", openapi3filter.FileBodyDecoder)
}

// loadSpec reads and validates api/openapi.yaml.
func loadSpec(tb testing.TB) *openapi3.T {
	tb.Helper()
	_, here, _, _ := runtime.Caller(0)
	doc, err := openapi3.NewLoader().LoadFromFile(filepath.Join(filepath.Dir(here), "..", "..", "api", "openapi.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		tb.Fatalf("api/openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	return doc
}

// specCheck is an http.RoundTripper that validates every request and every
// answer against the OpenAPI document (kin-openapi's openapi3filter), fails
// the test on any difference, and records which operations answered which
// statuses.
type specCheck struct {
	tb     testing.TB
	doc    *openapi3.T
	router routers.Router

	mu   sync.Mutex
	seen map[string]bool // "operationId status"
}

// newSpecCheck checks the round trips to the servers at baseURLs.
func newSpecCheck(tb testing.TB, doc *openapi3.T, baseURLs ...string) *specCheck {
	tb.Helper()
	doc.Servers = nil
	for _, u := range baseURLs {
		doc.Servers = append(doc.Servers, &openapi3.Server{URL: u})
	}
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		tb.Fatal(err)
	}
	return &specCheck{tb: tb, doc: doc, router: r, seen: map[string]bool{}}
}

func (c *specCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
	}
	length := req.ContentLength // ValidateRequest sets it; a chunked request must stay one
	reset := func() {
		if req.Body != nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
		req.ContentLength = length
	}
	reset()
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.tb.Errorf("%s %s is not in the spec: %v", req.Method, req.URL.Path, err)
		reset()
		return http.DefaultTransport.RoundTrip(req)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
		c.tb.Errorf("request %s %s does not match the spec: %v", req.Method, req.URL.Path, err)
	}
	reset()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	return resp, c.checkResponse(in, resp)
}

// checkAnswer checks resp, the answer to req that came some other way than
// RoundTrip (on a connection whose request body stalls), against the spec.
// It reads resp.Body and puts the bytes back.
func (c *specCheck) checkAnswer(req *http.Request, resp *http.Response) {
	c.tb.Helper()
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.tb.Errorf("%s %s is not in the spec: %v", req.Method, req.URL.Path, err)
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if err := c.checkResponse(in, resp); err != nil {
		c.tb.Errorf("answer to %s %s: %v", req.Method, req.URL.Path, err)
	}
}

// checkResponse validates the answer to in's request and records its
// operation and status as seen. It reads resp.Body and puts the bytes back.
func (c *specCheck) checkResponse(in *openapi3filter.RequestValidationInput, resp *http.Response) error {
	req := in.Request
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(answer))
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(answer)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	if err := openapi3filter.ValidateResponse(req.Context(), out); err != nil {
		c.tb.Errorf("answer %d to %s %s does not match the spec: %v\n%.400s", resp.StatusCode, req.Method, req.URL, err, answer)
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-ndjson") {
		c.checkJSONL(answer)
	}
	c.mu.Lock()
	c.seen[in.Route.Operation.OperationID+" "+http.StatusText(resp.StatusCode)] = true
	c.mu.Unlock()
	return nil
}

// checkJSONL checks every line of a JSON Lines answer against the Record schema.
func (c *specCheck) checkJSONL(body []byte) {
	schema := c.doc.Components.Schemas["Record"].Value
	for i, line := range bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n")) {
		var v any
		if err := json.Unmarshal(line, &v); err != nil {
			c.tb.Errorf("JSONL line %d: %v", i+1, err)
			continue
		}
		if err := schema.VisitJSON(v); err != nil {
			c.tb.Errorf("JSONL line %d does not match the Record schema: %v", i+1, err)
		}
	}
}

// requireSeen fails unless every one of want ("operationId Status Text") was seen.
func (c *specCheck) requireSeen(want ...string) {
	c.tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var missing, seen []string
	for _, w := range want {
		if !c.seen[w] {
			missing = append(missing, w)
		}
	}
	for s := range c.seen {
		seen = append(seen, s)
	}
	sort.Strings(seen)
	if len(missing) > 0 {
		c.tb.Errorf("no round trip covered %q; seen: %q", missing, seen)
	}
}
