package rebate

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
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/outbox"
)

// fakeConfigs serves rebate rows by behaviour; ConfigsFn, when set, answers instead.
type fakeConfigs struct {
	rows      map[Behavior][]Config
	ConfigsFn func(b Behavior) ([]Config, error)
}

func (f fakeConfigs) BehaviorRebates(_ context.Context, b Behavior) ([]Config, error) {
	if f.ConfigsFn != nil {
		return f.ConfigsFn(b)
	}
	return f.rows[b], nil
}

// fakeStore keeps rebate orders by biz id and refuses a repeated one as the unique key does.
type fakeStore struct {
	mu     sync.Mutex
	orders map[string]Order // by biz id
	tasks  []outbox.Task
	saves  int
	SaveFn func(userID string, orders []Order, tasks []outbox.Task) error // injects failures when set
}

func newFakeStore() *fakeStore { return &fakeStore{orders: map[string]Order{}} }

func (f *fakeStore) SaveRebates(_ context.Context, userID string, orders []Order, tasks []outbox.Task) error {
	if f.SaveFn != nil {
		if err := f.SaveFn(userID, orders, tasks); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.saves++
	for _, o := range orders {
		if _, ok := f.orders[o.BizID]; ok {
			return fmt.Errorf("biz id %s: %w", o.BizID, ErrDuplicate)
		}
	}
	for _, o := range orders {
		f.orders[o.BizID] = o
	}
	f.tasks = append(f.tasks, tasks...)
	return nil
}

func (f *fakeStore) HasRebate(_ context.Context, userID string, b Behavior, outBusinessNo string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range f.orders {
		if o.UserID == userID && o.Behavior == b && o.OutBusinessNo == outBusinessNo {
			return true, nil
		}
	}
	return false, nil
}

// demoConfigs are big-market's demo rebate rows.
var demoConfigs = map[Behavior][]Config{
	BehaviorSign: {
		{Behavior: BehaviorSign, Desc: "签到返利-sku额度", Type: TypeSKU, Value: "9011"},
		{Behavior: BehaviorSign, Desc: "签到返利-积分", Type: TypeIntegral, Value: "10"},
	},
	BehaviorOpenAIPay: {
		{Behavior: BehaviorOpenAIPay, Desc: "支付返利", Type: TypeIntegral, Value: "2.5"},
	},
}

var orderIDPattern = regexp.MustCompile(`^[0-9]{20}$`)

func TestBehave(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	store := newFakeStore()
	s := NewService(Options{Configs: fakeConfigs{rows: demoConfigs}, Store: store, Now: func() time.Time { return now }})
	ctx := context.Background()

	ids, err := s.Behave(ctx, "xiaofuge", BehaviorSign, "20260301")
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids[0] == ids[1] {
		t.Fatalf("order ids %v, want two distinct", ids)
	}
	if len(store.orders) != 2 || len(store.tasks) != 2 || store.saves != 1 {
		t.Fatalf("saved %d orders and %d tasks in %d saves, want 2 and 2 in one", len(store.orders), len(store.tasks), store.saves)
	}
	for i, c := range demoConfigs[BehaviorSign] {
		bizID := "xiaofuge_" + string(c.Type) + "_20260301"
		o, ok := store.orders[bizID]
		if !ok {
			t.Errorf("no order with biz id %s: %v", bizID, store.orders)
			continue
		}
		if o.OrderID != ids[i] || !orderIDPattern.MatchString(o.OrderID) || o.UserID != "xiaofuge" || o.Behavior != BehaviorSign ||
			o.Desc != c.Desc || o.Type != c.Type || o.Value != c.Value || o.OutBusinessNo != "20260301" {
			t.Errorf("order %+v does not match config %+v and id %s", o, c, ids[i])
		}
		task := store.tasks[i]
		if task.Topic != TopicSendRebate || task.MessageID != ids[i] || task.UserID != "xiaofuge" || task.State != outbox.Create {
			t.Errorf("task %+v: want a send_rebate task in create with message id %s", task, ids[i])
		}
		m, err := outbox.Decode[SendRebate]([]byte(task.Message))
		if err != nil {
			t.Fatalf("task message: %v", err)
		}
		want := SendRebate{UserID: "xiaofuge", RebateDesc: c.Desc, RebateType: c.Type, RebateConfig: c.Value, BizID: bizID}
		if m.Data != want || m.ID != ids[i] || m.Timestamp != now.UnixMilli() {
			t.Errorf("message %+v, want id %s, time %d and data %+v", m, ids[i], now.UnixMilli(), want)
		}
	}

	// The same business number again: the store's unique key refuses it.
	if _, err := s.Behave(ctx, "xiaofuge", BehaviorSign, "20260301"); !errors.Is(err, ErrDuplicate) {
		t.Errorf("repeat behaviour: %v, want ErrDuplicate", err)
	}
	if len(store.orders) != 2 || len(store.tasks) != 2 {
		t.Errorf("repeat wrote something: %d orders, %d tasks", len(store.orders), len(store.tasks))
	}
	// Another user, or another number, is another rebate.
	if _, err := s.Behave(ctx, "other", BehaviorSign, "20260301"); err != nil {
		t.Errorf("another user: %v", err)
	}
	if _, err := s.Behave(ctx, "xiaofuge", BehaviorOpenAIPay, "pay-7"); err != nil {
		t.Errorf("another behaviour: %v", err)
	}
}

func TestBehaveRefusals(t *testing.T) {
	t.Parallel()
	configsDown := errors.New("configs down")
	storeDown := errors.New("store down")
	for _, tc := range []struct {
		name       string
		user       string
		behavior   Behavior
		outBizNo   string
		configsErr error
		saveErr    error
		want       error
	}{
		{name: "empty user", user: "", behavior: BehaviorSign, outBizNo: "20260301", want: ErrInvalid},
		{name: "user too long", user: strings.Repeat("u", 33), behavior: BehaviorSign, outBizNo: "20260301", want: ErrInvalid},
		{name: "empty business number", user: "u", behavior: BehaviorSign, outBizNo: "", want: ErrInvalid},
		{name: "empty behaviour", user: "u", behavior: "", outBizNo: "1", want: ErrInvalid},
		// "u_integral_" is 11 characters: 53 more make 64, the widest biz id that fits.
		{name: "biz id too long", user: "u", behavior: BehaviorSign, outBizNo: strings.Repeat("9", 54), want: ErrInvalid},
		{name: "no rebate row", user: "u", behavior: "share", outBizNo: "1", want: ErrNoRebate},
		{name: "configs error", user: "u", behavior: BehaviorSign, outBizNo: "1", configsErr: configsDown, want: configsDown},
		{name: "store error", user: "u", behavior: BehaviorSign, outBizNo: "1", saveErr: storeDown, want: storeDown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := newFakeStore()
			if tc.saveErr != nil {
				store.SaveFn = func(string, []Order, []outbox.Task) error { return tc.saveErr }
			}
			cfg := fakeConfigs{rows: demoConfigs}
			if tc.configsErr != nil {
				cfg.ConfigsFn = func(Behavior) ([]Config, error) { return nil, tc.configsErr }
			}
			s := NewService(Options{Configs: cfg, Store: store})
			ids, err := s.Behave(context.Background(), tc.user, tc.behavior, tc.outBizNo)
			if !errors.Is(err, tc.want) || ids != nil {
				t.Errorf("Behave = %v, %v; want nil, %v", ids, err, tc.want)
			}
			if len(store.orders) != 0 {
				t.Errorf("refused behaviour saved %v", store.orders)
			}
		})
	}
}

