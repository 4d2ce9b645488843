package gate

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/strategy"
)

type fakeStore struct {
	mu    sync.Mutex
	rows  map[int64]Settings
	reads int
}

func (f *fakeStore) ActivitySettings(_ context.Context, id int64) (Settings, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	s, ok := f.rows[id]
	return s, ok, nil
}

func (f *fakeStore) SaveActivitySettings(_ context.Context, s Settings) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rows[s.ActivityID] = s
	return nil
}

type fakeActivities map[int64]activity.Activity

func (f fakeActivities) Activity(_ context.Context, id int64) (activity.Activity, error) {
	a, ok := f[id]
	if !ok {
		return activity.Activity{}, activity.ErrActivityNotFound
	}
	return a, nil
}

// fakeStrategies says strategy 1 is sold out, and that award 102 is stocked.
type fakeStrategies struct{ a *strategy.Assembled }

func (fakeStrategies) SoldOut(_ context.Context, id int64) (bool, error) { return id == 1, nil }
func (f fakeStrategies) Assembled(context.Context, int64) (*strategy.Assembled, error) {
	return f.a, nil
}

type fakeNonces struct {
	mu   sync.Mutex
	used map[string]bool
	gens map[string]uint64
	next uint64
}

func (f *fakeNonces) Generation(_ context.Context, user string, _ time.Time) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.gens[user]; !ok {
		f.next++
		f.gens[user] = f.next
	}
	return f.gens[user], nil
}

func (f *fakeNonces) Use(_ context.Context, user string, gen uint64, n string, _ time.Time) (PathUse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if g, ok := f.gens[user]; !ok || g != gen {
		return PathStale, nil
	}
	if f.used[n] {
		return PathUsed, nil
	}
	f.used[n] = true
	return PathSpent, nil
}

// lose forgets everything, as a Redis flush does.
func (f *fakeNonces) lose() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.used, f.gens = map[string]bool{}, map[string]uint64{}
}

func newGate(t *testing.T, clock *testenv.Clock) (*Gate, *fakeStore) {
	t.Helper()
	now := clock.Now()
	acts := fakeActivities{
		10: {ID: 10, StrategyID: 10, State: activity.StateOpen, Begin: now.Add(-time.Hour), End: now.Add(time.Hour)},
		11: {ID: 11, StrategyID: 11, State: activity.StateOpen, Begin: now.Add(time.Hour), End: now.Add(2 * time.Hour)},
		12: {ID: 12, StrategyID: 12, State: activity.StateClose, Begin: now.Add(-time.Hour), End: now.Add(time.Hour)},
		1:  {ID: 1, StrategyID: 1, State: activity.StateOpen, Begin: now.Add(-time.Hour), End: now.Add(time.Hour)},
	}
	store := &fakeStore{rows: map[int64]Settings{}}
	for id := range acts {
		store.rows[id] = Settings{ActivityID: id, SignedPath: true, PathWindow: time.Minute}
	}
	return New(Options{Store: store, Activities: acts, Strategies: fakeStrategies{}, Nonces: &fakeNonces{used: map[string]bool{}, gens: map[string]uint64{}},
		Secret: []byte("a secret of the test's own"), Now: clock.Now}), store
}

