package sandbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"sync"
	"time"
)

// txKey names a transaction as the gateway does.
type txKey struct{ appID, method, transactionID string }

// txEntry is the first successful answer of a transaction.
type txEntry struct {
	fingerprint [sha256.Size]byte
	node        []byte
	at          time.Time
}

// txVerdict is what the store says of a call.
type txVerdict int

const (
	txFirst   txVerdict = iota // no answer yet: this one is new (and billed)
	txReplay                   // same parameters inside the window: the stored answer
	txRepeat                   // other parameters: TRANSACTION_ID_REPEAT
	txExpired                  // the window has closed: TRANSACTION_ID_EXPIRED
)

// txStore keeps first answers for the window. Entries are never dropped, so
// a transaction_id stays expired once its window has closed.
type txStore struct {
	mu sync.Mutex
	m  map[txKey]*txEntry
}

func newTxStore() *txStore { return &txStore{m: map[txKey]*txEntry{}} }

// resolve looks k up at now. For a new transaction it builds the answer and,
// when commit is true, stores it; a dry run (a faulted call) stores nothing.
// Lookup and store happen under one lock, so of concurrent first calls only
// one is new.
func (s *txStore) resolve(k txKey, fp [sha256.Size]byte, now time.Time, window time.Duration, build func() []byte, commit bool) ([]byte, txVerdict) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[k]
	switch {
	case e == nil:
		node := build()
		if commit {
			s.m[k] = &txEntry{fingerprint: fp, node: node, at: now}
		}
		return node, txFirst
	case now.Sub(e.at) >= window:
		return nil, txExpired
	case e.fingerprint != fp:
		return nil, txRepeat
	}
	return e.node, txReplay
}

func (s *txStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *txStore) reset() {
	s.mu.Lock()
	s.m = map[txKey]*txEntry{}
	s.mu.Unlock()
}

// fingerprint hashes the canonical form of a biz_content: parsed and written
// again with sorted keys, numbers as written, no insignificant space.
func fingerprint(bizContent []byte) ([sha256.Size]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(bizContent))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return [sha256.Size]byte{}, err
	}
	canon, err := json.Marshal(v)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(canon), nil
}
