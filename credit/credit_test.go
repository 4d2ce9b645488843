package credit

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/outbox"
)

func TestOrderCheck(t *testing.T) {
	t.Parallel()
	ok := Order{UserID: "xiaofuge", OrderID: "1", Name: NameAward, Type: Forward, Amount: 1, OutBusinessNo: "o1"}
	for _, tc := range []struct {
		name  string
		edit  func(o *Order)
		valid bool
	}{
		{"valid forward", func(*Order) {}, true},
		{"valid reverse", func(o *Order) { o.Type = Reverse }, true},
		{"user of 32", func(o *Order) { o.UserID = strings.Repeat("u", 32) }, true},
		{"business number of 64", func(o *Order) { o.OutBusinessNo = strings.Repeat("9", 64) }, true},
		{"no user", func(o *Order) { o.UserID = "" }, false},
		{"user of 33", func(o *Order) { o.UserID = strings.Repeat("u", 33) }, false},
		{"zero amount", func(o *Order) { o.Amount = 0 }, false},
		{"negative amount", func(o *Order) { o.Amount = -100 }, false},
		{"no type", func(o *Order) { o.Type = "" }, false},
		{"unknown type", func(o *Order) { o.Type = "sideways" }, false},
		{"no business number", func(o *Order) { o.OutBusinessNo = "" }, false},
		{"business number of 65", func(o *Order) { o.OutBusinessNo = strings.Repeat("9", 65) }, false},
	} {
		o := ok
		tc.edit(&o)
		err := o.Check()
		if tc.valid && err != nil || !tc.valid && !errors.Is(err, ErrInvalidTrade) {
			t.Errorf("%s: Check = %v, want valid=%v", tc.name, err, tc.valid)
		}
	}
}

