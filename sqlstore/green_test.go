package sqlstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/rebate"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/sqlstore/sqltest"
)

// greenFixture is the credit green channel on a user store and the demo's config
// database: the award and rebate services as serve builds them, whose Settle is the
// green channel and whose Distribute and Deliver are what the consumers run.
type greenFixture struct {
	*userFixture
	configs *sqlstore.AwardConfigs
	awards  *award.Service
	rebates *rebate.Service
}

func newGreenFixture(t *testing.T, db *sqlstore.DB) *greenFixture {
	t.Helper()
	f := newUserFixture(t, db)
	configDB := sqltest.OpenSQLite(t)
	if db.Dialect == sqlstore.MySQL {
		configDB = sqltest.OpenMySQL(t)
	}
	if err := sqlstore.MigrateConfig(t.Context(), configDB); err != nil {
		t.Fatal(err)
	}
	if err := sqlstore.SeedDemo(t.Context(), configDB); err != nil {
		t.Fatal(err)
	}
	configs := sqlstore.NewAwardConfigs(configDB)
	return &greenFixture{
		userFixture: f,
		configs:     configs,
		awards:      award.NewService(award.Options{Configs: configs, Pending: f.store, Credits: f.store}),
		rebates:     rebate.NewService(rebate.Options{Configs: configs, Store: f.store, Pending: f.store, Credits: f.store}),
	}
}

// TestCreditGreenChannel checks the credit green channel on SQLite and, with
// BIGMARKET_TEST_MYSQL_DSN, on MariaDB: a credit award or credit rebate not yet delivered
// is credited by Settle, once, whether the consumer's delivery comes after it, before it
// or at the same time.
func TestCreditGreenChannel(t *testing.T) {
	t.Parallel()
	sqltest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		f := newGreenFixture(t, db)
		t.Run("pending reads", f.testPendingReads)
		t.Run("settle then consume", f.testSettleThenConsume)
		t.Run("consume then settle", f.testConsumeThenSettle)
		t.Run("settle and consume at once", f.testSettleRacesConsumer)
	})
}

// win records a draw of user in activity 100301 that won award, as the draw writes it:
// the raffle order, the award record in state create and its send_award task carrying
// the rule's value.
func (f *greenFixture) win(t *testing.T, user, orderID string, awardID int, ruleValue string) award.SendAward {
	t.Helper()
	k := key(day1, user, 100301)
	if q := f.quota(t, k); q.Account == nil || q.Account.TotalSurplus == 0 {
		f.recharge(t, k, "green-"+orderID, activity.Count{Total: 100, Day: 100, Month: 100})
	}
	title := fmt.Sprint("award ", awardID)
	f.drawn(t, k, orderID, at, awardID, title, ruleValue)
	return award.SendAward{UserID: user, OrderID: orderID, AwardID: awardID, AwardTitle: title, AwardConfig: ruleValue}
}

// creditOrders returns the user's credit orders by business number.
func (f *greenFixture) creditOrders(t *testing.T, user string) map[string][]credit.Order {
	t.Helper()
	orders, err := f.store.CreditOrders(t.Context(), user)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string][]credit.Order{}
	for _, o := range orders {
		by[o.OutBusinessNo] = append(by[o.OutBusinessNo], o)
	}
	return by
}

// checkCredited checks that the user's account is exactly the sum of its credit orders,
// that each business number in want has one order, and returns the amounts by number.
func (f *greenFixture) checkCredited(t *testing.T, user string, want ...string) map[string]money.Cents {
	t.Helper()
	by := f.creditOrders(t, user)
	amounts := map[string]money.Cents{}
	var sum money.Cents
	for no, os := range by {
		if len(os) != 1 {
			t.Errorf("%s: %d credit orders with business number %s, want 1", user, len(os), no)
		}
		for _, o := range os {
			sum += o.Amount
			amounts[no] = o.Amount
		}
	}
	for _, no := range want {
		if len(by[no]) != 1 {
			t.Errorf("%s: credit orders for %s = %+v, want exactly one", user, no, by[no])
		}
	}
	if a := f.account(t, user); a.Available != sum || a.Total != sum {
		t.Errorf("%s: account %+v, want the %s of its credit orders", user, a, sum)
	}
	return amounts
}

func (f *greenFixture) testPendingReads(t *testing.T) {
	ctx := t.Context()
	const user = "xiaofuge"
	credited := f.win(t, user, "gp-1", 101, "1,100")
	external := f.win(t, user, "gp-2", 102, "")
	got, err := f.store.PendingAwards(ctx, user)
	if err != nil || len(got) != 2 || got[0] != credited || got[1] != external {
		t.Fatalf("PendingAwards = %+v, %v; want %+v then %+v", got, err, credited, external)
	}
	if _, err := f.rebates.Behave(ctx, user, rebate.BehaviorSign, "20240601"); err != nil {
		t.Fatal(err)
	}
	rebates, err := f.store.PendingCreditRebates(ctx, user)
	want := rebate.SendRebate{UserID: user, RebateDesc: rebates0Desc(t, f), RebateType: rebate.TypeIntegral, RebateConfig: "10",
		BizID: user + "_integral_20240601"}
	if err != nil || len(rebates) != 1 || rebates[0] != want {
		t.Fatalf("PendingCreditRebates = %+v, %v; want only %+v (the sku rebate is not credit)", rebates, err, want)
	}
	// Settle credits both, and leaves the external award to its consumer.
	if err := f.awards.Settle(ctx, user); err != nil {
		t.Fatal(err)
	}
	if err := f.rebates.Settle(ctx, user); err != nil {
		t.Fatal(err)
	}
	if got, err := f.store.PendingAwards(ctx, user); err != nil || len(got) != 1 || got[0] != external {
		t.Errorf("PendingAwards after Settle = %+v, %v; want the external award only", got, err)
	}
	if got, err := f.store.PendingCreditRebates(ctx, user); err != nil || len(got) != 0 {
		t.Errorf("PendingCreditRebates after Settle = %+v, %v; want none", got, err)
	}
	amounts := f.checkCredited(t, user, "gp-1", want.BizID)
	if a := amounts["gp-1"]; a < 100 || a > 10000 {
		t.Errorf("credit award of range 1,100 = %s", a)
	}
	if a := amounts[want.BizID]; a != 1000 {
		t.Errorf("sign-in credit = %s, want 10", a)
	}
	// Nobody else is pending: Settle of another user reads nothing and writes nothing.
	if err := f.awards.Settle(ctx, "user003"); err != nil {
		t.Fatal(err)
	}
	if a := f.account(t, "user003"); a.Total != 0 {
		t.Errorf("user003 credited %+v by another user's green channel", a)
	}
}

