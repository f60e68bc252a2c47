package breaker

import (
	"errors"
	"testing"
	"time"
)

func TestBreakerOpensOnARunOfFailuresAndClosesAfterAProbe(t *testing.T) {
	var changes []string
	b := New(Config{Failures: 3, Cooldown: 30 * time.Millisecond, OnChange: func(from, to string) { changes = append(changes, from+"->"+to) }})
	call := func(o Outcome) error {
		done, err := b.Allow()
		if err == nil {
			done(o)
		}
		return err
	}
	for i := range 2 {
		if err := call(Transient); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if err := call(Answered); err != nil { // a final error from a live gateway resets the run
		t.Fatal(err)
	}
	if err := call(NotMade); err != nil { // a call not made counts for nothing
		t.Fatal(err)
	}
	for i := range 3 {
		if err := call(Transient); err != nil {
			t.Fatalf("storm call %d: %v", i, err)
		}
	}
	if b.State() != "open" {
		t.Fatalf("state %s after 3 transient failures in a row", b.State())
	}
	if err := call(Answered); !errors.Is(err, ErrOpen) {
		t.Fatalf("open breaker let a call through: %v", err)
	}
	time.Sleep(40 * time.Millisecond) // gobreaker reads the wall clock for its cool-down
	probe, err := b.Allow()
	if err != nil {
		t.Fatalf("no probe after the cool-down: %v", err)
	}
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatalf("a second call went out beside the probe: %v", err)
	}
	probe(Answered)
	if b.State() != "closed" {
		t.Fatalf("state %s after a good probe", b.State())
	}
	want := []string{"closed->open", "open->half-open", "half-open->closed"}
	if len(changes) != len(want) {
		t.Fatalf("changes %v, want %v", changes, want)
	}
	for i := range want {
		if changes[i] != want[i] {
			t.Fatalf("changes %v, want %v", changes, want)
		}
	}
}
