package activity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
)

type fakeConfigs struct {
	activities map[int64]Activity
	skus       map[int64]SKU
}

func (f fakeConfigs) Activity(_ context.Context, id int64) (Activity, error) {
	a, ok := f.activities[id]
	if !ok {
		return Activity{}, ErrActivityNotFound
	}
	return a, nil
}

func (f fakeConfigs) SKU(_ context.Context, sku int64) (SKU, error) {
	k, ok := f.skus[sku]
	if !ok {
		return SKU{}, ErrSKUNotFound
	}
	return k, nil
}

func (f fakeConfigs) SKUs(_ context.Context, id int64) ([]SKU, error) {
	var out []SKU
	for _, k := range f.skus {
		if k.ActivityID == id {
			out = append(out, k)
		}
	}
	return out, nil
}

func (f fakeConfigs) StageActivity(context.Context, string, string) (int64, error) {
	return 0, ErrNoStageActivity
}

func (f fakeConfigs) Stages(context.Context) ([]Stage, error)     { return nil, nil }
func (f fakeConfigs) Stage(context.Context, int64) (Stage, error) { return Stage{}, ErrStageNotFound }
func (f fakeConfigs) ActivateStage(context.Context, int64) error  { return ErrStageNotFound }

// fakeUsers keeps one user's quota rows and orders in memory behind a mutex.
type fakeUsers struct {
	mu        sync.Mutex
	account   *Account
	periods   map[string]*Period
	orders    []RaffleOrder
	recharges map[string]RechargeOrder
}

func newFakeUsers() *fakeUsers {
	return &fakeUsers{periods: map[string]*Period{}, recharges: map[string]RechargeOrder{}}
}

func (f *fakeUsers) load(key QuotaKey) Quota {
	q := Quota{}
	if f.account != nil {
		a := *f.account
		q.Account = &a
	}
	if p, ok := f.periods[key.Month]; ok {
		c := *p
		q.Month = &c
	}
	if p, ok := f.periods[key.Day]; ok {
		c := *p
		q.Day = &c
	}
	return q
}

func (f *fakeUsers) store(q Quota) {
	f.account = q.Account
	if q.Month != nil {
		f.periods[q.Month.Key] = q.Month
	}
	if q.Day != nil {
		f.periods[q.Day.Key] = q.Day
	}
}

func (f *fakeUsers) Quota(_ context.Context, key QuotaKey) (Quota, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.load(key), nil
}

func (f *fakeUsers) UnpaidOrder(context.Context, string, int64, time.Time) (RechargeOrder, bool, error) {
	return RechargeOrder{}, false, nil
}

func (f *fakeUsers) RecentRaffleOrders(context.Context, string, int) ([]RaffleOrder, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]RaffleOrder(nil), f.orders...), nil
}

func (f *fakeUsers) RechargeExists(_ context.Context, _, no string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.recharges[no]
	return ok, nil
}

func (f *fakeUsers) Recharge(_ context.Context, key QuotaKey, order RechargeOrder, add func(*Quota)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.recharges[order.OutBusinessNo]; ok {
		return ErrDuplicateOrder
	}
	f.recharges[order.OutBusinessNo] = order
	if order.State != RechargeCompleted {
		return nil
	}
	q := f.load(key)
	add(&q)
	f.store(q)
	return nil
}

func (f *fakeUsers) RechargesExist(_ context.Context, numbers map[string]string) (map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	found := map[string]bool{}
	for u, no := range numbers {
		if _, ok := f.recharges[no]; ok {
			found[u] = true
		}
	}
	return found, nil
}

func (f *fakeUsers) RechargeMany(ctx context.Context, items []Recharging, add func(*Quota)) ([]Recharged, error) {
	var done []Recharged
	for _, it := range items {
		var after Quota
		if err := f.Recharge(ctx, it.Key, it.Order, func(q *Quota) { add(q); after = q.Clone() }); err == nil {
			done = append(done, Recharged{Key: it.Key, Quota: after})
		} else if !errors.Is(err, ErrDuplicateOrder) {
			return done, err
		}
	}
	return done, nil
}

