package main

import (
	"cmp"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/redpacket"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// Discrepancy kinds, stable names for scripts and alerts that read verify's output.
const (
	// KindAwardTaskMissing: an award record has no send_award task with its order id.
	KindAwardTaskMissing = "award_task_missing"
	// KindTaskUndelivered: a task past the grace is still create or fail.
	KindTaskUndelivered = "task_undelivered"
	// KindAwardUnknown: an award record names an award id the config database lacks, so
	// its distribution cannot be checked.
	KindAwardUnknown = "award_unknown"
	// KindAwardCreditMissing: a credit award is completed without its credit order.
	KindAwardCreditMissing = "award_credit_missing"
	// KindAwardStateStale: a credit award's credit order exists but the record is create.
	KindAwardStateStale = "award_state_stale"
	// KindAwardUndistributed: an award past the grace is still create.
	KindAwardUndistributed = "award_undistributed"
	// KindAwardCreditAmount: a credit award's amount is outside its configured range.
	KindAwardCreditAmount = "award_credit_amount"
	// KindAwardCreditUnexpected: an award distributed by webhook has a credit order.
	KindAwardCreditUnexpected = "award_credit_unexpected"
	// KindCreditOrderOrphan: a prize credit order matches no award record of its user.
	KindCreditOrderOrphan = "credit_order_orphan"
	// KindCreditBalance: a credit account disagrees with the sum of its orders.
	KindCreditBalance = "credit_balance"
	// KindCreditNegative: a credit account's total or available amount is below zero.
	KindCreditNegative = "credit_negative"
	// KindExchangeUnpaidCompleted: a paid SKU exchange is completed without its payment.
	KindExchangeUnpaidCompleted = "exchange_unpaid_completed"
	// KindExchangeAmount: a paid SKU exchange's payment differs from its price.
	KindExchangeAmount = "exchange_amount"
	// KindExchangePaidNotCompleted: a paid SKU exchange past the grace was paid for but
	// its quota was never added.
	KindExchangePaidNotCompleted = "exchange_paid_not_completed"
	// KindRebateUndelivered: a behaviour rebate past the grace has no credit or SKU order.
	KindRebateUndelivered = "rebate_undelivered"
	// KindRebateAmount: an integral rebate's credit order differs from its config.
	KindRebateAmount = "rebate_amount"

	// KindRedPacketSplit: a red packet's items do not add up to it: their number is not
	// its item_count or their amounts do not sum to its total_amount.
	KindRedPacketSplit = "red_packet_split"
	// KindRedPacketOvergrabbed: a red packet's grabbed items sum to more than its total.
	KindRedPacketOvergrabbed = "red_packet_overgrabbed"
	// KindRedPacketGrabUncredited: a grabbed item past the grace has no credit order
	// <packetId>_<userId>.
	KindRedPacketGrabUncredited = "red_packet_grab_uncredited"
	// KindRedPacketGrabCredit: a grab's credit is not one forward order of the item's
	// amount in the grabber's table.
	KindRedPacketGrabCredit = "red_packet_grab_credit"
	// KindRedPacketCreditOrphan: a credit order names a red packet (<packetId>,
	// <packetId>_<userId>, refund_<packetId>) that does not explain it: a red packet credit
	// without its grab, a debit of an operator packet, a refund the packet does not state.
	KindRedPacketCreditOrphan = "red_packet_credit_orphan"
	// KindRedPacketDebitMissing: a user's packet has no debit of its sender.
	KindRedPacketDebitMissing = "red_packet_debit_missing"
	// KindRedPacketDebitAmount: a user's packet's debit is not one reverse order of the
	// total in the sender's table.
	KindRedPacketDebitAmount = "red_packet_debit_amount"
	// KindRedPacketRefundMissing: a refunded packet past the grace has no refund order.
	KindRedPacketRefundMissing = "red_packet_refund_missing"
	// KindRedPacketRefundAmount: a refund that does not add up: grabbed plus refunded is
	// not the total, the refund order differs from refund_amount, an open packet states a
	// refund, or an operator packet is refunded.
	KindRedPacketRefundAmount = "red_packet_refund_amount"
	// KindRedPacketClosedLeftover: a user's packet past the grace is closed with money
	// neither grabbed nor refunded.
	KindRedPacketClosedLeftover = "red_packet_closed_leftover"
	// KindRedPacketState: a red packet's packet_state is none verify knows.
	KindRedPacketState = "red_packet_state"
)

// Conventions of the rows verify reconciles, written by the award distributors, the
// credit account, the rebate service and the red packets.
const (
	awardKeyCreditRandom    = "user_credit_random"
	awardKeyCreditBlacklist = "user_credit_blacklist"
	tradeForward            = "forward"
	tradeReverse            = "reverse"
	tradeNameAward          = "抽奖奖品"
	tradeNameRebate         = "行为返利"
	rebateIntegral          = "integral"
	rebateSKU               = "sku"
)

// Discrepancy is one fact in the databases that breaks a convention of the system: Kind
// names the convention, UserID and Key (an order id, message id or business number) the
// rows, and Detail what was found.
type Discrepancy struct {
	Kind, UserID, Key, Detail string
}

// String renders d as verify prints it: "KIND user=… key=… detail".
func (d Discrepancy) String() string {
	return fmt.Sprintf("%s user=%s key=%s %s", d.Kind, d.UserID, d.Key, d.Detail)
}

// verifyWindow bounds what verify checks: rows from Since on, and of those only rows from
// Settled back are expected to be settled (delivered, distributed, completed).
type verifyWindow struct {
	Since   time.Time
	Settled time.Time
}

// verifyCounts is how many rows of each kind verify checked, for its summary.
type verifyCounts struct {
	AwardRecords   int
	Tasks          int
	CreditAccounts int
	PrizeCredits   int
	PaidExchanges  int
	Rebates        int
	RedPackets     int
	RedPacketItems int
}

// String renders the counts for the summary line.
func (c verifyCounts) String() string {
	return fmt.Sprintf("checked %d award records, %d tasks, %d credit accounts, %d prize credit orders, %d paid exchanges, %d rebates, %d red packets, %d red packet items",
		c.AwardRecords, c.Tasks, c.CreditAccounts, c.PrizeCredits, c.PaidExchanges, c.Rebates, c.RedPackets, c.RedPacketItems)
}

// verifyReport is what verify found.
type verifyReport struct {
	Discrepancies []Discrepancy
	Checked       verifyCounts
}

func verifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := commonFlags(fs)
	since := fs.Duration("since", 24*time.Hour, "check award records, tasks, rebates and red packets created within this long before now")
	grace := fs.Duration("grace", time.Minute, "rows younger than this are not yet expected to be settled")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("verify: unexpected arguments %q", fs.Args())
	}
	if *since <= 0 || *grace < 0 {
		return fmt.Errorf("verify: -since must be positive and -grace not negative (since %s, grace %s)", *since, *grace)
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if cfg.ConfigDSN == "" {
		// openSQL would create and migrate empty files; a mistyped -data must not verify clean.
		path := filepath.Join(cfg.DataDir, "big_market.db")
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("verify: no embedded config database: %w", err)
		}
	}
	b := &backends{}
	defer b.close()
	if err := openSQL(ctx, cfg, b, false, false); err != nil {
		return err
	}
	now := time.Now().UTC()
	w := verifyWindow{Since: now.Add(-*since), Settled: now.Add(-*grace)}
	rep, err := verify(ctx, b.configDB, b.userDBs, cfg.TBCount, w)
	if err != nil {
		return err
	}
	for _, d := range rep.Discrepancies {
		fmt.Fprintln(stdout, d)
	}
	scope := fmt.Sprintf("%s; window since %s, grace %s", rep.Checked, w.Since.Format(time.RFC3339), *grace)
	if n := len(rep.Discrepancies); n > 0 {
		fmt.Fprintf(stdout, "verify: %d discrepancies (%s)\n", n, scope)
		return fmt.Errorf("verify: %d discrepancies", n)
	}
	fmt.Fprintf(stdout, "verify: clean (%s)\n", scope)
	return nil
}