func TestSignedPathRefusals(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Unix(1_800_000_000, 0))
	g, _ := newGate(t, clock)
	ctx := context.Background()
	p, err := g.IssuePath(ctx, "alice", 10)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.Path, DrawPathPrefix) || !p.ExpiresAt.Equal(clock.Now().Add(time.Minute)) {
		t.Fatalf("path %+v", p)
	}
	sig := strings.TrimPrefix(p.Path, DrawPathPrefix)
	for name, c := range map[string]struct {
		user     string
		activity int64
		sig      string
	}{
		"plain draw":       {"alice", 10, ""},
		"another user":     {"bob", 10, sig},
		"a prefix user":    {"alic", 10, sig},
		"another activity": {"alice", 1, sig},
		"tampered":         {"alice", 10, tamper(sig, 20)},
		"tampered expiry":  {"alice", 10, tamper(sig, 3)},
		"tampered gen":     {"alice", 10, tamper(sig, 13)},
		"truncated":        {"alice", 10, sig[:40]},
		"not base64":       {"alice", 10, strings.Repeat("*", len(sig))},
	} {
		if err := g.CheckPath(ctx, c.user, c.activity, c.sig); !errors.Is(err, ErrBadPath) {
			t.Errorf("%s: %v, want ErrBadPath", name, err)
		}
	}
	// None of those spent it.
	if err := g.CheckPath(ctx, "alice", 10, sig); err != nil {
		t.Fatalf("alice's own path: %v", err)
	}
	if err := g.CheckPath(ctx, "alice", 10, sig); !errors.Is(err, ErrBadPath) {
		t.Errorf("reused path: %v, want ErrBadPath", err)
	}
	p, _ = g.IssuePath(ctx, "alice", 10)
	clock.Advance(time.Minute)
	if err := g.CheckPath(ctx, "alice", 10, strings.TrimPrefix(p.Path, DrawPathPrefix)); !errors.Is(err, ErrBadPath) {
		t.Errorf("expired path: %v, want ErrBadPath", err)
	}
	// Paths issued before a loss of the used marks are refused after it, used or not;
	// a new path works.
	used, _ := g.IssuePath(ctx, "alice", 10)
	unused, _ := g.IssuePath(ctx, "alice", 10)
	if err := g.CheckPath(ctx, "alice", 10, strings.TrimPrefix(used.Path, DrawPathPrefix)); err != nil {
		t.Fatal(err)
	}
	g.opts.Nonces.(*fakeNonces).lose()
	for name, p := range map[string]Path{"used": used, "unused": unused} {
		if err := g.CheckPath(ctx, "alice", 10, strings.TrimPrefix(p.Path, DrawPathPrefix)); !errors.Is(err, ErrBadPath) {
			t.Errorf("%s path issued before the loss: %v, want ErrBadPath", name, err)
		}
	}
	p, _ = g.IssuePath(ctx, "alice", 10)
	if err := g.CheckPath(ctx, "alice", 10, strings.TrimPrefix(p.Path, DrawPathPrefix)); err != nil {
		t.Errorf("path issued after the loss: %v", err)
	}
	// A path signed with another secret is refused.
	other := New(Options{Store: g.opts.Store, Activities: g.opts.Activities, Nonces: g.opts.Nonces, Secret: []byte("another"), Now: clock.Now})
	p, _ = other.IssuePath(ctx, "alice", 10)
	if err := g.CheckPath(ctx, "alice", 10, strings.TrimPrefix(p.Path, DrawPathPrefix)); !errors.Is(err, ErrBadPath) {
		t.Errorf("path of another secret: %v, want ErrBadPath", err)
	}
}

// tamper changes the signature's character at i.
func tamper(sig string, i int) string {
	c := byte('A')
	if sig[i] == 'A' {
		c = 'B'
	}
	return sig[:i] + string(c) + sig[i+1:]
}

func TestIssuePathOnlyOnceBegun(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Unix(1_800_000_000, 0))
	g, store := newGate(t, clock)
	ctx := context.Background()
	if _, err := g.IssuePath(ctx, "alice", 11); !errors.Is(err, activity.ErrOutsideDates) {
		t.Errorf("path before the activity begins: %v, want ErrOutsideDates", err)
	}
	if _, err := g.IssuePath(ctx, "alice", 12); !errors.Is(err, activity.ErrActivityNotOpen) {
		t.Errorf("path of a closed activity: %v, want ErrActivityNotOpen", err)
	}
	store.rows[10] = Settings{ActivityID: 10}
	g.Forget(10)
	if _, err := g.IssuePath(ctx, "alice", 10); !errors.Is(err, ErrPathsOff) {
		t.Errorf("path of an activity without signed paths: %v, want ErrPathsOff", err)
	}
	if err := g.CheckPath(ctx, "alice", 10, ""); err != nil {
		t.Errorf("plain draw of an activity without signed paths: %v", err)
	}
}

func TestSettingsCacheAndForget(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Unix(1_800_000_000, 0))
	g, store := newGate(t, clock)
	ctx := context.Background()
	if s, err := g.Settings(ctx, 42); err != nil || s != (Settings{ActivityID: 42}) {
		t.Fatalf("settings without a row: %+v %v, want the defaults", s, err)
	}
	g.Settings(ctx, 42)
	if store.reads != 1 {
		t.Errorf("%d reads, want the defaults cached", store.reads)
	}
	store.rows[42] = Settings{ActivityID: 42, OneWin: true}
	g.Forget(42) // an announcement from another node
	if s, _ := g.Settings(ctx, 42); !s.OneWin {
		t.Error("settings not read again after Forget")
	}
	store.rows[42] = Settings{ActivityID: 42}
	clock.Advance(11 * time.Second) // an announcement missed: the TTL bounds it
	if s, _ := g.Settings(ctx, 42); s.OneWin {
		t.Error("settings served past the cache TTL")
	}
	if err := g.SaveSettings(ctx, Settings{ActivityID: 10, SignedPath: true}); !errors.Is(err, ErrInvalidSettings) {
		t.Errorf("signed paths without a window: %v", err)
	}
	if err := g.SaveSettings(ctx, Settings{ActivityID: 99, OneWin: true}); !errors.Is(err, activity.ErrActivityNotFound) {
		t.Errorf("settings of an unknown activity: %v", err)
	}
	if _, ok := store.rows[99]; ok {
		t.Error("refused settings were stored")
	}
}