func (f *fakeUsers) CompleteRecharge(_ context.Context, _, no, day, month string, add func(QuotaKey, *Quota, Count)) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.recharges[no]
	if !ok {
		return false, ErrRechargeNotFound
	}
	if o.State == RechargeCompleted {
		return false, nil
	}
	o.State = RechargeCompleted
	f.recharges[no] = o
	k := QuotaKey{Day: day, Month: month}
	q := f.load(k)
	add(k, &q, o.Count)
	f.store(q)
	return true, nil
}

type fakeSKUStock struct {
	mu    sync.Mutex
	left  map[int64]int64
	taken int
	// TopUpFn, when set, is TopUp: the fake keeps no totals.
	TopUpFn func(sku, total int64) (bool, error)
}

func (f *fakeSKUStock) Exists(_ context.Context, sku int64) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.left[sku]
	return ok, nil
}

func (f *fakeSKUStock) Preheat(_ context.Context, sku, _, surplus int64, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.left[sku]; !ok {
		f.left[sku] = surplus
	}
	return nil
}

func (f *fakeSKUStock) Deduct(_ context.Context, sku int64, _ time.Time) (int64, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	left, ok := f.left[sku]
	if !ok {
		return 0, 0, fmt.Errorf("sku %d: %w", sku, ErrSKUStockMissing)
	}
	if left <= 0 {
		return 0, 0, fmt.Errorf("sku %d: %w", sku, ErrSKUStockExhausted)
	}
	f.left[sku]--
	f.taken++
	return f.left[sku], int64(f.taken), nil
}

func (f *fakeSKUStock) DeductN(_ context.Context, sku, units int64, _ time.Time) (int64, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	left, ok := f.left[sku]
	if !ok {
		return 0, 0, fmt.Errorf("sku %d: %w", sku, ErrSKUStockMissing)
	}
	if left < units {
		return 0, 0, fmt.Errorf("sku %d: %w", sku, ErrSKUStockExhausted)
	}
	f.left[sku] -= units
	f.taken += int(units)
	return f.left[sku], int64(f.taken), nil
}

func (f *fakeSKUStock) TopUp(_ context.Context, sku, total int64, _ time.Time) (bool, error) {
	if f.TopUpFn != nil {
		return f.TopUpFn(sku, total)
	}
	return false, nil
}

var shanghai, _ = time.LoadLocation("Asia/Shanghai")

// fakeStockZero records the SKUs announced as out of stock. Fn, when set, runs on each
// call and its error is returned.
type fakeStockZero struct {
	Fn func(sku int64) error

	mu   sync.Mutex
	skus []int64
}

func (f *fakeStockZero) PublishSKUStockZero(_ context.Context, sku, _ int64) error {
	f.mu.Lock()
	f.skus = append(f.skus, sku)
	f.mu.Unlock()
	if f.Fn != nil {
		return f.Fn(sku)
	}
	return nil
}

func (f *fakeStockZero) calls() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.skus)
}