// verify reconciles the user databases against each other and the config database's
// awards: award records with their tasks and credit orders, undelivered tasks, credit
// balances with their orders, paid SKU exchanges with their payments, rebates with what
// they granted, and red packets with their items, debits, grabs' credits and refunds.
// tables is the sharded tables per user database. Balances and paid exchanges are
// checked over all rows; the rest over rows created in w. The discrepancies come back
// sorted by kind, user and key.
func verify(ctx context.Context, configDB *sqlstore.DB, userDBs []*sqlstore.DB, tables int, w verifyWindow) (verifyReport, error) {
	awards, err := loadVerifyAwards(ctx, configDB)
	if err != nil {
		return verifyReport{}, err
	}
	router, err := sqlstore.NewRouter(len(userDBs), tables)
	if err != nil {
		return verifyReport{}, fmt.Errorf("verify: %w", err)
	}
	v := newReconciler(w, router)
	v.awards = awards
	for i, db := range userDBs {
		if err := v.checkDB(ctx, db, tables); err != nil {
			return verifyReport{}, fmt.Errorf("verify user database %02d: %w", i+1, err)
		}
	}
	if err := v.checkRedPackets(ctx, userDBs); err != nil {
		return verifyReport{}, fmt.Errorf("verify red packets: %w", err)
	}
	v.sort()
	return v.rep, nil
}

// verifyAward is an award row of the config database.
type verifyAward struct {
	key    string
	config string
}

func loadVerifyAwards(ctx context.Context, db *sqlstore.DB) (map[int64]verifyAward, error) {
	rows, err := db.SQL.QueryContext(ctx, "SELECT award_id, award_key, award_config FROM award")
	if err != nil {
		return nil, fmt.Errorf("verify: load awards: %w", err)
	}
	defer rows.Close()
	awards := map[int64]verifyAward{}
	for rows.Next() {
		var (
			id int64
			a  verifyAward
		)
		if err := rows.Scan(&id, &a.key, &a.config); err != nil {
			return nil, fmt.Errorf("verify: load awards: %w", err)
		}
		awards[id] = a
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("verify: load awards: %w", err)
	}
	return awards, nil
}

// reconciler accumulates one verify run's report.
type reconciler struct {
	awards  map[int64]verifyAward
	router  sqlstore.Router
	since   time.Time
	settled time.Time
	// packets, when set, limits the red packet checks to these packet ids (a bench run's).
	packets map[string]bool
	rep     verifyReport
}

func newReconciler(w verifyWindow, router sqlstore.Router) *reconciler {
	return &reconciler{router: router, since: w.Since.UTC().Truncate(time.Second), settled: w.Settled.UTC()}
}

// sort orders the discrepancies by kind, user and key.
func (v *reconciler) sort() {
	slices.SortStableFunc(v.rep.Discrepancies, func(a, b Discrepancy) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.UserID, b.UserID), cmp.Compare(a.Key, b.Key))
	})
}

func (v *reconciler) report(kind, userID, key, format string, args ...any) {
	v.rep.Discrepancies = append(v.rep.Discrepancies, Discrepancy{Kind: kind, UserID: userID, Key: key, Detail: fmt.Sprintf(format, args...)})
}

// isSettled reports whether a row created at t is old enough to be expected settled.
func (v *reconciler) isSettled(t time.Time) bool { return !t.After(v.settled) }

