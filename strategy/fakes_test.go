package strategy

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// fakeConfigs serves configs from a map.
type fakeConfigs struct {
	configs map[int64]Config
}

func (f fakeConfigs) LoadStrategy(_ context.Context, id int64) (Config, error) {
	c, ok := f.configs[id]
	if !ok {
		return Config{}, fmt.Errorf("strategy %d: %w", id, ErrStrategyNotFound)
	}
	return c, nil
}

// fakeStock is an in-memory Stock with the same never-regrant rule as the Redis script:
// a grant's sequence number must stay within the total.
type fakeStock struct {
	mu       sync.Mutex
	count    map[AwardRef]int64
	total    map[AwardRef]int64
	issued   map[AwardRef]int64
	deducted map[AwardRef]int
	DeductFn func(ref AwardRef) error // injects failures when set
	TopUpFn  func(ref AwardRef) error // injects failures when set
}

func newFakeStock() *fakeStock {
	return &fakeStock{count: map[AwardRef]int64{}, total: map[AwardRef]int64{}, issued: map[AwardRef]int64{}, deducted: map[AwardRef]int{}}
}

func (f *fakeStock) Exists(_ context.Context, ref AwardRef) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.count[ref]
	return ok, nil
}

func (f *fakeStock) Preheat(_ context.Context, ref AwardRef, total, remaining int64, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.count[ref]; !ok {
		f.count[ref], f.total[ref] = remaining, total
		f.issued[ref] = max(f.issued[ref], total-remaining)
	}
	return nil
}

func (f *fakeStock) Deduct(_ context.Context, ref AwardRef, _ time.Time) (Grant, error) {
	if f.DeductFn != nil {
		if err := f.DeductFn(ref); err != nil {
			return Grant{}, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.count[ref]
	if !ok {
		return Grant{}, ErrStockMissing
	}
	i := f.issued[ref] + 1
	if n <= 0 || i > f.total[ref] {
		return Grant{}, ErrStockOut
	}
	f.count[ref], f.issued[ref] = f.total[ref]-i, i
	f.deducted[ref]++
	return Grant{Remaining: f.total[ref] - i, Issued: i}, nil
}

func (f *fakeStock) TopUp(_ context.Context, ref AwardRef, total int64, _ time.Time) (bool, error) {
	if f.TopUpFn != nil {
		if err := f.TopUpFn(ref); err != nil {
			return false, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.count[ref]; !ok {
		return false, nil
	}
	if total > f.total[ref] {
		f.total[ref] = total
		f.count[ref] = total - f.issued[ref]
	}
	return true, nil
}

func (f *fakeStock) taken(ref AwardRef) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deducted[ref]
}

// set gives ref a fresh counter with n units left.
func (f *fakeStock) set(ref AwardRef, n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count[ref], f.total[ref] = n, f.issued[ref]+n
}

// fakeStockStore is an in-memory StockStore over a Config: it adds to an award's count
// and surplus.
type fakeStockStore struct {
	mu  sync.Mutex
	cfg *Config
}

func (f *fakeStockStore) AddAwardStock(_ context.Context, ref AwardRef, units int64) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.cfg.Awards {
		if aw := &f.cfg.Awards[i]; aw.AwardID == ref.AwardID && f.cfg.StrategyID == ref.StrategyID {
			aw.Count += units
			aw.Surplus += units
			return aw.Count, nil
		}
	}
	return 0, ErrAwardNotFound
}

// fakeSink records the highest sequence number per award, and the grants committed.
type fakeSink struct {
	mu        sync.Mutex
	high      map[AwardRef]int64
	committed []Grant
	CommitFn  func() error // injects failures when set
}

func (f *fakeSink) Consumed(ref AwardRef, g Grant) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.high == nil {
		f.high = map[AwardRef]int64{}
	}
	f.high[ref] = max(f.high[ref], g.Issued)
}

func (f *fakeSink) Commit(_ context.Context, ref AwardRef, g Grant) error {
	f.Consumed(ref, g)
	if f.CommitFn != nil {
		if err := f.CommitFn(); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.committed = append(f.committed, g)
	return nil
}