// newTestService returns a Service on fakes with activity 1 armed; adjust, when given,
// changes the options first.
func newTestService(t *testing.T, now time.Time, adjust ...func(*Options)) (*Service, *fakeUsers, *fakeSKUStock, *testenv.Clock) {
	t.Helper()
	configs := fakeConfigs{
		activities: map[int64]Activity{
			1: {ID: 1, Name: "open", StrategyID: 100006, State: StateOpen,
				Begin: time.Date(2024, 1, 1, 0, 0, 0, 0, shanghai), End: time.Date(2030, 1, 1, 0, 0, 0, 0, shanghai)},
			2: {ID: 2, Name: "closed", State: StateClose, Begin: time.Date(2024, 1, 1, 0, 0, 0, 0, shanghai), End: time.Date(2030, 1, 1, 0, 0, 0, 0, shanghai)},
			3: {ID: 3, Name: "over", State: StateOpen, Begin: time.Date(2020, 1, 1, 0, 0, 0, 0, shanghai), End: time.Date(2021, 1, 1, 0, 0, 0, 0, shanghai)},
		},
		skus: map[int64]SKU{
			9014: {SKU: 9014, ActivityID: 1, Stock: 2, StockSurplus: 2, Price: 500, Count: Count{Total: 3, Day: 2, Month: 3}},
			9015: {SKU: 9015, ActivityID: 2, Stock: 5, StockSurplus: 5, Count: Count{Total: 1, Day: 1, Month: 1}},
		},
	}
	users, stock, clk := newFakeUsers(), &fakeSKUStock{left: map[int64]int64{}}, testenv.NewClock(now)
	opts := Options{Configs: configs, Users: users, SKUStock: stock, Now: clk.Now, Location: shanghai}
	for _, f := range adjust {
		f(&opts)
	}
	s := NewService(opts)
	if _, err := s.Armory(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	return s, users, stock, clk
}

// TestRecharge: a recharge adds its SKU's counts to the user's quota once per business
// number (a repeat takes no SKU stock).
func TestRecharge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _, stock, _ := newTestService(t, time.Date(2026, 11, 22, 10, 0, 0, 0, shanghai))
	if v, err := s.Account(ctx, "u1", 1); err != nil || v != (View{}) {
		t.Fatalf("no account: %+v %v", v, err)
	}
	if _, err := s.Recharge(ctx, RechargeRequest{UserID: "u1", SKU: 9014, OutBusinessNo: "b1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recharge(ctx, RechargeRequest{UserID: "u1", SKU: 9014, OutBusinessNo: "b1"}); !errors.Is(err, ErrDuplicateOrder) {
		t.Fatalf("repeat recharge: %v", err)
	}
	if stock.taken != 1 {
		t.Errorf("the repeated recharge took stock: %d units taken", stock.taken)
	}
	if v, _ := s.Account(ctx, "u1", 1); v != (View{Total: 3, TotalSurplus: 3, Day: 2, DaySurplus: 2, Month: 3, MonthSurplus: 3}) {
		t.Errorf("view after recharge: %+v", v)
	}
}

func TestActivityChecks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, users, stock, _ := newTestService(t, time.Date(2026, 11, 22, 10, 0, 0, 0, shanghai))
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"closed open", func() error { _, err := s.Open(ctx, 2); return err }(), ErrActivityNotOpen},
		{"ended open", func() error { _, err := s.Open(ctx, 3); return err }(), ErrOutsideDates},
		{"unknown open", func() error { _, err := s.Open(ctx, 99); return err }(), ErrActivityNotFound},
		{"empty user", CheckUserID(""), ErrInvalidUserID},
		{"long user", CheckUserID("012345678901234567890123456789012"), ErrInvalidUserID},
		{"closed recharge", func() error {
			_, err := s.Recharge(ctx, RechargeRequest{UserID: "u1", SKU: 9015, OutBusinessNo: "x"})
			return err
		}(), ErrActivityNotOpen},
		{"unknown sku", func() error {
			_, err := s.Recharge(ctx, RechargeRequest{UserID: "u1", SKU: 1, OutBusinessNo: "x"})
			return err
		}(), ErrSKUNotFound},
		{"no business no", func() error { _, err := s.Recharge(ctx, RechargeRequest{UserID: "u1", SKU: 9014}); return err }(), ErrInvalidBusinessNo},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	if len(users.orders) != 0 || len(users.recharges) != 0 || stock.taken != 0 {
		t.Errorf("refused requests wrote: %d orders %d recharges %d stock", len(users.orders), len(users.recharges), stock.taken)
	}
	for i := range 3 {
		_, err := s.Recharge(ctx, RechargeRequest{UserID: "u2", SKU: 9014, OutBusinessNo: fmt.Sprint("n", i)})
		if i < 2 && err != nil || i == 2 && !errors.Is(err, ErrSKUStockExhausted) {
			t.Errorf("recharge %d of a sku with stock 2: %v", i, err)
		}
	}
}

func TestCreditPayWaitsForPayment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, users, stock, _ := newTestService(t, time.Date(2026, 11, 22, 10, 0, 0, 0, shanghai))
	order, err := s.Recharge(ctx, RechargeRequest{UserID: "u1", SKU: 9014, OutBusinessNo: "pay-1", Policy: PolicyCreditPay})
	if err != nil || order.State != RechargeWaitPay || order.PayAmount != 500 || users.recharges["pay-1"].State != RechargeWaitPay {
		t.Fatalf("credit pay recharge: %+v %v", order, err)
	}
	if stock.taken != 1 {
		t.Errorf("a wait_pay order must hold its unit of SKU stock: %d taken", stock.taken)
	}
	if v, _ := s.Account(ctx, "u1", 1); v.Total != 0 {
		t.Errorf("quota added before payment: %+v", v)
	}
	for range 2 { // a redelivered confirmation changes nothing
		if err := s.CompletePaid(ctx, "u1", "pay-1"); err != nil {
			t.Fatal(err)
		}
	}
	if v, _ := s.Account(ctx, "u1", 1); v.Total != 3 || v.TotalSurplus != 3 {
		t.Errorf("quota after payment: %+v, want 3 once", v)
	}
	if err := s.CompletePaid(ctx, "u1", "nope"); !errors.Is(err, ErrRechargeNotFound) {
		t.Errorf("complete unknown order: %v", err)
	}
	if _, err := s.Recharge(ctx, RechargeRequest{UserID: "u1", SKU: 9014, OutBusinessNo: "x", Policy: "barter"}); !errors.Is(err, ErrInvalidPolicy) {
		t.Errorf("unknown policy: %v", err)
	}
}