// checkDB runs every check on one user database.
func (v *reconciler) checkDB(ctx context.Context, db *sqlstore.DB, tables int) error {
	balances := map[string]*creditSums{}
	for t := range tables {
		sfx := sqlstore.TableSuffix(t)
		for _, check := range []func(context.Context, *sql.DB, string) error{
			v.checkAwardRecords, v.checkOrphanCredits, v.checkExchanges, v.checkRebates,
		} {
			if err := check(ctx, db.SQL, sfx); err != nil {
				return err
			}
		}
		if err := sumCredits(ctx, db.SQL, sfx, balances); err != nil {
			return err
		}
	}
	if err := v.checkTasks(ctx, db.SQL); err != nil {
		return err
	}
	return v.checkBalances(ctx, db.SQL, balances)
}

// creditOrder is a user_credit_order row joined to the row it should settle; Found is
// false when the outer join found none.
type creditOrder struct {
	Found   bool
	UserID  string
	Type    string
	Name    string
	Amount  money.Cents
	Created time.Time
}

// scanCreditOrder fills o from the nullable columns of an outer join.
func scanCreditOrder(o *creditOrder, userID, tradeType, tradeName, amount sql.NullString, created sqlstore.NullTime) error {
	*o = creditOrder{Found: userID.Valid}
	if !o.Found {
		return nil
	}
	o.UserID, o.Type, o.Name, o.Created = userID.String, tradeType.String, tradeName.String, created.Time
	var err error
	o.Amount, err = parseAmount(amount.String)
	return err
}

// describe names the order for a detail, or "none".
func (o creditOrder) describe() string {
	if !o.Found {
		return "none"
	}
	return fmt.Sprintf("%s %s %s of user %s", o.Type, o.Name, o.Amount, o.UserID)
}

// checkAwardRecords checks the window's award records of one table: each has its
// send_award task, and its distribution matches its award key.
func (v *reconciler) checkAwardRecords(ctx context.Context, db *sql.DB, sfx string) error {
	rows, err := db.QueryContext(ctx, `
		SELECT r.user_id, r.order_id, r.award_id, r.award_state, r.award_time,
			t.user_id, t.topic, t.message,
			c.user_id, c.trade_type, c.trade_name, c.trade_amount, c.create_time
		FROM user_award_record`+sfx+` r
		LEFT JOIN task t ON t.message_id = r.order_id
		LEFT JOIN user_credit_order`+sfx+` c ON c.out_business_no = r.order_id
		WHERE r.award_time >= ?`, v.since)
	if err != nil {
		return fmt.Errorf("query award records%s: %w", sfx, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			userID, orderID, state           string
			awardID                          int64
			awardTime, creditTime            sqlstore.NullTime
			taskUser, taskTopic, taskMessage sql.NullString
			cUser, cType, cName, cAmount     sql.NullString
			credit                           creditOrder
		)
		if err := rows.Scan(&userID, &orderID, &awardID, &state, &awardTime, &taskUser, &taskTopic, &taskMessage,
			&cUser, &cType, &cName, &cAmount, &creditTime); err != nil {
			return fmt.Errorf("scan award record%s: %w", sfx, err)
		}
		if err := scanCreditOrder(&credit, cUser, cType, cName, cAmount, creditTime); err != nil {
			return fmt.Errorf("credit order of award record %s: %w", orderID, err)
		}
		v.rep.Checked.AwardRecords++
		taskConfig := v.checkAwardTask(userID, orderID, awardID, taskUser, taskTopic, taskMessage)
		v.checkAwardDistribution(userID, orderID, awardID, award.State(state), awardTime.Time, taskConfig, credit)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query award records%s: %w", sfx, err)
	}
	return nil
}

// checkAwardTask reports a record whose send_award task is missing or names another
// award, and returns the task's awardConfig.
func (v *reconciler) checkAwardTask(userID, orderID string, awardID int64, taskUser, topic, message sql.NullString) string {
	if !taskUser.Valid {
		v.report(KindAwardTaskMissing, userID, orderID, "award %d has no task with message_id %s", awardID, orderID)
		return ""
	}
	if topic.String != award.TopicSendAward || taskUser.String != userID {
		v.report(KindAwardTaskMissing, userID, orderID, "award %d: task %s is topic %s of user %s, want %s of %s",
			awardID, orderID, topic.String, taskUser.String, award.TopicSendAward, userID)
		return ""
	}
	msg, err := outbox.Decode[award.SendAward]([]byte(message.String))
	if err != nil {
		v.report(KindAwardTaskMissing, userID, orderID, "award %d: task message does not decode: %v", awardID, err)
		return ""
	}
	if d := msg.Data; d.UserID != userID || d.OrderID != orderID || int64(d.AwardID) != awardID {
		v.report(KindAwardTaskMissing, userID, orderID, "award %d: task message is for user %s order %s award %d",
			awardID, d.UserID, d.OrderID, d.AwardID)
		return ""
	}
	return msg.Data.AwardConfig
}

