// Package award is big-market's award domain: the record of what a draw granted, the
// outbox task that carries it to distribution, and the distributors, one per award key,
// that hand it to the user.
package award

import (
	"time"

	"github.com/bigmarket/bigmarket/outbox"
)

// State is user_award_record.award_state.
type State string

// Award record states.
const (
	StateCreate    State = "create"
	StateCompleted State = "completed"
)

// TopicSendAward is the task topic whose consumer distributes an award.
const TopicSendAward = "send_award"

// Record is a user_award_record: one draw's award, keyed by the raffle order it used.
type Record struct {
	UserID     string
	ActivityID int64
	StrategyID int64
	OrderID    string
	AwardID    int
	AwardTitle string
	AwardTime  time.Time
	State      State
}

// SendAward is the data of a send_award message.
type SendAward struct {
	UserID      string `json:"userId"`
	OrderID     string `json:"orderId"`
	AwardID     int    `json:"awardId"`
	AwardTitle  string `json:"awardTitle"`
	AwardConfig string `json:"awardConfig,omitempty"` // the rule's value (e.g. a credit range); empty: the award's own config
}

// NewSendAwardTask returns the task that distributes rec; its message id is the order id,
// so a repeated task is recognisable downstream.
func NewSendAwardTask(rec Record, awardConfig string) outbox.Task {
	return outbox.NewTask(rec.UserID, TopicSendAward, rec.OrderID, rec.AwardTime, SendAward{
		UserID: rec.UserID, OrderID: rec.OrderID, AwardID: rec.AwardID, AwardTitle: rec.AwardTitle, AwardConfig: awardConfig,
	})
}
