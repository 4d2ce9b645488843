// Package credit is big-market's credit domain: each user's credit account and the trade
// orders that move it, forward (credit in) and reverse (credit out), each unique by its
// out_business_no so that a repeated trade is recognised and changes nothing.
package credit

import (
	"context"
	"errors"
	"fmt"

	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/outbox"
)

// Errors of credit trades.
var (
	// ErrInsufficient means a reverse trade asks for more than the available credit.
	ErrInsufficient = errors.New("insufficient credit")
	// ErrDuplicate means the trade's out_business_no (or the award it completes) was
	// already applied; nothing changed.
	ErrDuplicate = errors.New("credit trade already applied")
	// ErrAwardNotFound means the award record a change completes does not exist.
	ErrAwardNotFound = errors.New("award record not found")
	// ErrInvalidTrade means a trade is malformed: no user, a non-positive amount, a
	// missing or too long business number.
	ErrInvalidTrade = errors.New("invalid credit trade")
)

// TradeType is user_credit_order.trade_type.
type TradeType string

// Trade types: forward adds credit, reverse spends it.
const (
	Forward TradeType = "forward"
	Reverse TradeType = "reverse"
)

// Trade names (user_credit_order.trade_name), big-market's where it has one.
const (
	NameAward    = "抽奖奖品" // a credit award distributed
	NameRebate   = "行为返利" // a behaviour rebate
	NameExchange = "兑换抽奖" // credit spent on a SKU
)

// Order is a user_credit_order.
type Order struct {
	UserID        string
	OrderID       string
	Name          string
	Type          TradeType
	Amount        money.Cents // positive; Type says the direction
	OutBusinessNo string
}

// maxBusinessNo is the width of the out_business_no column.
const maxBusinessNo = 64

// Check refuses orders the tables cannot hold or that make no sense.
func (o Order) Check() error {
	switch {
	case o.UserID == "" || len(o.UserID) > 32:
		return fmt.Errorf("user id %q: %w", o.UserID, ErrInvalidTrade)
	case o.Amount <= 0:
		return fmt.Errorf("amount %s: %w", o.Amount, ErrInvalidTrade)
	case o.Type != Forward && o.Type != Reverse:
		return fmt.Errorf("trade type %q: %w", o.Type, ErrInvalidTrade)
	case o.OutBusinessNo == "" || len(o.OutBusinessNo) > maxBusinessNo:
		return fmt.Errorf("out_business_no %q: %w", o.OutBusinessNo, ErrInvalidTrade)
	}
	return nil
}

// Account is a user_credit_account: Total is every credit ever received, Available what
// is left to spend.
type Account struct {
	UserID    string
	Total     money.Cents
	Available money.Cents
}

// Apply returns the account after o, or ErrInsufficient when o would overdraw it.
func (a Account) Apply(o Order) (Account, error) {
	switch o.Type {
	case Forward:
		a.Total += o.Amount
		a.Available += o.Amount
	case Reverse:
		if a.Available < o.Amount {
			return a, fmt.Errorf("spend %s of %s available: %w", o.Amount, a.Available, ErrInsufficient)
		}
		a.Available -= o.Amount
	}
	return a, nil
}

// Change is what one credit transaction does for one user: a trade (optional), the award
// record it distributes moved from create to completed (optional), and an outbox task
// announcing it (optional). A store applies all of it or none of it.
type Change struct {
	UserID string
	Order  *Order
	// AwardOrderID names the user's award record (by its raffle order id) that this
	// change completes.
	AwardOrderID string
	Task         *outbox.Task
}

// Store keeps credit accounts and orders in the sharded user databases; sqlstore
// implements it.
type Store interface {
	// CreditAccount returns the user's account (zero without one).
	CreditAccount(ctx context.Context, userID string) (Account, error)
	// ApplyCredit applies each change in its own all-or-nothing unit (a store may share
	// one transaction among several) and returns each one's outcome: nil, or an error
	// wrapping ErrDuplicate (already applied: nothing changed), ErrInsufficient or
	// ErrAwardNotFound, or another error.
	ApplyCredit(ctx context.Context, changes []Change) []error
}