// checkAwardDistribution checks a record's state against its credit order: credit awards
// are completed exactly when their prize credit order exists, with an amount in range;
// other awards are distributed by webhook and never credited.
func (v *reconciler) checkAwardDistribution(userID, orderID string, awardID int64, state award.State, awardTime time.Time,
	taskConfig string, credit creditOrder) {
	a, ok := v.awards[awardID]
	if !ok {
		v.report(KindAwardUnknown, userID, orderID, "award %d is not in the award table", awardID)
		return
	}
	if a.key != awardKeyCreditRandom && a.key != awardKeyCreditBlacklist {
		if credit.Found {
			v.report(KindAwardCreditUnexpected, userID, orderID, "award %d (%s) is distributed by webhook but has credit order %s",
				awardID, a.key, credit.describe())
		}
		if state == award.StateCreate && v.isSettled(awardTime) {
			v.report(KindAwardUndistributed, userID, orderID, "award %d (%s) still create since %s",
				awardID, a.key, awardTime.Format(time.DateTime))
		}
		return
	}
	paid := credit.Found && credit.UserID == userID && credit.Type == tradeForward && credit.Name == tradeNameAward
	switch {
	case state == award.StateCompleted && !paid:
		v.report(KindAwardCreditMissing, userID, orderID, "award %d (%s) completed; want a %s %s credit order, have %s",
			awardID, a.key, tradeForward, tradeNameAward, credit.describe())
	case state == award.StateCreate && paid:
		v.report(KindAwardStateStale, userID, orderID, "award %d (%s) still create though credited %s", awardID, a.key, credit.Amount)
	case state == award.StateCreate && !paid && v.isSettled(awardTime):
		v.report(KindAwardUndistributed, userID, orderID, "award %d (%s) still create since %s; credit order %s",
			awardID, a.key, awardTime.Format(time.DateTime), credit.describe())
	}
	if !paid {
		return
	}
	rangeConfig := a.config
	if a.key == awardKeyCreditRandom && taskConfig != "" {
		rangeConfig = taskConfig
	}
	lo, hi, err := creditRange(a.key, rangeConfig)
	if err != nil {
		v.report(KindAwardCreditAmount, userID, orderID, "award %d (%s) credited %s; cannot check: %v", awardID, a.key, credit.Amount, err)
		return
	}
	if credit.Amount < lo || credit.Amount > hi {
		v.report(KindAwardCreditAmount, userID, orderID, "award %d (%s) credited %s, want %s..%s (config %q)",
			awardID, a.key, credit.Amount, lo, hi, rangeConfig)
	}
}

// creditRange returns the amounts a credit award may grant: "lo,hi" yuan for a random
// credit, the exact config for the blacklist's.
func creditRange(key, config string) (lo, hi money.Cents, err error) {
	if key == awardKeyCreditBlacklist {
		v, err := money.Parse(strings.TrimSpace(config))
		return v, v, err
	}
	l, h, ok := strings.Cut(config, ",")
	if !ok {
		return 0, 0, fmt.Errorf("range %q is not lo,hi", config)
	}
	if lo, err = money.Parse(strings.TrimSpace(l)); err != nil {
		return 0, 0, err
	}
	if hi, err = money.Parse(strings.TrimSpace(h)); err != nil {
		return 0, 0, err
	}
	if lo > hi {
		return 0, 0, fmt.Errorf("range %q is empty", config)
	}
	return lo, hi, nil
}

