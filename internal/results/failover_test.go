//go:build unix

package results

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/idempotency"
	"github.com/zhimaq/zhimaq/internal/launch"
)

// TestAFailoverLosesOnlyClaimsNotWaitedFor shows the window in which a
// failover loses a claim: acknowledged by the master before any replica
// holds it (here the replica's link is down when the master dies). Without
// WAIT those claims are lost when the replica is promoted; claiming the job
// again then makes it anew (the gateway answers a transaction_id it has
// seen from its first result, unbilled). With Durable(1) none of them is
// acknowledged: ErrNotDurable tells the producer to try again.
func TestAFailoverLosesOnlyClaimsNotWaitedFor(t *testing.T) {
	program, err := launch.FindRedisServer("")
	if err != nil {
		t.Skip("redis-server is not installed")
	}
	for _, wait := range []int{0, 1} {
		t.Run(fmt.Sprintf("wait%d", wait), func(t *testing.T) {
			var l launch.Launcher
			defer l.Close(5 * time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			pair, err := l.StartRedisSentinel(ctx, program, t.TempDir(), 1, 0)
			if err != nil {
				t.Fatal(err)
			}
			master, replica := pair.Nodes[0], pair.Nodes[1]
			mc := redis.NewClient(&redis.Options{Addr: master.Addr(), MaxRetries: -1})
			defer mc.Close()
			rc := redis.NewClient(&redis.Options{Addr: replica.Addr(), MaxRetries: -1})
			defer rc.Close()
			s := New(mc, "zq:", 0).Durable(wait, 200*time.Millisecond)
			claim := func(s *Store, i int) (idempotency.Outcome, error) {
				k := key(fmt.Sprintf("FO_%d", i))
				o, _, err := s.Claim(ctx, k, queued(k), Claim{Fingerprint: fpA, Window: time.Hour, Now: time.Now()})
				return o, err
			}
			for i := range 5 { // before: replicated
				if _, err := claim(s, i); err != nil {
					t.Fatal(err)
				}
			}
			if n, _ := mc.Do(ctx, "WAIT", 1, 1000).Int(); n != 1 {
				t.Fatal("the replica did not take the first claims")
			}
			// The replica stops reading (SIGSTOP) and the master drops its
			// link: what the master acknowledges now, no replica holds.
			if err := replica.Child().Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			if err := mc.Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Err(); err != nil {
				t.Fatal(err)
			}
			acked := 0
			for i := 5; i < 25; i++ {
				_, err := claim(s, i)
				switch {
				case err == nil:
					acked++
				case !errors.Is(err, ErrNotDurable):
					t.Fatalf("claim %d: %v", i, err)
				}
			}
			if err := master.Kill(); err != nil {
				t.Fatal(err)
			}
			if err := replica.Child().Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			if err := rc.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
				t.Fatal(err)
			}
			promoted := New(rc, "zq:", 0)
			kept, lost := 0, 0
			for i := range 25 {
				_, err := promoted.Get(ctx, key(fmt.Sprintf("FO_%d", i)))
				switch {
				case err == nil:
					kept++
				case errors.Is(err, ErrNotFound):
					lost++
				default:
					t.Fatal(err)
				}
			}
			if kept < 5 || kept+lost != 25 {
				t.Fatalf("kept %d, lost %d of 25: the 5 replicated claims must be kept", kept, lost)
			}
			t.Logf("WAIT %d: %d of 20 claims made while no replica read acknowledged; %d of 25 claims lost in the failover", wait, acked, lost)
			switch wait {
			case 0:
				if acked != 20 || lost != 20 {
					t.Errorf("without WAIT: %d acknowledged, %d lost; want all 20 acknowledged and lost", acked, lost)
				}
				// The producer's next submission of a lost job claims it anew.
				if o, err := claim(promoted, 7); err != nil || o != idempotency.Claimed {
					t.Errorf("claim a lost job again: %v, %v; want Claimed", o, err)
				}
			case 1:
				if acked != 0 {
					t.Errorf("with WAIT 1: %d claims acknowledged that no replica held", acked)
				}
			}
		})
	}
}
