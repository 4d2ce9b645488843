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

// fakeStock is an in-memory Stock with the same never-regrant rule as the Redis script.
type fakeStock struct {
	mu       sync.Mutex
	count    map[AwardRef]int64
	deducted map[AwardRef]int
	DeductFn func(ref AwardRef) error // injects failures when set
}

func newFakeStock() *fakeStock {
	return &fakeStock{count: map[AwardRef]int64{}, deducted: map[AwardRef]int{}}
}

func (f *fakeStock) Exists(_ context.Context, ref AwardRef) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.count[ref]
	return ok, nil
}

func (f *fakeStock) Preheat(_ context.Context, ref AwardRef, surplus int64, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.count[ref]; !ok {
		f.count[ref] = surplus
	}
	return nil
}

func (f *fakeStock) Deduct(_ context.Context, ref AwardRef, _ time.Time) (int64, error) {
	if f.DeductFn != nil {
		if err := f.DeductFn(ref); err != nil {
			return 0, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.count[ref]
	if !ok {
		return 0, ErrStockMissing
	}
	if n <= 0 {
		return 0, ErrStockOut
	}
	f.count[ref] = n - 1
	f.deducted[ref]++
	return n - 1, nil
}

func (f *fakeStock) taken(ref AwardRef) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deducted[ref]
}

func (f *fakeStock) set(ref AwardRef, n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count[ref] = n
}

// fakeSink records the lowest remaining value per award.
type fakeSink struct {
	mu  sync.Mutex
	low map[AwardRef]int64
}

func (f *fakeSink) Consumed(ref AwardRef, remaining int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.low == nil {
		f.low = map[AwardRef]int64{}
	}
	if v, ok := f.low[ref]; !ok || remaining < v {
		f.low[ref] = remaining
	}
}