// checkOrphanCredits reports the window's prize credit orders of one table that no award
// record of their user explains.
func (v *reconciler) checkOrphanCredits(ctx context.Context, db *sql.DB, sfx string) error {
	rows, err := db.QueryContext(ctx, `
		SELECT c.user_id, c.order_id, c.out_business_no, c.trade_type, c.trade_amount, r.order_id
		FROM user_credit_order`+sfx+` c
		LEFT JOIN user_award_record`+sfx+` r ON r.order_id = c.out_business_no AND r.user_id = c.user_id
		WHERE c.trade_name = ? AND c.create_time >= ?`, tradeNameAward, v.since)
	if err != nil {
		return fmt.Errorf("query prize credit orders%s: %w", sfx, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			userID, orderID, outBusinessNo, tradeType, amount string
			record                                            sql.NullString
		)
		if err := rows.Scan(&userID, &orderID, &outBusinessNo, &tradeType, &amount, &record); err != nil {
			return fmt.Errorf("scan prize credit order%s: %w", sfx, err)
		}
		v.rep.Checked.PrizeCredits++
		if !record.Valid {
			v.report(KindCreditOrderOrphan, userID, outBusinessNo, "credit order %s (%s %s) matches no award record of the user",
				orderID, tradeType, amount)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query prize credit orders%s: %w", sfx, err)
	}
	return nil
}

// checkExchanges checks every paid SKU exchange of one table against the reverse credit
// order that paid for it.
func (v *reconciler) checkExchanges(ctx context.Context, db *sql.DB, sfx string) error {
	rows, err := db.QueryContext(ctx, `
		SELECT o.user_id, o.order_id, o.out_business_no, o.pay_amount, o.state, o.order_time,
			c.user_id, c.trade_type, c.trade_name, c.trade_amount, c.create_time
		FROM raffle_activity_order`+sfx+` o
		LEFT JOIN user_credit_order`+sfx+` c ON c.out_business_no = o.out_business_no`)
	if err != nil {
		return fmt.Errorf("query activity orders%s: %w", sfx, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			userID, orderID, outBusinessNo, payText, state string
			orderTime, creditTime                          sqlstore.NullTime
			cUser, cType, cName, cAmount                   sql.NullString
			credit                                         creditOrder
		)
		if err := rows.Scan(&userID, &orderID, &outBusinessNo, &payText, &state, &orderTime,
			&cUser, &cType, &cName, &cAmount, &creditTime); err != nil {
			return fmt.Errorf("scan activity order%s: %w", sfx, err)
		}
		pay, err := parseAmount(payText)
		if err != nil {
			return fmt.Errorf("pay amount of activity order %s: %w", orderID, err)
		}
		if pay <= 0 {
			continue
		}
		if err := scanCreditOrder(&credit, cUser, cType, cName, cAmount, creditTime); err != nil {
			return fmt.Errorf("credit order of activity order %s: %w", orderID, err)
		}
		v.rep.Checked.PaidExchanges++
		paid := credit.Found && credit.UserID == userID && credit.Type == tradeReverse
		switch activity.RechargeState(state) {
		case activity.RechargeCompleted:
			if !paid {
				v.report(KindExchangeUnpaidCompleted, userID, outBusinessNo, "order %s completed at price %s; want a %s credit order, have %s",
					orderID, pay, tradeReverse, credit.describe())
			} else if credit.Amount != pay {
				v.report(KindExchangeAmount, userID, outBusinessNo, "order %s price %s, paid %s", orderID, pay, credit.Amount)
			}
		case activity.RechargeWaitPay:
			if paid && v.isSettled(orderTime.Time) && v.isSettled(credit.Created) {
				v.report(KindExchangePaidNotCompleted, userID, outBusinessNo, "order %s still wait_pay though paid %s at %s",
					orderID, credit.Amount, credit.Created.Format(time.DateTime))
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query activity orders%s: %w", sfx, err)
	}
	return nil
}

// checkRebates checks the window's settled behaviour rebates of one table: an integral
// rebate has its credit order, a SKU rebate its activity order.
func (v *reconciler) checkRebates(ctx context.Context, db *sql.DB, sfx string) error {
	rows, err := db.QueryContext(ctx, `
		SELECT r.user_id, r.order_id, r.rebate_type, r.rebate_config, r.biz_id,
			c.user_id, c.trade_type, c.trade_name, c.trade_amount, c.create_time, o.user_id
		FROM user_behavior_rebate_order`+sfx+` r
		LEFT JOIN user_credit_order`+sfx+` c ON c.out_business_no = r.biz_id
		LEFT JOIN raffle_activity_order`+sfx+` o ON o.out_business_no = r.biz_id
		WHERE r.create_time >= ? AND r.create_time <= ?`, v.since, v.settled)
	if err != nil {
		return fmt.Errorf("query rebate orders%s: %w", sfx, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			userID, orderID, rebateType, rebateConfig, bizID string
			cUser, cType, cName, cAmount, activityUser       sql.NullString
			creditTime                                       sqlstore.NullTime
			credit                                           creditOrder
		)
		if err := rows.Scan(&userID, &orderID, &rebateType, &rebateConfig, &bizID,
			&cUser, &cType, &cName, &cAmount, &creditTime, &activityUser); err != nil {
			return fmt.Errorf("scan rebate order%s: %w", sfx, err)
		}
		if err := scanCreditOrder(&credit, cUser, cType, cName, cAmount, creditTime); err != nil {
			return fmt.Errorf("credit order of rebate %s: %w", bizID, err)
		}
		v.rep.Checked.Rebates++
		switch rebateType {
		case rebateIntegral:
			if !credit.Found || credit.UserID != userID || credit.Type != tradeForward || credit.Name != tradeNameRebate {
				v.report(KindRebateUndelivered, userID, bizID, "rebate %s (integral %s); want a %s %s credit order, have %s",
					orderID, rebateConfig, tradeForward, tradeNameRebate, credit.describe())
				continue
			}
			want, err := money.Parse(strings.TrimSpace(rebateConfig))
			if err != nil {
				v.report(KindRebateAmount, userID, bizID, "rebate %s credited %s; cannot check config %q: %v", orderID, credit.Amount, rebateConfig, err)
			} else if credit.Amount != want {
				v.report(KindRebateAmount, userID, bizID, "rebate %s credited %s, want %s", orderID, credit.Amount, want)
			}
		case rebateSKU:
			if !activityUser.Valid || activityUser.String != userID {
				v.report(KindRebateUndelivered, userID, bizID, "rebate %s (sku %s) has no activity order with out_business_no %s",
					orderID, rebateConfig, bizID)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query rebate orders%s: %w", sfx, err)
	}
	return nil
}

// checkTasks reports the window's tasks that are past the grace and still not delivered.
func (v *reconciler) checkTasks(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, `SELECT user_id, topic, message_id, state, create_time FROM task WHERE create_time >= ?`, v.since)
	if err != nil {
		return fmt.Errorf("query tasks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			userID, topic, messageID, state string
			created                         sqlstore.NullTime
		)
		if err := rows.Scan(&userID, &topic, &messageID, &state, &created); err != nil {
			return fmt.Errorf("scan task: %w", err)
		}
		v.rep.Checked.Tasks++
		if s := outbox.State(state); (s == outbox.Create || s == outbox.Fail) && v.isSettled(created.Time) {
			v.report(KindTaskUndelivered, userID, messageID, "task %s is %s since %s", topic, state, created.Time.Format(time.DateTime))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query tasks: %w", err)
	}
	return nil
}

// creditSums is one user's credit orders added up.
type creditSums struct {
	forward, reverse money.Cents
}

// sumCredits adds every credit order of one table to sums, by user.
func sumCredits(ctx context.Context, db *sql.DB, sfx string, sums map[string]*creditSums) error {
	rows, err := db.QueryContext(ctx, `SELECT user_id, order_id, trade_type, trade_amount FROM user_credit_order`+sfx)
	if err != nil {
		return fmt.Errorf("query credit orders%s: %w", sfx, err)
	}
	defer rows.Close()
	for rows.Next() {
		var userID, orderID, tradeType, text string
		if err := rows.Scan(&userID, &orderID, &tradeType, &text); err != nil {
			return fmt.Errorf("scan credit order%s: %w", sfx, err)
		}
		amount, err := parseAmount(text)
		if err != nil {
			return fmt.Errorf("amount of credit order %s: %w", orderID, err)
		}
		s := sums[userID]
		if s == nil {
			s = &creditSums{}
			sums[userID] = s
		}
		switch tradeType {
		case tradeForward:
			s.forward += amount
		case tradeReverse:
			s.reverse += amount
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query credit orders%s: %w", sfx, err)
	}
	return nil
}

// checkBalances compares every credit account of the database with its user's orders:
// the total is what was ever credited, the available amount that less what was spent.
// Users with orders but no account are checked as an account of zeros.
func (v *reconciler) checkBalances(ctx context.Context, db *sql.DB, sums map[string]*creditSums) error {
	rows, err := db.QueryContext(ctx, `SELECT user_id, total_amount, available_amount FROM user_credit_account`)
	if err != nil {
		return fmt.Errorf("query credit accounts: %w", err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var userID, totalText, availableText string
		if err := rows.Scan(&userID, &totalText, &availableText); err != nil {
			return fmt.Errorf("scan credit account: %w", err)
		}
		total, err := parseAmount(totalText)
		if err != nil {
			return fmt.Errorf("total of credit account %s: %w", userID, err)
		}
		available, err := parseAmount(availableText)
		if err != nil {
			return fmt.Errorf("available of credit account %s: %w", userID, err)
		}
		seen[userID] = true
		v.rep.Checked.CreditAccounts++
		s := sums[userID]
		if s == nil {
			s = &creditSums{}
		}
		if total != s.forward || available != s.forward-s.reverse {
			v.report(KindCreditBalance, userID, userID, "account total=%s available=%s; orders forward=%s reverse=%s want total=%s available=%s",
				total, available, s.forward, s.reverse, s.forward, s.forward-s.reverse)
		}
		if total < 0 || available < 0 {
			v.report(KindCreditNegative, userID, userID, "account total=%s available=%s", total, available)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query credit accounts: %w", err)
	}
	for userID, s := range sums {
		if seen[userID] {
			continue
		}
		v.rep.Checked.CreditAccounts++
		if s.forward != 0 || s.reverse != 0 {
			v.report(KindCreditBalance, userID, userID, "no account; orders forward=%s reverse=%s want total=%s available=%s",
				s.forward, s.reverse, s.forward, s.forward-s.reverse)
		}
	}
	return nil
}

// parseAmount reads a decimal(10,2) column's text into cents; money.Cents.Scan accepts
// the trailing zeros a wider scale stores.
func parseAmount(s string) (money.Cents, error) {
	var c money.Cents
	err := c.Scan(s)
	return c, err
}

// verifyPacket is a red_packet row with its items and the credit orders whose business
// number names it.
type verifyPacket struct {
	id, senderID     string
	db               int
	total, refund    money.Cents
	count            int
	state            redpacket.State
	created, updated time.Time
	// inWindow is a packet created in the window, checked whole; one created before is
	// loaded only to explain the window's credit orders that name it.
	inWindow bool
	items    []verifyItem
	debits   []packetOrder
	refunds  []packetOrder
	grabs    map[string][]packetOrder // by the user the business number names
}

// verifyItem is a red_packet_item row; userID is empty until its grab is applied.
type verifyItem struct {
	index    int
	amount   money.Cents
	userID   string
	grabTime time.Time
}

// packetOrder is a credit order whose business number names a red packet, and where it lies.
type packetOrder struct {
	db, table                        int
	userID, orderID, name, tradeType string
	businessNo                       string
	amount                           money.Cents
	created                          time.Time
}

// String names the order and where it lies, for a detail.
func (o packetOrder) String() string {
	return fmt.Sprintf("%s %s %s of user %s in database %02d table %s", o.tradeType, o.name, o.amount, o.userID, o.db+1, sqlstore.TableSuffix(o.table))
}

// describeOrders names the orders for a detail, or "none".
func describeOrders(orders []packetOrder) string {
	if len(orders) == 0 {
		return "none"
	}
	s := make([]string, len(orders))
	for i, o := range orders {
		s[i] = o.String()
	}
	return strings.Join(s, "; ")
}

// Kinds of red packet credit orders, by business number.
const (
	packetDebit  = iota // the bare packet id
	packetRefund        // redpacket.RefundBusinessNo
	packetGrab          // <packetId>_<userId>
)

// packetBizNo reads a red packet credit order's business number: the packet it names, the
// grabber for a grab's credit, and which kind of order it is.
func packetBizNo(no string) (packetID, user string, kind int) {
	if rest, ok := strings.CutPrefix(no, redpacket.RefundBusinessNo("")); ok {
		return rest, "", packetRefund
	}
	if id, user, ok := strings.Cut(no, "_"); ok {
		return id, user, packetGrab
	}
	return no, "", packetDebit
}

// attach files o under what its business number says it is: the debit, the refund or a
// grab's credit.
func (p *verifyPacket) attach(o packetOrder) {
	switch _, user, kind := packetBizNo(o.businessNo); kind {
	case packetDebit:
		p.debits = append(p.debits, o)
	case packetRefund:
		p.refunds = append(p.refunds, o)
	default:
		p.grabs[user] = append(p.grabs[user], o)
	}
}

// Conditions loadRedPackets selects by: fixed text, the value a parameter.
const (
	packetsSince = "p.create_time >= ?"
	packetByID   = "p.packet_id = ?"
)

// checkRedPackets checks the window's red packets in every user database: their items
// against their totals, every grabbed item against its grabber's credit, a user's packet
// against its sender's debit and refund. It reads the packets before the credit orders:
// a grab applied in between shows as a credit whose item is not yet grabbed, which is
// why credits without their grab are only reported past the grace. A credit order in the
// window that names a packet created before it is explained by that packet.
func (v *reconciler) checkRedPackets(ctx context.Context, dbs []*sqlstore.DB) error {
	packets := map[string]*verifyPacket{}
	for i, db := range dbs {
		if err := loadRedPackets(ctx, db.SQL, i, packetsSince, v.since, true, packets); err != nil {
			return fmt.Errorf("user database %02d: %w", i+1, err)
		}
	}
	if v.packets != nil {
		maps.DeleteFunc(packets, func(id string, _ *verifyPacket) bool { return !v.packets[id] })
	}
	others := map[string][]packetOrder{} // credit orders in the window naming packets not loaded
	for i, db := range dbs {
		for t := range v.router.Tables {
			if err := v.redPacketOrders(ctx, db.SQL, i, t, packets, others); err != nil {
				return fmt.Errorf("user database %02d: %w", i+1, err)
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(others)) {
		for i, db := range dbs {
			if err := loadRedPackets(ctx, db.SQL, i, packetByID, id, false, packets); err != nil {
				return fmt.Errorf("user database %02d: %w", i+1, err)
			}
		}
		p := packets[id]
		for _, o := range others[id] {
			if p == nil {
				v.report(KindRedPacketCreditOrphan, o.userID, o.businessNo, "credit order %s (%s) names red packet %s, which no user database holds",
					o.orderID, o, id)
				continue
			}
			p.attach(o)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(packets)) {
		v.checkRedPacket(packets[id])
	}
	return nil
}

// loadRedPackets adds the packets of user database dbi that match where, and their
// items, to into.
func loadRedPackets(ctx context.Context, db *sql.DB, dbi int, where string, arg any, inWindow bool, into map[string]*verifyPacket) error {
	rows, err := db.QueryContext(ctx, `SELECT p.packet_id, p.sender_id, p.total_amount, p.item_count, p.packet_state,
		p.refund_amount, p.create_time, p.update_time FROM red_packet p WHERE `+where, arg)
	if err != nil {
		return fmt.Errorf("query red packets: %w", err)
	}
	defer rows.Close()
	var mine []string
	for rows.Next() {
		var (
			p                = &verifyPacket{db: dbi, inWindow: inWindow, grabs: map[string][]packetOrder{}}
			state            string
			created, updated sqlstore.NullTime
		)
		if err := rows.Scan(&p.id, &p.senderID, &p.total, &p.count, &state, &p.refund, &created, &updated); err != nil {
			return fmt.Errorf("scan red packet: %w", err)
		}
		p.state, p.created, p.updated = redpacket.State(state), created.Time, updated.Time
		if _, dup := into[p.id]; !dup { // ids name their database: a second one is not ours
			into[p.id] = p
			mine = append(mine, p.id)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query red packets: %w", err)
	}
	if len(mine) == 0 {
		return nil
	}
	items, err := db.QueryContext(ctx, `SELECT i.packet_id, i.item_index, i.amount, i.user_id, i.grab_time
		FROM red_packet_item i JOIN red_packet p ON p.packet_id = i.packet_id WHERE `+where+` ORDER BY i.packet_id, i.item_index`, arg)
	if err != nil {
		return fmt.Errorf("query red packet items: %w", err)
	}
	defer items.Close()
	for items.Next() {
		var (
			id       string
			it       verifyItem
			userID   sql.NullString
			grabTime sqlstore.NullTime
		)
		if err := items.Scan(&id, &it.index, &it.amount, &userID, &grabTime); err != nil {
			return fmt.Errorf("scan red packet item: %w", err)
		}
		it.userID, it.grabTime = userID.String, grabTime.Time
		if p := into[id]; p != nil && p.db == dbi {
			p.items = append(p.items, it)
		}
	}
	if err := items.Err(); err != nil {
		return fmt.Errorf("query red packet items: %w", err)
	}
	return nil
}

// redPacketOrders reads every credit order of one table and files those whose business
// number names a loaded packet under it; those in the window that look like red packet
// orders (by trade name, or a refund's business number) but name another packet go to
// others by packet id.
func (v *reconciler) redPacketOrders(ctx context.Context, db *sql.DB, dbi, table int, packets map[string]*verifyPacket, others map[string][]packetOrder) error {
	sfx := sqlstore.TableSuffix(table)
	rows, err := db.QueryContext(ctx, `SELECT user_id, order_id, trade_name, trade_type, trade_amount, out_business_no, create_time
		FROM user_credit_order`+sfx)
	if err != nil {
		return fmt.Errorf("query credit orders%s: %w", sfx, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			o       = packetOrder{db: dbi, table: table}
			created sqlstore.NullTime
		)
		if err := rows.Scan(&o.userID, &o.orderID, &o.name, &o.tradeType, &o.amount, &o.businessNo, &created); err != nil {
			return fmt.Errorf("scan credit order%s: %w", sfx, err)
		}
		o.created = created.Time
		id, _, kind := packetBizNo(o.businessNo)
		if p := packets[id]; p != nil {
			p.attach(o)
			continue
		}
		looksRedPacket := o.name == redpacket.NameGrab || o.name == redpacket.NameSend || o.name == redpacket.NameRefund ||
			(kind == packetRefund && id != "" && strings.Trim(id, "0123456789") == "")
		if v.packets == nil && looksRedPacket && !o.created.Before(v.since) && v.isSettled(o.created) {
			others[id] = append(others[id], o)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query credit orders%s: %w", sfx, err)
	}
	return nil
}

// checkRedPacket reports the credit orders naming p that p does not explain and, for a
// packet in the window, checks its items, its grabs' credits, its debit and its state.
func (v *reconciler) checkRedPacket(p *verifyPacket) {
	v.explainRedPacketOrders(p)
	if !p.inWindow {
		return
	}
	v.rep.Checked.RedPackets++
	v.rep.Checked.RedPacketItems += len(p.items)
	var sum, grabbed money.Cents
	for _, it := range p.items {
		sum += it.amount
		if it.userID != "" {
			grabbed += it.amount
			v.checkGrabCredit(p, it)
		}
	}
	if len(p.items) != p.count || sum != p.total {
		v.report(KindRedPacketSplit, p.senderID, p.id, "%d items summing to %s; the packet is %d items of %s", len(p.items), sum, p.count, p.total)
	}
	if grabbed > p.total {
		v.report(KindRedPacketOvergrabbed, p.senderID, p.id, "grabbed items sum to %s of a %s packet", grabbed, p.total)
	}
	v.checkDebit(p)
	v.checkPacketState(p, grabbed)
}

// explainRedPacketOrders reports, past the grace, the credit orders naming p that p does
// not account for: grab credits of users no item names, debits of an operator packet, and
// refunds of a packet that states none.
func (v *reconciler) explainRedPacketOrders(p *verifyPacket) {
	orphan := func(o packetOrder, format string, args ...any) {
		if v.isSettled(o.created) {
			v.report(KindRedPacketCreditOrphan, o.userID, o.businessNo, "credit order %s (%s): %s", o.orderID, o, fmt.Sprintf(format, args...))
		}
	}
	grabbers := map[string]bool{}
	for _, it := range p.items {
		if it.userID != "" {
			grabbers[it.userID] = true
		}
	}
	for user, orders := range p.grabs {
		if !grabbers[user] {
			for _, o := range orders {
				orphan(o, "no item of red packet %s names user %s", p.id, user)
			}
		}
	}
	if p.senderID == "" {
		for _, o := range p.debits {
			orphan(o, "red packet %s is an operator packet, which debits nobody", p.id)
		}
	}
	if p.senderID == "" || p.state != redpacket.StateRefunded || p.refund <= 0 {
		for _, o := range p.refunds {
			orphan(o, "red packet %s is %s with refund_amount %s", p.id, p.state, p.refund)
		}
	}
}

// checkGrabCredit checks a grabbed item's credit: one forward order of the item's amount
// in the grabber's table, or none yet for a grab within the grace.
func (v *reconciler) checkGrabCredit(p *verifyPacket, it verifyItem) {
	key := redpacket.Grab{PacketID: p.id, UserID: it.userID}.BusinessNo()
	orders := p.grabs[it.userID]
	if len(orders) == 0 {
		if v.isSettled(it.grabTime) {
			v.report(KindRedPacketGrabUncredited, it.userID, key, "item %d (%s) of red packet %s grabbed at %s has no credit order",
				it.index, it.amount, p.id, it.grabTime.Format(time.DateTime))
		}
		return
	}
	if !v.isOrder(orders, it.userID, tradeForward, it.amount) {
		r := v.router.Route(it.userID)
		v.report(KindRedPacketGrabCredit, it.userID, key, "item %d of red packet %s is %s; want one %s order of it in database %02d table %s, have %s",
			it.index, p.id, it.amount, tradeForward, r.DB+1, r.Suffix, describeOrders(orders))
	}
}

// isOrder reports whether orders is exactly one order of userID, in userID's table, of
// the trade type and amount.
func (v *reconciler) isOrder(orders []packetOrder, userID, tradeType string, amount money.Cents) bool {
	if len(orders) != 1 {
		return false
	}
	o, r := orders[0], v.router.Route(userID)
	return o.userID == userID && o.tradeType == tradeType && o.amount == amount && o.db == r.DB && o.table == r.Table
}

// checkDebit checks that a user's packet was paid for: one reverse order of the total in
// the sender's table, written with the packet.
func (v *reconciler) checkDebit(p *verifyPacket) {
	if p.senderID == "" {
		return
	}
	switch {
	case len(p.debits) == 0:
		v.report(KindRedPacketDebitMissing, p.senderID, p.id, "red packet of %s has no %s credit order %s of its sender", p.total, tradeReverse, p.id)
	case !v.isOrder(p.debits, p.senderID, tradeReverse, p.total):
		v.report(KindRedPacketDebitAmount, p.senderID, p.id, "red packet of %s; want one %s order of it by the sender, have %s",
			p.total, tradeReverse, describeOrders(p.debits))
	}
}

// checkPacketState checks where a packet's money went: an open packet has refunded
// nothing; a closed user's packet was grabbed whole; a refunded one was grabbed and
// refunded to its total, the refund credited to its sender. Sums of grabbed items are
// only expected to add up once the packet's last change is past the grace, as grabs taken
// before it closed may still be applied.
func (v *reconciler) checkPacketState(p *verifyPacket, grabbed money.Cents) {
	settled := v.isSettled(p.updated)
	switch p.state {
	case redpacket.StateOpen:
		if p.refund != 0 {
			v.report(KindRedPacketRefundAmount, p.senderID, p.id, "open red packet has refund_amount %s", p.refund)
		}
	case redpacket.StateClosed:
		if p.senderID == "" { // an operator packet closes with whatever is left
			return
		}
		if p.refund != 0 {
			v.report(KindRedPacketClosedLeftover, p.senderID, p.id, "closed red packet has refund_amount %s; a closed packet refunds nothing", p.refund)
		} else if grabbed != p.total && settled {
			v.report(KindRedPacketClosedLeftover, p.senderID, p.id, "closed with %s grabbed of %s: %s neither grabbed nor refunded",
				grabbed, p.total, p.total-grabbed)
		}
	case redpacket.StateRefunded:
		if p.senderID == "" {
			v.report(KindRedPacketRefundAmount, p.senderID, p.id, "operator red packet refunded %s, but it has no sender", p.refund)
			return
		}
		if p.refund < 0 || (grabbed+p.refund != p.total && settled) {
			v.report(KindRedPacketRefundAmount, p.senderID, p.id, "refunded %s with %s grabbed of %s", p.refund, grabbed, p.total)
		}
		switch {
		case p.refund <= 0:
			// A refund of 0.00 has no order; explainRedPacketOrders reports any.
		case len(p.refunds) == 0:
			if settled {
				v.report(KindRedPacketRefundMissing, p.senderID, redpacket.RefundBusinessNo(p.id), "refunded %s at %s but the sender has no %s credit order",
					p.refund, p.updated.Format(time.DateTime), tradeForward)
			}
		case !v.isOrder(p.refunds, p.senderID, tradeForward, p.refund):
			v.report(KindRedPacketRefundAmount, p.senderID, redpacket.RefundBusinessNo(p.id), "refunded %s; want one %s order of it to the sender, have %s",
				p.refund, tradeForward, describeOrders(p.refunds))
		}
	default:
		v.report(KindRedPacketState, p.senderID, p.id, "packet_state %q", p.state)
	}
}
