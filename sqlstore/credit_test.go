package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/rebate"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/sqlstore/sqltest"
)

// TestCreditStore runs the credit, rebate and outbox contract of the user store on SQLite
// and, when BIGMARKET_TEST_MYSQL_DSN is set, on MySQL/MariaDB.
func TestCreditStore(t *testing.T) {
	t.Parallel()
	sqltest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		f := newUserFixture(t, db)
		t.Run("trades", f.testCreditTrades)
		t.Run("concurrent spending", f.testConcurrentSpending)
		t.Run("award completion", f.testCreditAwardCompletion)
		t.Run("rebates", f.testRebates)
		t.Run("unpaid order", f.testUnpaidOrder)
		t.Run("outbox", f.testOutbox)
	})
}

func forward(user, bizNo string, cents money.Cents) *credit.Order {
	return &credit.Order{UserID: user, OrderID: "co-" + bizNo, Name: credit.NameRebate, Type: credit.Forward, Amount: cents, OutBusinessNo: bizNo}
}

func reverse(user, bizNo string, cents money.Cents) *credit.Order {
	return &credit.Order{UserID: user, OrderID: "co-" + bizNo, Name: credit.NameExchange, Type: credit.Reverse, Amount: cents, OutBusinessNo: bizNo}
}

func (f *userFixture) account(t *testing.T, user string) credit.Account {
	t.Helper()
	a, err := f.store.CreditAccount(t.Context(), user)
	if err != nil {
		t.Fatalf("CreditAccount(%s): %v", user, err)
	}
	return a
}

func (f *userFixture) testCreditTrades(t *testing.T) {
	ctx := t.Context()
	const alice, bob = "xiaofuge", "user001" // different databases
	if a := f.account(t, alice); a.Total != 0 || a.Available != 0 {
		t.Fatalf("account before any trade = %+v, want zeros", a)
	}
	var committed []outbox.Task
	var mu sync.Mutex
	// A store of its own on the same databases, told of the tasks it commits.
	told := *f
	told.store = sqlstore.NewUserStoreWith(f.dbs, f.router, sqlstore.UserOptions{
		Committed: func(ts []outbox.Task) { mu.Lock(); committed = append(committed, ts...); mu.Unlock() },
	})
	f = &told

	task := outbox.NewTask(alice, "credit_adjust_success", "t-ex1", at, map[string]string{"x": "y"})
	errs := f.store.ApplyCredit(ctx, []credit.Change{
		{UserID: alice, Order: forward(alice, "r1", 1000)},
		{UserID: bob, Order: forward(bob, "r2", 250)},
		{UserID: alice, Order: reverse(alice, "ex1", 500), Task: &task},
		{UserID: alice, Order: forward(alice, "r1", 1000)}, // same business number in the batch
		{UserID: bob, Order: reverse(bob, "ex2", 300)},     // more than bob has
		{UserID: alice, Order: reverse(alice, "", 1)},      // malformed
	})
	want := []error{nil, nil, nil, credit.ErrDuplicate, credit.ErrInsufficient, credit.ErrInvalidTrade}
	for i, w := range want {
		if (w == nil) != (errs[i] == nil) || (w != nil && !errors.Is(errs[i], w)) {
			t.Errorf("change %d: %v, want %v", i, errs[i], w)
		}
	}
	if a := f.account(t, alice); a.Total != 1000 || a.Available != 500 {
		t.Errorf("alice = %+v, want total 10.00 available 5.00", a)
	}
	if a := f.account(t, bob); a.Total != 250 || a.Available != 250 {
		t.Errorf("bob = %+v, want 2.50/2.50", a)
	}
	// Repeats change nothing.
	if err := f.store.ApplyCredit(ctx, []credit.Change{{UserID: alice, Order: forward(alice, "r1", 1000)}})[0]; !errors.Is(err, credit.ErrDuplicate) {
		t.Errorf("repeated forward: %v, want ErrDuplicate", err)
	}
	if a := f.account(t, alice); a.Available != 500 {
		t.Errorf("alice after repeat = %+v", a)
	}
	orders, err := f.store.CreditOrders(ctx, alice)
	if err != nil || len(orders) != 2 || orders[0].Amount != 1000 || orders[1].Type != credit.Reverse {
		t.Errorf("alice's orders = %+v, %v; want r1 forward 10.00 and ex1 reverse", orders, err)
	}
	tasks, err := f.store.Tasks(ctx, alice)
	if err != nil || len(tasks) != 1 || tasks[0].MessageID != "t-ex1" {
		t.Errorf("alice's tasks = %+v, %v; want the exchange's task", tasks, err)
	}
	mu.Lock()
	if len(committed) != 1 || committed[0].MessageID != "t-ex1" {
		t.Errorf("tasks told committed = %+v, want t-ex1", committed)
	}
	mu.Unlock()
}

