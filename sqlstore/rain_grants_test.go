package sqlstore_test

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"testing"

	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/rain"
	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/sqlstore/sqltest"
)

// TestRainGrants runs the rain grants lookup on SQLite and, when BIGMARKET_TEST_MYSQL_DSN
// is set, on MySQL/MariaDB: four wins on both user databases — cash credited, an award
// recorded, a SKU recharged, cash not credited — among rows of other business numbers.
func TestRainGrants(t *testing.T) {
	t.Parallel()
	sqltestRun(t, func(t *testing.T, f *userFixture) {
		ctx := t.Context()
		cash := rain.Win{SessionID: 7, UserID: "user001", N: 1, Prize: rain.Prize{Index: 0, Kind: rain.KindCash, Amount: 150}}
		awardWin := rain.Win{SessionID: 7, UserID: "xiaofuge", N: 1, Prize: rain.Prize{Index: 1, Kind: rain.KindAward, AwardID: 101}}
		sku := rain.Win{SessionID: 7, UserID: "user003", N: 2, Prize: rain.Prize{Index: 2, Kind: rain.KindSKU, SKU: 9011}}
		lost := rain.Win{SessionID: 7, UserID: "xfg", N: 1, Prize: rain.Prize{Index: 3, Kind: rain.KindCash, Amount: 100}}
		wins := []rain.Win{cash, awardWin, sku, lost}

		creditOrder := func(user, orderID, no string) {
			t.Helper()
			r := f.router.Route(user)
			if _, err := f.dbs[r.DB].SQL.ExecContext(ctx, "INSERT INTO user_credit_order"+r.Suffix+
				" (user_id, order_id, trade_name, trade_type, trade_amount, out_business_no) VALUES (?, ?, ?, ?, ?, ?)",
				user, orderID, rain.NameWin, "forward", "1.50", no); err != nil {
				t.Fatal(err)
			}
		}
		creditOrder("user001", "rc1", cash.BusinessNo())
		creditOrder("user001", "rc2", "rain_8_user001_1") // another session's
		creditOrder("xfg", "rc3", "rain_7_xfg_2")         // another win
		record := func(user, orderID string, awardID int) {
			t.Helper()
			r := f.router.Route(user)
			if _, err := f.dbs[r.DB].SQL.ExecContext(ctx, "INSERT INTO user_award_record"+r.Suffix+
				" (user_id, activity_id, strategy_id, order_id, award_id, award_time, award_state) VALUES (?, 0, 0, ?, ?, ?, 'create')",
				user, orderID, awardID, "2026-12-02 20:00:00"); err != nil {
				t.Fatal(err)
			}
		}
		record("xiaofuge", awardOrderID(awardWin), 101)
		record("xiaofuge", "ra-other", 101)
		recharge := func(user, orderID, no string, sku int64) {
			t.Helper()
			r := f.router.Route(user)
			if _, err := f.dbs[r.DB].SQL.ExecContext(ctx, "INSERT INTO raffle_activity_order"+r.Suffix+
				" (user_id, sku, activity_id, strategy_id, order_id, order_time, total_count, day_count, month_count, state, out_business_no)"+
				" VALUES (?, ?, 100301, 100006, ?, ?, 1, 1, 1, 'completed', ?)",
				user, sku, orderID, "2026-12-02 20:00:00", no); err != nil {
				t.Fatal(err)
			}
		}
		recharge("user003", "ro1", sku.BusinessNo(), 9011)
		recharge("user003", "ro2", "rain_7_user003_1", 9011)

		got, err := f.store.RainGrants(ctx, wins)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Errorf("grants of %d business numbers, want 3: %+v", len(got), got)
		}
		r := f.router.Route("user001")
		if c := got[cash.BusinessNo()].Credits; len(c) != 1 || c[0] != (reconcile.CreditOrder{DB: r.DB, Table: r.Suffix, UserID: "user001",
			OrderID: "rc1", Name: rain.NameWin, Type: credit.Forward, Amount: 150, BusinessNo: cash.BusinessNo()}) {
			t.Errorf("cash win's credits %+v", c)
		}
		if a := got[awardWin.BusinessNo()].Awards; !slices.Equal(a, []reconcile.RainAward{{UserID: "xiaofuge", OrderID: awardOrderID(awardWin), AwardID: 101}}) {
			t.Errorf("award win's records %+v", a)
		}
		if rc := got[sku.BusinessNo()].Recharges; !slices.Equal(rc, []reconcile.RainRecharge{{UserID: "user003", OrderID: "ro1", SKU: 9011}}) {
			t.Errorf("SKU win's recharges %+v", rc)
		}
		ds := reconcile.RainGrants(wins, got)
		if len(ds) != 1 || ds[0].Kind != reconcile.KindRainGrantMissing || ds[0].Key != lost.BusinessNo() {
			t.Errorf("checks on the grants found %v, want the uncredited cash win only", ds)
		}
		if none, err := f.store.RainGrants(ctx, nil); err != nil || len(none) != 0 {
			t.Errorf("no wins: %v, %v", none, err)
		}
	})
}

// awardOrderID is the order id the rain store gives an award win's record ("ra" and 30
// hex digits of the SHA-256 of the message id), spelled out here so that a change to it
// on either side shows.
func awardOrderID(w rain.Win) string {
	sum := sha256.Sum256([]byte(w.MsgID()))
	return "ra" + hex.EncodeToString(sum[:15])
}

// sqltestRun runs fn on a user fixture of each dialect.
func sqltestRun(t *testing.T, fn func(t *testing.T, f *userFixture)) {
	sqltest.Run(t, func(t *testing.T, db *sqlstore.DB) { fn(t, newUserFixture(t, db)) })
}
