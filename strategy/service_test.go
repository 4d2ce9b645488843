package strategy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
)

func newTestService(stock *fakeStock, configs ...Config) *Service {
	m := map[int64]Config{}
	for _, c := range configs {
		m[c.StrategyID] = c
	}
	return NewService(Options{Configs: fakeConfigs{m}, Stock: stock, Rand: rand.New(rand.NewPCG(7, 11))})
}

func TestDrawBlacklistIsFallback(t *testing.T) {
	t.Parallel()
	stock := newFakeStock()
	s := newTestService(stock, seedConfig(100006))
	for range 50 {
		r, err := s.Draw(context.Background(), Input{UserID: "user003", StrategyID: 100006, Score: 5000})
		if err != nil {
			t.Fatal(err)
		}
		if r.AwardID != 101 || r.Rule != RuleBlacklist || r.Chain != RuleBlacklist {
			t.Fatalf("user003 got %+v, want award 101 by rule_blacklist", r)
		}
	}
	for id := 101; id <= 108; id++ {
		if n := stock.taken(AwardRef{100006, id}); n != 0 {
			t.Errorf("blacklist draws took %d units of award %d", n, id)
		}
	}
}

func TestDrawWeightTierGoesThroughStock(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		score  int64
		awards []int
	}{
		{10, []int{102, 103}}, {69, []int{102, 103}}, {70, []int{106, 107}}, {1000, []int{104, 105}}, {5000, []int{104, 105}},
	} {
		stock := newFakeStock()
		s := newTestService(stock, seedConfig(100006))
		granted := map[int]int{}
		for range 200 {
			// DrawsToday 5 unlocks every rule_lock, so tier picks reach rule_stock.
			r, err := s.Draw(context.Background(), Input{UserID: "u1", StrategyID: 100006, Score: tc.score, DrawsToday: 5})
			if err != nil {
				t.Fatal(err)
			}
			if r.Chain != RuleWeight {
				t.Fatalf("score %d: chain %s, want rule_weight", tc.score, r.Chain)
			}
			granted[r.AwardID]++
		}
		total := granted[101]
		for _, id := range tc.awards {
			total += granted[id]
			if taken := stock.taken(AwardRef{100006, id}); taken != granted[id] || granted[id] > 100 {
				t.Errorf("score %d award %d: granted %d, stock taken %d (stock 100)", tc.score, id, granted[id], taken)
			}
		}
		if total != 200 {
			t.Errorf("score %d: granted %v", tc.score, granted)
		}
		for id := range granted {
			if id != 101 && id != tc.awards[0] && id != tc.awards[1] {
				t.Errorf("score %d: award %d is outside the tier", tc.score, id)
			}
		}
	}
}

func TestDrawTierStockRunsOutToLuckAward(t *testing.T) {
	t.Parallel()
	stock := newFakeStock()
	s := newTestService(stock, seedConfig(100006))
	granted := map[int]int{}
	for range 500 {
		r, err := s.Draw(context.Background(), Input{UserID: "u1", StrategyID: 100006, Score: 10})
		if err != nil {
			t.Fatal(err)
		}
		granted[r.AwardID]++
	}
	if granted[102] != 100 || granted[103] != 100 || granted[101] != 300 {
		t.Errorf("granted %v, want 100 of 102, 100 of 103 and 300 luck awards", granted)
	}
}

func TestDrawRuleLock(t *testing.T) {
	t.Parallel()
	// Award 105 is behind tree_lock_3; a single-award strategy makes every pick 105.
	cfg := Config{StrategyID: 1, Trees: seedTrees(), Awards: awards(105, 10, "1", "tree_lock_3")}
	for _, tc := range []struct {
		today int64
		want  int
		rule  RuleModel
	}{
		{0, 101, RuleLuckAward}, {2, 101, RuleLuckAward}, {3, 105, RuleStock}, {9, 105, RuleStock},
	} {
		stock := newFakeStock()
		s := newTestService(stock, cfg)
		r, err := s.Draw(context.Background(), Input{UserID: "u", StrategyID: 1, DrawsToday: tc.today})
		if err != nil {
			t.Fatal(err)
		}
		if r.AwardID != tc.want || r.Rule != tc.rule {
			t.Errorf("draws today %d: got award %d by %s, want %d by %s", tc.today, r.AwardID, r.Rule, tc.want, tc.rule)
		}
		if tc.want == 101 && r.RuleValue != "1,100" {
			t.Errorf("luck award rule value %q, want 1,100", r.RuleValue)
		}
		wantTaken := 0
		if tc.want == 105 {
			wantTaken = 1
		}
		if n := stock.taken(AwardRef{1, 105}); n != wantTaken {
			t.Errorf("draws today %d: stock taken %d, want %d", tc.today, n, wantTaken)
		}
	}
}

