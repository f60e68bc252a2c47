package tasks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zhimaq/zhimaq/internal/budget"
	"github.com/zhimaq/zhimaq/internal/results"
	"github.com/zhimaq/zhimaq/internal/sandbox"
	"github.com/zhimaq/zhimaq/internal/zhima"
	"github.com/zhimaq/zhimaq/internal/zhimatest"
)

// beijing returns the instant of a Beijing wall-clock time.
func beijing(day, clock string) time.Time {
	t, err := time.ParseInLocation("2006-01-02 15:04:05", day+" "+clock, zhima.Beijing)
	if err != nil {
		panic(err)
	}
	return t
}

// TestABudgetIsHitExactlyByRacingWorkers: two workers (handlers with their
// own budget, sharing Redis) race through more jobs than the budget
// allows; exactly the budget is billed, the rest are held with no attempt
// used, and every held job says why.
func TestABudgetIsHitExactlyByRacingWorkers(t *testing.T) {
	const limit, jobs = 7, 40
	f := newFixture(t, sandbox.Faults{})
	f.now = beijing("2026-12-06", "12:00:00")
	otherApp := *f.app
	other := &Handler{Apps: map[string]*App{zhimatest.AppID: &otherApp}, Results: f.h.Results, Log: f.h.Log, Now: f.h.Now}
	for _, a := range []*App{f.app, &otherApp} {
		a.Budget = budget.New(f.rdb, f.prefix, zhimatest.AppID, map[string]int{zhima.MethodScoreBriefGet: limit})
	}
	var wg sync.WaitGroup
	held := make(chan string, jobs)
	for i := range jobs {
		h := f.h
		if i%2 == 1 {
			h = other
		}
		p := scorePayload(fmt.Sprintf("BUDGET_%02d", i))
		wg.Go(func() {
			err := h.ProcessTask(context.Background(), task(t, p))
			if hb := (*HeldBack)(nil); errors.As(err, &hb) && hb.Reason == "daily budget" && !IsFailure(err) {
				held <- p.TransactionID
			} else if err != nil {
				t.Errorf("%s: %v", p.TransactionID, err)
			}
		})
	}
	wg.Wait()
	close(held)
	if billed := f.gateway.Stats().Billed; billed != limit {
		t.Fatalf("gateway billed %d calls, want exactly the budget, %d", billed, limit)
	}
	n := 0
	for tx := range held {
		n++
		rec, err := f.h.Results.Get(context.Background(), scorePayload(tx).Key())
		if err != nil || rec.State != results.Held || rec.Attempts != 0 || rec.Error == nil || rec.Error.SubCode != SubDailyBudgetSpent {
			t.Fatalf("held job %s: record %+v (error %+v), %v; want held, no attempt, DAILY_BUDGET_SPENT", tx, rec, rec.Error, err)
		}
	}
	if n != jobs-limit {
		t.Fatalf("%d jobs held, want %d", n, jobs-limit)
	}
	if used, _ := f.app.Budget.Used(context.Background(), zhima.MethodScoreBriefGet, f.now); used != limit {
		t.Errorf("budget used %d, want %d", used, limit)
	}
	if got := strings.Count(f.logs.String(), "daily budget spent"); got < 1 || got > 2 {
		t.Errorf("logged the spent budget %d times, want once per worker", got)
	}
}

// TestAHeldJobRunsAfterBeijingMidnight: a job held late on one Beijing day
// comes back after midnight, is called then, and is billed to the new day.
func TestAHeldJobRunsAfterBeijingMidnight(t *testing.T) {
	f := newFixture(t, sandbox.Faults{})
	f.app.Budget = budget.New(f.rdb, f.prefix, zhimatest.AppID, map[string]int{zhima.MethodScoreBriefGet: 1})
	f.now = beijing("2026-12-06", "23:59:50")
	if err := f.h.ProcessTask(context.Background(), task(t, scorePayload("EVE_1"))); err != nil {
		t.Fatal(err)
	}
	p := scorePayload("EVE_2")
	err := f.h.ProcessTask(context.Background(), task(t, p))
	hb, ok := errors.AsType[*HeldBack](err)
	if !ok || hb.RetryAfter != 10*time.Second {
		t.Fatalf("second job: %v, want held for the 10 s until Beijing midnight", err)
	}
	if d := RetryDelay(time.Second, time.Minute)(0, err, nil); d < 10*time.Second || d > 10*time.Second+10*time.Second/4 {
		t.Errorf("retry delay %s, want 10s to 12.5s", d)
	}
	f.now = beijing("2026-12-07", "00:00:01")
	if err := f.h.ProcessTask(context.Background(), task(t, p)); err != nil {
		t.Fatalf("after midnight: %v, want the call made", err)
	}
	rec, _ := f.h.Results.Get(context.Background(), p.Key())
	if rec.State != results.Succeeded || rec.Attempts != 1 || rec.Error != nil {
		t.Fatalf("record %+v, want succeeded in 1 attempt", rec)
	}
	if used, _ := f.app.Budget.Used(context.Background(), zhima.MethodScoreBriefGet, f.now); used != 1 {
		t.Errorf("new day's budget used %d, want 1", used)
	}
}

// TestACallNotBilledGivesItsUnitBack: a call the gateway answers with an
// error is not billed, and its unit goes back to the budget.
func TestACallNotBilledGivesItsUnitBack(t *testing.T) {
	f := newFixture(t, sandbox.Faults{UnavailableRate: 1})
	f.app.Budget = budget.New(f.rdb, f.prefix, zhimatest.AppID, map[string]int{zhima.MethodScoreBriefGet: 1})
	p := scorePayload("UNBILLED_1")
	if _, ok := errors.AsType[*zhima.Error](f.h.ProcessTask(context.Background(), task(t, p))); !ok {
		t.Fatal("want the gateway's 20000")
	}
	if used, _ := f.app.Budget.Used(context.Background(), zhima.MethodScoreBriefGet, f.now); used != 0 {
		t.Fatalf("budget used %d after an unbilled call, want 0", used)
	}
	f.gateway.SetFaults(sandbox.Faults{})
	if err := f.h.ProcessTask(context.Background(), task(t, p)); err != nil {
		t.Fatalf("retry: %v, want the call made with the unit given back", err)
	}
	if used, _ := f.app.Budget.Used(context.Background(), zhima.MethodScoreBriefGet, f.now); used != 1 {
		t.Fatalf("budget used %d after the billed call, want 1", used)
	}
}
