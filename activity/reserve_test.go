package activity

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// syncingStockStore is a StockStore that also records the watermarks ReserveSKU makes
// durable (IssuedSyncer); Err, when set, fails the sync.
type syncingStockStore struct {
	fakeStockStore
	Err error

	mu     sync.Mutex
	issued map[int64]int64
}

func (f *syncingStockStore) SyncSKUIssued(_ context.Context, sku, issued int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return f.Err
	}
	if f.issued == nil {
		f.issued = map[int64]int64{}
	}
	f.issued[sku] = max(f.issued[sku], issued)
	return nil
}

// countingHot is a HotQuota that counts raises and keeps the last quota raised per user.
type countingHot struct {
	mu     sync.Mutex
	raises int
	last   map[string]Quota
}

func (h *countingHot) Raise(_ context.Context, key QuotaKey, q Quota) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.raises++
	if h.last == nil {
		h.last = map[string]Quota{}
	}
	h.last[key.UserID] = q.Clone()
	return nil
}

func (h *countingHot) Read(context.Context, QuotaKey) (Quota, bool, error) {
	return Quota{}, false, nil
}

// TestReserveSKU: a reservation takes all its units or none, only from an open activity's
// SKU, announces the SKU's last unit and makes the watermark durable before it answers.
func TestReserveSKU(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var (
		store *syncingStockStore
		zero  = &fakeStockZero{}
	)
	s, _, stock, _ := newTestService(t, time.Date(2026, 11, 22, 10, 0, 0, 0, shanghai), func(o *Options) {
		store = &syncingStockStore{fakeStockStore: fakeStockStore{configs: o.Configs.(fakeConfigs)}}
		o.StockStore, o.StockZero = store, zero
	})
	for _, tc := range []struct {
		name  string
		sku   int64
		units int64
		want  error
	}{
		{"more than left", 9014, 3, ErrSKUStockExhausted},
		{"closed activity", 9015, 1, ErrActivityNotOpen},
		{"unknown sku", 1, 1, ErrSKUNotFound},
		{"no units", 9014, 0, ErrInvalidUnits},
		{"negative units", 9014, -1, ErrInvalidUnits},
	} {
		if err := s.ReserveSKU(ctx, tc.sku, tc.units); !errors.Is(err, tc.want) {
			t.Errorf("%s: ReserveSKU(%d, %d) = %v, want %v", tc.name, tc.sku, tc.units, err, tc.want)
		}
	}
	if stock.taken != 0 || stock.left[9014] != 2 || len(store.issued) != 0 || len(zero.calls()) != 0 {
		t.Fatalf("refused reservations changed stock: taken %d, left %d, synced %v, announced %v",
			stock.taken, stock.left[9014], store.issued, zero.calls())
	}
	if err := s.ReserveSKU(ctx, 9014, 2); err != nil {
		t.Fatal(err)
	}
	if stock.taken != 2 || stock.left[9014] != 0 {
		t.Errorf("reserving 2 of 2: taken %d, left %d", stock.taken, stock.left[9014])
	}
	if store.issued[9014] != 2 {
		t.Errorf("durable watermark %d after reserving the 2 units, want 2", store.issued[9014])
	}
	if got := zero.calls(); len(got) != 1 || got[0] != 9014 {
		t.Errorf("stock zero announcements %v, want [9014]", got)
	}
	if err := s.ReserveSKU(ctx, 9014, 1); !errors.Is(err, ErrSKUStockExhausted) {
		t.Errorf("reserve from an empty sku: %v", err)
	}
	// A recharge no longer finds the reserved units.
	if _, err := s.Recharge(ctx, RechargeRequest{UserID: "u1", SKU: 9014, OutBusinessNo: "after"}); !errors.Is(err, ErrSKUStockExhausted) {
		t.Errorf("recharge after the stock was reserved: %v", err)
	}
}