// TestRechargeAnnouncesStockZero takes the two units of SKU 9014: only the recharge that
// takes the last one announces the stock zero, and a failed announcement is logged
// without failing the recharge.
func TestRechargeAnnouncesStockZero(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		publishErr error
	}{
		{"published", nil},
		{"publish fails", errors.New("nats: timeout")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			zero := &fakeStockZero{Fn: func(int64) error { return tc.publishErr }}
			var logs bytes.Buffer // written only by this test's goroutine
			s, users, _, _ := newTestService(t, time.Date(2026, 11, 22, 10, 0, 0, 0, shanghai), func(o *Options) {
				o.StockZero = zero
				o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			})
			want := [][]int64{nil, {9014}, {9014}} // announced after each recharge
			for i := range 3 {
				order, err := s.Recharge(ctx, RechargeRequest{UserID: "u1", SKU: 9014, OutBusinessNo: fmt.Sprint("z", i)})
				switch {
				case i < 2 && (err != nil || order.State != RechargeCompleted):
					t.Fatalf("recharge %d of a sku with stock 2: %+v %v", i, order, err)
				case i == 2 && !errors.Is(err, ErrSKUStockExhausted):
					t.Fatalf("recharge %d after the stock ran out: %v", i, err)
				}
				if got := zero.calls(); !slices.Equal(got, want[i]) {
					t.Fatalf("after recharge %d announced %v, want %v", i, got, want[i])
				}
			}
			if n := len(users.recharges); n != 2 {
				t.Errorf("%d recharge orders written, want 2", n)
			}
			warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "sku=9014")
			if warned != (tc.publishErr != nil) {
				t.Errorf("warning logged = %v, want %v; logs:\n%s", warned, tc.publishErr != nil, logs.String())
			}
		})
	}
}