func TestAccountApply(t *testing.T) {
	t.Parallel()
	acc := Account{UserID: "u", Total: 1000, Available: 600}
	for _, tc := range []struct {
		name string
		o    Order
		want Account
		err  error
	}{
		{"forward adds to both", Order{Type: Forward, Amount: 250}, Account{UserID: "u", Total: 1250, Available: 850}, nil},
		{"reverse spends available", Order{Type: Reverse, Amount: 100}, Account{UserID: "u", Total: 1000, Available: 500}, nil},
		{"reverse of everything", Order{Type: Reverse, Amount: 600}, Account{UserID: "u", Total: 1000, Available: 0}, nil},
		{"reverse beyond available", Order{Type: Reverse, Amount: 601}, acc, ErrInsufficient},
	} {
		got, err := acc.Apply(tc.o)
		if !errors.Is(err, tc.err) || tc.err == nil && err != nil || got != tc.want {
			t.Errorf("%s: Apply = %+v, %v; want %+v, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
	if _, err := (Account{}).Apply(Order{Type: Reverse, Amount: 1}); !errors.Is(err, ErrInsufficient) {
		t.Errorf("spend from an empty account: %v", err)
	}
	// Apply is on a value: the receiver is unchanged.
	if acc.Available != 600 || acc.Total != 1000 {
		t.Errorf("Apply changed its receiver: %+v", acc)
	}
}

func TestIsPermanent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("x: %w", ErrInvalidTrade), true},
		{fmt.Errorf("x: %w", ErrAwardNotFound), true},
		{fmt.Errorf("x: %w", activity.ErrRechargeNotFound), true},
		{fmt.Errorf("x: %w", ErrInsufficient), false},
		{fmt.Errorf("x: %w", ErrDuplicate), false},
		{errors.New("db down"), false},
		{nil, false},
	} {
		if got := IsPermanent(tc.err); got != tc.want {
			t.Errorf("IsPermanent(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// fakeStore is a credit Store with accounts in a map; ApplyFn, when set, gives each
// change's outcome (nil otherwise); changes are recorded either way.
type fakeStore struct {
	mu        sync.Mutex
	accounts  map[string]Account
	applied   [][]Change
	AccountFn func(userID string) error
	ApplyFn   func(ch Change) error
}

func (f *fakeStore) CreditAccount(_ context.Context, userID string) (Account, error) {
	if f.AccountFn != nil {
		if err := f.AccountFn(userID); err != nil {
			return Account{}, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accounts[userID], nil
}

func (f *fakeStore) ApplyCredit(_ context.Context, changes []Change) []error {
	f.mu.Lock()
	f.applied = append(f.applied, append([]Change(nil), changes...))
	f.mu.Unlock()
	errs := make([]error, len(changes))
	if f.ApplyFn != nil {
		for i, ch := range changes {
			errs[i] = f.ApplyFn(ch)
		}
	}
	return errs
}

// fakeActivities records the activity calls an exchange makes.
type fakeActivities struct {
	mu         sync.Mutex
	skus       map[int64]activity.SKU
	unpaid     map[string]activity.RechargeOrder // by user id
	recharges  []activity.RechargeRequest
	unpaidAsks int
	completed  []string // userID/outBusinessNo

	UnpaidFn   func() error
	RechargeFn func(req activity.RechargeRequest) error
	CompleteFn func(userID, outBusinessNo string) error
}

func (f *fakeActivities) SKU(_ context.Context, sku int64) (activity.SKU, error) {
	k, ok := f.skus[sku]
	if !ok {
		return activity.SKU{}, fmt.Errorf("sku %d: %w", sku, activity.ErrSKUNotFound)
	}
	return k, nil
}

func (f *fakeActivities) UnpaidOrder(_ context.Context, userID string, sku int64) (activity.RechargeOrder, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unpaidAsks++
	if f.UnpaidFn != nil {
		if err := f.UnpaidFn(); err != nil {
			return activity.RechargeOrder{}, false, err
		}
	}
	o, ok := f.unpaid[userID]
	return o, ok && o.SKU == sku, nil
}

func (f *fakeActivities) Recharge(_ context.Context, req activity.RechargeRequest) (activity.RechargeOrder, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recharges = append(f.recharges, req)
	if f.RechargeFn != nil {
		if err := f.RechargeFn(req); err != nil {
			return activity.RechargeOrder{}, err
		}
	}
	k := f.skus[req.SKU]
	return activity.RechargeOrder{UserID: req.UserID, SKU: req.SKU, ActivityID: k.ActivityID, OrderID: "r-" + req.OutBusinessNo,
		Count: k.Count, PayAmount: k.Price, State: activity.RechargeWaitPay, OutBusinessNo: req.OutBusinessNo}, nil
}

func (f *fakeActivities) CompletePaid(_ context.Context, userID, outBusinessNo string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.completed = append(f.completed, userID+"/"+outBusinessNo)
	if f.CompleteFn != nil {
		return f.CompleteFn(userID, outBusinessNo)
	}
	return nil
}

var testSKUs = map[int64]activity.SKU{
	9011: {SKU: 9011, ActivityID: 100301, CountID: 11101, Price: 500, Count: activity.Count{ID: 11101, Total: 1, Day: 1, Month: 1}},
}

var (
	businessNoPattern = regexp.MustCompile(`^[0-9]{12}$`)
	orderIDPattern    = regexp.MustCompile(`^[0-9]{20}$`)
)

// checkPayment checks the one change an exchange applies: a reverse trade of the order's
// price keyed by its business number, and the credit_adjust_success task announcing it.
func checkPayment(t *testing.T, applied [][]Change, user string, order activity.RechargeOrder, now time.Time) {
	t.Helper()
	if len(applied) != 1 || len(applied[0]) != 1 {
		t.Fatalf("ApplyCredit calls %+v, want one with one change", applied)
	}
	ch := applied[0][0]
	if ch.UserID != user || ch.Order == nil || ch.Task == nil || ch.AwardOrderID != "" {
		t.Fatalf("change %+v: want %s's trade and task, no award", ch, user)
	}
	o := *ch.Order
	if o.UserID != user || o.Type != Reverse || o.Name != NameExchange || o.Amount != order.PayAmount ||
		o.OutBusinessNo != order.OutBusinessNo || !orderIDPattern.MatchString(o.OrderID) {
		t.Errorf("trade %+v: want a reverse exchange of %s keyed by %s", o, order.PayAmount, order.OutBusinessNo)
	}
	if err := o.Check(); err != nil {
		t.Errorf("trade fails its own check: %v", err)
	}
	task := *ch.Task
	if task.UserID != user || task.Topic != TopicCreditAdjustSuccess || task.MessageID != o.OrderID || task.State != outbox.Create {
		t.Errorf("task %+v: want %s's credit_adjust_success in create, message id %s", task, user, o.OrderID)
	}
	m, err := outbox.Decode[AdjustSuccess]([]byte(task.Message))
	if err != nil {
		t.Fatalf("task message: %v", err)
	}
	want := AdjustSuccess{UserID: user, OrderID: o.OrderID, Amount: order.PayAmount.String(), OutBusinessNo: order.OutBusinessNo}
	if m.Data != want || m.ID != o.OrderID || m.Timestamp != now.UnixMilli() {
		t.Errorf("message %+v, want id %s, time %d and data %+v", m, o.OrderID, now.UnixMilli(), want)
	}
}

func TestExchangeSKUNewOrder(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, available := range []money.Cents{1000, 500} { // plenty, and exactly the price
		t.Run(available.String(), func(t *testing.T) {
			t.Parallel()
			store := &fakeStore{accounts: map[string]Account{"u": {UserID: "u", Total: 2000, Available: available}}}
			acts := &fakeActivities{skus: testSKUs}
			s := NewService(store, acts, func() time.Time { return now })
			order, err := s.ExchangeSKU(context.Background(), "u", 9011)
			if err != nil {
				t.Fatal(err)
			}
			if len(acts.recharges) != 1 {
				t.Fatalf("recharges %+v, want one", acts.recharges)
			}
			req := acts.recharges[0]
			if req.UserID != "u" || req.SKU != 9011 || req.Policy != activity.PolicyCreditPay || !businessNoPattern.MatchString(req.OutBusinessNo) {
				t.Errorf("recharge %+v: want a credit-pay recharge of 9011 with a 12-digit business number", req)
			}
			if order.OutBusinessNo != req.OutBusinessNo || order.PayAmount != 500 || order.State != activity.RechargeWaitPay {
				t.Errorf("returned order %+v, want the recharge's wait_pay order", order)
			}
			checkPayment(t, store.applied, "u", order, now)
		})
	}
}

func TestExchangeSKUReusesUnpaidOrder(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	unpaid := activity.RechargeOrder{UserID: "u", SKU: 9011, OrderID: "r-old", PayAmount: 500, State: activity.RechargeWaitPay,
		OutBusinessNo: "000000000042"}
	store := &fakeStore{accounts: map[string]Account{"u": {UserID: "u", Total: 500, Available: 500}}}
	acts := &fakeActivities{skus: testSKUs, unpaid: map[string]activity.RechargeOrder{"u": unpaid}}
	s := NewService(store, acts, func() time.Time { return now })
	order, err := s.ExchangeSKU(context.Background(), "u", 9011)
	if err != nil {
		t.Fatal(err)
	}
	if len(acts.recharges) != 0 {
		t.Errorf("recharged %+v though an unpaid order exists: a second unit of stock taken", acts.recharges)
	}
	if order != unpaid {
		t.Errorf("returned %+v, want the unpaid order %+v", order, unpaid)
	}
	checkPayment(t, store.applied, "u", unpaid, now)
}

// TestExchangeSKURefusals checks that each refusal happens before the steps after it:
// too little credit takes no stock and writes no trade.
func TestExchangeSKURefusals(t *testing.T) {
	t.Parallel()
	down := errors.New("db down")
	for _, tc := range []struct {
		name       string
		user       string
		sku        int64
		available  money.Cents
		accountErr error
		unpaidErr  error
		rechargeFn func(activity.RechargeRequest) error
		applyErr   error
		want       error
		// how far the exchange got
		wantUnpaidAsks, wantRecharges, wantApplies int
	}{
		{name: "no user", user: "", sku: 9011, available: 1000, want: activity.ErrInvalidUserID},
		{name: "user too long", user: strings.Repeat("u", 33), sku: 9011, available: 1000, want: activity.ErrInvalidUserID},
		{name: "unknown sku", user: "u", sku: 1, available: 1000, want: activity.ErrSKUNotFound},
		{name: "account error", user: "u", sku: 9011, accountErr: down, want: down},
		{name: "too little credit", user: "u", sku: 9011, available: 499, want: ErrInsufficient},
		{name: "no account", user: "u", sku: 9011, available: 0, want: ErrInsufficient},
		{name: "unpaid lookup fails", user: "u", sku: 9011, available: 1000, unpaidErr: down, want: down, wantUnpaidAsks: 1},
		{name: "stock exhausted", user: "u", sku: 9011, available: 1000,
			rechargeFn: func(activity.RechargeRequest) error { return activity.ErrSKUStockExhausted },
			want:       activity.ErrSKUStockExhausted, wantUnpaidAsks: 1, wantRecharges: 1},
		{name: "stock unknown while rebuilt", user: "u", sku: 9011, available: 1000,
			rechargeFn: func(activity.RechargeRequest) error { return activity.ErrSKUStockMissing },
			want:       activity.ErrStockUnknown, wantUnpaidAsks: 1, wantRecharges: 1},
		{name: "spent meanwhile", user: "u", sku: 9011, available: 1000, applyErr: fmt.Errorf("apply: %w", ErrInsufficient),
			want: ErrInsufficient, wantUnpaidAsks: 1, wantRecharges: 1, wantApplies: 1},
		{name: "store fails", user: "u", sku: 9011, available: 1000, applyErr: down,
			want: down, wantUnpaidAsks: 1, wantRecharges: 1, wantApplies: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := &fakeStore{accounts: map[string]Account{tc.user: {UserID: tc.user, Total: tc.available, Available: tc.available}}}
			if tc.accountErr != nil {
				store.AccountFn = func(string) error { return tc.accountErr }
			}
			if tc.applyErr != nil {
				store.ApplyFn = func(Change) error { return tc.applyErr }
			}
			acts := &fakeActivities{skus: testSKUs, RechargeFn: tc.rechargeFn}
			if tc.unpaidErr != nil {
				acts.UnpaidFn = func() error { return tc.unpaidErr }
			}
			s := NewService(store, acts, nil)
			order, err := s.ExchangeSKU(context.Background(), tc.user, tc.sku)
			if !errors.Is(err, tc.want) || order != (activity.RechargeOrder{}) {
				t.Errorf("ExchangeSKU = %+v, %v; want no order, %v", order, err, tc.want)
			}
			if acts.unpaidAsks != tc.wantUnpaidAsks || len(acts.recharges) != tc.wantRecharges || len(store.applied) != tc.wantApplies {
				t.Errorf("got to %d unpaid lookups, %d recharges, %d credit applies; want %d, %d, %d",
					acts.unpaidAsks, len(acts.recharges), len(store.applied), tc.wantUnpaidAsks, tc.wantRecharges, tc.wantApplies)
			}
		})
	}
}

func TestAdjustSucceeded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"completes", nil},
		{"unknown order", activity.ErrRechargeNotFound},
		{"db down", errors.New("db down")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			acts := &fakeActivities{skus: testSKUs, CompleteFn: func(string, string) error { return tc.err }}
			s := NewService(&fakeStore{}, acts, nil)
			err := s.AdjustSucceeded(context.Background(), AdjustSuccess{UserID: "u", OrderID: "t1", Amount: "5.00", OutBusinessNo: "000000000042"})
			if tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
				t.Errorf("AdjustSucceeded = %v, want %v", err, tc.err)
			}
			if len(acts.completed) != 1 || acts.completed[0] != "u/000000000042" {
				t.Errorf("CompletePaid calls %v, want one for u's order 000000000042", acts.completed)
			}
		})
	}
}

