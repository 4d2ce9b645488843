package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/app"
	"github.com/bigmarket/bigmarket/audit"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/rain"
	"github.com/bigmarket/bigmarket/rebate"
	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/redpacket"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/sqlstore/sqltest"
)

// The fixture's users and where the 2x4 router puts them.
const (
	verifyDBs    = 2
	verifyTables = 4
	userXFG      = "xiaofuge" // database 01, table _001
	userOne      = "user001"  // database 02, table _000
	userThree    = "user003"  // database 01, table _002, no rows in the clean data

	rpSender = "rpsender" // database 01, table _003: sends the red packets
	rpGrab1  = "rpgrab1"  // database 01, table _002
	rpGrab2  = "rpgrab2"  // database 02, table _001
	rpGrab3  = "rpgrab3"  // database 02, table _000, no rows in the clean data
)

// verifyFixture is a config database seeded with the demo and two migrated user
// databases holding a dataset verify must find clean.
type verifyFixture struct {
	config *sqlstore.DB
	users  []*sqlstore.DB
	router sqlstore.Router
	now    time.Time
	seq    int

	// The clean dataset's red packets: rpSender's open, refunded and closed packets, an
	// operator packet closed with items left, and one of rpSender's before the window.
	rpOpen, rpRefunded, rpClosed, rpOperator, rpAncient string
}

// newVerifyFixture migrates the databases open returns (the config database, then the
// user databases) and seeds the demo configuration.
func newVerifyFixture(t *testing.T, open func(t *testing.T, name string) *sqlstore.DB) *verifyFixture {
	t.Helper()
	ctx := context.Background()
	router, err := sqlstore.NewRouter(verifyDBs, verifyTables)
	if err != nil {
		t.Fatal(err)
	}
	f := &verifyFixture{config: open(t, "big_market"), router: router, now: time.Now().UTC().Truncate(time.Second)}
	if err := sqlstore.MigrateConfig(ctx, f.config); err != nil {
		t.Fatal(err)
	}
	if err := sqlstore.SeedDemo(ctx, f.config); err != nil {
		t.Fatal(err)
	}
	for i := range verifyDBs {
		db := open(t, fmt.Sprintf("big_market_%02d", i+1))
		if err := sqlstore.MigrateUser(ctx, db, verifyTables); err != nil {
			t.Fatal(err)
		}
		f.users = append(f.users, db)
	}
	return f
}

// window is the default verify window at the fixture's time: a day back, a minute's grace.
func (f *verifyFixture) window() reconcile.Window {
	return reconcile.Window{Since: f.now.Add(-24 * time.Hour), Settled: f.now.Add(-time.Minute)}
}

// Ages of the planted rows: settled ones, ones still within the grace, and ones before
// the window.
func (f *verifyFixture) old() time.Time     { return f.now.Add(-10 * time.Minute) }
func (f *verifyFixture) young() time.Time   { return f.now.Add(-10 * time.Second) }
func (f *verifyFixture) ancient() time.Time { return f.now.Add(-48 * time.Hour) }

