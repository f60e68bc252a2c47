package sandbox

import (
	"maps"
	"sync"
	"sync/atomic"
)

// Stats is a snapshot of the sandbox's counters since start or the last
// Reset.
type Stats struct {
	// Calls counts requests to /gateway.do, whatever their outcome.
	Calls int64 `json:"calls"`
	// Billed counts first successful answers of a transaction_id; replays
	// and faulted calls are not billed.
	Billed int64 `json:"billed"`
	// Connections counts TCP connections accepted (see Server.ConnState).
	Connections int64 `json:"connections"`
	// Transactions counts stored (app_id, method, transaction_id) answers.
	Transactions int64 `json:"transactions"`
	// Methods counts calls by method, for the methods the gateway serves,
	// under the same rule as Server.Calls but whatever the biz_content.
	Methods map[string]int64 `json:"methods"`
	// CertDownloads counts alipay.open.app.alipaycert.download answers that
	// returned a certificate.
	CertDownloads int64 `json:"cert_downloads"`
	// CertRotations counts Alipay certificate rotations (Server.RotateCert,
	// POST /admin/rotate-cert, Config.RotateCertAfter).
	CertRotations int64 `json:"cert_rotations"`
	// Codes counts answers by outcome: "10000" for success (replays
	// included), "<code>/<sub_code>" for gateway errors such as
	// "40004/SYSTEM_ERROR" or "40002/isv.invalid-signature", "http/<status>"
	// for plain HTTP answers such as "http/502", "hang" for hung requests,
	// "bad_sign" for answers signed wrongly on purpose and "rogue_cert" for
	// answers signed by the rogue certificate.
	Codes map[string]int64 `json:"codes"`
}

// Calls returns how many gateway calls named method and transactionID,
// whatever their outcome: a call is counted once its charset is known and its
// method and biz_content's transaction_id can be read, before any other check.
func (s *Server) Calls(method, transactionID string) int64 {
	return s.count.callsFor(method, transactionID)
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := s.count.snapshot()
	st.Transactions = int64(s.txs.len())
	return st
}

type callKey struct{ method, transactionID string }

// counters are the sandbox's tallies. Hot counters are atomic; the maps share
// one mutex.
type counters struct {
	calls         atomic.Int64
	billed        atomic.Int64
	connections   atomic.Int64
	certDownloads atomic.Int64
	certRotations atomic.Int64

	mu      sync.Mutex
	codes   map[string]int64
	per     map[callKey]int64
	methods map[string]int64
}

func newCounters() *counters {
	return &counters{codes: map[string]int64{}, per: map[callKey]int64{}, methods: map[string]int64{}}
}

func (c *counters) method(method string) {
	c.mu.Lock()
	c.methods[method]++
	c.mu.Unlock()
}

func (c *counters) answer(key string) {
	c.mu.Lock()
	c.codes[key]++
	c.mu.Unlock()
}

func (c *counters) call(method, transactionID string) {
	c.mu.Lock()
	c.per[callKey{method, transactionID}]++
	c.mu.Unlock()
}

func (c *counters) callsFor(method, transactionID string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.per[callKey{method, transactionID}]
}

func (c *counters) snapshot() Stats {
	c.mu.Lock()
	codes, methods := maps.Clone(c.codes), maps.Clone(c.methods)
	c.mu.Unlock()
	return Stats{
		Calls:         c.calls.Load(),
		Billed:        c.billed.Load(),
		Connections:   c.connections.Load(),
		Methods:       methods,
		CertDownloads: c.certDownloads.Load(),
		CertRotations: c.certRotations.Load(),
		Codes:         codes,
	}
}

func (c *counters) reset() {
	c.mu.Lock()
	c.codes = map[string]int64{}
	c.per = map[callKey]int64{}
	c.methods = map[string]int64{}
	c.mu.Unlock()
	c.calls.Store(0)
	c.billed.Store(0)
	c.connections.Store(0)
	c.certDownloads.Store(0)
	c.certRotations.Store(0)
}