func TestAccount(t *testing.T) {
	t.Parallel()
	store := &fakeStore{accounts: map[string]Account{"u": {UserID: "u", Total: 1019, Available: 19}}}
	s := NewService(store, &fakeActivities{}, nil)
	ctx := context.Background()
	if acc, err := s.Account(ctx, "u"); err != nil || acc.Total != 1019 || acc.Available != 19 {
		t.Errorf("Account(u) = %+v, %v", acc, err)
	}
	if acc, err := s.Account(ctx, "nobody"); err != nil || acc != (Account{}) {
		t.Errorf("Account(nobody) = %+v, %v; want zero", acc, err)
	}
	if _, err := s.Account(ctx, ""); !errors.Is(err, activity.ErrInvalidUserID) {
		t.Errorf("Account of no user: %v", err)
	}
}

// TestGuardedExchangeCommitsBeforeTakingStock runs exchanges behind a guard with a 10 ms
// budget. One over its budget before its commit point answers ErrTimeout (0006) and takes
// neither SKU stock nor credit. One past it, whose stock deduction or debit is slow, is
// waited for and answers its order.
func TestGuardedExchangeCommitsBeforeTakingStock(t *testing.T) {
	t.Parallel()
	settings := guard.DefaultSettings()
	settings.RateLimit, settings.DrawTimeout = false, 10*time.Millisecond
	g := guard.New(guard.Options{Defaults: settings, CommitTimeout: time.Minute})
	ctx := context.Background()
	store := &fakeStore{accounts: map[string]Account{"u": {UserID: "u", Total: 2000, Available: 2000}}}
	acts := &fakeActivities{skus: testSKUs, unpaid: map[string]activity.RechargeOrder{}}
	s := NewService(store, acts, nil)

	done := make(chan error, 1)
	answer := g.Do(ctx, "u", func(ctx context.Context) error {
		<-ctx.Done() // the reads before the commit point were slow: the budget ran out
		_, err := s.ExchangeSKU(ctx, "u", 9011)
		done <- err
		return err
	})
	own := <-done
	if !errors.Is(answer, guard.ErrTimeout) || !errors.Is(own, guard.ErrTimeout) || len(acts.recharges) != 0 || len(store.applied) != 0 {
		t.Fatalf("exchange over its budget: answered %v, returned %v, recharges %v, credit changes %v; want ErrTimeout and nothing taken",
			answer, own, acts.recharges, store.applied)
	}

	slow := func() { time.Sleep(50 * time.Millisecond) } // the step is slow, past the budget
	acts.RechargeFn = func(activity.RechargeRequest) error { slow(); return nil }
	var order activity.RechargeOrder
	err := g.Do(ctx, "u", func(ctx context.Context) error {
		var err error
		order, err = s.ExchangeSKU(ctx, "u", 9011)
		return err
	})
	if err != nil || order.SKU != 9011 || len(acts.recharges) != 1 || len(store.applied) != 1 {
		t.Fatalf("exchange whose stock deduction outlasts the budget: %v, %+v, %d recharges, %d debits; want its order",
			err, order, len(acts.recharges), len(store.applied))
	}
	acts.RechargeFn = nil
	acts.unpaid["u"] = order // paying an unpaid order again takes no stock, only credit
	store.ApplyFn = func(Change) error { slow(); return nil }
	err = g.Do(ctx, "u", func(ctx context.Context) error { _, err := s.ExchangeSKU(ctx, "u", 9011); return err })
	if err != nil || len(acts.recharges) != 1 || len(store.applied) != 2 {
		t.Fatalf("exchange whose debit outlasts the budget: %v, %d recharges, %d debits; want it paid", err, len(acts.recharges), len(store.applied))
	}
}
