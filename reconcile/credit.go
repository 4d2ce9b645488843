package reconcile

import (
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/rebate"
)

// Exchange is a paid SKU exchange (a raffle_activity_order with a pay amount above zero)
// with the credit order whose business number is its own.
type Exchange struct {
	UserID     string
	OrderID    string
	BusinessNo string
	Pay        money.Cents
	State      activity.RechargeState
	OrderTime  time.Time
	Credit     Joined
}

// Exchanges checks paid SKU exchanges against the reverse credit orders that paid for them.
func Exchanges(w Window, exchanges []Exchange) []Discrepancy {
	var f found
	for _, e := range exchanges {
		c := e.Credit
		paid := c.Found && c.UserID == e.UserID && c.Type == credit.Reverse
		switch e.State {
		case activity.RechargeCompleted:
			if !paid {
				f.report(KindExchangeUnpaidCompleted, e.UserID, e.BusinessNo, "order %s completed at price %s; want a %s credit order, have %s",
					e.OrderID, e.Pay, credit.Reverse, c.describe())
			} else if c.Amount != e.Pay {
				f.report(KindExchangeAmount, e.UserID, e.BusinessNo, "order %s price %s, paid %s", e.OrderID, e.Pay, c.Amount)
			}
		case activity.RechargeWaitPay:
			if paid && w.isSettled(e.OrderTime) && w.isSettled(c.Created) {
				f.report(KindExchangePaidNotCompleted, e.UserID, e.BusinessNo, "order %s still wait_pay though paid %s at %s",
					e.OrderID, c.Amount, c.Created.Format(time.DateTime))
			}
		}
	}
	return f
}

// Rebate is a user_behavior_rebate_order row with the credit order and the user of the
// activity order whose business number is its biz id (ActivityUser empty when none).
type Rebate struct {
	UserID       string
	OrderID      string
	Type         rebate.Type
	Config       string
	BizID        string
	Created      time.Time // the rebate order's create_time
	Credit       Joined
	ActivityUser string
}

// Rebates checks the settled behaviour rebates (created by w.Settled): an integral rebate
// has its credit order of its configured amount, a SKU rebate its activity order. A
// younger rebate is not expected granted yet; it is counted all the same.
func Rebates(w Window, rebates []Rebate) []Discrepancy {
	var f found
	for _, r := range rebates {
		if !w.isSettled(r.Created) {
			continue
		}
		c := r.Credit
		switch r.Type {
		case rebate.TypeIntegral:
			if !c.Found || c.UserID != r.UserID || c.Type != credit.Forward || c.Name != credit.NameRebate {
				f.report(KindRebateUndelivered, r.UserID, r.BizID, "rebate %s (integral %s); want a %s %s credit order, have %s",
					r.OrderID, r.Config, credit.Forward, credit.NameRebate, c.describe())
				continue
			}
			want, err := money.Parse(strings.TrimSpace(r.Config))
			if err != nil {
				f.report(KindRebateAmount, r.UserID, r.BizID, "rebate %s credited %s; cannot check config %q: %v", r.OrderID, c.Amount, r.Config, err)
			} else if c.Amount != want {
				f.report(KindRebateAmount, r.UserID, r.BizID, "rebate %s credited %s, want %s", r.OrderID, c.Amount, want)
			}
		case rebate.TypeSKU:
			if r.ActivityUser == "" || r.ActivityUser != r.UserID {
				f.report(KindRebateUndelivered, r.UserID, r.BizID, "rebate %s (sku %s) has no activity order with out_business_no %s",
					r.OrderID, r.Config, r.BizID)
			}
		}
	}
	return f
}

// TaskRow is a task row.
type TaskRow struct {
	UserID    string
	Topic     string
	MessageID string
	State     outbox.State
	Created   time.Time
}

// Tasks reports the tasks that are past the grace and still not delivered.
func Tasks(w Window, tasks []TaskRow) []Discrepancy {
	var f found
	for _, t := range tasks {
		if (t.State == outbox.Create || t.State == outbox.Fail) && w.isSettled(t.Created) {
			f.report(KindTaskUndelivered, t.UserID, t.MessageID, "task %s is %s since %s", t.Topic, t.State, t.Created.Format(time.DateTime))
		}
	}
	return f
}

// CreditOrder is a user_credit_order row and where it lies: database DB (from 0) and the
// table of suffix Table.
type CreditOrder struct {
	DB         int
	Table      string
	UserID     string
	OrderID    string
	Name       string
	Type       credit.TradeType
	Amount     money.Cents
	BusinessNo string
	Created    time.Time
}

// Sums is one user's credit orders added up.
type Sums struct {
	Forward, Reverse money.Cents
}

// AddCredits adds orders to sums, by user.
func AddCredits(sums map[string]Sums, orders []CreditOrder) {
	for _, o := range orders {
		s := sums[o.UserID]
		switch o.Type {
		case credit.Forward:
			s.Forward += o.Amount
		case credit.Reverse:
			s.Reverse += o.Amount
		}
		sums[o.UserID] = s
	}
}

// Account is a user_credit_account row.
type Account struct {
	UserID           string
	Total, Available money.Cents
}

// Balances compares every credit account of a database with its user's orders summed in
// sums: the total is what was ever credited, the available amount that less what was
// spent. Users with orders but no account are checked as an account of zeros. It returns
// how many accounts it checked.
func Balances(accounts []Account, sums map[string]Sums) ([]Discrepancy, int) {
	var f found
	seen := map[string]bool{}
	for _, a := range accounts {
		seen[a.UserID] = true
		s := sums[a.UserID]
		if a.Total != s.Forward || a.Available != s.Forward-s.Reverse {
			f.report(KindCreditBalance, a.UserID, a.UserID, "account total=%s available=%s; orders forward=%s reverse=%s want total=%s available=%s",
				a.Total, a.Available, s.Forward, s.Reverse, s.Forward, s.Forward-s.Reverse)
		}
		if a.Total < 0 || a.Available < 0 {
			f.report(KindCreditNegative, a.UserID, a.UserID, "account total=%s available=%s", a.Total, a.Available)
		}
	}
	n := len(accounts)
	for userID, s := range sums {
		if seen[userID] {
			continue
		}
		n++
		if s.Forward != 0 || s.Reverse != 0 {
			f.report(KindCreditBalance, userID, userID, "no account; orders forward=%s reverse=%s want total=%s available=%s",
				s.Forward, s.Reverse, s.Forward, s.Forward-s.Reverse)
		}
	}
	return f, n
}
