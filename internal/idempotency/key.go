// Package idempotency names a transaction (Key), fingerprints its
// parameters and says what a claim on it found (Outcome): a transaction is
// enqueued once for the gateway's de-duplication window; a resubmission
// with the same parameters is a Duplicate, one with other parameters a
// Conflict (the gateway's TRANSACTION_ID_REPEAT), never sent. The claim
// itself is kept in the transaction's record (results.Store.Claim).
package idempotency

import (
	"errors"
	"fmt"
	"strings"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

// Key identifies one transaction at the gateway.
type Key struct {
	AppID, Method, TransactionID string
}

// String returns "app_id/method/transaction_id". Transaction ids hold only
// [A-Za-z0-9_] (see Validate), so the result is safe to log and show.
func (k Key) String() string {
	return k.AppID + "/" + k.Method + "/" + k.TransactionID
}

// Validate reports whether k can name a Redis key: every part is non-empty,
// AppID and Method hold no ':' (the key separator), spaces or control
// characters, and TransactionID holds only letters, digits and '_'. The
// error names the part at fault, never its value.
func (k Key) Validate() error {
	if err := checkPart("app_id", k.AppID); err != nil {
		return err
	}
	if err := checkPart("method", k.Method); err != nil {
		return err
	}
	if k.TransactionID == "" {
		return errors.New("idempotency: key: transaction_id is empty")
	}
	if !zhima.IsTransactionID(k.TransactionID) {
		return errors.New("idempotency: key: transaction_id may hold only letters, digits and '_', at most 64")
	}
	return nil
}

// ValidAppID reports whether id can be a Key's AppID (see Validate).
func ValidAppID(id string) error { return checkPart("app_id", id) }

func checkPart(name, v string) error {
	if v == "" {
		return fmt.Errorf("idempotency: key: %s is empty", name)
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r == ':' || r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("idempotency: key: %s holds ':', a space or a control character", name)
	}
	return nil
}

// Outcome is what Claim found.
type Outcome int

const (
	// Claimed: there was no claim on the key; the caller now holds it and
	// should enqueue the job.
	Claimed Outcome = iota + 1
	// Duplicate: the key is claimed with the same fingerprint; the caller
	// should not enqueue again but point at the existing job.
	Duplicate
	// Conflict: the key is claimed with another fingerprint; the job must be
	// rejected locally with TRANSACTION_ID_REPEAT.
	Conflict
	// Lapsed: the claim has expired but the transaction's
	// record lives on: its window is over, and nothing was claimed.
	Lapsed
)

// String returns "claimed", "duplicate", "conflict" or "lapsed", or "Outcome(n)" for
// any other value.
func (o Outcome) String() string {
	switch o {
	case Claimed:
		return "claimed"
	case Duplicate:
		return "duplicate"
	case Conflict:
		return "conflict"
	case Lapsed:
		return "lapsed"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}
