package guard

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
)

func TestCommitOutsideAGuardedCallChangesNothing(t *testing.T) {
	ctx := context.WithValue(context.Background(), callKey{}, "not a call")
	got, err := Commit(ctx)
	if err != nil || got != ctx {
		t.Fatalf("Commit outside a guarded call = %v, %v; want ctx, nil", got, err)
	}
}

func TestCommittedCallIsWaitedForAndKeepsItsContext(t *testing.T) {
	g := New(Options{Defaults: settings(func(s *Settings) { s.DrawTimeout = 20 * time.Millisecond; s.RateLimit = false }), CommitTimeout: time.Minute})
	var afterBudget error
	var deadline time.Duration
	err := g.Do(context.Background(), "u1", func(ctx context.Context) error {
		cctx, err := Commit(ctx)
		if err != nil {
			return err
		}
		if again, err := Commit(ctx); err != nil || again != cctx {
			t.Errorf("second Commit = %v, %v; want the same context", again, err)
		}
		d, _ := cctx.Deadline()
		deadline = time.Until(d)
		<-ctx.Done() // the budget runs out after the commit point
		afterBudget = cctx.Err()
		return nil
	})
	if err != nil {
		t.Fatalf("Do = %v, want the committed call's own nil", err)
	}
	if afterBudget != nil {
		t.Fatalf("the budget cancelled the committed context: %v", afterBudget)
	}
	if deadline < 50*time.Second {
		t.Fatalf("committed context ends in %s, want about the commit timeout (1m)", deadline)
	}
	if st := g.Stats(); st.Timeouts != 0 || st.OutcomeUnknown != 0 {
		t.Fatalf("stats %+v", st)
	}
	business := errors.New("order used")
	err = g.Do(context.Background(), "u1", func(ctx context.Context) error {
		if _, err := Commit(ctx); err != nil {
			return err
		}
		<-ctx.Done()
		return business
	})
	if !errors.Is(err, business) || errors.Is(err, ErrTimeout) {
		t.Fatalf("committed call failing after its budget = %v, want its own error", err)
	}
}

func TestCommitAfterTheBudgetIsRefused(t *testing.T) {
	g := New(Options{Defaults: settings(func(s *Settings) { s.DrawTimeout = 20 * time.Millisecond; s.RateLimit = false })})
	commitErr := make(chan error, 1)
	err := g.Do(context.Background(), "u1", func(ctx context.Context) error {
		<-ctx.Done()
		_, err := Commit(ctx)
		commitErr <- err
		return err
	})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Do = %v, want ErrTimeout", err)
	}
	if err := <-commitErr; !errors.Is(err, ErrTimeout) {
		t.Fatalf("Commit after the budget = %v, want ErrTimeout", err)
	}
}

// TestCommitRacingTheBudget commits at about the moment the budget runs out, many times:
// each call is either answered ErrTimeout with its commit refused, or committed and
// answered its own outcome, never both and never neither. A sweep of commit times around
// the budget must see both sides; one that saw only one (the machine was slower or faster
// than the sweep assumed) is repeated over a wider window, a bounded number of times.
func TestCommitRacingTheBudget(t *testing.T) {
	const budget = 10 * time.Millisecond
	g := New(Options{Defaults: settings(func(s *Settings) { s.DrawTimeout = budget; s.RateLimit = false }),
		Breaker: BreakerSettings{MinRequests: 1 << 30, FailureRatio: 1, Window: time.Hour, OpenFor: time.Second, Probes: 1}})
	const calls = 100
	var timedOut, committed int
	for spread := 2 * time.Millisecond; timedOut == 0 || committed == 0; spread *= 2 {
		if spread > budget {
			t.Fatalf("sweeps up to ±%s around the budget: %d committed, %d timed out; want both", spread/2, committed, timedOut)
		}
		timedOut, committed = 0, 0
		for i := range calls {
			delay := budget - spread + time.Duration(i)*2*spread/calls
			var didCommit atomic.Bool
			err := g.Do(context.Background(), "u1", func(ctx context.Context) error {
				time.Sleep(delay)
				if _, err := Commit(ctx); err != nil {
					return err
				}
				didCommit.Store(true)
				return nil
			})
			switch {
			case err == nil && didCommit.Load():
				committed++
			case errors.Is(err, ErrTimeout) && !didCommit.Load():
				timedOut++
			default:
				t.Fatalf("call %d (commit after %s): Do = %v with commit %v", i, delay, err, didCommit.Load())
			}
		}
		t.Logf("commits within ±%s of the budget: %d committed, %d timed out", spread, committed, timedOut)
	}
}