// TestBehaveWidestBizID checks the boundary of the biz id width: 64 fits.
func TestBehaveWidestBizID(t *testing.T) {
	t.Parallel()
	store := newFakeStore()
	s := NewService(Options{Configs: fakeConfigs{rows: demoConfigs}, Store: store})
	no := strings.Repeat("9", 53) // u_integral_ + 53 = 64; u_sku_ + 53 = 59
	if _, err := s.Behave(context.Background(), "u", BehaviorSign, no); err != nil {
		t.Fatalf("biz id of 64: %v", err)
	}
	if _, ok := store.orders["u_integral_"+no]; !ok || len("u_integral_"+no) != 64 {
		t.Errorf("orders %v, want the 64-character biz id saved", store.orders)
	}
}

// TestSignInDay pins the clock just after midnight UTC, which is already the morning in
// Shanghai: the sign-in's business number is the day in the configured zone.
func TestSignInDay(t *testing.T) {
	t.Parallel()
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Skipf("no zone database: %v", err)
	}
	for _, tc := range []struct {
		name string
		now  time.Time
		loc  *time.Location
		want string
	}{
		{"utc default, before midnight", time.Date(2026, 2, 28, 23, 59, 0, 0, time.UTC), nil, "20260228"},
		{"shanghai, utc evening is the next morning", time.Date(2026, 2, 28, 23, 59, 0, 0, time.UTC), shanghai, "20260301"},
		{"shanghai, utc 15:59 is still today", time.Date(2026, 2, 28, 15, 59, 59, 0, time.UTC), shanghai, "20260228"},
		{"shanghai, utc 16:00 is tomorrow", time.Date(2026, 2, 28, 16, 0, 0, 0, time.UTC), shanghai, "20260301"},
		{"clock in another zone", time.Date(2026, 3, 1, 1, 0, 0, 0, shanghai), time.UTC, "20260228"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := newFakeStore()
			s := NewService(Options{Configs: fakeConfigs{rows: demoConfigs}, Store: store,
				Now: func() time.Time { return tc.now }, Location: tc.loc})
			if got := s.Today(); got != tc.want {
				t.Errorf("Today = %s, want %s", got, tc.want)
			}
			ctx := context.Background()
			if ok, err := s.SignedIn(ctx, "u"); ok || err != nil {
				t.Fatalf("SignedIn before signing = %v, %v", ok, err)
			}
			if err := s.SignIn(ctx, "u"); err != nil {
				t.Fatal(err)
			}
			if _, ok := store.orders["u_sku_"+tc.want]; !ok {
				t.Errorf("orders %v, want business number %s", store.orders, tc.want)
			}
			if ok, err := s.SignedIn(ctx, "u"); !ok || err != nil {
				t.Errorf("SignedIn after signing = %v, %v", ok, err)
			}
			if err := s.SignIn(ctx, "u"); !errors.Is(err, ErrDuplicate) {
				t.Errorf("second sign-in the same day: %v, want ErrDuplicate", err)
			}
		})
	}
}

