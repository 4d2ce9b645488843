package recovery

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/strategy"
)

type fakes struct {
	mu       sync.Mutex
	cfg      strategy.Config
	sku      activity.SKU
	records  map[int]int64
	orders   int64
	logHigh  map[int]int64 // the highest sequence number logged per award
	LogErr   error
	preheats map[any]int64
	runs     map[any]int
}

func (f *fakes) LoadStrategy(context.Context, int64) (strategy.Config, error) { return f.cfg, nil }
func (f *fakes) SKU(context.Context, int64) (activity.SKU, error)             { return f.sku, nil }
func (f *fakes) AwardRecordCounts(context.Context, int64) (map[int]int64, error) {
	return f.records, nil
}
func (f *fakes) SKUOrderCount(context.Context, int64) (int64, error) { return f.orders, nil }
func (f *fakes) MaxIssued(_ context.Context, ref strategy.AwardRef, _ int64) (int64, bool, error) {
	if f.LogErr != nil {
		return 0, false, f.LogErr
	}
	v, ok := f.logHigh[ref.AwardID]
	return v, ok, nil
}

type awardPreheater struct{ f *fakes }

func (p awardPreheater) Preheat(_ context.Context, ref strategy.AwardRef, _, n int64, _ time.Time) error {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	p.f.preheats[ref] = n
	p.f.runs[ref]++
	return nil
}

type skuPreheater struct{ f *fakes }

func (p skuPreheater) Preheat(_ context.Context, sku, _, n int64, _ time.Time) error {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	p.f.preheats[sku] = n
	p.f.runs[sku]++
	return nil
}

func newFakes() *fakes {
	return &fakes{
		cfg: strategy.Config{StrategyID: 7, Awards: []strategy.Award{
			{AwardID: 101, Count: 100, Surplus: 100}, // nothing synced yet
			{AwardID: 102, Count: 100, Surplus: 40},  // SQL lags the log
			{AwardID: 103, Count: 100, Surplus: 10},  // SQL is the tightest
			{AwardID: 104, Count: 5, Surplus: 5},     // more records than stock: floor 0
			// Sold out at 100 (the log's last grant is number 100), then topped up by 10:
			// count and surplus both grew, and only the 10 new units are left.
			{AwardID: 105, Count: 110, Surplus: 10},
		}},
		records:  map[int]int64{101: 30, 102: 20, 103: 5, 104: 9, 105: 40},
		logHigh:  map[int]int64{102: 65, 105: 100},
		sku:      activity.SKU{SKU: 9011, Stock: 100, StockSurplus: 90},
		orders:   25,
		preheats: map[any]int64{},
		runs:     map[any]int{},
	}
}

func TestSurplusIsTheLeastOfEveryRecord(t *testing.T) {
	t.Parallel()
	f := newFakes()
	s := NewService(Options{Configs: f, Grants: f, Log: f})
	got, err := s.Surplus(context.Background(), f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]int64{101: 70, 102: 35, 103: 10, 104: 0, 105: 10}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("award %d: safe surplus %d, want %d", id, got[id], w)
		}
	}
	if n, err := s.SKUSurplus(context.Background(), f.sku); err != nil || n != 75 {
		t.Errorf("sku surplus %d %v, want 75 (100 stock - 25 orders < 90 synced)", n, err)
	}
	f.LogErr = errors.New("broker down")
	if _, err := s.Surplus(context.Background(), f.cfg); err == nil {
		t.Error("a failing sync log was ignored; the surplus must not be computed without it")
	}
}

func TestLostRebuildsOnceAfterGrace(t *testing.T) {
	t.Parallel()
	f := newFakes()
	s := NewService(Options{Configs: f, Grants: f, Log: f, Awards: awardPreheater{f}, SKUStock: skuPreheater{f}, Grace: 50 * time.Millisecond})
	ref := strategy.AwardRef{StrategyID: 7, AwardID: 102}
	for range 20 { // a crowd of draws sees the loss
		s.Lost(ref, time.Now().Add(time.Hour))
	}
	s.SKULost(9011, time.Now().Add(time.Hour))
	s.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.preheats) != 2 || f.preheats[ref] != 35 || f.preheats[int64(9011)] != 75 {
		t.Errorf("preheats %v, want award 102 → 35 and sku 9011 → 75", f.preheats)
	}
	if f.runs[ref] != 1 {
		t.Errorf("20 reports of one lost award ran %d rebuilds, want 1", f.runs[ref])
	}
}