// TestSoldOutSKUSkipsTheCache checks that once a SKU runs out, this node refuses its
// recharges without asking the stock, until the flag lapses or an armory adds stock.
func TestSoldOutSKUSkipsTheCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _, stock, clk := newTestService(t, time.Date(2026, 11, 22, 10, 0, 0, 0, shanghai))
	calls := 0
	s.opts.SKUStock = countingSKUStock{stock, &calls}
	recharge := func(i int) error {
		_, err := s.Recharge(ctx, RechargeRequest{UserID: "u1", SKU: 9014, OutBusinessNo: fmt.Sprint("s", i)})
		return err
	}
	for i := range 2 { // the second takes the last unit and raises the flag
		if err := recharge(i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if err := recharge(10 + i); !errors.Is(err, ErrSKUStockExhausted) {
			t.Fatalf("recharge of a sold-out sku: %v", err)
		}
	}
	if calls != 2 {
		t.Fatalf("stock asked %d times, want only the 2 that took units", calls)
	}
	clk.Set(clk.Now().Add(6 * time.Second)) // past CacheTTL: asked again, and still out
	if err := recharge(20); !errors.Is(err, ErrSKUStockExhausted) || calls != 3 {
		t.Fatalf("after the flag lapsed: %v, %d calls, want one more call", err, calls)
	}
	if err := recharge(21); !errors.Is(err, ErrSKUStockExhausted) || calls != 3 {
		t.Fatalf("flag not raised again by the exhausted answer: %v, %d calls", err, calls)
	}
	// An armory that adds stock clears the flag.
	stock.mu.Lock()
	delete(stock.left, 9014)
	stock.mu.Unlock()
	if _, err := s.Armory(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := recharge(30); err != nil {
		t.Fatalf("recharge after the armory added stock: %v", err)
	}
}

// countingSKUStock counts Deduct calls on the way to the fake.
type countingSKUStock struct {
	*fakeSKUStock
	calls *int
}

func (c countingSKUStock) Deduct(ctx context.Context, sku int64, at time.Time) (int64, int64, error) {
	*c.calls++
	return c.fakeSKUStock.Deduct(ctx, sku, at)
}

// fakeRecovery records the SKUs reported lost; SKUSurplus answers the SKU's SQL surplus.
type fakeRecovery struct {
	mu   sync.Mutex
	lost []int64
}

func (f *fakeRecovery) SKUSurplus(_ context.Context, k SKU) (int64, error) {
	return k.StockSurplus, nil
}

func (f *fakeRecovery) SKULost(sku int64, _ time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lost = append(f.lost, sku)
}

// TestRechargeWhileStockUnknown checks that a recharge meeting a lost SKU counter answers
// ErrStockUnknown, never ErrSKUStockExhausted, writes nothing and asks for a rebuild; once
// the counter is back the same request succeeds.
func TestRechargeWhileStockUnknown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rec := &fakeRecovery{}
	s, users, stock, _ := newTestService(t, time.Date(2026, 11, 22, 10, 0, 0, 0, shanghai), func(o *Options) { o.Recovery = rec })
	stock.mu.Lock()
	delete(stock.left, 9014) // the Redis loss
	stock.mu.Unlock()
	req := RechargeRequest{UserID: "u1", SKU: 9014, OutBusinessNo: "b1"}
	_, err := s.Recharge(ctx, req)
	if !errors.Is(err, ErrStockUnknown) || errors.Is(err, ErrSKUStockExhausted) {
		t.Fatalf("recharge on a lost counter: %v, want ErrStockUnknown and not exhausted", err)
	}
	if len(users.recharges) != 0 || len(rec.lost) != 1 || rec.lost[0] != 9014 {
		t.Fatalf("after the lost counter: %d orders, lost reported %v", len(users.recharges), rec.lost)
	}
	if err := stock.Preheat(ctx, 9014, 2, 2, time.Time{}); err != nil { // the rebuild
		t.Fatal(err)
	}
	if _, err := s.Recharge(ctx, req); err != nil {
		t.Fatalf("the same recharge after the rebuild: %v", err)
	}
}

// TestArmOpen checks that ArmOpen preheats the SKUs of open activities not yet over, and
// keeps a counter that exists.
func TestArmOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _, stock, _ := newTestService(t, time.Date(2026, 11, 22, 10, 0, 0, 0, shanghai))
	stock.mu.Lock()
	stock.left = map[int64]int64{9014: 1} // 9014 exists (another node's): kept
	stock.mu.Unlock()
	n, err := s.ArmOpen(ctx, []int64{1, 2, 3})
	if err != nil || n != 1 {
		t.Fatalf("ArmOpen: %d armed, %v; want only activity 1", n, err)
	}
	stock.mu.Lock()
	defer stock.mu.Unlock()
	if len(stock.left) != 1 || stock.left[9014] != 1 {
		t.Fatalf("stock after ArmOpen: %v, want 9014 kept at 1 and closed activity 2's 9015 not armed", stock.left)
	}
	if _, err := s.ArmOpen(ctx, []int64{404}); !errors.Is(err, ErrActivityNotFound) {
		t.Fatalf("ArmOpen of an unknown activity: %v", err)
	}
}

// fakeStockStore adds to the stock_count of the SKUs in a fakeConfigs.
type fakeStockStore struct {
	mu      sync.Mutex
	configs fakeConfigs
}

func (f *fakeStockStore) AddSKUStock(_ context.Context, sku, units int64) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.configs.skus[sku]
	if !ok {
		return 0, ErrSKUNotFound
	}
	k.Stock += units
	k.StockSurplus += units
	f.configs.skus[sku] = k
	return k.Stock, nil
}

// raceSKUStock answers Deduct as sold out, but only after hook ran: the deduction read
// the count before a top-up that completes while its answer is on its way.
type raceSKUStock struct {
	*fakeSKUStock
	hook func()
}

func (r raceSKUStock) Deduct(ctx context.Context, sku int64, at time.Time) (int64, int64, error) {
	left, issued, err := r.fakeSKUStock.Deduct(ctx, sku, at)
	if h := r.hook; h != nil && errors.Is(err, ErrSKUStockExhausted) {
		h()
	}
	return left, issued, err
}