// exec runs query on the user's database with "{t}" replaced by the user's table suffix.
func (f *verifyFixture) exec(t *testing.T, userID, query string, args ...any) {
	t.Helper()
	r := f.router.Route(userID)
	if _, err := f.users[r.DB].SQL.ExecContext(context.Background(), strings.ReplaceAll(query, "{t}", r.Suffix), args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// reset empties the user tables the fixture writes.
func (f *verifyFixture) reset(t *testing.T) {
	t.Helper()
	for _, db := range f.users {
		stmts := []string{"DELETE FROM task", "DELETE FROM user_credit_account", "DELETE FROM red_packet", "DELETE FROM red_packet_item"}
		for i := range verifyTables {
			sfx := sqlstore.TableSuffix(i)
			for _, table := range []string{"user_award_record", "user_credit_order", "raffle_activity_order", "user_behavior_rebate_order"} {
				stmts = append(stmts, "DELETE FROM "+table+sfx)
			}
		}
		for _, s := range stmts {
			if _, err := db.SQL.ExecContext(context.Background(), s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	}
}

// award inserts an award record and, unless taskState is empty, its send_award task
// carrying awardConfig, both dated at.
func (f *verifyFixture) award(t *testing.T, userID, orderID string, awardID int, state award.State, at time.Time, taskState, awardConfig string) {
	t.Helper()
	f.exec(t, userID, `INSERT INTO user_award_record{t} (user_id, activity_id, strategy_id, order_id, award_id, award_title,
		award_time, award_state, create_time) VALUES (?, 100301, 100006, ?, ?, 'title', ?, ?, ?)`,
		userID, orderID, awardID, at, string(state), at)
	if taskState == "" {
		return
	}
	task := award.NewSendAwardTask(award.Record{UserID: userID, OrderID: orderID, AwardID: awardID, AwardTitle: "title", AwardTime: at}, awardConfig)
	f.task(t, userID, task.Topic, task.MessageID, task.Message, taskState, at)
}

// task inserts a task row.
func (f *verifyFixture) task(t *testing.T, userID, topic, messageID, message, state string, at time.Time) {
	t.Helper()
	f.exec(t, userID, `INSERT INTO task (user_id, topic, message_id, message, state, create_time) VALUES (?, ?, ?, ?, ?, ?)`,
		userID, topic, messageID, message, state, at)
}

// credit inserts a credit order.
func (f *verifyFixture) credit(t *testing.T, userID, outBusinessNo, tradeName, tradeType, amount string, at time.Time) {
	t.Helper()
	f.seq++
	f.exec(t, userID, `INSERT INTO user_credit_order{t} (user_id, order_id, trade_name, trade_type, trade_amount,
		out_business_no, create_time) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		userID, fmt.Sprintf("co%08d", f.seq), tradeName, tradeType, amount, outBusinessNo, at)
}

// activityOrder inserts a raffle_activity_order (a SKU exchange or a rebate's grant).
func (f *verifyFixture) activityOrder(t *testing.T, userID, outBusinessNo, payAmount, state string, at time.Time) {
	t.Helper()
	f.seq++
	f.exec(t, userID, `INSERT INTO raffle_activity_order{t} (user_id, sku, activity_id, activity_name, strategy_id, order_id,
		order_time, total_count, day_count, month_count, pay_amount, state, out_business_no, create_time)
		VALUES (?, 9014, 100301, 'act', 100006, ?, ?, 1, 1, 1, ?, ?, ?, ?)`,
		userID, fmt.Sprintf("ao%08d", f.seq), at, payAmount, state, outBusinessNo, at)
}

// rebate inserts a behaviour rebate order; its biz id is {user}_{type}_{outBusinessNo}.
func (f *verifyFixture) rebate(t *testing.T, userID, rebateType, rebateConfig, outBusinessNo string, at time.Time) string {
	t.Helper()
	f.seq++
	bizID := userID + "_" + rebateType + "_" + outBusinessNo
	f.exec(t, userID, `INSERT INTO user_behavior_rebate_order{t} (user_id, order_id, behavior_type, rebate_desc, rebate_type,
		rebate_config, out_business_no, biz_id, create_time) VALUES (?, ?, 'sign', 'sign in', ?, ?, ?, ?, ?)`,
		userID, fmt.Sprintf("ro%08d", f.seq), rebateType, rebateConfig, outBusinessNo, bizID, at)
	return bizID
}

// account inserts or replaces the user's credit account.
func (f *verifyFixture) account(t *testing.T, userID, total, available string) {
	t.Helper()
	f.exec(t, userID, `DELETE FROM user_credit_account WHERE user_id = ?`, userID)
	f.exec(t, userID, `INSERT INTO user_credit_account (user_id, total_amount, available_amount, account_status)
		VALUES (?, ?, ?, 'open')`, userID, total, available)
}

// redPacket inserts a red packet of sender ("" for an operator packet) in home's database
// with one item per amount, created, updated and expiring an hour after at, and returns
// its id: home's database index, as the store makes them, and a sequence number.
func (f *verifyFixture) redPacket(t *testing.T, home, sender, total, state, refund string, at time.Time, amounts ...string) string {
	t.Helper()
	f.seq++
	id := fmt.Sprintf("%02d%020d", f.router.Route(home).DB, f.seq)
	f.exec(t, home, `INSERT INTO red_packet (packet_id, sender_id, total_amount, item_count, split_mode, packet_state, refund_amount,
		expire_time, create_time, update_time) VALUES (?, ?, ?, ?, 'random', ?, ?, ?, ?, ?)`,
		id, sender, total, len(amounts), state, refund, at.Add(time.Hour), at, at)
	for i, a := range amounts {
		f.exec(t, home, `INSERT INTO red_packet_item (packet_id, item_index, amount, create_time, update_time) VALUES (?, ?, ?, ?, ?)`,
			id, i, a, at, at)
	}
	return id
}

// grabItem records userID's grab of item index of packet id, which lives in home's
// database, at at.
func (f *verifyFixture) grabItem(t *testing.T, home, id string, index int, userID string, at time.Time) {
	t.Helper()
	f.exec(t, home, `UPDATE red_packet_item SET user_id = ?, grab_time = ? WHERE packet_id = ? AND item_index = ?`, userID, at, id, index)
}

// seedRedPackets writes the red packets of the clean dataset, each with the credit orders
// it explains, and the accounts of their users.
func (f *verifyFixture) seedRedPackets(t *testing.T) {
	t.Helper()
	old, young := f.old(), f.young()
	grab := func(home, id string, index int, userID, amount string, at time.Time) {
		f.grabItem(t, home, id, index, userID, at)
		f.credit(t, userID, id+"_"+userID, redpacket.NameGrab, string(credit.Forward), amount, at)
	}
	f.credit(t, rpSender, "rp_recharge", "调账", string(credit.Forward), "20.00", old)

	// Open: one grab credited, one still within the grace, one item left.
	f.rpOpen = f.redPacket(t, rpSender, rpSender, "10.00", "open", "0.00", old, "5.00", "3.00", "2.00")
	f.credit(t, rpSender, f.rpOpen, redpacket.NameSend, string(credit.Reverse), "10.00", old)
	grab(rpSender, f.rpOpen, 0, rpGrab1, "5.00", old)
	f.grabItem(t, rpSender, f.rpOpen, 1, rpGrab2, young)

	// Refunded: half grabbed, the rest back to the sender.
	f.rpRefunded = f.redPacket(t, rpSender, rpSender, "6.00", "refunded", "2.00", old, "4.00", "2.00")
	f.credit(t, rpSender, f.rpRefunded, redpacket.NameSend, string(credit.Reverse), "6.00", old)
	grab(rpSender, f.rpRefunded, 0, rpGrab1, "4.00", old)
	f.credit(t, rpSender, redpacket.RefundBusinessNo(f.rpRefunded), redpacket.NameRefund, string(credit.Forward), "2.00", old)

	// Closed: grabbed whole.
	f.rpClosed = f.redPacket(t, rpSender, rpSender, "1.00", "closed", "0.00", old, "1.00")
	f.credit(t, rpSender, f.rpClosed, redpacket.NameSend, string(credit.Reverse), "1.00", old)
	grab(rpSender, f.rpClosed, 0, rpGrab2, "1.00", old)

	// Operator: no debit, closed with two items left.
	f.rpOperator = f.redPacket(t, rpGrab2, "", "3.00", "closed", "0.00", old, "1.00", "1.00", "1.00")
	grab(rpGrab2, f.rpOperator, 0, rpGrab1, "1.00", old)

	// Before the window: not checked (no debit, a grab never credited), but the credit in
	// the window of its later grab is explained by it.
	f.rpAncient = f.redPacket(t, rpSender, rpSender, "2.00", "open", "0.00", f.ancient(), "1.00", "1.00")
	f.grabItem(t, rpSender, f.rpAncient, 0, rpGrab1, f.ancient())
	grab(rpSender, f.rpAncient, 1, rpGrab2, "1.00", old)

	f.account(t, rpSender, "22.00", "5.00")
	f.account(t, rpGrab1, "10.00", "10.00")
	f.account(t, rpGrab2, "2.00", "2.00")
}

// seedClean writes the dataset verify must find clean: settled credit, blacklist and
// webhook awards with delivered tasks, awards and tasks still within the grace, a record
// before the window without a task, delivered integral and SKU rebates, a paid exchange,
// an unpaid one, red packets (seedRedPackets), and accounts that add up.
func (f *verifyFixture) seedClean(t *testing.T) {
	t.Helper()
	f.reset(t)
	old, young := f.old(), f.young()

	f.award(t, userXFG, "xfg_r1", 101, award.StateCompleted, old, "completed", "")
	f.credit(t, userXFG, "xfg_r1", credit.NameAward, string(credit.Forward), "50.00", old)
	f.award(t, userXFG, "xfg_r2", 101, award.StateCompleted, old, "completed", "1,10")
	f.credit(t, userXFG, "xfg_r2", credit.NameAward, string(credit.Forward), "5.00", old)
	f.award(t, userXFG, "xfg_r3", 100, award.StateCompleted, old, "completed", "")
	f.credit(t, userXFG, "xfg_r3", credit.NameAward, string(credit.Forward), "1.00", old)
	f.award(t, userXFG, "xfg_r4", 102, award.StateCompleted, old, "completed", "")
	f.award(t, userXFG, "xfg_r5", 102, award.StateCreate, young, "create", "")
	f.award(t, userXFG, "xfg_r6", 101, award.StateCreate, young, "fail", "")
	f.award(t, userXFG, "xfg_r0", 102, award.StateCreate, f.ancient(), "", "")

	integral := f.rebate(t, userXFG, string(rebate.TypeIntegral), "10", "s1", old)
	f.credit(t, userXFG, integral, credit.NameRebate, string(credit.Forward), "10.00", old)
	sku := f.rebate(t, userXFG, string(rebate.TypeSKU), "9014", "s1", old)
	f.activityOrder(t, userXFG, sku, "0.00", "completed", old)
	f.rebate(t, userXFG, string(rebate.TypeIntegral), "10", "s2", young)

	f.activityOrder(t, userXFG, "xfg_pay1", "5.00", "completed", old)
	f.credit(t, userXFG, "xfg_pay1", "兑换抽奖", string(credit.Reverse), "5.00", old)
	f.activityOrder(t, userXFG, "xfg_pay2", "20.00", "wait_pay", old)
	f.account(t, userXFG, "66.00", "61.00")

	f.award(t, userOne, "u1_r1", 101, award.StateCompleted, old, "completed", "")
	f.credit(t, userOne, "u1_r1", credit.NameAward, string(credit.Forward), "30.00", old)
	f.account(t, userOne, "30.00", "30.00")

	f.seedRedPackets(t)
}

// verifyCases plant one discrepancy each in the clean dataset (or, for the grace and
// window cases, a row that is not one yet) and name the one kind verify must report.
var verifyCases = []struct {
	name  string
	plant func(t *testing.T, f *verifyFixture)
	kind  string // "" when verify must find the data clean
	user  string
}{
	{name: "clean", plant: func(*testing.T, *verifyFixture) {}},
	{name: "paid wait_pay within grace", plant: func(t *testing.T, f *verifyFixture) {
		f.activityOrder(t, userXFG, "xfg_pay3", "20.00", "wait_pay", f.old())
		f.credit(t, userXFG, "xfg_pay3", "兑换抽奖", string(credit.Reverse), "20.00", f.young())
		f.account(t, userXFG, "66.00", "41.00")
	}},
	{name: "undelivered task before window", plant: func(t *testing.T, f *verifyFixture) {
		f.task(t, userXFG, "send_rebate", "xfg_old", "{}", "fail", f.ancient())
	}},
	{name: "task deleted", kind: reconcile.KindAwardTaskMissing, user: userXFG, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, userXFG, `DELETE FROM task WHERE message_id = 'xfg_r1'`)
	}},
	{name: "task of another topic", kind: reconcile.KindAwardTaskMissing, user: userXFG, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, userXFG, `UPDATE task SET topic = 'send_rebate' WHERE message_id = 'xfg_r4'`)
	}},
	{name: "task failed", kind: reconcile.KindTaskUndelivered, user: userXFG, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, userXFG, `UPDATE task SET state = 'fail' WHERE message_id = 'xfg_r4'`)
	}},
	{name: "task never sent", kind: reconcile.KindTaskUndelivered, user: userOne, plant: func(t *testing.T, f *verifyFixture) {
		f.task(t, userOne, "send_rebate", "u1_rebate", "{}", "create", f.old())
	}},
	{name: "award not configured", kind: reconcile.KindAwardUnknown, user: userXFG, plant: func(t *testing.T, f *verifyFixture) {
		f.award(t, userXFG, "xfg_r9", 999, award.StateCompleted, f.old(), "completed", "")
	}},
	{name: "completed without credit", kind: reconcile.KindAwardCreditMissing, user: userXFG, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, userXFG, `DELETE FROM user_credit_order{t} WHERE out_business_no = 'xfg_r1'`)
		f.account(t, userXFG, "16.00", "11.00")
	}},
	{name: "credited but create", kind: reconcile.KindAwardStateStale, user: userXFG, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, userXFG, `UPDATE user_award_record{t} SET award_state = 'create' WHERE order_id = 'xfg_r1'`)
	}},
	{name: "credit award undistributed", kind: reconcile.KindAwardUndistributed, user: userOne, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, userOne, `UPDATE user_award_record{t} SET award_state = 'create' WHERE order_id = 'u1_r1'`)
		f.exec(t, userOne, `DELETE FROM user_credit_order{t} WHERE out_business_no = 'u1_r1'`)
		f.account(t, userOne, "0.00", "0.00")
	}},
	{name: "webhook award undistributed", kind: reconcile.KindAwardUndistributed, user: userXFG, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, userXFG, `UPDATE user_award_record{t} SET award_state = 'create' WHERE order_id = 'xfg_r4'`)
	}},
	{name: "random credit beyond the task's range", kind: reconcile.KindAwardCreditAmount, user: userXFG, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, userXFG, `UPDATE user_credit_order{t} SET trade_amount = '15.00' WHERE out_business_no = 'xfg_r2'`)
		f.account(t, userXFG, "76.00", "71.00")
	}},
	{name: "random credit beyond the award's range", kind: reconcile.KindAwardCreditAmount, user: userOne, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, userOne, `UPDATE user_credit_order{t} SET trade_amount = '100.01' WHERE out_business_no = 'u1_r1'`)
		f.account(t, userOne, "100.01", "100.01")
	}},
	{name: "blacklist credit not exact", kind: reconcile.KindAwardCreditAmount, user: userXFG, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, userXFG, `UPDATE user_credit_order{t} SET trade_amount = '2.00' WHERE out_business_no = 'xfg_r3'`)
		f.account(t, userXFG, "67.00", "62.00")
	}},
	{name: "webhook award credited", kind: reconcile.KindAwardCreditUnexpected, user: userXFG, plant: func(t *testing.T, f *verifyFixture) {
		f.credit(t, userXFG, "xfg_r4", credit.NameAward, string(credit.Forward), "3.00", f.old())
		f.account(t, userXFG, "69.00", "64.00")
	}},
	{name: "prize credit without record", kind: reconcile.KindCreditOrderOrphan, user: userXFG, plant: func(t *testing.T, f *verifyFixture) {
		f.credit(t, userXFG, "xfg_nosuch", credit.NameAward, string(credit.Forward), "7.00", f.old())
		f.account(t, userXFG, "73.00", "68.00")
	}},
	{name: "available off", kind: reconcile.KindCreditBalance, user: userXFG, plant: func(t *testing.T, f *verifyFixture) {
		f.account(t, userXFG, "66.00", "60.00")
	}},
	{name: "orders without account", kind: reconcile.KindCreditBalance, user: userThree, plant: func(t *testing.T, f *verifyFixture) {
		f.credit(t, userThree, "u3_adjust", "调账", string(credit.Forward), "5.00", f.ancient())
	}},
	{name: "overdrawn", kind: reconcile.KindCreditNegative, user: userThree, plant: func(t *testing.T, f *verifyFixture) {
		f.credit(t, userThree, "u3_adjust", "调账", string(credit.Reverse), "3.00", f.old())
		f.account(t, userThree, "0.00", "-3.00")
	}},
	{name: "exchange completed unpaid", kind: reconcile.KindExchangeUnpaidCompleted, user: userXFG, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, userXFG, `DELETE FROM user_credit_order{t} WHERE out_business_no = 'xfg_pay1'`)
		f.account(t, userXFG, "66.00", "66.00")
	}},
	{name: "exchange underpaid", kind: reconcile.KindExchangeAmount, user: userXFG, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, userXFG, `UPDATE user_credit_order{t} SET trade_amount = '4.00' WHERE out_business_no = 'xfg_pay1'`)
		f.account(t, userXFG, "66.00", "62.00")
	}},
	{name: "exchange paid, quota not added", kind: reconcile.KindExchangePaidNotCompleted, user: userXFG, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, userXFG, `UPDATE raffle_activity_order{t} SET state = 'wait_pay' WHERE out_business_no = 'xfg_pay1'`)
	}},
	{name: "integral rebate not credited", kind: reconcile.KindRebateUndelivered, user: userXFG, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, userXFG, `DELETE FROM user_credit_order{t} WHERE out_business_no = 'xiaofuge_integral_s1'`)
		f.account(t, userXFG, "56.00", "51.00")
	}},
	{name: "integral rebate amount", kind: reconcile.KindRebateAmount, user: userXFG, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, userXFG, `UPDATE user_credit_order{t} SET trade_amount = '12.00' WHERE out_business_no = 'xiaofuge_integral_s1'`)
		f.account(t, userXFG, "68.00", "63.00")
	}},
	{name: "sku rebate not granted", kind: reconcile.KindRebateUndelivered, user: userXFG, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, userXFG, `DELETE FROM raffle_activity_order{t} WHERE out_business_no = 'xiaofuge_sku_s1'`)
	}},

	{name: "red packet closed within grace", plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, rpSender, `UPDATE red_packet_item SET user_id = NULL, grab_time = NULL WHERE packet_id = ?`, f.rpClosed)
		f.exec(t, rpGrab2, `DELETE FROM user_credit_order{t} WHERE out_business_no = ?`, f.rpClosed+"_"+rpGrab2)
		f.exec(t, rpSender, `UPDATE red_packet SET update_time = ? WHERE packet_id = ?`, f.young(), f.rpClosed)
		f.account(t, rpGrab2, "1.00", "1.00")
	}},
	{name: "red packet refunded within grace", plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, rpSender, `DELETE FROM user_credit_order{t} WHERE out_business_no = ?`, redpacket.RefundBusinessNo(f.rpRefunded))
		f.exec(t, rpSender, `UPDATE red_packet SET update_time = ? WHERE packet_id = ?`, f.young(), f.rpRefunded)
		f.account(t, rpSender, "20.00", "3.00")
	}},
	{name: "red packet credit without grab within grace", plant: func(t *testing.T, f *verifyFixture) {
		f.credit(t, rpGrab3, f.rpOpen+"_"+rpGrab3, redpacket.NameGrab, string(credit.Forward), "2.00", f.young())
		f.account(t, rpGrab3, "2.00", "2.00")
	}},
	{name: "red packet grab uncredited", kind: reconcile.KindRedPacketGrabUncredited, user: rpGrab1, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, rpGrab1, `DELETE FROM user_credit_order{t} WHERE out_business_no = ?`, f.rpOpen+"_"+rpGrab1)
		f.account(t, rpGrab1, "5.00", "5.00")
	}},
	{name: "red packet grab credited wrong amount", kind: reconcile.KindRedPacketGrabCredit, user: rpGrab1, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, rpGrab1, `UPDATE user_credit_order{t} SET trade_amount = '6.00' WHERE out_business_no = ?`, f.rpOpen+"_"+rpGrab1)
		f.account(t, rpGrab1, "11.00", "11.00")
	}},
	{name: "red packet grab debited", kind: reconcile.KindRedPacketGrabCredit, user: rpGrab2, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, rpGrab2, `UPDATE user_credit_order{t} SET trade_type = 'reverse' WHERE out_business_no = ?`, f.rpClosed+"_"+rpGrab2)
		f.account(t, rpGrab2, "1.00", "0.00")
	}},
	{name: "red packet credit without grab", kind: reconcile.KindRedPacketCreditOrphan, user: rpGrab3, plant: func(t *testing.T, f *verifyFixture) {
		f.credit(t, rpGrab3, f.rpOpen+"_"+rpGrab3, redpacket.NameGrab, string(credit.Forward), "2.00", f.old())
		f.account(t, rpGrab3, "2.00", "2.00")
	}},
	{name: "red packet credit of an unknown packet", kind: reconcile.KindRedPacketCreditOrphan, user: rpGrab3, plant: func(t *testing.T, f *verifyFixture) {
		f.credit(t, rpGrab3, "0199999999999999999999_"+rpGrab3, redpacket.NameGrab, string(credit.Forward), "2.00", f.old())
		f.account(t, rpGrab3, "2.00", "2.00")
	}},
	{name: "operator red packet debited", kind: reconcile.KindRedPacketCreditOrphan, user: rpSender, plant: func(t *testing.T, f *verifyFixture) {
		f.credit(t, rpSender, f.rpOperator, redpacket.NameSend, string(credit.Reverse), "3.00", f.old())
		f.account(t, rpSender, "22.00", "2.00")
	}},
	{name: "open red packet refunded", kind: reconcile.KindRedPacketCreditOrphan, user: rpSender, plant: func(t *testing.T, f *verifyFixture) {
		f.credit(t, rpSender, redpacket.RefundBusinessNo(f.rpOpen), redpacket.NameRefund, string(credit.Forward), "2.00", f.old())
		f.account(t, rpSender, "24.00", "7.00")
	}},
	{name: "red packet zero refund credited", kind: reconcile.KindRedPacketCreditOrphan, user: rpSender, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, rpSender, `UPDATE red_packet SET packet_state = 'refunded' WHERE packet_id = ?`, f.rpClosed)
		f.credit(t, rpSender, redpacket.RefundBusinessNo(f.rpClosed), redpacket.NameRefund, string(credit.Forward), "0.00", f.old())
	}},
	{name: "red packet item amount changed", kind: reconcile.KindRedPacketSplit, user: rpSender, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, rpSender, `UPDATE red_packet_item SET amount = '2.50' WHERE packet_id = ? AND item_index = 2`, f.rpOpen)
	}},
	{name: "red packet item lost", kind: reconcile.KindRedPacketSplit, user: rpSender, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, rpSender, `DELETE FROM red_packet_item WHERE packet_id = ? AND item_index = 2`, f.rpOpen)
	}},
	{name: "red packet overgrabbed", kind: reconcile.KindRedPacketOvergrabbed, user: "", plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, rpGrab2, `UPDATE red_packet_item SET amount = '3.00' WHERE packet_id = ? AND item_index = 1`, f.rpOperator)
		f.exec(t, rpGrab2, `UPDATE red_packet_item SET amount = '-1.00' WHERE packet_id = ? AND item_index = 2`, f.rpOperator)
		f.grabItem(t, rpGrab2, f.rpOperator, 1, rpGrab2, f.old())
		f.credit(t, rpGrab2, f.rpOperator+"_"+rpGrab2, redpacket.NameGrab, string(credit.Forward), "3.00", f.old())
		f.account(t, rpGrab2, "5.00", "5.00")
	}},
	{name: "red packet not debited", kind: reconcile.KindRedPacketDebitMissing, user: rpSender, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, rpSender, `DELETE FROM user_credit_order{t} WHERE out_business_no = ?`, f.rpOpen)
		f.account(t, rpSender, "22.00", "15.00")
	}},
	{name: "red packet underpaid", kind: reconcile.KindRedPacketDebitAmount, user: rpSender, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, rpSender, `UPDATE user_credit_order{t} SET trade_amount = '9.00' WHERE out_business_no = ?`, f.rpOpen)
		f.account(t, rpSender, "22.00", "6.00")
	}},
	{name: "red packet refund not credited", kind: reconcile.KindRedPacketRefundMissing, user: rpSender, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, rpSender, `DELETE FROM user_credit_order{t} WHERE out_business_no = ?`, redpacket.RefundBusinessNo(f.rpRefunded))
		f.account(t, rpSender, "20.00", "3.00")
	}},
	{name: "red packet refund credited wrong amount", kind: reconcile.KindRedPacketRefundAmount, user: rpSender, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, rpSender, `UPDATE user_credit_order{t} SET trade_amount = '2.50' WHERE out_business_no = ?`, redpacket.RefundBusinessNo(f.rpRefunded))
		f.account(t, rpSender, "22.50", "5.50")
	}},
	{name: "red packet refund short", kind: reconcile.KindRedPacketRefundAmount, user: rpSender, plant: func(t *testing.T, f *verifyFixture) {
		// update_time set, as MySQL would move it to now and put the change within the grace.
		f.exec(t, rpSender, `UPDATE red_packet SET refund_amount = '1.00', update_time = ? WHERE packet_id = ?`, f.old(), f.rpRefunded)
		f.exec(t, rpSender, `UPDATE user_credit_order{t} SET trade_amount = '1.00' WHERE out_business_no = ?`, redpacket.RefundBusinessNo(f.rpRefunded))
		f.account(t, rpSender, "21.00", "4.00")
	}},
	{name: "operator red packet refunded", kind: reconcile.KindRedPacketRefundAmount, user: "", plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, rpGrab2, `UPDATE red_packet SET packet_state = 'refunded', refund_amount = '2.00' WHERE packet_id = ?`, f.rpOperator)
	}},
	{name: "closed red packet with a refund", kind: reconcile.KindRedPacketClosedLeftover, user: rpSender, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, rpSender, `UPDATE red_packet SET refund_amount = '1.00' WHERE packet_id = ?`, f.rpClosed)
	}},
	{name: "closed red packet with an item left", kind: reconcile.KindRedPacketClosedLeftover, user: rpSender, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, rpSender, `UPDATE red_packet_item SET user_id = NULL, grab_time = NULL WHERE packet_id = ?`, f.rpClosed)
		f.exec(t, rpGrab2, `DELETE FROM user_credit_order{t} WHERE out_business_no = ?`, f.rpClosed+"_"+rpGrab2)
		f.account(t, rpGrab2, "1.00", "1.00")
	}},
	{name: "red packet state unknown", kind: reconcile.KindRedPacketState, user: rpSender, plant: func(t *testing.T, f *verifyFixture) {
		f.exec(t, rpSender, `UPDATE red_packet SET packet_state = 'lost' WHERE packet_id = ?`, f.rpOpen)
	}},
}

// verifyBackends open the fixture's databases on SQLite and, with
// BIGMARKET_TEST_MYSQL_DSN, on MySQL/MariaDB.
var verifyBackends = []struct {
	name string
	open func(t *testing.T) func(t *testing.T, name string) *sqlstore.DB
}{
	{"sqlite", func(t *testing.T) func(*testing.T, string) *sqlstore.DB {
		dir := t.TempDir()
		return func(t *testing.T, name string) *sqlstore.DB {
			db, err := sqlstore.OpenSQLite(filepath.Join(dir, name+".db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		}
	}},
	{"mysql", func(t *testing.T) func(*testing.T, string) *sqlstore.DB {
		server := testenv.MySQLDSN(t)
		return func(t *testing.T, _ string) *sqlstore.DB {
			db, err := sqlstore.OpenMySQL(sqltest.NewMySQL(t, server))
			if err != nil {
				t.Fatal(err)
			}
			db.LimitConns(sqltest.MaxConns)
			t.Cleanup(func() { db.Close() })
			return db
		}
	}},
}

// TestVerify runs every planted discrepancy on SQLite and, with
// BIGMARKET_TEST_MYSQL_DSN, on MySQL/MariaDB.
func TestVerify(t *testing.T) {
	for _, b := range verifyBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := newVerifyFixture(t, b.open(t))
			for _, c := range verifyCases {
				t.Run(c.name, func(t *testing.T) {
					f.seedClean(t)
					c.plant(t, f)
					rep, err := audit.Ledger(context.Background(), f.config, f.users, verifyTables, f.window())
					if err != nil {
						t.Fatal(err)
					}
					got := rep.Discrepancies
					switch {
					case c.kind == "" && len(got) != 0:
						t.Errorf("want clean, got %v", got)
					case c.kind != "" && (len(got) != 1 || got[0].Kind != c.kind || got[0].UserID != c.user):
						t.Errorf("want one %s of %s, got %v", c.kind, c.user, got)
					}
				})
			}
		})
	}
}

// TestVerifyRedPacketStore writes red packets through the store the server uses (a send
// with its debit, grabs applied twice, the expiry refund) and expects verify to find
// them clean with every grab settled: the checks and the store agree on the contract.
func TestVerifyRedPacketStore(t *testing.T) {
	for _, b := range verifyBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newVerifyFixture(t, b.open(t))
			store := sqlstore.NewUserStore(f.users, f.router)
			now := time.Now()
			if errs := store.ApplyCredit(ctx, []credit.Change{{UserID: rpSender, Order: &credit.Order{UserID: rpSender,
				OrderID: activity.NewOrderID(now), Name: "调账", Type: credit.Forward, Amount: 100_00, OutBusinessNo: "rp_recharge"}}}); errs[0] != nil {
				t.Fatal(errs[0])
			}
			send := func(sender string, amounts ...money.Cents) string {
				t.Helper()
				p := redpacket.Packet{ID: store.PacketID(sender, now), SenderID: sender, Count: len(amounts), Mode: redpacket.ModeRandom,
					State: redpacket.StateOpen, ExpireAt: now.Add(time.Hour).Truncate(time.Second), Created: now}
				items := make([]redpacket.Item, len(amounts))
				for i, a := range amounts {
					items[i], p.Total = redpacket.Item{Index: i, Amount: a}, p.Total+a
				}
				var debit *credit.Order
				if sender != "" {
					debit = &credit.Order{UserID: sender, OrderID: activity.NewOrderID(now), Name: redpacket.NameSend, Type: credit.Reverse,
						Amount: p.Total, OutBusinessNo: p.ID}
				}
				if err := store.SendRedPacket(ctx, p, items, debit); err != nil {
					t.Fatal(err)
				}
				return p.ID
			}
			grab := func(id string, index int, userID string, amount money.Cents) {
				t.Helper()
				g := redpacket.Grab{PacketID: id, UserID: userID, Index: index, Amount: amount, Time: now}
				for range 2 { // a redelivery pays nothing twice
					if errs := store.ApplyGrabs(ctx, []redpacket.Grab{g}); errs[0] != nil {
						t.Fatal(errs[0])
					}
				}
			}
			refund := func(id string, want money.Cents) {
				t.Helper()
				if got, done, err := store.RefundRedPacket(ctx, id); err != nil || !done || got != want {
					t.Fatalf("refund of %s: %s %v %v, want %s", id, got, done, err, want)
				}
			}

			refunded := send(rpSender, 5_00, 3_00, 2_00)
			grab(refunded, 0, rpGrab1, 5_00)
			grab(refunded, 2, rpGrab2, 2_00)
			refund(refunded, 3_00)
			whole := send(rpSender, 1_00, 1_00)
			grab(whole, 0, rpGrab1, 1_00)
			grab(whole, 1, rpGrab2, 1_00)
			refund(whole, 0)
			open := send(rpSender, 4_00)
			grab(open, 0, rpGrab3, 4_00)
			campaign := send("", 1_00, 1_00, 1_00)
			grab(campaign, 1, rpGrab1, 1_00)
			refund(campaign, 0)

			w := reconcile.Window{Since: now.Add(-time.Hour), Settled: time.Now().Add(time.Second)}
			rep, err := audit.Ledger(ctx, f.config, f.users, verifyTables, w)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Discrepancies) != 0 || rep.Checked.RedPackets != 4 || rep.Checked.RedPacketItems != 9 {
				t.Errorf("checked %d red packets and %d items, found %v; want 4 and 9, none", rep.Checked.RedPackets,
					rep.Checked.RedPacketItems, rep.Discrepancies)
			}
		})
	}
}

// TestVerifyCounts pins what the clean dataset makes verify check: the record and the red
// packet before the window are skipped, the young rebate counted though not yet expected
// granted (as the young award records are), every account read.
func TestVerifyCounts(t *testing.T) {
	t.Parallel()
	f := newVerifyFixture(t, func(t *testing.T, name string) *sqlstore.DB {
		db, err := sqlstore.OpenSQLite(filepath.Join(t.TempDir(), name+".db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
	f.seedClean(t)
	rep, err := audit.Ledger(context.Background(), f.config, f.users, verifyTables, f.window())
	if err != nil {
		t.Fatal(err)
	}
	want := reconcile.Counts{AwardRecords: 7, Tasks: 7, CreditAccounts: 5, PrizeCredits: 4, PaidExchanges: 2, Rebates: 3, RedPackets: 4, RedPacketItems: 9}
	if rep.Checked != want || len(rep.Discrepancies) != 0 {
		t.Errorf("checked %+v with %v, want %+v and none", rep.Checked, rep.Discrepancies, want)
	}
}

// TestVerifyCommand runs "bigmarket verify" on an embedded data directory: clean, with a
// planted discrepancy, with a window that excludes it, and on a directory that is not one.
func TestVerifyCommand(t *testing.T) {
	for _, k := range []string{"BIGMARKET_CONFIG", "BIGMARKET_CONFIG_DSN", "BIGMARKET_USER_DSNS", "BIGMARKET_DATA_DIR", "BIGMARKET_ADMIN_TOKEN"} {
		t.Setenv(k, "")
	}
	t.Setenv("BIGMARKET_SHARDS", fmt.Sprintf("%dx%d", verifyDBs, verifyTables))
	t.Setenv("BIGMARKET_MODE", app.ModeDemo)
	ctx := context.Background()
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"migrate", "-data", dir, "-seed"}, &stdout, &stderr); err != nil {
		t.Fatalf("migrate: %v\n%s", err, stderr.String())
	}
	f := newVerifyFixture(t, func(t *testing.T, name string) *sqlstore.DB {
		db, err := sqlstore.OpenSQLite(filepath.Join(dir, name+".db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
	f.seedClean(t)
	verifyRun := func(args ...string) (string, error) {
		stdout.Reset()
		stderr.Reset()
		err := run(ctx, append([]string{"verify", "-data", dir}, args...), &stdout, &stderr)
		return stdout.String(), err
	}

	out, err := verifyRun()
	if err != nil || !strings.Contains(out, "verify: clean (checked 7 award records, 7 tasks, 5 credit accounts") {
		t.Fatalf("clean: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}

	f.exec(t, userXFG, `UPDATE task SET state = 'fail' WHERE message_id = 'xfg_r4'`)
	out, err = verifyRun()
	if err == nil {
		t.Fatalf("planted task_undelivered: no error\n%s", out)
	}
	// The draw checks that need the broker and Redis are said to be skipped: embedded,
	// they live in the serve process.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "task_undelivered user=xiaofuge key=xfg_r4 ") ||
		lines[1] != "verify: skipped draw events and hot quotas: the broker is embedded in the serve process" ||
		!strings.HasPrefix(lines[2], "verify: 1 discrepancies (") {
		t.Errorf("planted task_undelivered: output\n%s", out)
	}

	if out, err = verifyRun("-since", "5m"); err != nil || !strings.Contains(out, "verify: clean (") {
		t.Errorf("a window after the failed task must be clean: %v\n%s", err, out)
	}
	if out, err = verifyRun("-grace", "15m"); err != nil || !strings.Contains(out, "verify: clean (") {
		t.Errorf("a grace longer than the failed task's age must be clean: %v\n%s", err, out)
	}
	if _, err = verifyRun("-since", "0s"); err == nil {
		t.Error("-since 0s: want an error")
	}
	stdout.Reset()
	if err := run(ctx, []string{"verify", "-data", filepath.Join(dir, "missing")}, &stdout, &stderr); err == nil {
		t.Errorf("verify of a missing data directory: want an error, got\n%s", stdout.String())
	}
}

// TestVerifyCommandRain runs "bigmarket verify" on an embedded data directory holding a
// rain session written through the store the server uses: clean once ended, then with a
// prize won twice across the user databases, then without its ledger, and with a window
// after its end.
func TestVerifyCommandRain(t *testing.T) {
	for _, k := range []string{"BIGMARKET_CONFIG", "BIGMARKET_CONFIG_DSN", "BIGMARKET_USER_DSNS", "BIGMARKET_DATA_DIR", "BIGMARKET_ADMIN_TOKEN"} {
		t.Setenv(k, "")
	}
	t.Setenv("BIGMARKET_SHARDS", fmt.Sprintf("%dx%d", verifyDBs, verifyTables))
	t.Setenv("BIGMARKET_MODE", app.ModeDemo)
	ctx := context.Background()
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"migrate", "-data", dir, "-seed"}, &stdout, &stderr); err != nil {
		t.Fatalf("migrate: %v\n%s", err, stderr.String())
	}
	f := newVerifyFixture(t, func(t *testing.T, name string) *sqlstore.DB {
		db, err := sqlstore.OpenSQLite(filepath.Join(dir, name+".db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
	users := sqlstore.NewUserStore(f.users, f.router)
	store := sqlstore.NewRainStore(f.config, users)

	// Three cash prizes, all released at the start; it ended ten minutes ago.
	start := f.now.Add(-20 * time.Minute)
	prizes := []rain.Prize{{Index: 0, Kind: rain.KindCash, Amount: 1_00}, {Index: 1, Kind: rain.KindCash, Amount: 2_00},
		{Index: 2, Kind: rain.KindCash, Amount: 3_00}}
	id, err := store.CreateSession(ctx, rain.Session{Title: "verify", Specs: []rain.PrizeSpec{{Kind: rain.KindCash, Min: 1_00, Max: 3_00, Count: 3}},
		Quota: rain.Quota{Start: start, End: start.Add(10 * time.Minute), Total: 3, Burst: 3, UserCap: 1}}, prizes)
	if err != nil {
		t.Fatal(err)
	}
	// rpGrab1 lives in database 01, rpGrab3 in 02.
	wins := []rain.Win{{SessionID: id, UserID: rpGrab1, N: 1, Prize: prizes[0], Time: start.Add(time.Second)},
		{SessionID: id, UserID: rpGrab3, N: 1, Prize: prizes[2], Time: start.Add(2 * time.Second)}}
	for i, err := range store.ApplyWins(ctx, wins) {
		if err != nil {
			t.Fatalf("win %d: %v", i, err)
		}
	}
	l := rain.Ledger{EndedAt: start.Add(10 * time.Minute)}
	l.Granted.Add(prizes[0])
	l.Granted.Add(prizes[2])
	l.Unwon.Add(prizes[1])
	if err := store.EndSession(ctx, id, l); err != nil {
		t.Fatal(err)
	}

	verifyRun := func(args ...string) (string, error) {
		stdout.Reset()
		stderr.Reset()
		err := run(ctx, append([]string{"verify", "-data", dir}, args...), &stdout, &stderr)
		return stdout.String(), err
	}
	out, err := verifyRun()
	if err != nil || !strings.Contains(out, "verify: clean (") || !strings.Contains(out, "1 rain sessions (0 still open) with 2 wins") {
		t.Fatalf("clean: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}

	// rpGrab2, in database 02, also holds prize 0, which rpGrab1 won in 01: no unique key
	// spans the databases, only verify sees it (and that it was never credited, and that
	// the ledger does not count it).
	f.exec(t, rpGrab2, `INSERT INTO rain_win (session_id, user_id, win_no, prize_index, kind, amount, win_time)
		VALUES (?, ?, 1, 0, 'cash', '1.00', ?)`, id, rpGrab2, start.Add(3*time.Second))
	out, err = verifyRun()
	key := fmt.Sprintf("rain_%d_%s_1", id, rpGrab2)
	for _, want := range []string{"rain_prize_twice user=" + rpGrab1 + " ", "rain_grant_missing user=" + rpGrab2 + " key=" + key + " ",
		fmt.Sprintf("rain_ledger user= key=%d ", id), "verify: 3 discrepancies ("} {
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("prize won twice: want %q and an error, got %v\n%s", want, err, out)
		}
	}
	f.exec(t, rpGrab2, `DELETE FROM rain_win WHERE user_id = ?`, rpGrab2)

	// A session past its end and the grace without its ledger.
	if _, err := f.config.SQL.ExecContext(ctx, `UPDATE rain_session SET ledger = NULL, session_state = 'armed' WHERE id = ?`, id); err != nil {
		t.Fatal(err)
	}
	out, err = verifyRun()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err == nil || !strings.HasPrefix(lines[0], fmt.Sprintf("rain_ledger user= key=%d ", id)) || !strings.Contains(out, "verify: 1 discrepancies (") {
		t.Errorf("no ledger: %v\n%s", err, out)
	}
	// Still within the grace it is not yet expected to have one.
	if out, err = verifyRun("-grace", "15m"); err != nil || !strings.Contains(out, "1 rain sessions (1 still open)") {
		t.Errorf("a session within the grace needs no ledger yet: %v\n%s", err, out)
	}
	// A window after its end does not read it.
	if out, err = verifyRun("-since", "5m"); err != nil || !strings.Contains(out, "0 rain sessions") {
		t.Errorf("a window after the session's end must be clean: %v\n%s", err, out)
	}
	if _, err = verifyRun("-rain-skew", "-1s"); err == nil {
		t.Error("-rain-skew -1s: want an error")
	}
}
