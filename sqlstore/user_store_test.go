package sqlstore_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/flash"
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
		f := newUserFixture(t, db)

		t.Run("routing", f.testRouting)
		t.Run("recharge", f.testRecharge)
		t.Run("complete paid recharge", f.testCompleteRecharge)
		t.Run("month quota", f.testMonthQuota)
	})
}

// newUserFixture migrates db and a second database of its dialect as user databases of a
// 2×4 router and makes a store on them.
func newUserFixture(t *testing.T, db *sqlstore.DB) *userFixture {
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
	return &userFixture{dbs: dbs, router: router, store: sqlstore.NewUserStore(dbs, router)}
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

// drawn writes a draw of k's user as the draw writer does (ApplyDraws): one unit of k's
// quota, the raffle order used, the award record in state create and its send_award task
// carrying ruleValue; it fails the test on error.
func (f *userFixture) drawn(t *testing.T, k activity.QuotaKey, orderID string, when time.Time, awardID int, title, ruleValue string) {
	t.Helper()
	e := flash.Event{OrderID: orderID, UserID: k.UserID, ActivityID: k.ActivityID, ActivityName: "测试活动",
		StrategyID: 100006, OrderTime: when, Day: k.Day, Month: k.Month, AwardID: awardID, AwardTitle: title,
		RuleValue: ruleValue, AwardTime: when}
	if err := f.store.ApplyDraws(t.Context(), []flash.Event{e})[0]; err != nil {
		t.Fatalf("draw %s: %v", orderID, err)
	}
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
		f.drawn(t, k, "route-o-"+u.id, at, 101, "随机积分", "")
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
	f.drawn(t, k, "rc-draw", at, 101, "随机积分", "")
	more := activity.Count{Total: 1, Day: 1, Month: 1}
	f.recharge(t, k, "biz-4", more)
	wantQuota(t, "after second recharge", f.quota(t, k),
		&activity.Account{Total: 11, TotalSurplus: 10, Day: 6, DaySurplus: 5, Month: 8, MonthSurplus: 7},
		&activity.Period{Key: k.Month, Count: 8, Surplus: 7}, &activity.Period{Key: k.Day, Count: 6, Surplus: 5})
	if orders, err := f.store.RechargeOrders(ctx, "xfg"); err != nil || len(orders) != 3 {
		t.Errorf("RechargeOrders = %d orders, %v; want 3", len(orders), err)
	}
}

func (f *userFixture) testMonthQuota(t *testing.T) {
	const user, activityID = "user002", 100302
	k1 := key(day1, user, activityID)
	f.recharge(t, k1, "m-biz-1", activity.Count{Total: 10, Day: 10, Month: 1})
	f.drawn(t, k1, "m-1", at, 101, "随机积分", "")
	k2 := key(day2, user, activityID)
	e := flash.Event{OrderID: "m-2", UserID: user, ActivityID: activityID, StrategyID: 100006, OrderTime: at, Day: k2.Day, Month: k2.Month, AwardID: 101, AwardTime: at}
	if err := f.store.ApplyDraws(t.Context(), []flash.Event{e})[0]; !errors.Is(err, sqlstore.ErrDrawRejected) || !errors.Is(err, activity.ErrMonthQuotaExhausted) {
		t.Fatalf("second draw of the month: %v, want ErrDrawRejected with ErrMonthQuotaExhausted", err)
	}
	a := &activity.Account{Total: 10, TotalSurplus: 9, Day: 10, DaySurplus: 9, Month: 1, MonthSurplus: 0}
	wantQuota(t, "month exhausted", f.quota(t, k2), a, &activity.Period{Key: "2024-06", Count: 1, Surplus: 0}, nil)

	// A new month starts from the account's month limit.
	k3 := key(july1, user, activityID)
	f.drawn(t, k3, "m-3", at.AddDate(0, 1, 0), 101, "随机积分", "")
	wantQuota(t, "july", f.quota(t, k3), &activity.Account{Total: 10, TotalSurplus: 8, Day: 10, DaySurplus: 9, Month: 1, MonthSurplus: 0},
		&activity.Period{Key: "2024-07", Count: 1, Surplus: 0}, &activity.Period{Key: "2024-07-01", Count: 10, Surplus: 9})
}

func TestGrantCounts(t *testing.T) {
	t.Parallel()
	sqltest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := t.Context()
		f := newUserFixture(t, db)
		s := f.store
		now := time.Now()
		for i, user := range []string{"user001", "xiaofuge", "user003", "xfg"} {
			key := activity.QuotaKey{UserID: user, ActivityID: 1, Day: "2026-11-22", Month: "2026-11"}
			order := activity.RechargeOrder{UserID: user, SKU: 9011 + int64(i%2), ActivityID: 1, OrderID: fmt.Sprint("r", i),
				OrderTime: now, Count: activity.Count{Total: 5, Day: 5, Month: 5}, State: activity.RechargeCompleted, OutBusinessNo: fmt.Sprint("b", i)}
			if err := s.Recharge(ctx, key, order, func(q *activity.Quota) { q.Add(order.Count) }); err != nil {
				t.Fatal(err)
			}
			for j := range 2 {
				e := flash.Event{OrderID: fmt.Sprint("o", i, j), UserID: user, ActivityID: 1, StrategyID: 7, OrderTime: now.Add(time.Duration(j) * time.Millisecond),
					Day: key.Day, Month: key.Month, AwardID: 101 + j, AwardTime: now}
				if err := s.ApplyDraws(ctx, []flash.Event{e})[0]; err != nil {
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
		awards, err := s.RecentAwardRecords(ctx, "xfg", 1, 50)
		if err != nil || len(awards) != 2 || awards[0].AwardID != 102 || awards[1].AwardID != 101 || awards[0].UserID != "xfg" {
			t.Errorf("recent award records of xfg, newest first: %+v %v", awards, err)
		}
		if one, err := s.RecentAwardRecords(ctx, "xfg", 0, 1); err != nil || len(one) != 1 || one[0].AwardID != 102 {
			t.Errorf("newest award record of xfg in every activity: %+v %v", one, err)
		}
		if none, err := s.RecentAwardRecords(ctx, "xfg", 2, 50); err != nil || none == nil || len(none) != 0 {
			t.Errorf("award records in another activity: %+v %v", none, err)
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
