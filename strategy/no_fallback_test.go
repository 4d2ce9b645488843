package strategy

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

// States makes fakeStock a StockLevels, as the Redis stock is.
func (f *fakeStock) States(_ context.Context, refs []AwardRef) ([]StockState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]StockState, len(refs))
	for i, ref := range refs {
		n, ok := f.count[ref]
		switch {
		case !ok:
			out[i] = StockMissing
		case n <= 0 || f.issued[ref] >= f.total[ref]:
			out[i] = StockOut
		}
	}
	return out, nil
}

func noFallbackService(stock *fakeStock, cfg Config) *Service {
	return NewService(Options{Configs: fakeConfigs{map[int64]Config{cfg.StrategyID: cfg}}, Stock: stock,
		Rand: rand.New(rand.NewPCG(3, 5)), ImplicitLuckAwardFor: map[int64]string{cfg.StrategyID: NoFallback}})
}

func TestStockedAwardsAndFallback(t *testing.T) {
	t.Parallel()
	s := newTestService(newFakeStock(), seedConfig(100001), seedConfig(100002))
	a, err := s.Assembled(context.Background(), 100001)
	if err != nil {
		t.Fatal(err)
	}
	// Award 101 is the luck award of tree_luck_award: stocked by its tree, but the fallback.
	if a.NoFallback() || !slices.Equal(a.Stocked(), []int{102, 103, 104, 105, 106, 107, 108, 109}) || a.IsStocked(101) {
		t.Errorf("strategy 100001: no fallback %v, stocked %v", a.NoFallback(), a.Stocked())
	}
	// Tree-less awards get the implicit tree, whose luck award (101) is the fallback.
	if a, err = s.Assembled(context.Background(), 100002); err != nil || a.NoFallback() || !slices.Equal(a.Stocked(), []int{102, 106}) {
		t.Errorf("strategy 100002: %v, no fallback %v, stocked %v", err, a.NoFallback(), a.Stocked())
	}
	if out, err := s.SoldOut(context.Background(), 100002); out || err != nil {
		t.Errorf("a strategy with a fallback is sold out: %v %v", out, err)
	}
}

// TestNoFallbackSellsOut: a strategy whose tree-less awards have no fallback grants
// exactly its stock, then every draw ends in ErrSoldOut; SoldOut says so on this node
// from its flags, and on another node sharing the stock from the counters.
func TestNoFallbackSellsOut(t *testing.T) {
	t.Parallel()
	cfg := Config{StrategyID: 7, Awards: append(awards(102, 2, "0.5", ""), awards(103, 3, "0.5", "")...)}
	cfg.Awards[1].Sort = 2
	stock := newFakeStock()
	s := noFallbackService(stock, cfg)
	other := noFallbackService(stock, cfg)
	ctx := context.Background()
	a, err := s.Assembled(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	if !a.NoFallback() || !slices.Equal(a.Stocked(), []int{102, 103}) {
		t.Fatalf("no fallback %v, stocked %v", a.NoFallback(), a.Stocked())
	}
	if out, err := other.SoldOut(ctx, 7); out || err != nil {
		t.Fatalf("sold out with stock left: %v %v", out, err)
	}
	wins, soldOut := 0, 0
	for range 100 {
		r, err := s.Draw(ctx, Input{UserID: "u", StrategyID: 7})
		switch {
		case err == nil && r.Stocked && r.Rule == RuleStock:
			wins++
		case errors.Is(err, ErrSoldOut):
			soldOut++
		default:
			t.Fatalf("draw: %+v %v", r, err)
		}
	}
	if wins != 5 || soldOut != 95 {
		t.Errorf("%d wins and %d sold out of 100 draws on 5 units", wins, soldOut)
	}
	for name, svc := range map[string]*Service{"this node": s, "another node": other} {
		if out, err := svc.SoldOut(ctx, 7); !out || err != nil {
			t.Errorf("%s: sold out %v %v after the last unit", name, out, err)
		}
	}
	// A top-up brings the draws back.
	stock.set(AwardRef{7, 103}, 1)
	s.soldOut.Reset()
	if out, _ := s.SoldOut(ctx, 7); out {
		t.Error("sold out after a top-up")
	}
}

// TestNoFallbackMissingStockIsNotSoldOut: a counter missing from the cache (a Redis loss)
// is unknown stock: never answered as sold out.
func TestNoFallbackMissingStockIsNotSoldOut(t *testing.T) {
	t.Parallel()
	cfg := Config{StrategyID: 8, Awards: awards(102, 1, "1", "")}
	stock := newFakeStock()
	s := noFallbackService(stock, cfg)
	ctx := context.Background()
	if _, err := s.Assembled(ctx, 8); err != nil {
		t.Fatal(err)
	}
	stock.mu.Lock()
	delete(stock.count, AwardRef{8, 102})
	stock.mu.Unlock()
	if _, err := s.Draw(ctx, Input{UserID: "u", StrategyID: 8}); !errors.Is(err, ErrStockMissing) || errors.Is(err, ErrSoldOut) {
		t.Errorf("draw on a missing counter: %v, want ErrStockMissing", err)
	}
	if out, err := s.SoldOut(ctx, 8); out || err != nil {
		t.Errorf("sold out on a missing counter: %v %v", out, err)
	}
}