func TestAdmitSoldOutBeforeAnythingElse(t *testing.T) {
	t.Parallel()
	g, _ := newGate(t, testenv.NewClock(time.Unix(1_800_000_000, 0)))
	if _, err := g.Admit(context.Background(), "alice", 1, time.Second); !errors.Is(err, strategy.ErrSoldOut) {
		t.Errorf("admit on a sold-out activity: %v, want ErrSoldOut", err)
	}
	p, err := g.Admit(context.Background(), "alice", 10, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Won(context.Background(), strategy.Result{Stocked: true}); err != nil {
		t.Error(err) // not a one-win activity: nothing to note
	}
	p.Close()
	if _, err := g.Admit(context.Background(), "alice", 404, time.Second); !errors.Is(err, activity.ErrActivityNotFound) {
		t.Errorf("admit on an unknown activity: %v", err)
	}
}

// Records for rebuild tests live in the redis package's real-Redis test of Wins; here the
// gate's side of a rebuild.
type fakeWins struct {
	hold           Hold
	rebuilt, noted []bool
	released       int
}

func (f *fakeWins) Hold(context.Context, string, int64, string, time.Duration) (Hold, string, error) {
	return f.hold, "", nil
}
func (f *fakeWins) Rebuilt(_ context.Context, _ string, _ int64, _ string, won bool) error {
	f.rebuilt = append(f.rebuilt, won)
	return nil
}
func (f *fakeWins) Note(context.Context, string, int64) error {
	f.noted = append(f.noted, true)
	return nil
}
func (f *fakeWins) Release(context.Context, string, int64, string) error {
	f.released++
	return nil
}

type fakeRecords []award.Record

func (f fakeRecords) AwardRecords(context.Context, string, int64) ([]award.Record, error) {
	return f, nil
}

func TestAdmitOneWin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for name, c := range map[string]struct {
		hold    Hold
		records fakeRecords
		want    error
		rebuilt []bool
	}{
		"held":                      {hold: Held},
		"won":                       {hold: Won, want: ErrAlreadyWon},
		"busy":                      {hold: Busy, want: ErrBusy},
		"lost set, not rebuildable": {hold: NotReady, want: ErrRebuilding},
		"lost set, no stocked win":  {hold: Unknown, records: fakeRecords{{StrategyID: 10, AwardID: 101}}, rebuilt: []bool{false}},
		"lost set, a stocked win":   {hold: Unknown, records: fakeRecords{{StrategyID: 10, AwardID: 101}, {StrategyID: 10, AwardID: 102}}, want: ErrAlreadyWon, rebuilt: []bool{true}},
	} {
		g, store := newGate(t, testenv.NewClock(time.Unix(1_800_000_000, 0)))
		store.rows[10] = Settings{ActivityID: 10, OneWin: true}
		wins := &fakeWins{hold: c.hold}
		g.opts.Wins, g.opts.Records = wins, c.records
		g.opts.Strategies = fakeStrategies{a: stockedAssembly(t)}
		p, err := g.Admit(ctx, "alice", 10, time.Second)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
			continue
		}
		if len(wins.rebuilt) != len(c.rebuilt) || (len(c.rebuilt) == 1 && wins.rebuilt[0] != c.rebuilt[0]) {
			t.Errorf("%s: rebuilt %v, want %v", name, wins.rebuilt, c.rebuilt)
		}
		if err != nil {
			continue
		}
		_ = p.Won(ctx, strategy.Result{AwardID: 101})
		_ = p.Won(ctx, strategy.Result{AwardID: 102, Stocked: true})
		p.Close()
		if len(wins.noted) != 1 || !wins.noted[0] || wins.released != 1 {
			t.Errorf("%s: notes %v, releases %d; want the stocked win (not the other) noted and the hold released", name, wins.noted, wins.released)
		}
	}
}

// stockedAssembly is a strategy whose award 102 is stocked and 101 its fallback.
func stockedAssembly(t *testing.T) *strategy.Assembled {
	t.Helper()
	s := strategy.NewService(strategy.Options{Configs: configs{}, Stock: nopStock{}})
	a, err := s.Assembled(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

type configs struct{}

func (configs) LoadStrategy(context.Context, int64) (strategy.Config, error) {
	rate, _ := strategy.ParseRate("0.5")
	return strategy.Config{StrategyID: 10, Awards: []strategy.Award{
		{AwardID: 101, Count: 10, Rate: rate, Sort: 1}, {AwardID: 102, Count: 10, Rate: rate, Sort: 2},
	}}, nil
}

type nopStock struct{}

func (nopStock) Exists(context.Context, strategy.AwardRef) (bool, error) { return true, nil }
func (nopStock) Preheat(context.Context, strategy.AwardRef, int64, int64, time.Time) error {
	return nil
}
func (nopStock) Deduct(context.Context, strategy.AwardRef, time.Time) (strategy.Grant, error) {
	return strategy.Grant{}, strategy.ErrStockOut
}
func (nopStock) TopUp(context.Context, strategy.AwardRef, int64, time.Time) (bool, error) {
	return true, nil
}