// testConcurrentSpending: 40 spends of 1.00 race for 25.00 in batches and alone; exactly
// 25 succeed and the balance ends at zero, never below.
func (f *userFixture) testConcurrentSpending(t *testing.T) {
	ctx := t.Context()
	const user = "user003"
	if err := f.store.ApplyCredit(ctx, []credit.Change{{UserID: user, Order: forward(user, "fund", 2500)}})[0]; err != nil {
		t.Fatal(err)
	}
	var ok, short atomic.Int64
	var wg sync.WaitGroup
	for g := range 10 {
		wg.Go(func() {
			var batch []credit.Change
			for i := range 4 {
				batch = append(batch, credit.Change{UserID: user, Order: reverse(user, fmt.Sprintf("spend-%d-%d", g, i), 100)})
			}
			for _, err := range f.store.ApplyCredit(ctx, batch) {
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, credit.ErrInsufficient):
					short.Add(1)
				default:
					t.Errorf("spend: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 25 || short.Load() != 15 {
		t.Errorf("spends: %d ok, %d insufficient; want 25 and 15", ok.Load(), short.Load())
	}
	if a := f.account(t, user); a.Available != 0 || a.Total != 2500 {
		t.Errorf("account = %+v, want total 25.00 available 0", a)
	}
}

// testCreditAwardCompletion: a credit award completes its record in the trade's
// transaction; a redelivery, a completion without credit and a missing record behave.
func (f *userFixture) testCreditAwardCompletion(t *testing.T) {
	ctx := t.Context()
	const user, activityID = "user002", 100305
	k := key(day1, user, activityID)
	f.recharge(t, k, "ca-biz", activity.Count{Total: 10, Day: 10, Month: 10})
	for i, id := range []string{"ca-1", "ca-2"} {
		f.drawn(t, k, id, at.Add(time.Duration(i)*time.Second), 101, "随机积分", "1,100")
	}
	credited := credit.Change{UserID: user, AwardOrderID: "ca-1", Order: &credit.Order{UserID: user, OrderID: "cred-ca-1",
		Name: credit.NameAward, Type: credit.Forward, Amount: 4217, OutBusinessNo: "ca-1"}}
	errs := f.store.ApplyCredit(ctx, []credit.Change{
		credited,
		{UserID: user, AwardOrderID: "ca-2"},    // external award: no credit
		{UserID: user, AwardOrderID: "missing"}, // no such record
		{UserID: user, AwardOrderID: "ca-2"},    // the same award twice in one batch
	})
	want := []error{nil, nil, credit.ErrAwardNotFound, credit.ErrDuplicate}
	for i, w := range want {
		if (w == nil) != (errs[i] == nil) || (w != nil && !errors.Is(errs[i], w)) {
			t.Errorf("change %d: %v, want %v", i, errs[i], w)
		}
	}
	// Redelivered: nothing changes.
	if err := f.store.ApplyCredit(ctx, []credit.Change{credited})[0]; !errors.Is(err, credit.ErrDuplicate) {
		t.Errorf("redelivered award: %v, want ErrDuplicate", err)
	}
	recs, err := f.store.AwardRecords(ctx, user, activityID)
	if err != nil || len(recs) != 2 || recs[0].State != award.StateCompleted || recs[1].State != award.StateCompleted {
		t.Errorf("records = %+v, %v; want both completed", recs, err)
	}
	if a := f.account(t, user); a.Available != 4217 || a.Total != 4217 {
		t.Errorf("account = %+v, want 42.17 once", a)
	}
}

func (f *userFixture) testRebates(t *testing.T) {
	ctx := t.Context()
	const user = "xfg"
	orders := []rebate.Order{
		{UserID: user, OrderID: "rb-1", Behavior: rebate.BehaviorSign, Desc: "sign credit", Type: rebate.TypeIntegral, Value: "10",
			OutBusinessNo: "20240601", BizID: user + "_integral_20240601"},
		{UserID: user, OrderID: "rb-2", Behavior: rebate.BehaviorSign, Desc: "sign sku", Type: rebate.TypeSKU, Value: "9014",
			OutBusinessNo: "20240601", BizID: user + "_sku_20240601"},
	}
	tasks := []outbox.Task{
		outbox.NewTask(user, rebate.TopicSendRebate, "rb-1", at, rebate.SendRebate{UserID: user}),
		outbox.NewTask(user, rebate.TopicSendRebate, "rb-2", at, rebate.SendRebate{UserID: user}),
	}
	if ok, err := f.store.HasRebate(ctx, user, rebate.BehaviorSign, "20240601"); err != nil || ok {
		t.Fatalf("HasRebate before = %v, %v", ok, err)
	}
	if err := f.store.SaveRebates(ctx, user, orders, tasks); err != nil {
		t.Fatalf("SaveRebates: %v", err)
	}
	if ok, err := f.store.HasRebate(ctx, user, rebate.BehaviorSign, "20240601"); err != nil || !ok {
		t.Errorf("HasRebate after = %v, %v; want true", ok, err)
	}
	again := slices.Clone(orders)
	again[0].OrderID, again[1].OrderID = "rb-3", "rb-4"
	againTasks := []outbox.Task{outbox.NewTask(user, rebate.TopicSendRebate, "rb-3", at, rebate.SendRebate{})}
	if err := f.store.SaveRebates(ctx, user, again, againTasks); !errors.Is(err, rebate.ErrDuplicate) {
		t.Errorf("second SaveRebates: %v, want ErrDuplicate", err)
	}
	got, err := f.store.Tasks(ctx, user)
	if err != nil || len(got) != 2 {
		t.Errorf("tasks = %+v, %v; want the first two only", got, err)
	}
}

func (f *userFixture) testUnpaidOrder(t *testing.T) {
	ctx := t.Context()
	const user = "user004"
	k := key(day1, user, 100306)
	pay := func(id, bizNo string, state activity.RechargeState, when time.Time) {
		t.Helper()
		o := activity.RechargeOrder{UserID: user, SKU: 9014, ActivityID: 100306, StrategyID: 100006, OrderID: id, OrderTime: when,
			Count: activity.Count{Total: 1, Day: 1, Month: 1}, PayAmount: 500, State: state, OutBusinessNo: bizNo}
		if err := f.store.Recharge(ctx, k, o, func(q *activity.Quota) { q.Add(o.Count) }); err != nil {
			t.Fatal(err)
		}
	}
	since := at.Add(-time.Hour)
	if _, ok, err := f.store.UnpaidOrder(ctx, user, 9014, since); err != nil || ok {
		t.Fatalf("UnpaidOrder with none = %v, %v", ok, err)
	}
	pay("up-old", "biz-old", activity.RechargeWaitPay, at.Add(-2*time.Hour)) // too old
	pay("up-done", "biz-done", activity.RechargeCompleted, at)
	pay("up-paid", "biz-paid", activity.RechargeWaitPay, at)
	pay("up-open", "biz-open", activity.RechargeWaitPay, at)
	// biz-paid has its credit trade already: the completion is on its way.
	if err := f.store.ApplyCredit(ctx, []credit.Change{{UserID: user, Order: forward(user, "fund-u4", 1000)},
		{UserID: user, Order: reverse(user, "biz-paid", 500)}}); errors.Join(err...) != nil {
		t.Fatal(err)
	}
	o, ok, err := f.store.UnpaidOrder(ctx, user, 9014, since)
	if err != nil || !ok || o.OrderID != "up-open" || o.PayAmount != 500 {
		t.Errorf("UnpaidOrder = %+v, %v, %v; want up-open", o, ok, err)
	}
	if _, ok, _ := f.store.UnpaidOrder(ctx, user, 9011, since); ok {
		t.Error("UnpaidOrder found an order of another sku")
	}
}

// testOutbox: tasks are marked, and stale ones claimed by ResendTasks; two concurrent
// claims never hand out one task twice.
func (f *userFixture) testOutbox(t *testing.T) {
	ctx := t.Context()
	users := []string{"ob-a", "ob-b", "ob-c", "ob-d", "ob-e", "ob-f"}
	var all []outbox.Task
	for i := range 60 {
		u := users[i%len(users)]
		all = append(all, outbox.NewTask(u, "send_award", fmt.Sprintf("ob-%02d", i), at, map[string]int{"i": i}))
	}
	for _, u := range users {
		var mine []outbox.Task
		for _, tk := range all {
			if tk.UserID == u {
				mine = append(mine, tk)
			}
		}
		if err := f.store.ApplyCredit(ctx, []credit.Change{{UserID: u, Task: &mine[0]}})[0]; err != nil {
			t.Fatal(err)
		}
		for _, tk := range mine[1:] {
			if err := f.store.ApplyCredit(ctx, []credit.Change{{UserID: u, Task: &tk}})[0]; err != nil {
				t.Fatal(err)
			}
		}
	}
	// The first ten are published by the relay.
	if err := f.store.MarkTasks(ctx, all[:10], outbox.Completed); err != nil {
		t.Fatal(err)
	}
	// Nothing is stale yet.
	n, err := f.store.ResendTasks(ctx, time.Now().Add(-time.Hour), 100, func(context.Context, []outbox.Task) []error {
		t.Error("send called with no stale task")
		return nil
	})
	if err != nil || n != 0 {
		t.Fatalf("ResendTasks before grace = %d, %v", n, err)
	}
	var (
		mu   sync.Mutex
		seen = map[string]int{}
	)
	send := func(_ context.Context, ts []outbox.Task) []error {
		errs := make([]error, len(ts))
		mu.Lock()
		defer mu.Unlock()
		for i, tk := range ts {
			seen[tk.MessageID]++
			if tk.MessageID == "ob-11" {
				errs[i] = errors.New("broker refused")
			}
		}
		return errs
	}
	// On MySQL two nodes claim at once (SKIP LOCKED keeps them apart); SQLite belongs to
	// one process, which claims alone.
	claimers := 1
	if f.dbs[0].Dialect == sqlstore.MySQL {
		claimers = 3
	}
	var wg sync.WaitGroup
	for range claimers {
		wg.Go(func() {
			for {
				n, err := f.store.ResendTasks(ctx, time.Now().Add(time.Minute), 7, send)
				if err != nil {
					t.Errorf("ResendTasks: %v", err)
					return
				}
				mu.Lock()
				ours := 0 // other subtests' tasks may be stale too
				for _, tk := range all[10:] {
					if seen[tk.MessageID] > 0 {
						ours++
					}
				}
				done := ours == len(all[10:])
				mu.Unlock()
				if n == 0 || done {
					return
				}
			}
		})
	}
	wg.Wait()
	for _, tk := range all[10:] {
		if c := seen[tk.MessageID]; c < 1 || (c > 1 && tk.MessageID != "ob-11") {
			t.Errorf("task %s sent %d times, want once", tk.MessageID, c)
		}
	}
	for _, tk := range all[:10] {
		if seen[tk.MessageID] != 0 {
			t.Errorf("completed task %s re-sent", tk.MessageID)
		}
	}
	states := map[outbox.State]int{}
	for _, u := range users {
		ts, err := f.store.Tasks(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range ts {
			states[tk.State]++
			if tk.MessageID == "ob-11" && tk.State != outbox.Fail {
				t.Errorf("refused task state %s, want fail", tk.State)
			}
		}
	}
	if states[outbox.Completed] != 59 || states[outbox.Fail] != 1 {
		t.Errorf("task states = %v, want 59 completed and 1 fail", states)
	}
}