func TestDrawAwardWithoutTreeStillTakesStock(t *testing.T) {
	t.Parallel()
	stock := newFakeStock()
	s := newTestService(stock, seedConfig(100002))
	granted := map[int]int{}
	for range 100 {
		r, err := s.Draw(context.Background(), Input{UserID: "system", StrategyID: 100002})
		if err != nil {
			t.Fatal(err)
		}
		granted[r.AwardID]++
	}
	// Each award has stock 1: at most one of each, every other draw is the luck award.
	if granted[102] > 1 || granted[106] > 1 || granted[101] > 1+100 {
		t.Errorf("granted %v", granted)
	}
	if stock.taken(AwardRef{100002, 101}) > 1 {
		t.Errorf("award 101 stock taken %d times", stock.taken(AwardRef{100002, 101}))
	}
}

func TestDrawStaleOrMissingStockNeverGrants(t *testing.T) {
	t.Parallel()
	cfg := Config{StrategyID: 2, Trees: seedTrees(), Awards: awards(102, 3, "1", "tree_luck_award")}
	stock := newFakeStock()
	sink := &fakeSink{}
	s := NewService(Options{Configs: fakeConfigs{map[int64]Config{2: cfg}}, Stock: stock, Sink: sink})
	ctx := context.Background()
	got := map[int]int{}
	for range 5 {
		r, err := s.Draw(ctx, Input{UserID: "u", StrategyID: 2})
		if err != nil {
			t.Fatal(err)
		}
		got[r.AwardID]++
	}
	if got[102] != 3 || got[101] != 2 {
		t.Errorf("granted %v, want 3 of 102 and 2 luck awards", got)
	}
	if high := sink.high[AwardRef{2, 102}]; high != 3 {
		t.Errorf("sink high watermark %d, want 3", high)
	}
	// A node that has not seen the award run out asks the cache, and finds it missing.
	s = NewService(Options{Configs: fakeConfigs{map[int64]Config{2: cfg}}, Stock: stock, Sink: sink})
	if _, err := s.Assembled(ctx, 2); err != nil {
		t.Fatal(err)
	}
	stock.mu.Lock()
	delete(stock.count, AwardRef{2, 102})
	stock.mu.Unlock()
	// Unknown stock is not "out": no luck award, a retryable ErrStockMissing.
	if r, err := s.Draw(ctx, Input{UserID: "u", StrategyID: 2}); !errors.Is(err, ErrStockMissing) {
		t.Errorf("draw with missing stock = %+v, %v; want ErrStockMissing, not the luck award", r, err)
	}
	stock.DeductFn = func(AwardRef) error { return errors.New("connection refused") }
	if _, err := s.Draw(ctx, Input{UserID: "u", StrategyID: 2}); err == nil {
		t.Error("draw with a failing stock returned no error")
	}
}