// TestCommitContextEndingWithinTheBudgetIsUnknown commits a call whose commit timeout is
// shorter than what is left of its budget: its stores give up when the commit context
// ends, while the budget still runs. The outcome is unknown (0009), not the stores' raw
// context error (0001).
func TestCommitContextEndingWithinTheBudgetIsUnknown(t *testing.T) {
	g := New(Options{Defaults: settings(func(s *Settings) { s.DrawTimeout = time.Minute; s.RateLimit = false }),
		CommitTimeout: 20 * time.Millisecond})
	err := g.Do(context.Background(), "u1", func(ctx context.Context) error {
		cctx, err := Commit(ctx)
		if err != nil {
			return err
		}
		<-cctx.Done() // the store waits on a lock until the commit context ends
		return fmt.Errorf("record award: %w", cctx.Err())
	})
	if !errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, ErrTimeout) {
		t.Fatalf("Do = %v, want ErrOutcomeUnknown", err)
	}
	if st := g.Stats(); st.OutcomeUnknown != 1 || st.Timeouts != 0 {
		t.Fatalf("stats %+v, want one unknown outcome", st)
	}
	// A committed call that fails on its own, in time, answers its own error.
	business := errors.New("order used")
	err = g.Do(context.Background(), "u1", func(ctx context.Context) error {
		if _, err := Commit(ctx); err != nil {
			return err
		}
		return business
	})
	if err != business {
		t.Fatalf("committed call failing in time = %v, want its own error", err)
	}
}

