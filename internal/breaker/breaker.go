// Package breaker stops a worker from hammering a failing gateway: after a
// run of transient failures it lets no call through for a cool-down, then
// lets one probe through, and closes again when the probe succeeds.
package breaker

import (
	"errors"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Defaults of Config's zero values.
const (
	DefaultFailures = 20
	DefaultCooldown = 10 * time.Second
)

// Config tunes a Breaker. Zero values mean the defaults.
type Config struct {
	// Failures is how many transient failures in a row open the breaker; default 20.
	Failures int
	// Cooldown is how long it stays open before a probe; default 10s.
	Cooldown time.Duration
	// OnChange, when set, is told every change of state ("closed", "open", "half-open").
	OnChange func(from, to string)
}

// Breaker guards calls to one gateway. Its zero value is not usable; call New.
type Breaker struct {
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	cooldown time.Duration
}

// ErrOpen is returned by Allow while the breaker lets no call through.
var ErrOpen = errors.New("breaker: gateway failing, calls held back")

// New returns a closed breaker.
func New(cfg Config) *Breaker {
	if cfg.Failures <= 0 {
		cfg.Failures = DefaultFailures
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = DefaultCooldown
	}
	st := gobreaker.Settings{
		Name:        "gateway",
		MaxRequests: 1,
		Timeout:     cfg.Cooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(cfg.Failures) },
		IsExcluded:  func(err error) bool { return err == errNotMade },
	}
	if cfg.OnChange != nil {
		st.OnStateChange = func(_ string, from, to gobreaker.State) { cfg.OnChange(from.String(), to.String()) }
	}
	return &Breaker{cb: gobreaker.NewTwoStepCircuitBreaker[struct{}](st), cooldown: cfg.Cooldown}
}

// Outcome is what became of a call the breaker let through.
type Outcome int

const (
	// Answered: the gateway answered, even with a final error; it is up.
	Answered Outcome = iota
	// Transient: the call failed in a way a retry may fix; a run of these opens the breaker.
	Transient
	// NotMade: the call was not made after all; it counts for nothing.
	NotMade
)

// Allow asks to make one call. It returns ErrOpen while the breaker is open
// (or its one probe is already out); otherwise the caller reports what
// became of the call with done.
func (b *Breaker) Allow() (done func(Outcome), err error) {
	report, err := b.cb.Allow()
	if err != nil {
		return nil, ErrOpen
	}
	return func(o Outcome) {
		switch o {
		case Transient:
			report(errTransient)
		case NotMade:
			report(errNotMade)
		default:
			report(nil)
		}
	}, nil
}

var (
	errTransient = errors.New("transient failure")
	errNotMade   = errors.New("call not made")
)

// State is "closed", "open" or "half-open".
func (b *Breaker) State() string { return b.cb.State().String() }

// Cooldown is how long the breaker stays open.
func (b *Breaker) Cooldown() time.Duration { return b.cooldown }