// TestSignInNextDay moves the clock across midnight in Shanghai: the next sign-in is new.
func TestSignInNextDay(t *testing.T) {
	t.Parallel()
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Skipf("no zone database: %v", err)
	}
	var (
		mu  sync.Mutex
		now = time.Date(2026, 2, 28, 15, 59, 0, 0, time.UTC) // 23:59 in Shanghai
	)
	store := newFakeStore()
	s := NewService(Options{Configs: fakeConfigs{rows: demoConfigs}, Store: store, Location: shanghai,
		Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	ctx := context.Background()
	if err := s.SignIn(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute) // 00:01 in Shanghai, still 28 February in UTC
	mu.Unlock()
	if ok, err := s.SignedIn(ctx, "u"); ok || err != nil {
		t.Errorf("SignedIn on the new Shanghai day = %v, %v; want false", ok, err)
	}
	if err := s.SignIn(ctx, "u"); err != nil {
		t.Errorf("sign-in on the new Shanghai day: %v", err)
	}
	if len(store.orders) != 4 {
		t.Errorf("%d orders, want 2 per day", len(store.orders))
	}
}

func TestSignedInInvalidUser(t *testing.T) {
	t.Parallel()
	s := NewService(Options{Configs: fakeConfigs{rows: demoConfigs}, Store: newFakeStore()})
	if _, err := s.SignedIn(context.Background(), ""); !errors.Is(err, ErrInvalid) || !errors.Is(err, activity.ErrInvalidUserID) {
		t.Errorf("SignedIn of no user: %v, want ErrInvalid and activity.ErrInvalidUserID", err)
	}
}

// fakeRecharge records recharge requests; Fn, when set, answers.
type fakeRecharge struct {
	mu   sync.Mutex
	reqs []activity.RechargeRequest
	Fn   func(req activity.RechargeRequest) error
}

func (f *fakeRecharge) Recharge(_ context.Context, req activity.RechargeRequest) (activity.RechargeOrder, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	if f.Fn != nil {
		if err := f.Fn(req); err != nil {
			return activity.RechargeOrder{}, err
		}
	}
	return activity.RechargeOrder{UserID: req.UserID, SKU: req.SKU, OutBusinessNo: req.OutBusinessNo, State: activity.RechargeCompleted}, nil
}

// fakeCredits records credit changes; Fn, when set, gives the one change's outcome.
type fakeCredits struct {
	mu      sync.Mutex
	changes []credit.Change
	Fn      func(ch credit.Change) error
}

func (f *fakeCredits) ApplyCredit(_ context.Context, changes []credit.Change) []error {
	f.mu.Lock()
	f.changes = append(f.changes, changes...)
	f.mu.Unlock()
	errs := make([]error, len(changes))
	if f.Fn != nil {
		for i, ch := range changes {
			errs[i] = f.Fn(ch)
		}
	}
	return errs
}

func TestDeliver(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	down := errors.New("db down")
	for _, tc := range []struct {
		name        string
		msg         SendRebate
		rechargeErr error
		creditErr   error
		want        error // nil: delivered
		wantSKU     int64 // the recharge expected; 0: none
		wantCredit  money.Cents
	}{
		{name: "sku", msg: SendRebate{UserID: "u", RebateType: TypeSKU, RebateConfig: "9011", BizID: "u_sku_20260301"}, wantSKU: 9011},
		{name: "sku already recharged", msg: SendRebate{UserID: "u", RebateType: TypeSKU, RebateConfig: "9011", BizID: "u_sku_1"},
			rechargeErr: fmt.Errorf("recharge: %w", activity.ErrDuplicateOrder), wantSKU: 9011},
		{name: "sku recharge fails", msg: SendRebate{UserID: "u", RebateType: TypeSKU, RebateConfig: "9011", BizID: "u_sku_2"},
			rechargeErr: down, want: down, wantSKU: 9011},
		{name: "sku sold out", msg: SendRebate{UserID: "u", RebateType: TypeSKU, RebateConfig: "9011", BizID: "u_sku_3"},
			rechargeErr: activity.ErrSKUStockExhausted, want: activity.ErrSKUStockExhausted, wantSKU: 9011},
		{name: "sku not a number", msg: SendRebate{UserID: "u", RebateType: TypeSKU, RebateConfig: "abc", BizID: "b"}, want: ErrBadConfig},
		{name: "sku zero", msg: SendRebate{UserID: "u", RebateType: TypeSKU, RebateConfig: "0", BizID: "b"}, want: ErrBadConfig},
		{name: "sku negative", msg: SendRebate{UserID: "u", RebateType: TypeSKU, RebateConfig: "-9011", BizID: "b"}, want: ErrBadConfig},
		{name: "integral", msg: SendRebate{UserID: "u", RebateType: TypeIntegral, RebateConfig: "10", BizID: "u_integral_20260301"},
			wantCredit: 1000},
		{name: "integral with cents", msg: SendRebate{UserID: "u", RebateType: TypeIntegral, RebateConfig: "2.5", BizID: "u_integral_p"},
			wantCredit: 250},
		{name: "integral already credited", msg: SendRebate{UserID: "u", RebateType: TypeIntegral, RebateConfig: "10", BizID: "u_integral_1"},
			creditErr: fmt.Errorf("apply: %w", credit.ErrDuplicate), wantCredit: 1000},
		{name: "integral store fails", msg: SendRebate{UserID: "u", RebateType: TypeIntegral, RebateConfig: "10", BizID: "u_integral_2"},
			creditErr: down, want: down, wantCredit: 1000},
		{name: "integral zero", msg: SendRebate{UserID: "u", RebateType: TypeIntegral, RebateConfig: "0", BizID: "b"}, want: ErrBadConfig},
		{name: "integral negative", msg: SendRebate{UserID: "u", RebateType: TypeIntegral, RebateConfig: "-1", BizID: "b"}, want: ErrBadConfig},
		{name: "integral three decimals", msg: SendRebate{UserID: "u", RebateType: TypeIntegral, RebateConfig: "1.005", BizID: "b"}, want: ErrBadConfig},
		{name: "integral text", msg: SendRebate{UserID: "u", RebateType: TypeIntegral, RebateConfig: "ten", BizID: "b"}, want: ErrBadConfig},
		{name: "unknown type", msg: SendRebate{UserID: "u", RebateType: "coupon", RebateConfig: "1", BizID: "b"}, want: ErrBadConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			recharge := &fakeRecharge{Fn: func(activity.RechargeRequest) error { return tc.rechargeErr }}
			credits := &fakeCredits{Fn: func(credit.Change) error { return tc.creditErr }}
			s := NewService(Options{Configs: fakeConfigs{}, Store: newFakeStore(), Recharge: recharge.Recharge, Credits: credits,
				Now: func() time.Time { return now }})
			err := s.Deliver(context.Background(), tc.msg)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Deliver = %v, want %v", err, tc.want)
			}

			switch {
			case tc.wantSKU == 0 && len(recharge.reqs) != 0:
				t.Errorf("recharged %+v, want nothing", recharge.reqs)
			case tc.wantSKU != 0:
				want := activity.RechargeRequest{UserID: tc.msg.UserID, SKU: tc.wantSKU, OutBusinessNo: tc.msg.BizID, Policy: activity.PolicyFree}
				if len(recharge.reqs) != 1 || recharge.reqs[0] != want {
					t.Errorf("recharges %+v, want one %+v", recharge.reqs, want)
				}
			}

			switch {
			case tc.wantCredit == 0 && len(credits.changes) != 0:
				t.Errorf("credited %+v, want nothing", credits.changes)
			case tc.wantCredit != 0:
				if len(credits.changes) != 1 || credits.changes[0].Order == nil {
					t.Fatalf("credit changes %+v, want one trade", credits.changes)
				}
				ch := credits.changes[0]
				o := *ch.Order
				if ch.UserID != tc.msg.UserID || ch.AwardOrderID != "" || ch.Task != nil ||
					o.UserID != tc.msg.UserID || o.Type != credit.Forward || o.Name != credit.NameRebate ||
					o.Amount != tc.wantCredit || o.OutBusinessNo != tc.msg.BizID || !orderIDPattern.MatchString(o.OrderID) {
					t.Errorf("change %+v with trade %+v: want a forward rebate trade of %s keyed by %s", ch, o, tc.wantCredit, tc.msg.BizID)
				}
				if o.OrderID[:13] != fmt.Sprintf("%013d", now.UnixMilli()) {
					t.Errorf("trade order id %s does not start with the injected clock's millisecond", o.OrderID)
				}
			}
		})
	}
}

