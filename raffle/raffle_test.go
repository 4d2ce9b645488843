package raffle

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/gate"
	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/strategy"
)

type fakeStrategies struct {
	a *strategy.Assembled
}

func (f *fakeStrategies) Armory(context.Context, int64) (*strategy.Assembled, error) { return f.a, nil }
func (f *fakeStrategies) Assembled(context.Context, int64) (*strategy.Assembled, error) {
	return f.a, nil
}

// recordingStrategies wraps the fixture's strategies: it remembers each pick's input
// and can make a pick slow.
type recordingStrategies struct {
	*countingStrategies
	delay time.Duration
	mu    sync.Mutex
	ins   []strategy.Input
}

func (r *recordingStrategies) Draw(ctx context.Context, in strategy.Input) (strategy.Result, error) {
	r.mu.Lock()
	r.ins = append(r.ins, in)
	r.mu.Unlock()
	time.Sleep(r.delay)
	return r.countingStrategies.Draw(ctx, in)
}

// TestDrawPicksWithTheUserScore: the strategy is asked with the user's draws before
// this one (rule_weight's score) and the draw's facts are published under its order.
func TestDrawPicksWithTheUserScore(t *testing.T) {
	f := newFlashFixture(t)
	f.acts.q.Account.TotalSurplus = 7 // 3 draws before this one
	strats := &recordingStrategies{countingStrategies: f.strats}
	f.svc.opts.Strategies = strats
	res, err := f.svc.Draw(t.Context(), "score-user", 100301)
	if err != nil || res != (Result{AwardID: 101, AwardTitle: "award", AwardIndex: 1}) {
		t.Fatalf("draw = %+v, %v", res, err)
	}
	if len(strats.ins) != 1 || strats.ins[0] != (strategy.Input{UserID: "score-user", StrategyID: 100006, Score: 3}) {
		t.Errorf("strategy inputs %+v; want score 3 (3 used before, this one excluded)", strats.ins)
	}
	if s := f.surplus(t, "score-user"); s != 6 {
		t.Errorf("surplus after the draw %d, want 6", s)
	}
	events, n := f.published(t)
	if n != 1 || len(events) != 1 {
		t.Fatalf("stream holds %d messages of %d draws, want 1", n, len(events))
	}
	for id, e := range events {
		if id == "" || e.UserID != "score-user" || e.AwardID != 101 || e.StrategyID != 100006 {
			t.Errorf("event %s: %+v", id, e)
		}
	}
}

// TestDrawCommitsBeforeTheStrategyTakesStock runs draws behind a guard with a 10 ms
// budget: one over its budget before the commit point takes no quota, never reaches the
// strategy and publishes nothing; one whose pick is slow, past the budget, is waited for
// and answered.
func TestDrawCommitsBeforeTheStrategyTakesStock(t *testing.T) {
	settings := guard.DefaultSettings()
	settings.RateLimit, settings.DrawTimeout = false, 10*time.Millisecond
	g := guard.New(guard.Options{Defaults: settings, CommitTimeout: time.Minute})

	f := newFlashFixture(t)
	late := make(chan error, 1)
	err := g.Do(context.Background(), "u1", func(ctx context.Context) error {
		<-ctx.Done() // what came before the draw was slow: the budget ran out
		_, err := f.svc.Draw(ctx, "u1", 100301)
		late <- err
		return err
	})
	if !errors.Is(err, guard.ErrTimeout) {
		t.Fatalf("Do = %v, want ErrTimeout", err)
	}
	if err := <-late; !errors.Is(err, guard.ErrTimeout) {
		t.Fatalf("draw past its budget = %v, want ErrTimeout", err)
	}
	day, month := f.acts.Periods(time.Now())
	if q, ok, err := f.hot.Read(t.Context(), activity.QuotaKey{UserID: "u1", ActivityID: 100301, Day: day, Month: month}); err != nil || ok && q.Account.TotalSurplus != 10 {
		t.Fatalf("hot quota after a draw past its budget: %+v %v %v; want nothing taken", q.Account, ok, err)
	}
	if _, n := f.published(t); f.strats.count() != 0 || n != 0 {
		t.Fatalf("draw past its budget: %d picks, %d events; want none", f.strats.count(), n)
	}

	f.svc.opts.Strategies = &recordingStrategies{countingStrategies: f.strats, delay: 50 * time.Millisecond}
	var res Result
	err = g.Do(context.Background(), "u1", func(ctx context.Context) error {
		var err error
		res, err = f.svc.Draw(ctx, "u1", 100301)
		return err
	})
	if _, n := f.published(t); err != nil || res.AwardID != 101 || n != 1 || f.surplus(t, "u1") != 9 {
		t.Fatalf("slow draw past its commit point: %v, %+v, %d events, surplus %d; want the award, one event, one unit", err, res, n, f.surplus(t, "u1"))
	}
}

// holdGate records the hold each draw asks the gate for.
type holdGate struct {
	mu    sync.Mutex
	holds []time.Duration
}

func (h *holdGate) Admit(ctx context.Context, userID string, activityID int64, hold time.Duration) (gate.Pass, error) {
	h.mu.Lock()
	h.holds = append(h.holds, hold)
	h.mu.Unlock()
	return gate.None.Admit(ctx, userID, activityID, hold)
}

// TestCommittedDrawHoldsItsSlot: a one-win draw holds the user's slot in the activity
// for as long as the draw may run — behind the guard, what is left of its budget plus
// the commit timeout, which the guard waits for a committed draw — so that a second
// draw of the same user cannot win while the first may still do so; and never for less
// than its lease.
func TestCommittedDrawHoldsItsSlot(t *testing.T) {
	const commitTimeout = 3 * time.Second
	settings := guard.DefaultSettings()
	settings.RateLimit, settings.DrawTimeout = false, 200*time.Millisecond
	g := guard.New(guard.Options{Defaults: settings, CommitTimeout: commitTimeout})
	f := newFlashFixture(t)
	h := &holdGate{}
	f.svc.opts.Gate, f.svc.opts.HoldTTL = h, time.Millisecond
	if err := g.Do(context.Background(), "u1", func(ctx context.Context) error {
		_, err := f.svc.Draw(ctx, "u1", 100301)
		return err
	}); err != nil {
		t.Fatalf("guarded draw: %v", err)
	}
	if _, err := f.svc.Draw(t.Context(), "u1", 100301); err != nil {
		t.Fatalf("unguarded draw: %v", err)
	}
	if len(h.holds) != 2 || h.holds[0] < commitTimeout || h.holds[1] < f.svc.opts.Flash.Lease {
		t.Fatalf("holds %v; want the guarded draw's at least the commit timeout %s, the other's at least the lease %s",
			h.holds, commitTimeout, f.svc.opts.Flash.Lease)
	}
}
