// Package reconcile holds the invariant checks over the rows the system writes: each check
// is a pure function from rows to the discrepancies they show, so verify and the benches
// read the rows (sqlstore) and share one set of checks.
package reconcile

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/money"
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

// Sort orders discrepancies by kind, user and key.
func Sort(ds []Discrepancy) {
	slices.SortStableFunc(ds, func(a, b Discrepancy) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.UserID, b.UserID), cmp.Compare(a.Key, b.Key))
	})
}

// Window bounds what is checked: rows from Since on, and of those only rows from Settled
// back are expected to be settled (delivered, distributed, completed).
type Window struct {
	Since   time.Time
	Settled time.Time
}

// isSettled reports whether a row created at t is old enough to be expected settled.
func (w Window) isSettled(t time.Time) bool { return !t.After(w.Settled) }

// Counts is how many rows of each kind were checked, for a summary.
type Counts struct {
	AwardRecords   int
	Tasks          int
	CreditAccounts int
	PrizeCredits   int
	PaidExchanges  int
	Rebates        int
	RedPackets     int
	RedPacketItems int
}

// String renders the counts for verify's summary line.
func (c Counts) String() string {
	return fmt.Sprintf("checked %d award records, %d tasks, %d credit accounts, %d prize credit orders, %d paid exchanges, %d rebates, %d red packets, %d red packet items",
		c.AwardRecords, c.Tasks, c.CreditAccounts, c.PrizeCredits, c.PaidExchanges, c.Rebates, c.RedPackets, c.RedPacketItems)
}

// Report is what a run of checks found.
type Report struct {
	Discrepancies []Discrepancy
	Checked       Counts
}

// Add appends what another check found to r.
func (r *Report) Add(ds ...Discrepancy) { r.Discrepancies = append(r.Discrepancies, ds...) }

// found collects a check's discrepancies.
type found []Discrepancy

func (f *found) report(kind, userID, key, format string, args ...any) {
	*f = append(*f, Discrepancy{Kind: kind, UserID: userID, Key: key, Detail: fmt.Sprintf(format, args...)})
}

// Joined is a user_credit_order row joined to the row it should settle; Found is false
// when the outer join found none.
type Joined struct {
	Found   bool
	UserID  string
	Type    credit.TradeType
	Name    string
	Amount  money.Cents
	Created time.Time
}

// describe names the order for a detail, or "none".
func (o Joined) describe() string {
	if !o.Found {
		return "none"
	}
	return fmt.Sprintf("%s %s %s of user %s", o.Type, o.Name, o.Amount, o.UserID)
}
