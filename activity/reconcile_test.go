package activity

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeSKULevels serves watermarks from a map; a SKU in fail answers an error.
type fakeSKULevels struct {
	issued map[int64]int64
	fail   map[int64]bool
}

func (f fakeSKULevels) Issued(_ context.Context, sku int64) (int64, bool, error) {
	if f.fail[sku] {
		return 0, false, errors.New("redis down")
	}
	n, ok := f.issued[sku]
	return n, ok, nil
}

// fakeSKUSurplus lists skus and records the watermarks synced to SQL.
type fakeSKUSurplus struct {
	skus []int64

	mu     sync.Mutex
	synced map[int64]int64
}

func (f *fakeSKUSurplus) SKUIDs(context.Context) ([]int64, error) { return f.skus, nil }

func (f *fakeSKUSurplus) SyncSKUIssued(_ context.Context, sku, issued int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.synced[sku] = issued
	return nil
}

// TestReconcileSKUStockRaisesTotalsAndSyncsIssued checks one pass of the stock reconcile
// job over the SKUs: every listed SKU's cached total is raised to its stock_count, and
// each watermark the cache holds is synced to SQL; a SKU whose level cannot be read or
// which holds none is skipped without stopping the others.
func TestReconcileSKUStockRaisesTotalsAndSyncsIssued(t *testing.T) {
	t.Parallel()
	s, _, stock, _ := newTestService(t, time.Date(2025, 1, 1, 12, 0, 0, 0, shanghai))
	var mu sync.Mutex
	raised := map[int64]int64{}
	stock.TopUpFn = func(sku, total int64) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		raised[sku] = total
		return true, nil
	}
	store := &fakeSKUSurplus{skus: []int64{9014, 9015, 7777}, synced: map[int64]int64{}}
	levels := fakeSKULevels{issued: map[int64]int64{9014: 1}, fail: map[int64]bool{9015: true}}
	s.ReconcileSKUStock(context.Background(), levels, store)
	if raised[9014] != 2 || raised[9015] != 5 || len(raised) != 2 {
		t.Errorf("totals raised %v, want 9014→2 and 9015→5 (7777 is unknown)", raised)
	}
	if len(store.synced) != 1 || store.synced[9014] != 1 {
		t.Errorf("synced %v, want only 9014→1", store.synced)
	}
}
