// Package outbox is the transactional outbox: a task row is written in the same
// transaction as the change it announces, published to the broker once that transaction
// has committed, and re-sent by a compensation job until the broker has stored it.
package outbox

import (
	"encoding/json"
	"time"
)

// State is task.state.
type State string

// Task states: create until the broker has stored the message, completed after, fail
// when a publish failed (the compensation job tries again).
const (
	Create    State = "create"
	Completed State = "completed"
	Fail      State = "fail"
)

// Task is a task row: a message waiting to be published. MessageID names the business
// fact (an award's order id, a rebate order id); it is the broker's Nats-Msg-Id, so a
// task published twice within the broker's window is stored once, and consumers are
// idempotent on the business key beyond it.
type Task struct {
	UserID    string
	Topic     string
	MessageID string
	Message   string
	State     State
	Created   time.Time // set on reads; writers use the store's clock
}

// Message is the JSON body of a task's message, big-market's BaseEvent.EventMessage: an
// id, the time it was made in Unix milliseconds, and the topic's data.
type Message[T any] struct {
	ID        string `json:"id"`
	Timestamp int64  `json:"timestamp"`
	Data      T      `json:"data"`
}

// NewTask returns the task of topic carrying data for the user, its message id being id.
func NewTask[T any](userID, topic, id string, now time.Time, data T) Task {
	body, err := json.Marshal(Message[T]{ID: id, Timestamp: now.UnixMilli(), Data: data})
	if err != nil { // data are plain structs of strings and numbers
		panic("outbox: encode message: " + err.Error())
	}
	return Task{UserID: userID, Topic: topic, MessageID: id, Message: string(body), State: Create}
}

// Decode reads a task message's body.
func Decode[T any](body []byte) (Message[T], error) {
	var m Message[T]
	err := json.Unmarshal(body, &m)
	return m, err
}
