// Package award is big-market's award domain: the record of what a draw granted and the
// outbox task that carries it to distribution.
package award

import (
	"encoding/json"
	"time"
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

// TaskState is task.state.
type TaskState string

// Task states.
const (
	TaskCreate    TaskState = "create"
	TaskCompleted TaskState = "completed"
	TaskFail      TaskState = "fail"
)

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

// Task is an outbox row, written in the same transaction as the change it announces.
type Task struct {
	UserID    string
	Topic     string
	MessageID string
	Message   string
	State     TaskState
}

// SendAward is the message of a send_award task.
type SendAward struct {
	UserID      string `json:"userId"`
	OrderID     string `json:"orderId"`
	AwardID     int    `json:"awardId"`
	AwardTitle  string `json:"awardTitle"`
	AwardConfig string `json:"awardConfig,omitempty"` // the rule's value (e.g. a credit range); empty: the award's own config
}

// NewSendAwardTask returns the task that distributes rec; its message id is the order id,
// so a repeated task is recognisable downstream.
func NewSendAwardTask(rec Record, awardConfig string) Task {
	msg, _ := json.Marshal(SendAward{UserID: rec.UserID, OrderID: rec.OrderID, AwardID: rec.AwardID,
		AwardTitle: rec.AwardTitle, AwardConfig: awardConfig})
	return Task{UserID: rec.UserID, Topic: TopicSendAward, MessageID: rec.OrderID, Message: string(msg), State: TaskCreate}
}