// TestReserveSKUNotDurable: a reservation whose watermark cannot be written fails; its
// units stay taken (undersold), so the caller arms nothing on them.
func TestReserveSKUNotDurable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	boom := errors.New("config database down")
	s, _, stock, _ := newTestService(t, time.Date(2026, 11, 22, 10, 0, 0, 0, shanghai), func(o *Options) {
		o.StockStore = &syncingStockStore{fakeStockStore: fakeStockStore{configs: o.Configs.(fakeConfigs)}, Err: boom}
	})
	if err := s.ReserveSKU(ctx, 9014, 1); !errors.Is(err, boom) {
		t.Fatalf("reserve with the sync failing: %v", err)
	}
	if stock.taken != 1 || stock.left[9014] != 1 {
		t.Errorf("taken %d, left %d: the unit should stay taken", stock.taken, stock.left[9014])
	}
}

// dupOnceUsers fails the first recharge as a colliding order id would (ErrDuplicateOrder
// with nothing written), then behaves as fakeUsers.
type dupOnceUsers struct {
	*fakeUsers
	once sync.Once
}

func (d *dupOnceUsers) Recharge(ctx context.Context, key QuotaKey, order RechargeOrder, add func(*Quota)) error {
	collided := false
	d.once.Do(func() { collided = true })
	if collided {
		return ErrDuplicateOrder
	}
	return d.fakeUsers.Recharge(ctx, key, order, add)
}

// TestGrantReserved: a reserved grant recharges the SKU's count once per business number
// without taking stock or checking the activity's state, and raises the hot quota.
func TestGrantReserved(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	hot := &countingHot{}
	s, users, stock, _ := newTestService(t, time.Date(2026, 11, 22, 10, 0, 0, 0, shanghai), func(o *Options) { o.Hot = hot })
	if err := s.ReserveSKU(ctx, 9014, 1); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := s.GrantReserved(ctx, "u1", 9014, "rain_1_u1_1"); err != nil {
			t.Fatalf("grant reserved: %v", err)
		}
	}
	if stock.taken != 1 {
		t.Errorf("grants took stock: %d units taken, want the 1 reserved", stock.taken)
	}
	if len(users.recharges) != 1 || users.recharges["rain_1_u1_1"].State != RechargeCompleted {
		t.Errorf("recharge orders %+v, want one completed", users.recharges)
	}
	want := View{Total: 3, TotalSurplus: 3, Day: 2, DaySurplus: 2, Month: 3, MonthSurplus: 3}
	if v, err := s.Account(ctx, "u1", 1); err != nil || v != want {
		t.Errorf("view after repeated grants: %+v %v, want %+v", v, err, want)
	}
	if hot.raises != 1 || hot.last["u1"].View() != want {
		t.Errorf("hot quota raised %d times to %+v, want once to %+v", hot.raises, hot.last["u1"].View(), want)
	}
	// The closed activity's SKU is granted all the same: the unit was reserved before.
	if err := s.GrantReserved(ctx, "u2", 9015, "rain_1_u2_1"); err != nil {
		t.Errorf("grant of a closed activity's sku: %v", err)
	}
	for _, tc := range []struct {
		user, no string
		sku      int64
		want     error
	}{
		{"", "rain_1__1", 9014, ErrInvalidUserID},
		{"u3", "", 9014, ErrInvalidBusinessNo},
		{"u3", "rain_1_u3_1", 1, ErrSKUNotFound},
	} {
		if err := s.GrantReserved(ctx, tc.user, tc.sku, tc.no); !errors.Is(err, tc.want) {
			t.Errorf("GrantReserved(%q, %d, %q) = %v, want %v", tc.user, tc.sku, tc.no, err, tc.want)
		}
	}
}

// TestGrantReservedOrderIDCollision: a duplicate that is not the business number (an
// order id taken in the same millisecond) is tried again, not taken for done.
func TestGrantReservedOrderIDCollision(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var users *dupOnceUsers
	s, _, _, _ := newTestService(t, time.Date(2026, 11, 22, 10, 0, 0, 0, shanghai), func(o *Options) {
		users = &dupOnceUsers{fakeUsers: o.Users.(*fakeUsers)}
		o.Users = users
	})
	if err := s.GrantReserved(ctx, "u1", 9014, "rain_1_u1_1"); err != nil {
		t.Fatal(err)
	}
	if o, ok := users.recharges["rain_1_u1_1"]; !ok || o.State != RechargeCompleted {
		t.Fatalf("no completed recharge after an order id collision: %+v", users.recharges)
	}
}