// TestGuardedSignInCommitsBeforeItsTransaction runs sign-ins behind a guard with a 10 ms
// budget. One over its budget before its commit point answers ErrTimeout (0006) and
// writes no rebate. One past it, whose transaction is slow, is waited for.
func TestGuardedSignInCommitsBeforeItsTransaction(t *testing.T) {
	t.Parallel()
	settings := guard.DefaultSettings()
	settings.RateLimit, settings.DrawTimeout = false, 10*time.Millisecond
	g := guard.New(guard.Options{Defaults: settings, CommitTimeout: time.Minute})
	ctx := context.Background()
	store := newFakeStore()
	s := NewService(Options{Configs: fakeConfigs{rows: demoConfigs}, Store: store})

	done := make(chan error, 1)
	answer := g.Do(ctx, "u", func(ctx context.Context) error {
		<-ctx.Done() // reading the rebate rows was slow: the budget ran out
		err := s.SignIn(ctx, "u")
		done <- err
		return err
	})
	own := <-done
	store.mu.Lock()
	saves, orders := store.saves, len(store.orders)
	store.mu.Unlock()
	if !errors.Is(answer, guard.ErrTimeout) || !errors.Is(own, guard.ErrTimeout) || saves != 0 || orders != 0 {
		t.Fatalf("sign-in over its budget: answered %v, returned %v, %d saves, %d orders; want ErrTimeout and nothing written",
			answer, own, saves, orders)
	}

	store.SaveFn = func(string, []Order, []outbox.Task) error {
		time.Sleep(50 * time.Millisecond) // the transaction is slow, past the budget
		return nil
	}
	if err := g.Do(ctx, "u", func(ctx context.Context) error { return s.SignIn(ctx, "u") }); err != nil {
		t.Fatalf("sign-in whose transaction outlasts the budget: %v, want it waited for", err)
	}
	if ok, err := s.SignedIn(ctx, "u"); !ok || err != nil {
		t.Fatalf("signed in after the slow sign-in = %v, %v", ok, err)
	}
}