// TestDeadlineCoversACommitAtTheLastMoment checks the latest end Deadline reports: the
// budget's end plus the commit timeout before the commit, the commit context's after.
func TestDeadlineCoversACommitAtTheLastMoment(t *testing.T) {
	if _, ok := Deadline(context.Background()); ok {
		t.Fatal("Deadline outside a guarded call reports one")
	}
	g := New(Options{Defaults: settings(func(s *Settings) { s.DrawTimeout = time.Second; s.RateLimit = false }),
		CommitTimeout: time.Minute})
	err := g.Do(context.Background(), "u1", func(ctx context.Context) error {
		before, ok := Deadline(ctx)
		budget, _ := ctx.Deadline()
		if !ok || before.Before(budget.Add(time.Minute)) {
			t.Errorf("Deadline before the commit = %s, %v; want at least the budget's end %s plus the commit timeout", before, ok, budget)
		}
		cctx, err := Commit(ctx)
		if err != nil {
			return err
		}
		after, ok := Deadline(ctx)
		end, _ := cctx.Deadline()
		if !ok || !after.Equal(end) || after.After(before) {
			t.Errorf("Deadline after the commit = %s, %v; want the commit context's %s, no later than %s", after, ok, end, before)
		}
		if again, _ := Deadline(cctx); !again.Equal(end) {
			t.Errorf("Deadline of the commit context = %s, want %s", again, end)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCommittedCallOverTheCommitTimeoutIsUnknownAndABreakerFailure(t *testing.T) {
	g := New(Options{
		Defaults:      settings(func(s *Settings) { s.DrawTimeout = 10 * time.Millisecond; s.RateLimit = false }),
		CommitTimeout: 30 * time.Millisecond,
		Breaker:       BreakerSettings{MinRequests: 3, FailureRatio: 1, Window: time.Minute, OpenFor: time.Minute, Probes: 1},
		IsFailure:     func(error) bool { return false }, // only the guard's own outcomes count
	})
	release := make(chan struct{})
	defer close(release)
	for i := range 3 {
		err := g.Do(context.Background(), "u1", func(ctx context.Context) error {
			if _, err := Commit(ctx); err != nil {
				return err
			}
			<-release
			return nil
		})
		if !errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, ErrTimeout) {
			t.Fatalf("call %d = %v, want ErrOutcomeUnknown and not ErrTimeout", i, err)
		}
	}
	// A store that gives up when the commit context ends says nothing of the outcome either.
	if st := g.Stats(); st.OutcomeUnknown != 3 || st.Timeouts != 0 || st.BreakerState != "open" {
		t.Fatalf("stats %+v, want 3 unknown outcomes and the breaker open", st)
	}
	g2 := New(Options{Defaults: settings(func(s *Settings) { s.DrawTimeout = 10 * time.Millisecond; s.RateLimit = false }), CommitTimeout: 30 * time.Millisecond})
	err := g2.Do(context.Background(), "u1", func(ctx context.Context) error {
		cctx, err := Commit(ctx)
		if err != nil {
			return err
		}
		<-cctx.Done()
		return cctx.Err()
	})
	if !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("committed call whose store gave up at the commit deadline = %v, want ErrOutcomeUnknown", err)
	}
}

func TestDoSystemHasNoUserLimits(t *testing.T) {
	g := New(Options{Defaults: settings(func(s *Settings) { s.Burst = 1; s.BlacklistCount = 1 })})
	ctx := context.Background()
	for i := range 50 {
		if err := g.DoSystem(ctx, ok); err != nil {
			t.Fatalf("system call %d: %v", i, err)
		}
	}
	g.Override(KeyDegradeSwitch, Open)
	called := false
	if err := g.DoSystem(ctx, func(context.Context) error { called = true; return nil }); !errors.Is(err, ErrDegraded) || called {
		t.Fatalf("degraded system call = %v, called %v", err, called)
	}
	g.Override(KeyDegradeSwitch, Close)
	g.Override(KeyDrawTimeout, "10ms")
	if err := g.DoSystem(ctx, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }); !errors.Is(err, ErrTimeout) {
		t.Fatalf("system call over its budget = %v, want ErrTimeout", err)
	}
}

func TestOpenBreakerSaysWhenToRetry(t *testing.T) {
	g := New(Options{
		Defaults: settings(func(s *Settings) { s.RateLimit = false }),
		Breaker:  BreakerSettings{MinRequests: 2, FailureRatio: 0.5, Window: time.Minute, OpenFor: 3 * time.Second, Probes: 1},
	})
	ctx := context.Background()
	for range 2 {
		_ = g.Do(ctx, "u", func(context.Context) error { return errors.New("store down") })
	}
	err := g.Do(ctx, "u", ok)
	var ra interface{ RetryAfter() time.Duration }
	if !errors.Is(err, ErrBreakerOpen) || !errors.Is(err, ErrTimeout) || !errors.As(err, &ra) {
		t.Fatalf("open breaker: %v, want ErrBreakerOpen with a RetryAfter", err)
	}
	if d := ra.RetryAfter(); d <= time.Second || d > 3*time.Second {
		t.Fatalf("RetryAfter %s, want the remaining open time, up to 3s", d)
	}
}

// TestSystemFaultDrillBlacklistsNobody runs the drill of a draw budget of 10 ms for 5 s
// (by the injected clock) with a client retrying every 100 ms: the limiter refuses most of
// its calls, and none of those refusals counts towards the blacklist. Afterwards, on a
// healthy system, 60 back-to-back calls of one user still blacklist it.
func TestSystemFaultDrillBlacklistsNobody(t *testing.T) {
	c := newClock()
	store := &fanout{}
	g := New(Options{Defaults: settings(nil), Now: c.Now, Blacklist: store,
		Breaker: BreakerSettings{MinRequests: 20, FailureRatio: 0.5, Window: 10 * time.Second, OpenFor: 50 * time.Millisecond, Probes: 1}})
	store.guards = []*Guard{g}
	ctx := context.Background()
	g.Override(KeyDrawTimeout, "10ms")
	stalled := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	codes := map[string]int{}
	for range 50 {
		err := g.Do(ctx, "retrier", stalled)
		switch {
		case errors.Is(err, ErrBlacklisted):
			t.Fatalf("blacklisted during the drill (%v)", codes)
		case errors.Is(err, ErrRateLimited):
			codes["limited"]++
		case errors.Is(err, ErrTimeout):
			codes["timeout"]++
		default:
			t.Fatalf("drill call: %v", err)
		}
		c.Advance(100 * time.Millisecond)
	}
	st := g.Stats()
	if st.LimitedLocal <= int64(settings(nil).BlacklistCount) || st.Excused != st.LimitedLocal {
		t.Fatalf("drill %v, stats %+v: want more refusals than the blacklist count, all excused", codes, st)
	}
	if st.BlacklistSize != 0 || store.count() != 0 {
		t.Fatalf("blacklist after the drill: %+v", st)
	}
	g.Override(KeyDrawTimeout, "")
	c.Advance(time.Minute)
	testenv.Eventually(t, 10*time.Second, "the breaker to let calls through", func() bool { return g.Do(ctx, "retrier", ok) == nil })
	var err error
	for range 60 {
		if err = g.Do(ctx, "flood", ok); errors.Is(err, ErrBlacklisted) {
			break
		}
	}
	if !errors.Is(err, ErrBlacklisted) {
		t.Fatalf("60 back-to-back calls on a healthy system: %v, want blacklisted", err)
	}
	// A user whose last call succeeded is counted as before.
	for range 60 {
		if err = g.Do(ctx, "retrier", ok); errors.Is(err, ErrBlacklisted) {
			break
		}
	}
	if !errors.Is(err, ErrBlacklisted) {
		t.Fatalf("the drill's retrier flooding a healthy system: %v, want blacklisted", err)
	}
}