// TestSKUSoldOutFlagRaceWithTopUp checks that a recharge whose deduction saw the SKU
// sold out before a top-up cannot flag it after the top-up dropped the flags: the next
// recharge takes the new stock instead of ERR_BIZ_005 until the flag lapses.
func TestSKUSoldOutFlagRaceWithTopUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _, stock, _ := newTestService(t, time.Date(2026, 11, 22, 10, 0, 0, 0, shanghai))
	for i := range 2 {
		if _, err := s.Recharge(ctx, RechargeRequest{UserID: "u1", SKU: 9014, OutBusinessNo: fmt.Sprint("a", i)}); err != nil {
			t.Fatal(err)
		}
	}
	once := sync.Once{}
	s.opts.SKUStock = raceSKUStock{stock, func() {
		once.Do(func() {
			stock.mu.Lock()
			stock.left[9014] = 3 // another node's top-up: cache first, then the flags
			stock.mu.Unlock()
			s.StockAdded(9014)
		})
	}}
	s.StockAdded(9014) // drop the flag of the last unit, so that the next recharge asks the stock
	if _, err := s.Recharge(ctx, RechargeRequest{UserID: "u1", SKU: 9014, OutBusinessNo: "b0"}); !errors.Is(err, ErrSKUStockExhausted) {
		t.Fatalf("the recharge that read the count before the top-up: %v, want exhausted", err)
	}
	if _, err := s.Recharge(ctx, RechargeRequest{UserID: "u1", SKU: 9014, OutBusinessNo: "b1"}); err != nil {
		t.Fatalf("recharge after the top-up: %v, want the new stock (a stale sold-out flag answered)", err)
	}
}

// TestAddSKUStockAnswersOnceDurable checks that a SKU top-up whose SQL step committed
// answers its new count even when the cache write after it fails, and that
// RaiseSKUTotals, run by the reconcile job, makes the units grantable.
func TestAddSKUStockAnswersOnceDurable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var store *fakeStockStore
	var logs bytes.Buffer
	s, _, stock, _ := newTestService(t, time.Date(2026, 11, 22, 10, 0, 0, 0, shanghai), func(o *Options) {
		store = &fakeStockStore{configs: o.Configs.(fakeConfigs)}
		o.StockStore = store
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	for i := range 3 {
		_, err := s.Recharge(ctx, RechargeRequest{UserID: "u1", SKU: 9014, OutBusinessNo: fmt.Sprint("a", i)})
		if (i < 2) != (err == nil) {
			t.Fatalf("recharge %d of stock 2: %v", i, err)
		}
	}
	stock.TopUpFn = func(int64, int64) (bool, error) { return false, errors.New("redis down") }
	total, err := s.AddSKUStock(ctx, 9014, 3)
	if err != nil || total != 5 {
		t.Fatalf("top-up whose cache write failed after the SQL add: %d %v, want 5 and no error", total, err)
	}
	if !strings.Contains(logs.String(), "redis down") {
		t.Errorf("the failed cache write is not logged:\n%s", logs.String())
	}
	if _, err := s.Recharge(ctx, RechargeRequest{UserID: "u1", SKU: 9014, OutBusinessNo: "b0"}); !errors.Is(err, ErrSKUStockExhausted) {
		t.Fatalf("recharge before the cache knows the new units: %v", err)
	}
	var raised []int64
	stock.TopUpFn = func(sku, total int64) (bool, error) {
		stock.mu.Lock()
		defer stock.mu.Unlock()
		raised = append(raised, sku, total)
		stock.left[sku] = total - int64(stock.taken)
		return true, nil
	}
	if err := s.RaiseSKUTotals(ctx, []int64{9014}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(raised, []int64{9014, 5}) {
		t.Fatalf("raised %v, want sku 9014 to its stock_count 5", raised)
	}
	for i := range 4 {
		_, err := s.Recharge(ctx, RechargeRequest{UserID: "u1", SKU: 9014, OutBusinessNo: fmt.Sprint("c", i)})
		if (i < 3) != (err == nil) {
			t.Fatalf("recharge %d after the reconcile raised the total: %v, want exactly the 3 new units", i, err)
		}
	}
}
