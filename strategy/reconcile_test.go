package strategy

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// Issued makes fakeStock the reconcile job's IssuedLevels: a counter holds a watermark
// once it exists.
func (f *fakeStock) Issued(_ context.Context, ref AwardRef) (int64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.count[ref]; !ok {
		return 0, false, nil
	}
	return f.issued[ref], true, nil
}

// fakeSurplus records the watermarks synced to SQL.
type fakeSurplus struct {
	mu     sync.Mutex
	issued map[AwardRef]int64
}

func (f *fakeSurplus) SyncAwardIssued(_ context.Context, ref AwardRef, issued int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.issued == nil {
		f.issued = map[AwardRef]int64{}
	}
	f.issued[ref] = issued
	return nil
}

func (f *fakeSurplus) SyncAwardSurplus(context.Context, AwardRef, int64) error {
	return errors.New("not used by the reconcile job")
}

// TestReconcileStockRaisesTotalsAndSyncsIssued checks one pass of the stock reconcile
// job: it copies each assembled award's high watermark of grants to SQL, and raises a
// total whose top-up stopped after its SQL step so that the new units become grantable.
func TestReconcileStockRaisesTotalsAndSyncsIssued(t *testing.T) {
	t.Parallel()
	cfg := Config{StrategyID: 9, Trees: seedTrees(), Awards: awards(102, 2, "1", "tree_luck_award")}
	stock := newFakeStock()
	s := NewService(Options{Configs: fakeConfigs{map[int64]Config{9: cfg}}, Stock: stock, StockStore: &fakeStockStore{cfg: &cfg}})
	ctx := context.Background()
	ref := AwardRef{9, 102}
	granted := func(n int) int { return drawsWinning(t, s, 9, 102, n) }
	if got := granted(4); got != 2 {
		t.Fatalf("4 draws on stock 2 granted %d", got)
	}
	surplus := &fakeSurplus{}
	s.ReconcileStock(ctx, stock, surplus)
	if got := surplus.issued[ref]; got != 2 {
		t.Fatalf("reconcile synced issued %d, want 2 (%v)", got, surplus.issued)
	}

	stock.TopUpFn = func(AwardRef) error { return errors.New("redis down") }
	if _, err := s.AddStock(ctx, ref, 3); err != nil {
		t.Fatal(err)
	}
	stock.TopUpFn = nil
	if got := granted(3); got != 0 {
		t.Fatalf("%d grants before the reconcile raised the total", got)
	}
	s.ReconcileStock(ctx, stock, surplus)
	if got := granted(6); got != 3 {
		t.Fatalf("6 draws after the reconcile granted %d, want exactly the 3 new units", got)
	}
	s.ReconcileStock(ctx, stock, surplus)
	if got := surplus.issued[ref]; got != 5 {
		t.Fatalf("reconcile synced issued %d, want 5", got)
	}
}
