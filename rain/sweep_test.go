package rain

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// endedRig is a session of 10 prizes of 1.00 whose total was cut to 6, won by u1, u2
// and u3 (indexes 0, 1, 2); the first two wins are recorded, the third only held in the
// hot state (its event not consumed yet); the clock is past the end.
func endedRig(t *testing.T) (*rig, Session, []Win) {
	t.Helper()
	r := newRig()
	req := cash100()
	req.Burst = intp(10)
	req.Prizes[0].Count = 10
	s := r.create(t, req)
	ctx := context.Background()
	if _, err := r.s.UpdateQuota(ctx, s.ID, QuotaRequest{Total: intp(6), Burst: intp(6)}); err != nil {
		t.Fatal(err)
	}
	r.clock.Set(t1)
	var wins []Win
	for _, u := range []string{"u1", "u2", "u3"} {
		res, err := r.s.Grab(ctx, u, s.ID)
		if err != nil || !res.Won {
			t.Fatalf("grab: %+v, %v", res, err)
		}
		wins = append(wins, res.Win)
	}
	for _, err := range r.s.ApplyWins(ctx, wins[:2]) {
		if err != nil {
			t.Fatal(err)
		}
	}
	r.clock.Set(t1.Add(100 * time.Second))
	return r, s, wins
}

func checkLedger(t *testing.T, r *rig, id int64) {
	t.Helper()
	got, _ := r.store.Session(context.Background(), id)
	l := got.Ledger
	if got.State != StateEnded || l == nil {
		t.Fatalf("session %+v not ended", got)
	}
	if l.Granted.Count != 3 || l.Granted.Cash != 3_00 || l.Unwon.Count != 3 || l.Unwon.Cash != 3_00 ||
		l.Unreleased.Count != 4 || l.Unreleased.Cash != 4_00 || !l.EndedAt.Equal(r.clock.Now()) {
		t.Fatalf("ledger %+v", *l)
	}
}

func TestSweepAppliesHeldWinsThenWritesTheLedgerOnce(t *testing.T) {
	t.Parallel()
	r, s, wins := endedRig(t)
	ctx := context.Background()
	n, err := r.s.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("sweep: %d, %v", n, err)
	}
	if got, _ := r.store.SessionWins(ctx, s.ID); len(got) != 3 {
		t.Fatalf("%d wins recorded, want the held one applied too", len(got))
	}
	checkLedger(t, r, s.ID)
	if n, err := r.s.Sweep(ctx); err != nil || n != 0 || r.store.ended[s.ID] != 1 {
		t.Fatalf("second sweep: %d, %v, ledger written %d times", n, err, r.store.ended[s.ID])
	}
	// Late taps are answered from the version's end, on a node that never saw the
	// session as well (after one Store read).
	before := r.hot.grabs.Load()
	r.agent.Forget(s.ID)
	for range 3 {
		if _, err := r.s.Grab(ctx, wins[0].UserID, s.ID); !errors.Is(err, ErrEnded) || r.hot.grabs.Load() != before {
			t.Fatalf("grab after the end: %v", err)
		}
	}
	if q := r.agent.Quota(s.ID); q == nil {
		t.Fatal("the ended session's version was not kept")
	}
}

func TestSweepOfALostSessionDrainsAndTrustsTheStore(t *testing.T) {
	t.Parallel()
	r, s, wins := endedRig(t)
	ctx := context.Background()
	// The third win's event arrives before the drain returns.
	r.s.ApplyWins(ctx, wins[2:])
	r.hot.lose(s.ID)
	if n, err := r.s.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep: %d, %v", n, err)
	}
	if r.drain.calls.Load() == 0 {
		t.Fatal("ended without draining the win events")
	}
	checkLedger(t, r, s.ID)
}

func TestSweepWaitsForAWinThatCannotApplyYet(t *testing.T) {
	t.Parallel()
	r, s, _ := endedRig(t)
	ctx := context.Background()
	r.store.mu.Lock()
	r.store.ApplyFn = func(Win) error { return errors.New("user database down") }
	r.store.mu.Unlock()
	if n, err := r.s.Sweep(ctx); err == nil || n != 0 {
		t.Fatalf("sweep with a win unapplied: %d, %v", n, err)
	}
	if got, _ := r.store.Session(ctx, s.ID); got.State != StateArmed {
		t.Fatal("ended without the held win")
	}
	r.store.mu.Lock()
	r.store.ApplyFn = nil
	r.store.mu.Unlock()
	if n, err := r.s.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("next sweep: %d, %v", n, err)
	}
	checkLedger(t, r, s.ID)
}

func TestLedgerReleasedByIndexOrder(t *testing.T) {
	t.Parallel()
	prizes := []Prize{
		{Index: 3, Kind: KindAward, AwardID: 101}, {Index: 0, Kind: KindCash, Amount: 5},
		{Index: 1, Kind: KindSKU, SKU: 9}, {Index: 2, Kind: KindCash, Amount: 7},
	}
	wins := []Win{{Prize: prizes[2]}}
	l := ledgerOf(3, prizes, wins, t1)
	if l.Granted.SKUs[9] != 1 || l.Unwon.Count != 2 || l.Unwon.Cash != 12 || l.Unreleased.Awards[101] != 1 {
		t.Fatalf("ledger %+v", l)
	}
	// A total already exceeded by the wins releases nothing more.
	if l := ledgerOf(0, prizes, wins, t1); l.Unwon.Count != 0 || l.Unreleased.Count != 3 {
		t.Fatalf("ledger %+v", l)
	}
}

// fakeLease is one lease shared by the "nodes" of a test: held while holder is set.
type fakeLease struct {
	mu       sync.Mutex
	holder   string
	released int
}

func (l *fakeLease) Claim(_ context.Context, name string, _ time.Duration) (string, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if name != sweepLease {
		return "", false, errors.New("unexpected lease " + name)
	}
	if l.holder != "" {
		return "", false, nil
	}
	l.holder = "token"
	return l.holder, true, nil
}

func (l *fakeLease) Release(_ context.Context, _, token string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if token == l.holder {
		l.holder = ""
		l.released++
	}
	return nil
}

func TestSweepRunsOnlyWithTheLease(t *testing.T) {
	t.Parallel()
	r, s, _ := endedRig(t)
	ctx := context.Background()
	lease := &fakeLease{holder: "another node"}
	r.s.sweepOnce(ctx, lease, time.Minute)
	if got, _ := r.store.Session(ctx, s.ID); got.State != StateArmed {
		t.Fatal("swept without the lease")
	}
	lease.holder = ""
	r.s.sweepOnce(ctx, lease, time.Minute)
	if got, _ := r.store.Session(ctx, s.ID); got.State != StateEnded || lease.released != 1 || lease.holder != "" {
		t.Fatalf("with the lease: state %s, released %d", got.State, lease.released)
	}
}
