package reconcile

import (
	"fmt"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/outbox"
)

// Award is an award row of the config database.
type Award struct {
	Key    string
	Config string
}

// Task is the task row an outer join found for a record; Found is false when none.
type Task struct {
	Found   bool
	UserID  string
	Topic   string
	Message string
}

// AwardRecord is a user_award_record row with the task whose message id is its order id
// and the credit order whose business number is its order id.
type AwardRecord struct {
	UserID    string
	OrderID   string
	AwardID   int64
	State     award.State
	AwardTime time.Time
	Task      Task
	Credit    Joined
}

// AwardRecords checks award records against their tasks and credit orders: each has its
// send_award task, and its distribution matches its award key in awards.
func AwardRecords(w Window, awards map[int64]Award, records []AwardRecord) []Discrepancy {
	var f found
	for _, r := range records {
		taskConfig := f.awardTask(r)
		f.awardDistribution(w, awards, r, taskConfig)
	}
	return f
}

// awardTask reports a record whose send_award task is missing or names another award,
// and returns the task's awardConfig.
func (f *found) awardTask(r AwardRecord) string {
	t := r.Task
	if !t.Found {
		f.report(KindAwardTaskMissing, r.UserID, r.OrderID, "award %d has no task with message_id %s", r.AwardID, r.OrderID)
		return ""
	}
	if t.Topic != award.TopicSendAward || t.UserID != r.UserID {
		f.report(KindAwardTaskMissing, r.UserID, r.OrderID, "award %d: task %s is topic %s of user %s, want %s of %s",
			r.AwardID, r.OrderID, t.Topic, t.UserID, award.TopicSendAward, r.UserID)
		return ""
	}
	msg, err := outbox.Decode[award.SendAward]([]byte(t.Message))
	if err != nil {
		f.report(KindAwardTaskMissing, r.UserID, r.OrderID, "award %d: task message does not decode: %v", r.AwardID, err)
		return ""
	}
	if d := msg.Data; d.UserID != r.UserID || d.OrderID != r.OrderID || int64(d.AwardID) != r.AwardID {
		f.report(KindAwardTaskMissing, r.UserID, r.OrderID, "award %d: task message is for user %s order %s award %d",
			r.AwardID, d.UserID, d.OrderID, d.AwardID)
		return ""
	}
	return msg.Data.AwardConfig
}

// awardDistribution checks a record's state against its credit order: credit awards are
// completed exactly when their prize credit order exists, with an amount in range; other
// awards are distributed by webhook and never credited.
func (f *found) awardDistribution(w Window, awards map[int64]Award, r AwardRecord, taskConfig string) {
	userID, orderID, awardID, c := r.UserID, r.OrderID, r.AwardID, r.Credit
	a, ok := awards[awardID]
	if !ok {
		f.report(KindAwardUnknown, userID, orderID, "award %d is not in the award table", awardID)
		return
	}
	if a.Key != award.KeyCreditRandom && a.Key != award.KeyCreditBlacklist {
		if c.Found {
			f.report(KindAwardCreditUnexpected, userID, orderID, "award %d (%s) is distributed by webhook but has credit order %s",
				awardID, a.Key, c.describe())
		}
		if r.State == award.StateCreate && w.isSettled(r.AwardTime) {
			f.report(KindAwardUndistributed, userID, orderID, "award %d (%s) still create since %s",
				awardID, a.Key, r.AwardTime.Format(time.DateTime))
		}
		return
	}
	paid := c.Found && c.UserID == userID && c.Type == credit.Forward && c.Name == credit.NameAward
	switch {
	case r.State == award.StateCompleted && !paid:
		f.report(KindAwardCreditMissing, userID, orderID, "award %d (%s) completed; want a %s %s credit order, have %s",
			awardID, a.Key, credit.Forward, credit.NameAward, c.describe())
	case r.State == award.StateCreate && paid:
		f.report(KindAwardStateStale, userID, orderID, "award %d (%s) still create though credited %s", awardID, a.Key, c.Amount)
	case r.State == award.StateCreate && !paid && w.isSettled(r.AwardTime):
		f.report(KindAwardUndistributed, userID, orderID, "award %d (%s) still create since %s; credit order %s",
			awardID, a.Key, r.AwardTime.Format(time.DateTime), c.describe())
	}
	if !paid {
		return
	}
	rangeConfig := a.Config
	if a.Key == award.KeyCreditRandom && taskConfig != "" {
		rangeConfig = taskConfig
	}
	lo, hi, err := CreditRange(a.Key, rangeConfig)
	if err != nil {
		f.report(KindAwardCreditAmount, userID, orderID, "award %d (%s) credited %s; cannot check: %v", awardID, a.Key, c.Amount, err)
		return
	}
	if c.Amount < lo || c.Amount > hi {
		f.report(KindAwardCreditAmount, userID, orderID, "award %d (%s) credited %s, want %s..%s (config %q)",
			awardID, a.Key, c.Amount, lo, hi, rangeConfig)
	}
}

// CreditRange returns the amounts a credit award may grant: "lo,hi" yuan for a random
// credit, the exact config for the blacklist's.
func CreditRange(key, config string) (lo, hi money.Cents, err error) {
	if key == award.KeyCreditBlacklist {
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

// PrizeCredit is a prize credit order (trade name credit.NameAward) with whether an award
// record of its user has its business number as order id.
type PrizeCredit struct {
	UserID      string
	OrderID     string
	BusinessNo  string
	Type        credit.TradeType
	Amount      string // as stored
	RecordFound bool
}

// PrizeCredits reports the prize credit orders no award record of their user explains.
func PrizeCredits(credits []PrizeCredit) []Discrepancy {
	var f found
	for _, c := range credits {
		if !c.RecordFound {
			f.report(KindCreditOrderOrphan, c.UserID, c.BusinessNo, "credit order %s (%s %s) matches no award record of the user",
				c.OrderID, c.Type, c.Amount)
		}
	}
	return f
}