func TestDrawConcurrentNoOversell(t *testing.T) {
	t.Parallel()
	cfg := Config{StrategyID: 3, Trees: seedTrees(), Awards: awards(102, 100, "1", "tree_luck_award")}
	stock := newFakeStock()
	s := NewService(Options{Configs: fakeConfigs{map[int64]Config{3: cfg}}, Stock: stock})
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	for range 500 {
		wg.Go(func() {
			r, err := s.Draw(context.Background(), Input{UserID: "u", StrategyID: 3})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			got[r.AwardID]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if got[102] != 100 || got[101] != 400 {
		t.Errorf("granted %v, want exactly 100 of 102", got)
	}
}

func TestAssemblyErrors(t *testing.T) {
	t.Parallel()
	base := seedConfig(100006)
	noWeight := base
	noWeight.Rules = base.Rules[:1]
	unknownRule := base
	unknownRule.RuleModels = []RuleModel{"rule_magic"}
	badTier := base
	badTier.Rules = []Rule{base.Rules[0], {Model: RuleWeight, Value: "10:999"}}
	missingTree := base
	missingTree.Trees = map[string]TreeConfig{"tree_luck_award": luckTree}
	for name, tc := range map[string]struct {
		cfg  Config
		want error
	}{
		"rule_weight without row":    {noWeight, ErrRuleWeightMissing},
		"unknown chain rule":         {unknownRule, ErrInvalidConfig},
		"tier award not in strategy": {badTier, ErrInvalidConfig},
		"missing tree":               {missingTree, ErrInvalidTree},
	} {
		s := NewService(Options{Configs: fakeConfigs{map[int64]Config{100006: tc.cfg}}, Stock: newFakeStock()})
		if _, err := s.Draw(context.Background(), Input{UserID: "u", StrategyID: 100006}); !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", name, err, tc.want)
		}
	}
	s := NewService(Options{Configs: fakeConfigs{}, Stock: newFakeStock()})
	if _, err := s.Draw(context.Background(), Input{StrategyID: 42}); !errors.Is(err, ErrStrategyNotFound) {
		t.Errorf("unknown strategy: %v", err)
	}
}

func TestArmoryPreheatsOnceAndReassembles(t *testing.T) {
	t.Parallel()
	stock := newFakeStock()
	cfg := seedConfig(100006)
	configs := fakeConfigs{map[int64]Config{100006: cfg}}
	s := NewService(Options{Configs: configs, Stock: stock})
	ctx := context.Background()
	if _, err := s.Armory(ctx, 100006); err != nil {
		t.Fatal(err)
	}
	ref := AwardRef{100006, 102}
	stock.set(ref, 7)
	if _, err := s.Armory(ctx, 100006); err != nil {
		t.Fatal(err)
	}
	if stock.count[ref] != 7 {
		t.Errorf("second armory reset stock to %d; preheat must not overwrite", stock.count[ref])
	}
}

// fakeRecovery answers Surplus from a map and records calls.
type fakeRecovery struct {
	surplus map[int]int64
	calls   int
	lost    []AwardRef
}

func (f *fakeRecovery) Surplus(context.Context, Config) (map[int]int64, error) {
	f.calls++
	return f.surplus, nil
}

func (f *fakeRecovery) Lost(ref AwardRef, _ time.Time) { f.lost = append(f.lost, ref) }

func TestPreheatUsesRecoveryOnlyForMissingStock(t *testing.T) {
	t.Parallel()
	stock := newFakeStock()
	rec := &fakeRecovery{surplus: map[int]int64{102: 7, 103: 1}}
	cfg := Config{StrategyID: 5, Trees: seedTrees(), Awards: awards(102, 100, "0.5", "tree_luck_award", 103, 100, "0.5", "tree_luck_award")}
	s := NewService(Options{Configs: fakeConfigs{map[int64]Config{5: cfg}}, Stock: stock, Recovery: rec})
	ctx := context.Background()
	if _, err := s.Armory(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if rec.calls != 1 || stock.count[AwardRef{5, 102}] != 7 || stock.count[AwardRef{5, 103}] != 1 {
		t.Fatalf("first armory: %d recovery calls, stock %v; want the recovered 7 and 1, not the SQL surplus 100", rec.calls, stock.count)
	}
	if _, err := s.Armory(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if rec.calls != 1 {
		t.Errorf("re-armory with every counter present asked recovery again (%d calls)", rec.calls)
	}
	// A lost counter is reported to recovery, and draws that pick it meanwhile answer
	// ErrStockMissing (retry): neither its stock nor the luck award.
	stock.mu.Lock()
	delete(stock.count, AwardRef{5, 103})
	stock.mu.Unlock()
	missing := 0
	for range 20 {
		r, err := s.Draw(ctx, Input{UserID: "u", StrategyID: 5})
		switch {
		case errors.Is(err, ErrStockMissing):
			missing++
		case err != nil || r.AwardID == 103:
			t.Fatalf("draw with 103's stock lost: %+v %v; want 102, its luck award or ErrStockMissing", r, err)
		}
	}
	if missing == 0 {
		t.Error("no draw of 20 picked the lost award 103 (rate 0.5)")
	}
	if len(rec.lost) == 0 || rec.lost[0] != (AwardRef{5, 103}) {
		t.Errorf("lost stock not reported: %v", rec.lost)
	}
}

// TestSoldOutFlagSkipsTheCache checks that once an award runs out, this node answers its
// draws with the fallback without asking the stock, until an assembly adds stock back.
func TestSoldOutFlagSkipsTheCache(t *testing.T) {
	t.Parallel()
	cfg := Config{StrategyID: 4, Trees: seedTrees(), Awards: awards(102, 2, "1", "tree_luck_award")}
	stock := newFakeStock()
	var calls sync.Map
	stock.DeductFn = func(ref AwardRef) error {
		n, _ := calls.LoadOrStore(ref, new(int))
		*n.(*int)++
		return nil
	}
	s := NewService(Options{Configs: fakeConfigs{map[int64]Config{4: cfg}}, Stock: stock, StockStore: &fakeStockStore{cfg: &cfg}})
	ctx := context.Background()
	deducts := func() int {
		n, ok := calls.Load(AwardRef{4, 102})
		if !ok {
			return 0
		}
		return *n.(*int)
	}
	for range 10 {
		if _, err := s.Draw(ctx, Input{UserID: "u", StrategyID: 4}); err != nil {
			t.Fatal(err)
		}
	}
	if n := deducts(); n != 2 {
		t.Fatalf("stock asked %d times for 2 units and 8 sold-out draws, want 2", n)
	}
	if st := s.Stats(); st.SoldOutHits != 8 || st.Stocked != 2 {
		t.Fatalf("stats %+v, want 2 stocked and 8 sold-out hits", st)
	}
	// Stock comes back only through an assembly: the operator tops it up, which
	// re-assembles the strategy, and the flag is gone.
	if _, err := s.AddStock(ctx, AwardRef{4, 102}, 1); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Draw(ctx, Input{UserID: "u", StrategyID: 4}); err != nil || r.AwardID != 102 {
		t.Fatalf("draw after the top-up: %+v %v, want award 102 from the new stock", r, err)
	}
}

// TestAddStock tops up a sold-out award: exactly the new units are granted, their
// sequence numbers follow the old ones, bad units and unknown awards change nothing, and
// a durable draw commits its grant to the sink before it returns.
func TestAddStock(t *testing.T) {
	t.Parallel()
	cfg := Config{StrategyID: 7, Trees: seedTrees(), Awards: awards(102, 3, "1", "tree_luck_award")}
	configs := fakeConfigs{map[int64]Config{7: cfg}}
	store := &fakeStockStore{cfg: &cfg}
	stock := newFakeStock()
	sink := &fakeSink{}
	s := NewService(Options{Configs: configs, Stock: stock, Sink: sink, StockStore: store})
	ctx := context.Background()
	ref := AwardRef{7, 102}
	draws := func(n int, durable bool) map[int]int {
		got := map[int]int{}
		for range n {
			r, err := s.Draw(ctx, Input{UserID: "u", StrategyID: 7, Durable: durable})
			if err != nil {
				t.Fatal(err)
			}
			got[r.AwardID]++
		}
		return got
	}
	if got := draws(5, false); got[102] != 3 {
		t.Fatalf("5 draws on stock 3 granted %v", got)
	}
	for _, units := range []int64{0, -1, MaxTopUp + 1} {
		if _, err := s.AddStock(ctx, ref, units); !errors.Is(err, ErrInvalidUnits) {
			t.Errorf("add %d units: %v, want ErrInvalidUnits", units, err)
		}
	}
	if _, err := s.AddStock(ctx, AwardRef{7, 999}, 1); !errors.Is(err, ErrAwardNotFound) {
		t.Errorf("add to an unknown award: %v", err)
	}
	if _, err := s.AddStock(ctx, AwardRef{8, 102}, 1); !errors.Is(err, ErrStrategyNotFound) {
		t.Errorf("add to an unknown strategy: %v", err)
	}
	if cfg.Awards[0].Count != 3 {
		t.Fatalf("refused top-ups changed the count to %d", cfg.Awards[0].Count)
	}
	total, err := s.AddStock(ctx, ref, 2)
	if err != nil || total != 5 {
		t.Fatalf("add 2 units: %d %v", total, err)
	}
	if got := draws(5, true); got[102] != 2 {
		t.Fatalf("5 durable draws after a top-up of 2 granted %v", got)
	}
	if len(sink.committed) != 2 || sink.committed[0].Issued != 4 || sink.committed[1].Issued != 5 {
		t.Errorf("committed grants %+v, want sequence numbers 4 and 5", sink.committed)
	}
	// A durable draw whose grant cannot be made durable fails.
	if _, err := s.AddStock(ctx, ref, 1); err != nil {
		t.Fatal(err)
	}
	sink.CommitFn = func() error { return errors.New("broker down") }
	if _, err := s.Draw(ctx, Input{UserID: "u", StrategyID: 7, Durable: true}); err == nil {
		t.Error("a durable draw whose commit failed returned no error")
	}
	if sink.high[ref] != 6 {
		t.Errorf("the failed commit's grant is not pending in the sink: high %d", sink.high[ref])
	}
}

// TestAddStockAnswersOnceDurable checks that a top-up whose SQL step committed answers
// success with the new count even when the cache write after it fails (a retry would add
// the units again), and that RaiseTotals, run by the reconcile job, makes the units
// grantable without the request.
func TestAddStockAnswersOnceDurable(t *testing.T) {
	t.Parallel()
	cfg := Config{StrategyID: 9, Trees: seedTrees(), Awards: awards(102, 2, "1", "tree_luck_award")}
	store := &fakeStockStore{cfg: &cfg}
	stock := newFakeStock()
	var logs bytes.Buffer
	s := NewService(Options{Configs: fakeConfigs{map[int64]Config{9: cfg}}, Stock: stock, StockStore: store,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := context.Background()
	ref := AwardRef{9, 102}
	granted := func(n int) int { return drawsWinning(t, s, 9, 102, n) }
	if got := granted(4); got != 2 {
		t.Fatalf("4 draws on stock 2 granted %d", got)
	}
	stock.TopUpFn = func(AwardRef) error { return errors.New("redis down") }
	total, err := s.AddStock(ctx, ref, 3)
	if err != nil || total != 5 {
		t.Fatalf("top-up whose cache write failed after the SQL add: %d %v, want 5 and no error", total, err)
	}
	if !strings.Contains(logs.String(), "redis down") {
		t.Errorf("the failed cache write is not logged:\n%s", logs.String())
	}
	if cfg.Awards[0].Count != 5 {
		t.Fatalf("SQL count %d, want 5", cfg.Awards[0].Count)
	}
	if got := granted(4); got != 0 {
		t.Fatalf("%d grants before the cache knows the new units", got)
	}
	stock.TopUpFn = nil
	if err := s.RaiseTotals(ctx); err != nil {
		t.Fatal(err)
	}
	if got := granted(6); got != 3 {
		t.Fatalf("6 draws after the reconcile raised the total granted %d, want exactly the 3 new units", got)
	}
	if err := s.RaiseTotals(ctx); err != nil { // idempotent: nothing more
		t.Fatal(err)
	}
	if got := granted(3); got != 0 {
		t.Fatalf("a second reconcile gave %d units more", got)
	}
}

// TestSoldOutFlagLapses checks that an award's sold-out flag lapses after SoldOutTTL: a
// node that missed the news of a top-up (a lost bus message) finds the new stock within
// it, without an assembly.
func TestSoldOutFlagLapses(t *testing.T) {
	t.Parallel()
	cfg := Config{StrategyID: 11, Trees: seedTrees(), Awards: awards(102, 1, "1", "tree_luck_award")}
	stock := newFakeStock()
	clk := testenv.NewClock(time.Unix(1_700_000_000, 0))
	s := NewService(Options{Configs: fakeConfigs{map[int64]Config{11: cfg}}, Stock: stock, Now: clk.Now,
		SoldOutTTL: 5 * time.Second})
	ctx := context.Background()
	ref := AwardRef{11, 102}
	for i := range 3 { // one grant, then sold out and flagged
		r, err := s.Draw(ctx, Input{UserID: "u", StrategyID: 11})
		if err != nil || (i == 0) != (r.AwardID == 102) {
			t.Fatalf("draw %d: %+v %v", i, r, err)
		}
	}
	if s.Stats().SoldOutHits == 0 {
		t.Fatal("no sold-out flag after the award ran out")
	}
	// Another node tops the award up; this node never hears of it.
	if _, err := stock.TopUp(ctx, ref, 2, time.Time{}); err != nil {
		t.Fatal(err)
	}
	clk.Set(clk.Now().Add(4 * time.Second))
	if r, _ := s.Draw(ctx, Input{UserID: "u", StrategyID: 11}); r.AwardID == 102 || stock.taken(ref) != 1 {
		t.Fatalf("within the TTL the flag answers: %+v, %d deductions", r, stock.taken(ref))
	}
	clk.Set(clk.Now().Add(time.Second))
	if r, err := s.Draw(ctx, Input{UserID: "u", StrategyID: 11}); err != nil || r.AwardID != 102 {
		t.Fatalf("after the flag's TTL: %+v %v, want the topped-up award", r, err)
	}
}

// BenchmarkDraw measures a whole draw over the in-memory stock: the chain, the award's
// tree and one deduction, so that the walker's cost per draw shows in allocs/op.
func BenchmarkDraw(b *testing.B) {
	cfg := seedConfig(100006)
	stock := newFakeStock()
	s := NewService(Options{Configs: fakeConfigs{configs: map[int64]Config{cfg.StrategyID: cfg}}, Stock: stock,
		Rand: rand.New(rand.NewPCG(1, 2))})
	if _, err := s.Armory(context.Background(), cfg.StrategyID); err != nil {
		b.Fatal(err)
	}
	for _, aw := range cfg.Awards {
		stock.set(AwardRef{StrategyID: cfg.StrategyID, AwardID: aw.AwardID}, 1<<40)
	}
	in := Input{UserID: "u", StrategyID: cfg.StrategyID, Score: 100, DrawsToday: 5}
	for b.Loop() {
		if _, err := s.Draw(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
}

// drawsWinning draws n times as one user in the strategy and counts the draws that won
// award.
func drawsWinning(t *testing.T, s *Service, strategyID int64, award, n int) int {
	t.Helper()
	got := 0
	for range n {
		r, err := s.Draw(context.Background(), Input{UserID: "u", StrategyID: strategyID})
		if err != nil {
			t.Fatal(err)
		}
		if r.AwardID == award {
			got++
		}
	}
	return got
}

// TestRefreshReassemblesChangedConfigs: two nodes share a config store; the second never
// hears of a change (no announcement). Its Refresh re-assembles the changed strategy once,
// leaves an unchanged one alone, and ignores a surplus that moved (the grants move it).
func TestRefreshReassemblesChangedConfigs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	stock := newFakeStock()
	configs := fakeConfigs{map[int64]Config{100001: seedConfig(100001), 100002: seedConfig(100002)}}
	a := NewService(Options{Configs: configs, Stock: stock})
	b := NewService(Options{Configs: configs, Stock: stock})
	for _, s := range []*Service{a, b} {
		for _, id := range []int64{100001, 100002} {
			if _, err := s.Assembled(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n, err := b.Refresh(ctx); n != 0 || err != nil {
		t.Fatalf("refresh with nothing changed: %d %v, want 0", n, err)
	}
	cfg := seedConfig(100002)
	for i := range cfg.Awards {
		cfg.Awards[i].Surplus-- // grants synced to the store
	}
	configs.configs[100002] = cfg
	if n, err := b.Refresh(ctx); n != 0 || err != nil {
		t.Fatalf("refresh after the surplus moved: %d %v, want 0", n, err)
	}
	cfg = seedConfig(100002)
	cfg.Awards[0].Rate, cfg.Awards[0].Title = cfg.Awards[0].Rate+1, "changed"
	configs.configs[100002] = cfg
	if _, err := a.Armory(ctx, 100002); err != nil { // no Announcer: b misses it
		t.Fatal(err)
	}
	before, _ := b.Assembled(ctx, 100002)
	if before.Awards[0].Title == "changed" {
		t.Fatal("the node that missed the armory already has the change; the test would prove nothing")
	}
	if n, err := b.Refresh(ctx); n != 1 || err != nil {
		t.Fatalf("refresh after a change: %d %v, want 1 re-assembled", n, err)
	}
	if after, _ := b.Assembled(ctx, 100002); after.Awards[0].Title != "changed" || after.Awards[0].Rate != cfg.Awards[0].Rate {
		t.Fatalf("after the refresh award %+v, want the changed one", after.Awards[0])
	}
	if n, err := b.Refresh(ctx); n != 0 || err != nil {
		t.Fatalf("second refresh: %d %v, want 0", n, err)
	}
}