// rebates0Desc is the description of the demo's sign-in credit rebate.
func rebates0Desc(t *testing.T, f *greenFixture) string {
	t.Helper()
	cs, err := f.configs.BehaviorRebates(t.Context(), rebate.BehaviorSign)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Type == rebate.TypeIntegral {
			return c.Desc
		}
	}
	t.Fatal("no sign-in credit rebate in the demo data")
	return ""
}

// pendingRebate is the user's one pending credit rebate message.
func (f *greenFixture) pendingRebate(t *testing.T, user string) rebate.SendRebate {
	t.Helper()
	ms, err := f.store.PendingCreditRebates(t.Context(), user)
	if err != nil || len(ms) != 1 {
		t.Fatalf("PendingCreditRebates(%s) = %+v, %v; want one", user, ms, err)
	}
	return ms[0]
}

func (f *greenFixture) testSettleThenConsume(t *testing.T) {
	ctx := t.Context()
	const user = "user001"
	m := f.win(t, user, "gs-1", 101, "1,100")
	if _, err := f.rebates.Behave(ctx, user, rebate.BehaviorOpenAIPay, "pay-gs-1"); err != nil {
		t.Fatal(err)
	}
	r := f.pendingRebate(t, user)
	for _, st := range []interface {
		Settle(context.Context, string) error
	}{f.awards, f.rebates} {
		if err := st.Settle(ctx, user); err != nil {
			t.Fatal(err)
		}
	}
	before := f.checkCredited(t, user, "gs-1", r.BizID)
	// The consumers' deliveries arrive: acknowledged, and nothing changes.
	for range 2 {
		if errs := f.awards.Distribute(ctx, []award.SendAward{m}); errs[0] != nil {
			t.Errorf("send_award after the green channel: %v, want nil (done)", errs[0])
		}
		if err := f.rebates.Deliver(ctx, r); err != nil {
			t.Errorf("send_rebate after the green channel: %v, want nil (done)", err)
		}
	}
	after := f.checkCredited(t, user, "gs-1", r.BizID)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("credit orders changed by the consumers: %v then %v", before, after)
	}
}

func (f *greenFixture) testConsumeThenSettle(t *testing.T) {
	ctx := t.Context()
	const user = "user002"
	m := f.win(t, user, "gc-1", 101, "1,100")
	if _, err := f.rebates.Behave(ctx, user, rebate.BehaviorOpenAIPay, "pay-gc-1"); err != nil {
		t.Fatal(err)
	}
	r := f.pendingRebate(t, user)
	if errs := f.awards.Distribute(ctx, []award.SendAward{m}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if err := f.rebates.Deliver(ctx, r); err != nil {
		t.Fatal(err)
	}
	before := f.checkCredited(t, user, "gc-1", r.BizID)
	if err := f.awards.Settle(ctx, user); err != nil {
		t.Fatal(err)
	}
	if err := f.rebates.Settle(ctx, user); err != nil {
		t.Fatal(err)
	}
	if after := f.checkCredited(t, user, "gc-1", r.BizID); fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("credit orders changed by the green channel after the consumers: %v then %v", before, after)
	}
}

// testSettleRacesConsumer runs, for each of several fresh wins and rebates, two credit
// queries' green channels and the two consumers' deliveries at the same moment: each
// award and rebate is credited exactly once and the account is the sum of its orders.
func (f *greenFixture) testSettleRacesConsumer(t *testing.T) {
	ctx := t.Context()
	const user, rounds = "user003", 12
	var want []string
	for i := range rounds {
		orderID := fmt.Sprintf("gr-%d", i)
		m := f.win(t, user, orderID, 101, "1,100")
		if _, err := f.rebates.Behave(ctx, user, rebate.BehaviorOpenAIPay, "pay-"+orderID); err != nil {
			t.Fatal(err)
		}
		r := f.pendingRebate(t, user)
		want = append(want, orderID, r.BizID)
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, 6)
		for range 2 {
			wg.Go(func() { <-start; errs <- f.awards.Settle(ctx, user) })
			wg.Go(func() { <-start; errs <- f.rebates.Settle(ctx, user) })
		}
		wg.Go(func() { <-start; errs <- f.awards.Distribute(ctx, []award.SendAward{m})[0] })
		wg.Go(func() { <-start; errs <- f.rebates.Deliver(ctx, r) })
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("round %d: %v", i, err)
			}
		}
	}
	if amounts := f.checkCredited(t, user, want...); len(amounts) != 2*rounds {
		t.Errorf("%d business numbers credited, want %d", len(amounts), 2*rounds)
	}
	if got, err := f.store.PendingAwards(ctx, user); err != nil || len(got) != 0 {
		t.Errorf("PendingAwards after the race = %+v, %v; want none", got, err)
	}
}
