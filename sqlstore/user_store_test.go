package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/sqlstore/sqltest"
)

// userFixture is a UserStore on two migrated user databases of four tables each.
type userFixture struct {
	dbs    []*sqlstore.DB
	router sqlstore.Router
	store  *sqlstore.UserStore
}

// TestUserStore runs the user store contract on SQLite and, when BIGMARKET_TEST_MYSQL_DSN
// is set, on MySQL/MariaDB.
func TestUserStore(t *testing.T) {
	t.Parallel()
	sqltest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		f := newUserFixture(t, db, sqlstore.GroupCommit{})

		t.Run("routing", f.testRouting)
		t.Run("recharge", f.testRecharge)
		t.Run("complete paid recharge", f.testCompleteRecharge)
		t.Run("participate", f.testParticipate)
		t.Run("month quota", f.testMonthQuota)
		t.Run("concurrent participate", f.testConcurrentParticipate)
		t.Run("record award", f.testRecordAward)
		t.Run("concurrent record award", f.testConcurrentRecordAward)
		t.Run("unused order", f.testUnusedOrder)
	})
}

// newUserFixture migrates db and a second database of its dialect as user databases of a
// 2×4 router and makes a store on them with group commit gc.
func newUserFixture(t *testing.T, db *sqlstore.DB, gc sqlstore.GroupCommit) *userFixture {
	t.Helper()
	second := sqltest.OpenSQLite
	if db.Dialect == sqlstore.MySQL {
		second = sqltest.OpenMySQL
	}
	dbs := []*sqlstore.DB{db, second(t)}
	for _, d := range dbs {
		if err := sqlstore.MigrateUser(t.Context(), d, 4); err != nil {
			t.Fatalf("MigrateUser: %v", err)
		}
	}
	router, err := sqlstore.NewRouter(2, 4)
	if err != nil {
		t.Fatal(err)
	}
	return &userFixture{dbs: dbs, router: router, store: sqlstore.NewUserStoreWith(dbs, router, sqlstore.UserOptions{GroupCommit: gc})}
}

var (
	day1  = activity.QuotaKey{Day: "2024-06-01", Month: "2024-06"}
	day2  = activity.QuotaKey{Day: "2024-06-02", Month: "2024-06"}
	day3  = activity.QuotaKey{Day: "2024-06-03", Month: "2024-06"}
	july1 = activity.QuotaKey{Day: "2024-07-01", Month: "2024-07"}
	at    = time.Date(2024, 6, 1, 10, 15, 30, 0, time.UTC)
)

// key returns k for user and activity.
func key(k activity.QuotaKey, userID string, activityID int64) activity.QuotaKey {
	k.UserID, k.ActivityID = userID, activityID
	return k
}

func take(k activity.QuotaKey) func(*activity.Quota) error {
	return func(q *activity.Quota) error { return q.Take(k.Day, k.Month) }
}

// recharge credits a completed order of count c and fails the test on error.
func (f *userFixture) recharge(t *testing.T, k activity.QuotaKey, outBusinessNo string, c activity.Count) {
	t.Helper()
	o := activity.RechargeOrder{UserID: k.UserID, SKU: 9011, ActivityID: k.ActivityID, ActivityName: "测试活动",
		StrategyID: 100006, OrderID: "r" + outBusinessNo, OrderTime: at, Count: c, PayAmount: 1250,
		State: activity.RechargeCompleted, OutBusinessNo: outBusinessNo}
	if err := f.store.Recharge(t.Context(), k, o, func(q *activity.Quota) { q.Add(c) }); err != nil {
		t.Fatalf("Recharge %s: %v", outBusinessNo, err)
	}
}

// participate takes one draw with a new order and fails the test on error.
func (f *userFixture) participate(t *testing.T, k activity.QuotaKey, orderID string, orderTime time.Time) activity.Quota {
	t.Helper()
	tk, err := f.store.Participate(t.Context(), k, raffleOrder(k, orderID, orderTime), false, take(k))
	if err != nil {
		t.Fatalf("Participate %s: %v", orderID, err)
	}
	if tk.Reused || tk.Order.OrderID != orderID {
		t.Fatalf("Participate %s without reuse gave %+v", orderID, tk)
	}
	return tk.Quota
}

