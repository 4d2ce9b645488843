package activity

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/bigmarket/bigmarket/money"
)

// OrderState is user_raffle_order.order_state.
type OrderState string

// Raffle order states.
const (
	OrderCreate OrderState = "create"
	OrderUsed   OrderState = "used"
	OrderCancel OrderState = "cancel"
)

// RaffleOrder is a user_raffle_order: one unit of quota taken, which authorises exactly one
// draw (the draw writer writes it used, with its award record).
type RaffleOrder struct {
	UserID       string
	ActivityID   int64
	ActivityName string
	StrategyID   int64
	OrderID      string
	OrderTime    time.Time
	State        OrderState
	// Created and Updated are the row's create_time and update_time, set on reads.
	Created, Updated time.Time
}

// RechargeState is raffle_activity_order.state.
type RechargeState string

// Recharge order states.
const (
	RechargeWaitPay   RechargeState = "wait_pay"
	RechargeCompleted RechargeState = "completed"
)

// RechargeOrder is a raffle_activity_order: a SKU bought (or granted), adding its count to
// the user's quota.
type RechargeOrder struct {
	UserID        string
	SKU           int64
	ActivityID    int64
	ActivityName  string
	StrategyID    int64
	OrderID       string
	OrderTime     time.Time
	Count         Count
	PayAmount     money.Cents
	State         RechargeState
	OutBusinessNo string
}

// NewOrderID returns a 20-digit order id: the Unix millisecond followed by seven random
// digits, unique in practice and ordered by time; the unique keys catch the rest.
func NewOrderID(now time.Time) string {
	return fmt.Sprintf("%013d%07d", now.UnixMilli(), rand.IntN(10_000_000))
}
