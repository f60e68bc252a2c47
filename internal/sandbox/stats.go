package sandbox

import (
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
	// Codes counts answers by outcome: "10000" for success (replays
	// included), "<code>/<sub_code>" for gateway errors such as
	// "40004/SYSTEM_ERROR" or "40002/isv.invalid-signature", "http/<status>"
	// for plain HTTP answers such as "http/502", "hang" for hung requests and
	// "bad_sign" for answers signed wrongly on purpose.
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
	calls       atomic.Int64
	billed      atomic.Int64
	connections atomic.Int64

	mu    sync.Mutex
	codes map[string]int64
	per   map[callKey]int64
}

func newCounters() *counters {
	return &counters{codes: map[string]int64{}, per: map[callKey]int64{}}
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
	codes := make(map[string]int64, len(c.codes))
	for k, v := range c.codes {
		codes[k] = v
	}
	c.mu.Unlock()
	return Stats{
		Calls:       c.calls.Load(),
		Billed:      c.billed.Load(),
		Connections: c.connections.Load(),
		Codes:       codes,
	}
}

func (c *counters) reset() {
	c.mu.Lock()
	c.codes = map[string]int64{}
	c.per = map[callKey]int64{}
	c.mu.Unlock()
	c.calls.Store(0)
	c.billed.Store(0)
	c.connections.Store(0)
}
