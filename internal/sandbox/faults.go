package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Faults says how often the sandbox misbehaves. Each rate is a probability
// from 0 to 1 per gateway call that passed the signature and parameter checks;
// the zero value means a well-behaved gateway. When several rates are set they
// are drawn in field order and the first hit wins. A faulted call is neither
// stored under its transaction_id nor billed.
type Faults struct {
	// SystemErrorRate answers 40004 SYSTEM_ERROR in the method node.
	SystemErrorRate float64 `json:"system_error_rate"`
	// UnavailableRate answers 20000 "Service Currently Unavailable",
	// sub_code isp.unknow-error.
	UnavailableRate float64 `json:"unavailable_rate"`
	// HTTP502Rate answers HTTP 502 with a plain-text body.
	HTTP502Rate float64 `json:"http_502_rate"`
	// HangRate holds the request until the client gives up, the sandbox is
	// closed, or Config.MaxHang passes (then HTTP 504).
	HangRate float64 `json:"hang_rate"`
	// BadSignRate answers as usual but with a signature that does not verify.
	BadSignRate float64 `json:"bad_sign_rate"`
	// RogueCertRate, in certificate mode only, answers as usual but signed
	// by a rogue Alipay certificate and naming its SN in alipay_cert_sn. The
	// signature verifies with that certificate, which is downloadable, but
	// it chains to a root that is not in the root file, under the same names
	// as the real chain: a client must reject it by checking the chain.
	// Outside certificate mode New and PUT /admin/faults refuse it and
	// SetFaults sets it to 0.
	RogueCertRate float64 `json:"rogue_cert_rate"`
	// Latency is added to every gateway call, faulted or not. Default 0.
	Latency Duration `json:"latency"`
}

// Validate reports the first rate outside 0..1 or a negative latency. That
// RogueCertRate needs certificate mode is checked by New and
// PUT /admin/faults, which know the mode.
func (f Faults) Validate() error {
	rates := []struct {
		name string
		v    float64
	}{
		{"system_error_rate", f.SystemErrorRate},
		{"unavailable_rate", f.UnavailableRate},
		{"http_502_rate", f.HTTP502Rate},
		{"hang_rate", f.HangRate},
		{"bad_sign_rate", f.BadSignRate},
		{"rogue_cert_rate", f.RogueCertRate},
	}
	for _, r := range rates {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("sandbox: faults: %s must be between 0 and 1, got %v", r.name, r.v)
		}
	}
	if f.Latency < 0 {
		return fmt.Errorf("sandbox: faults: latency must not be negative, got %s", time.Duration(f.Latency))
	}
	return nil
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string such as "100ms". Reading also accepts a number of nanoseconds.
type Duration time.Duration

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string ("250ms", "1m") or a number of
// nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if json.Unmarshal(b, &n) != nil {
			return errors.New(`duration must be a string such as "100ms" or a number of nanoseconds`)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: want a Go duration such as \"100ms\"", s)
	}
	*d = Duration(v)
	return nil
}

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// fault is the outcome drawn for one call.
type fault int

const (
	faultNone fault = iota
	faultSystemError
	faultUnavailable
	faultHTTP502
	faultHang
	faultBadSign
	faultRogueCert
)

// faultDice holds the current Faults and the seeded source they are drawn
// from; one mutex keeps a seeded run repeatable call by call.
type faultDice struct {
	mu     sync.Mutex
	faults Faults
	rng    *rand.Rand
}

func newFaultDice(f Faults, seed int64) *faultDice {
	if seed == 0 {
		seed = rand.Int64()
	}
	return &faultDice{faults: f, rng: rand.New(rand.NewPCG(uint64(seed), 0x7a68696d61))}
}

func (d *faultDice) get() Faults {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.faults
}

func (d *faultDice) set(f Faults) {
	d.mu.Lock()
	d.faults = f
	d.mu.Unlock()
}

// roll draws the fault for one call. Rates of 0 draw nothing, so turning a
// fault off does not shift the sequence of the others.
func (d *faultDice) roll() fault {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range []struct {
		rate float64
		f    fault
	}{
		{d.faults.SystemErrorRate, faultSystemError},
		{d.faults.UnavailableRate, faultUnavailable},
		{d.faults.HTTP502Rate, faultHTTP502},
		{d.faults.HangRate, faultHang},
		{d.faults.BadSignRate, faultBadSign},
		{d.faults.RogueCertRate, faultRogueCert},
	} {
		if c.rate > 0 && d.rng.Float64() < c.rate {
			return c.f
		}
	}
	return faultNone
}