// errNoUnused is the take of unusedOrder: it refuses to take quota.
var errNoUnused = errors.New("no unused order")

// unusedOrder asks Participate for an order to reuse without ever taking quota: it
// returns the user's oldest unused order, or false.
func (f *userFixture) unusedOrder(t *testing.T, k activity.QuotaKey) (activity.RaffleOrder, bool) {
	t.Helper()
	tk, err := f.store.Participate(t.Context(), k, raffleOrder(k, "never", at), true,
		func(*activity.Quota) error { return errNoUnused })
	if errors.Is(err, errNoUnused) {
		return activity.RaffleOrder{}, false
	}
	if err != nil || !tk.Reused {
		t.Fatalf("Participate with reuse = %+v, %v", tk, err)
	}
	return tk.Order, true
}

func raffleOrder(k activity.QuotaKey, orderID string, orderTime time.Time) activity.RaffleOrder {
	return activity.RaffleOrder{UserID: k.UserID, ActivityID: k.ActivityID, ActivityName: "测试活动", StrategyID: 100006,
		OrderID: orderID, OrderTime: orderTime, State: activity.OrderCreate}
}

func (f *userFixture) quota(t *testing.T, k activity.QuotaKey) activity.Quota {
	t.Helper()
	q, err := f.store.Quota(t.Context(), k)
	if err != nil {
		t.Fatalf("Quota: %v", err)
	}
	return q
}

// wantQuota compares q with an account and optional month and day rows.
func wantQuota(t *testing.T, what string, q activity.Quota, a *activity.Account, m, d *activity.Period) {
	t.Helper()
	want := activity.Quota{Account: a, Month: m, Day: d}
	if !reflect.DeepEqual(q, want) {
		t.Errorf("%s: quota = %s, want %s", what, showQuota(q), showQuota(want))
	}
}

func showQuota(q activity.Quota) string {
	s := "account <nil>"
	if q.Account != nil {
		s = fmt.Sprintf("account %+v", *q.Account)
	}
	for _, p := range []*activity.Period{q.Month, q.Day} {
		if p == nil {
			s += ", <nil>"
		} else {
			s += fmt.Sprintf(", %+v", *p)
		}
	}
	return s
}

func countUserRows(t *testing.T, db *sqlstore.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.SQL.QueryRowContext(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func (f *userFixture) testRouting(t *testing.T) {
	users := []struct {
		id     string
		db     int
		suffix string
	}{{"user001", 1, "_000"}, {"xiaofuge", 0, "_001"}, {"user003", 0, "_002"}}
	const activityID = 100301
	for _, u := range users {
		if got := f.router.Route(u.id); got.DB != u.db || got.Suffix != u.suffix {
			t.Fatalf("route %s = %+v, want db %d %s", u.id, got, u.db, u.suffix)
		}
		k := key(day1, u.id, activityID)
		f.recharge(t, k, "route-"+u.id, activity.Count{Total: 5, Day: 5, Month: 5})
		f.participate(t, k, "route-o-"+u.id, at)
		rec := award.Record{UserID: u.id, ActivityID: activityID, StrategyID: 100006, OrderID: "route-o-" + u.id,
			AwardID: 101, AwardTitle: "随机积分", AwardTime: at, State: award.StateCreate}
		if err := f.store.RecordAward(t.Context(), rec, award.NewSendAwardTask(rec, "")); err != nil {
			t.Fatalf("RecordAward %s: %v", u.id, err)
		}
	}
	sharded := []string{"raffle_activity_order", "user_raffle_order", "user_award_record"}
	perDB := []string{"raffle_activity_account", "raffle_activity_account_month", "raffle_activity_account_day", "task"}
	for _, u := range users {
		for i, db := range f.dbs {
			for tb := range 4 {
				sfx := sqlstore.TableSuffix(tb)
				want := 0
				if i == u.db && sfx == u.suffix {
					want = 1
				}
				for _, table := range sharded {
					if n := countUserRows(t, db, "SELECT COUNT(*) FROM "+table+sfx+" WHERE user_id = ?", u.id); n != want {
						t.Errorf("%s: db %d %s%s has %d rows, want %d", u.id, i, table, sfx, n, want)
					}
				}
			}
			want := 0
			if i == u.db {
				want = 1
			}
			for _, table := range perDB {
				if n := countUserRows(t, db, "SELECT COUNT(*) FROM "+table+" WHERE user_id = ?", u.id); n != want {
					t.Errorf("%s: db %d %s has %d rows, want %d", u.id, i, table, n, want)
				}
			}
		}
	}
}

func (f *userFixture) testRecharge(t *testing.T) {
	ctx := t.Context()
	k := key(day1, "xfg", 100301)
	c := activity.Count{Total: 10, Day: 5, Month: 7}
	order := activity.RechargeOrder{UserID: "xfg", SKU: 9012, ActivityID: 100301, ActivityName: "测试活动",
		StrategyID: 100006, OrderID: "rc-1", OrderTime: at, Count: c, PayAmount: 1250,
		State: activity.RechargeCompleted, OutBusinessNo: "biz-1"}
	add := func(q *activity.Quota) { q.Add(c) }
	if ok, err := f.store.RechargeExists(ctx, "xfg", "biz-1"); err != nil || ok {
		t.Fatalf("RechargeExists before = %v, %v", ok, err)
	}
	if err := f.store.Recharge(ctx, k, order, add); err != nil {
		t.Fatalf("Recharge: %v", err)
	}
	account := &activity.Account{Total: 10, TotalSurplus: 10, Day: 5, DaySurplus: 5, Month: 7, MonthSurplus: 7}
	wantQuota(t, "after recharge", f.quota(t, k), account, nil, nil)
	if ok, err := f.store.RechargeExists(ctx, "xfg", "biz-1"); err != nil || !ok {
		t.Fatalf("RechargeExists after = %v, %v", ok, err)
	}

	// A repeated out_business_no (or order id) is refused and changes nothing.
	again := order
	again.OrderID = "rc-2"
	if err := f.store.Recharge(ctx, k, again, add); !errors.Is(err, activity.ErrDuplicateOrder) {
		t.Fatalf("repeated out_business_no: %v, want ErrDuplicateOrder", err)
	}
	again = order
	again.OutBusinessNo = "biz-2"
	if err := f.store.Recharge(ctx, k, again, add); !errors.Is(err, activity.ErrDuplicateOrder) {
		t.Fatalf("repeated order id: %v, want ErrDuplicateOrder", err)
	}
	wantQuota(t, "after duplicates", f.quota(t, k), account, nil, nil)

	// A wait_pay order is recorded without quota.
	pending := order
	pending.OrderID, pending.OutBusinessNo, pending.State = "rc-3", "biz-3", activity.RechargeWaitPay
	pending.OrderTime = at.Add(time.Minute)
	called := false
	if err := f.store.Recharge(ctx, k, pending, func(*activity.Quota) { called = true }); err != nil {
		t.Fatalf("Recharge wait_pay: %v", err)
	}
	if called {
		t.Error("Recharge called add for a wait_pay order")
	}
	wantQuota(t, "after wait_pay", f.quota(t, k), account, nil, nil)

	orders, err := f.store.RechargeOrders(ctx, "xfg")
	if err != nil {
		t.Fatal(err)
	}
	if want := []activity.RechargeOrder{order, pending}; !reflect.DeepEqual(orders, want) {
		t.Errorf("RechargeOrders = %+v\nwant %+v", orders, want)
	}
	if orders[0].PayAmount.String() != "12.50" {
		t.Errorf("pay amount = %s, want 12.50", orders[0].PayAmount)
	}

	// A recharge adds to the month and day rows that exist.
	f.participate(t, k, "rc-draw", at)
	more := activity.Count{Total: 1, Day: 1, Month: 1}
	f.recharge(t, k, "biz-4", more)
	wantQuota(t, "after second recharge", f.quota(t, k),
		&activity.Account{Total: 11, TotalSurplus: 10, Day: 6, DaySurplus: 5, Month: 8, MonthSurplus: 7},
		&activity.Period{Key: k.Month, Count: 8, Surplus: 7}, &activity.Period{Key: k.Day, Count: 6, Surplus: 5})
	if orders, err := f.store.RechargeOrders(ctx, "xfg"); err != nil || len(orders) != 3 {
		t.Errorf("RechargeOrders = %d orders, %v; want 3", len(orders), err)
	}
}

func (f *userFixture) testParticipate(t *testing.T) {
	ctx := t.Context()
	const user, activityID = "system", 100401
	k1 := key(day1, user, activityID)

	// No account: nothing is written.
	_, err := f.store.Participate(ctx, k1, raffleOrder(k1, "p-0", at), false, take(k1))
	if !errors.Is(err, activity.ErrTotalQuotaExhausted) {
		t.Fatalf("Participate without account: %v, want ErrTotalQuotaExhausted", err)
	}
	wantQuota(t, "no account", f.quota(t, k1), nil, nil, nil)

	f.recharge(t, k1, "p-biz", activity.Count{Total: 3, Day: 2, Month: 3})
	q := f.participate(t, k1, "p-1", at)
	m := &activity.Period{Key: "2024-06", Count: 3, Surplus: 2}
	d := &activity.Period{Key: "2024-06-01", Count: 2, Surplus: 1}
	a := &activity.Account{Total: 3, TotalSurplus: 2, Day: 2, DaySurplus: 1, Month: 3, MonthSurplus: 2}
	wantQuota(t, "returned after first draw", q, a, m, d)
	wantQuota(t, "stored after first draw", f.quota(t, k1), a, m, d)

	f.participate(t, k1, "p-2", at.Add(time.Second))
	m = &activity.Period{Key: "2024-06", Count: 3, Surplus: 1}
	d = &activity.Period{Key: "2024-06-01", Count: 2, Surplus: 0}
	a = &activity.Account{Total: 3, TotalSurplus: 1, Day: 2, DaySurplus: 0, Month: 3, MonthSurplus: 1}
	wantQuota(t, "after second draw", f.quota(t, k1), a, m, d)

	// Day exhausted: refused, nothing changes.
	_, err = f.store.Participate(ctx, k1, raffleOrder(k1, "p-3", at), false, take(k1))
	if !errors.Is(err, activity.ErrDayQuotaExhausted) {
		t.Fatalf("third draw of the day: %v, want ErrDayQuotaExhausted", err)
	}
	wantQuota(t, "after refused draw", f.quota(t, k1), a, m, d)

	// The next day starts a new day row from the account's day limit.
	k2 := key(day2, user, activityID)
	wantQuota(t, "next day before draw", f.quota(t, k2), a, m, nil)
	f.participate(t, k2, "p-4", at.Add(24*time.Hour))
	a = &activity.Account{Total: 3, TotalSurplus: 0, Day: 2, DaySurplus: 1, Month: 3, MonthSurplus: 0}
	m = &activity.Period{Key: "2024-06", Count: 3, Surplus: 0}
	wantQuota(t, "next day", f.quota(t, k2), a, m, &activity.Period{Key: "2024-06-02", Count: 2, Surplus: 1})
	wantQuota(t, "first day unchanged", f.quota(t, k1), a, m, d)

	// Total exhausted.
	k3 := key(day3, user, activityID)
	if _, err := f.store.Participate(ctx, k3, raffleOrder(k3, "p-5", at), false, take(k3)); !errors.Is(err, activity.ErrTotalQuotaExhausted) {
		t.Fatalf("draw beyond total: %v, want ErrTotalQuotaExhausted", err)
	}
	wantQuota(t, "after total exhausted", f.quota(t, k3), a, m, nil)

	orders, err := f.store.RaffleOrders(ctx, user, activityID)
	if err != nil {
		t.Fatal(err)
	}
	want := []activity.RaffleOrder{raffleOrder(k1, "p-1", at), raffleOrder(k1, "p-2", at.Add(time.Second)),
		raffleOrder(k2, "p-4", at.Add(24*time.Hour))}
	if !reflect.DeepEqual(orders, want) {
		t.Errorf("RaffleOrders = %+v\nwant %+v", orders, want)
	}

	// A take error of the caller's own is returned as it is.
	mine := errors.New("mine")
	if _, err := f.store.Participate(ctx, k3, raffleOrder(k3, "p-6", at), false, func(*activity.Quota) error { return mine }); err != mine {
		t.Errorf("Participate with a failing take = %v, want it unchanged", err)
	}
	// A take that would drive a surplus negative is refused by the store.
	_, err = f.store.Participate(ctx, k3, raffleOrder(k3, "p-7", at), false, func(q *activity.Quota) error {
		q.Account.TotalSurplus--
		return nil
	})
	if err == nil {
		t.Error("Participate wrote a negative total surplus")
	}
	wantQuota(t, "after refused negative", f.quota(t, k3), a, m, nil)
	if n, err := f.store.RaffleOrders(ctx, user, activityID); err != nil || len(n) != 3 {
		t.Errorf("RaffleOrders = %d, %v; want 3", len(n), err)
	}
}

func (f *userFixture) testMonthQuota(t *testing.T) {
	const user, activityID = "user002", 100302
	k1 := key(day1, user, activityID)
	f.recharge(t, k1, "m-biz-1", activity.Count{Total: 10, Day: 10, Month: 1})
	f.participate(t, k1, "m-1", at)
	k2 := key(day2, user, activityID)
	if _, err := f.store.Participate(t.Context(), k2, raffleOrder(k2, "m-2", at), false, take(k2)); !errors.Is(err, activity.ErrMonthQuotaExhausted) {
		t.Fatalf("second draw of the month: %v, want ErrMonthQuotaExhausted", err)
	}
	a := &activity.Account{Total: 10, TotalSurplus: 9, Day: 10, DaySurplus: 9, Month: 1, MonthSurplus: 0}
	wantQuota(t, "month exhausted", f.quota(t, k2), a, &activity.Period{Key: "2024-06", Count: 1, Surplus: 0}, nil)

	// A new month starts from the account's month limit.
	k3 := key(july1, user, activityID)
	q := f.participate(t, k3, "m-3", at.AddDate(0, 1, 0))
	wantQuota(t, "july", q, &activity.Account{Total: 10, TotalSurplus: 8, Day: 10, DaySurplus: 9, Month: 1, MonthSurplus: 0},
		&activity.Period{Key: "2024-07", Count: 1, Surplus: 0}, &activity.Period{Key: "2024-07-01", Count: 10, Surplus: 9})
}

func (f *userFixture) testConcurrentParticipate(t *testing.T) {
	const user, activityID, n = "user005", 100303, 50
	k := key(day1, user, activityID)
	f.recharge(t, k, "cc-biz", activity.Count{Total: 100, Day: 5, Month: 100})
	var (
		wg                 sync.WaitGroup
		mu                 sync.Mutex
		ok, dayOut, others int
		errs               []error
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, err := f.store.Participate(context.Background(), k, raffleOrder(k, fmt.Sprintf("cc-%02d", i), at), false, take(k))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, activity.ErrDayQuotaExhausted):
				dayOut++
			default:
				others++
				errs = append(errs, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok != 5 || dayOut != n-5 || others != 0 {
		t.Fatalf("%d concurrent draws: %d ok, %d day exhausted, %d other errors %v; want 5, %d, 0", n, ok, dayOut, others, errs, n-5)
	}
	wantQuota(t, "after concurrent draws", f.quota(t, k),
		&activity.Account{Total: 100, TotalSurplus: 95, Day: 5, DaySurplus: 0, Month: 100, MonthSurplus: 95},
		&activity.Period{Key: "2024-06", Count: 100, Surplus: 95}, &activity.Period{Key: "2024-06-01", Count: 5, Surplus: 0})
	orders, err := f.store.RaffleOrders(t.Context(), user, activityID)
	if err != nil || len(orders) != 5 {
		t.Errorf("RaffleOrders = %d orders, %v; want 5", len(orders), err)
	}
	sh := f.router.Route(user)
	db := f.dbs[sh.DB]
	for _, query := range []string{
		"SELECT COUNT(*) FROM raffle_activity_account WHERE total_count_surplus < 0 OR day_count_surplus < 0 OR month_count_surplus < 0",
		"SELECT COUNT(*) FROM raffle_activity_account_day WHERE day_count_surplus < 0",
		"SELECT COUNT(*) FROM raffle_activity_account_month WHERE month_count_surplus < 0",
	} {
		if n := countUserRows(t, db, query); n != 0 {
			t.Errorf("%s = %d, want 0", query, n)
		}
	}
}

func (f *userFixture) testRecordAward(t *testing.T) {
	ctx := t.Context()
	const user, activityID = "user006", 100304
	k := key(day1, user, activityID)
	f.recharge(t, k, "ra-biz", activity.Count{Total: 10, Day: 10, Month: 10})
	f.participate(t, k, "ra-1", at)
	f.participate(t, k, "ra-2", at.Add(time.Second))

	rec := award.Record{UserID: user, ActivityID: activityID, StrategyID: 100006, OrderID: "ra-1", AwardID: 102,
		AwardTitle: "OpenAI会员卡", AwardTime: at.Add(2 * time.Second), State: award.StateCreate}
	task := award.NewSendAwardTask(rec, "")
	if err := f.store.RecordAward(ctx, rec, task); err != nil {
		t.Fatalf("RecordAward: %v", err)
	}
	orders, err := f.store.RaffleOrders(ctx, user, activityID)
	if err != nil || len(orders) != 2 || orders[0].State != activity.OrderUsed || orders[1].State != activity.OrderCreate {
		t.Fatalf("orders after RecordAward = %+v, %v; want ra-1 used, ra-2 create", orders, err)
	}
	recs, err := f.store.AwardRecords(ctx, user, activityID)
	if err != nil || !reflect.DeepEqual(recs, []award.Record{rec}) {
		t.Errorf("AwardRecords = %+v, %v; want %+v", recs, err, rec)
	}
	tasks, err := f.store.Tasks(ctx, user)
	if err == nil && len(tasks) == 1 && tasks[0].Created.IsZero() {
		t.Errorf("task read back without its create_time")
	}
	for i := range tasks {
		tasks[i].Created = time.Time{}
	}
	if err != nil || !reflect.DeepEqual(tasks, []outbox.Task{task}) {
		t.Errorf("Tasks = %+v, %v; want %+v", tasks, err, task)
	}

	// The same order again: refused, nothing written.
	again := rec
	again.AwardID = 103
	if err := f.store.RecordAward(ctx, again, outbox.Task{UserID: user, Topic: award.TopicSendAward, MessageID: "other",
		Message: "{}", State: outbox.Create}); !errors.Is(err, activity.ErrOrderUsed) {
		t.Fatalf("second RecordAward: %v, want ErrOrderUsed", err)
	}
	// An order that does not exist cannot be used either.
	missing := rec
	missing.OrderID = "ra-missing"
	if err := f.store.RecordAward(ctx, missing, award.NewSendAwardTask(missing, "")); !errors.Is(err, activity.ErrOrderUsed) {
		t.Fatalf("RecordAward of a missing order: %v, want ErrOrderUsed", err)
	}
	// A task that exists already rolls the whole award back: ra-2 stays unused.
	second := rec
	second.OrderID = "ra-2"
	if err := f.store.RecordAward(ctx, second, task); !errors.Is(err, activity.ErrOrderUsed) {
		t.Fatalf("RecordAward with an existing task: %v, want ErrOrderUsed", err)
	}
	if o, ok := f.unusedOrder(t, key(day1, user, activityID)); !ok || o.OrderID != "ra-2" {
		t.Errorf("unused order after rolled back award = %+v %v; want ra-2", o, ok)
	}
	if recs, err := f.store.AwardRecords(ctx, user, activityID); err != nil || len(recs) != 1 {
		t.Errorf("AwardRecords = %d, %v; want 1", len(recs), err)
	}
	if tasks, err := f.store.Tasks(ctx, user); err != nil || len(tasks) != 1 {
		t.Errorf("Tasks = %d, %v; want 1", len(tasks), err)
	}
}

func (f *userFixture) testConcurrentRecordAward(t *testing.T) {
	const user, activityID, n = "user007", 100305, 20
	k := key(day1, user, activityID)
	f.recharge(t, k, "cra-biz", activity.Count{Total: 10, Day: 10, Month: 10})
	f.participate(t, k, "cra-1", at)
	var (
		wg               sync.WaitGroup
		mu               sync.Mutex
		ok, used, others int
		errs             []error
		start            = make(chan struct{})
		rec              = award.Record{UserID: user, ActivityID: activityID, StrategyID: 100006, OrderID: "cra-1", AwardTime: at, State: award.StateCreate}
	)
	for i := range n {
		wg.Go(func() {
			r := rec
			r.AwardID = 100 + i
			<-start
			err := f.store.RecordAward(context.Background(), r, award.NewSendAwardTask(r, ""))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, activity.ErrOrderUsed):
				used++
			default:
				others++
				errs = append(errs, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok != 1 || used != n-1 || others != 0 {
		t.Fatalf("%d concurrent RecordAward: %d ok, %d used, %d other errors %v; want 1, %d, 0", n, ok, used, others, errs, n-1)
	}
	if recs, err := f.store.AwardRecords(t.Context(), user, activityID); err != nil || len(recs) != 1 {
		t.Errorf("AwardRecords = %d, %v; want 1", len(recs), err)
	}
	if tasks, err := f.store.Tasks(t.Context(), user); err != nil || len(tasks) != 1 {
		t.Errorf("Tasks = %d, %v; want 1", len(tasks), err)
	}
}

func (f *userFixture) testUnusedOrder(t *testing.T) {
	ctx := t.Context()
	const user, activityID = "user008", 100306
	k := key(day1, user, activityID)
	if _, ok := f.unusedOrder(t, k); ok {
		t.Fatal("an unused order without orders")
	}
	f.recharge(t, k, "uo-biz", activity.Count{Total: 10, Day: 10, Month: 10})
	// Inserted newest first; the oldest order time wins.
	f.participate(t, k, "uo-late", at.Add(time.Minute))
	f.participate(t, k, "uo-early", at)
	o, ok := f.unusedOrder(t, k)
	if want := raffleOrder(k, "uo-early", at); !ok || o != want {
		t.Fatalf("unused order = %+v %v, want %+v", o, ok, want)
	}
	for _, id := range []string{"uo-early", "uo-late"} {
		rec := award.Record{UserID: user, ActivityID: activityID, StrategyID: 100006, OrderID: id, AwardID: 101, AwardTime: at}
		if err := f.store.RecordAward(ctx, rec, award.NewSendAwardTask(rec, "")); err != nil {
			t.Fatalf("RecordAward %s: %v", id, err)
		}
		o, ok := f.unusedOrder(t, k)
		if id == "uo-early" && (!ok || o.OrderID != "uo-late") {
			t.Errorf("UnusedOrder after using uo-early = %+v %v, want uo-late", o, ok)
		}
		if id == "uo-late" && ok {
			t.Errorf("UnusedOrder after using both = %+v, want none", o)
		}
	}
	// Award records read back in award time order with their default state.
	recs, err := f.store.AwardRecords(ctx, user, activityID)
	if err != nil || len(recs) != 2 || recs[0].OrderID != "uo-early" || recs[0].State != award.StateCreate {
		t.Errorf("AwardRecords = %+v, %v", recs, err)
	}
}

func TestGrantCounts(t *testing.T) {
	t.Parallel()
	sqltest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := t.Context()
		s := newUserFixture(t, db, sqlstore.GroupCommit{}).store
		now := time.Now()
		for i, user := range []string{"user001", "xiaofuge", "user003", "xfg"} {
			key := activity.QuotaKey{UserID: user, ActivityID: 1, Day: "2026-11-22", Month: "2026-11"}
			order := activity.RechargeOrder{UserID: user, SKU: 9011 + int64(i%2), ActivityID: 1, OrderID: fmt.Sprint("r", i),
				OrderTime: now, Count: activity.Count{Total: 5, Day: 5, Month: 5}, State: activity.RechargeCompleted, OutBusinessNo: fmt.Sprint("b", i)}
			if err := s.Recharge(ctx, key, order, func(q *activity.Quota) { q.Add(order.Count) }); err != nil {
				t.Fatal(err)
			}
			for j := range 2 {
				ro := activity.RaffleOrder{UserID: user, ActivityID: 1, StrategyID: 7, OrderID: fmt.Sprint("o", i, j), OrderTime: now, State: activity.OrderCreate}
				if _, err := s.Participate(ctx, key, ro, false, func(q *activity.Quota) error { return q.Take(key.Day, key.Month) }); err != nil {
					t.Fatal(err)
				}
				rec := award.Record{UserID: user, ActivityID: 1, StrategyID: 7, OrderID: ro.OrderID, AwardID: 101 + j, AwardTime: now, State: award.StateCreate}
				if err := s.RecordAward(ctx, rec, award.NewSendAwardTask(rec, "")); err != nil {
					t.Fatal(err)
				}
			}
		}
		counts, err := s.AwardRecordCounts(ctx, 7)
		if err != nil || counts[101] != 4 || counts[102] != 4 || len(counts) != 2 {
			t.Errorf("award record counts %v %v", counts, err)
		}
		if none, err := s.AwardRecordCounts(ctx, 8); err != nil || len(none) != 0 {
			t.Errorf("counts of another strategy %v %v", none, err)
		}
		recent, err := s.RecentRaffleOrders(ctx, "", 5)
		if err != nil || len(recent) != 5 {
			t.Fatalf("recent orders across shards: %d %v", len(recent), err)
		}
		for i := 1; i < len(recent); i++ {
			if recent[i].OrderTime.After(recent[i-1].OrderTime) || recent[i].Created.IsZero() {
				t.Errorf("recent orders out of order or without times: %+v", recent)
			}
		}
		mine, err := s.RecentRaffleOrders(ctx, "xfg", 10)
		if err != nil || len(mine) != 2 || mine[0].UserID != "xfg" || mine[0].State != activity.OrderUsed {
			t.Errorf("recent orders of xfg: %+v %v", mine, err)
		}
		for sku, want := range map[int64]int64{9011: 2, 9012: 2, 9013: 0} {
			if n, err := s.SKUOrderCount(ctx, sku); err != nil || n != want {
				t.Errorf("orders of sku %d: %d %v, want %d", sku, n, err, want)
			}
		}
	})
}

func TestMySQLSessionsReadCommitted(t *testing.T) {
	t.Parallel()
	db := sqltest.OpenMySQL(t)
	var level string
	if err := db.SQL.QueryRow("SELECT @@tx_isolation").Scan(&level); err != nil {
		if err := db.SQL.QueryRow("SELECT @@transaction_isolation").Scan(&level); err != nil {
			t.Fatal(err)
		}
	}
	if level != "READ-COMMITTED" {
		t.Errorf("session isolation %s, want READ-COMMITTED", level)
	}
}

func (f *userFixture) testCompleteRecharge(t *testing.T) {
	ctx := t.Context()
	k := key(day1, "payer-01", 100301)
	c := activity.Count{Total: 4, Day: 2, Month: 3}
	f.recharge(t, k, "paid-0", activity.Count{Total: 1, Day: 1, Month: 1})
	pending := activity.RechargeOrder{UserID: "payer-01", SKU: 9013, ActivityID: 100301, StrategyID: 100006,
		OrderID: "rp-1", OrderTime: at, Count: c, PayAmount: 2000, State: activity.RechargeWaitPay, OutBusinessNo: "paid-1"}
	if err := f.store.Recharge(ctx, k, pending, func(*activity.Quota) { t.Error("add called for wait_pay") }); err != nil {
		t.Fatal(err)
	}
	addPaid := func(_ activity.QuotaKey, q *activity.Quota, paid activity.Count) { q.Add(paid) }
	for i, want := range []bool{true, false} { // a redelivered confirmation changes nothing
		done, err := f.store.CompleteRecharge(ctx, "payer-01", "paid-1", k.Day, k.Month, addPaid)
		if err != nil || done != want {
			t.Fatalf("CompleteRecharge #%d = %v, %v; want %v", i+1, done, err, want)
		}
	}
	wantQuota(t, "after payment", f.quota(t, k),
		&activity.Account{Total: 5, TotalSurplus: 5, Day: 3, DaySurplus: 3, Month: 4, MonthSurplus: 4}, nil, nil)
	if _, err := f.store.CompleteRecharge(ctx, "payer-01", "paid-404", k.Day, k.Month, addPaid); !errors.Is(err, activity.ErrRechargeNotFound) {
		t.Errorf("CompleteRecharge of an unknown order: %v", err)
	}
	orders, err := f.store.RechargeOrders(ctx, "payer-01")
	if err != nil || len(orders) != 2 || orders[1].State != activity.RechargeCompleted || orders[1].PayAmount != 2000 {
		t.Errorf("orders after payment: %+v %v", orders, err)
	}
}
