package credit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/outbox"
)

// TopicCreditAdjustSuccess is the task topic announcing that a credit trade paid for a
// SKU; its consumer completes the recharge order and adds the quota.
const TopicCreditAdjustSuccess = "credit_adjust_success"

// AdjustSuccess is the data of a credit_adjust_success message (big-market's
// CreditAdjustSuccessMessage).
type AdjustSuccess struct {
	UserID        string `json:"userId"`
	OrderID       string `json:"orderId"`
	Amount        string `json:"amount"`
	OutBusinessNo string `json:"outBusinessNo"`
}

// activities is what exchanges need of the activity side.
type activities interface {
	SKU(ctx context.Context, sku int64) (activity.SKU, error)
	UnpaidOrder(ctx context.Context, userID string, sku int64) (activity.RechargeOrder, bool, error)
	Recharge(ctx context.Context, req activity.RechargeRequest) (activity.RechargeOrder, error)
	CompletePaid(ctx context.Context, userID, outBusinessNo string) error
}

// Service runs the credit use cases: the balance, and paying for SKUs with credit.
type Service struct {
	store      Store
	activities activities
	now        func() time.Time
}

// NewService returns a Service; now defaults to time.Now.
func NewService(store Store, acts activities, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, activities: acts, now: now}
}

// Account returns the user's credit account (zero without one).
func (s *Service) Account(ctx context.Context, userID string) (Account, error) {
	if err := activity.CheckUserID(userID); err != nil {
		return Account{}, err
	}
	return s.store.CreditAccount(ctx, userID)
}

// ExchangeSKU buys one SKU's count with credit, big-market's credit_pay_exchange_sku:
// an unpaid order of the same SKU younger than a month is paid again instead of taking
// stock; otherwise a unit of SKU stock becomes a wait_pay order priced at the SKU. The
// order is paid by a reverse trade, keyed by the order's business number, written with a
// credit_adjust_success task in one transaction; that event completes the order and adds
// the quota. With too little credit (checked before any stock is taken, and again under
// the account's lock) it wraps ErrInsufficient and the credit is untouched.
func (s *Service) ExchangeSKU(ctx context.Context, userID string, sku int64) (activity.RechargeOrder, error) {
	if err := activity.CheckUserID(userID); err != nil {
		return activity.RechargeOrder{}, err
	}
	k, err := s.activities.SKU(ctx, sku)
	if err != nil {
		return activity.RechargeOrder{}, err
	}
	acc, err := s.store.CreditAccount(ctx, userID)
	if err != nil {
		return activity.RechargeOrder{}, err
	}
	if acc.Available < k.Price {
		return activity.RechargeOrder{}, fmt.Errorf("sku %d costs %s, %s has %s: %w", sku, k.Price, userID, acc.Available, ErrInsufficient)
	}
	order, found, err := s.activities.UnpaidOrder(ctx, userID, sku)
	if err != nil {
		return activity.RechargeOrder{}, err
	}
	// The commit point: next the exchange takes a unit of SKU stock (a new order) or the
	// credit (an unpaid one). Behind the guard, an exchange over its budget stops here
	// having taken neither (0006); from here on it is waited for.
	if ctx, err = guard.Commit(ctx); err != nil {
		return activity.RechargeOrder{}, fmt.Errorf("exchange sku %d: %w", sku, err)
	}
	if !found {
		order, err = s.activities.Recharge(ctx, activity.RechargeRequest{
			UserID: userID, SKU: sku, OutBusinessNo: newBusinessNo(), Policy: activity.PolicyCreditPay,
		})
		if err != nil {
			return activity.RechargeOrder{}, err
		}
	}
	now := s.now()
	trade := Order{UserID: userID, OrderID: activity.NewOrderID(now), Name: NameExchange, Type: Reverse, Amount: order.PayAmount,
		OutBusinessNo: order.OutBusinessNo}
	task := outbox.NewTask(userID, TopicCreditAdjustSuccess, trade.OrderID, now, AdjustSuccess{
		UserID: userID, OrderID: trade.OrderID, Amount: trade.Amount.String(), OutBusinessNo: trade.OutBusinessNo,
	})
	if err := s.store.ApplyCredit(ctx, []Change{{UserID: userID, Order: &trade, Task: &task}})[0]; err != nil {
		return activity.RechargeOrder{}, fmt.Errorf("pay order %s: %w", order.OrderID, err)
	}
	return order, nil
}

// AdjustSucceeded applies a credit_adjust_success message: the paid order is completed and
// its count added to the quota, once.
func (s *Service) AdjustSucceeded(ctx context.Context, m AdjustSuccess) error {
	err := s.activities.CompletePaid(ctx, m.UserID, m.OutBusinessNo)
	if err != nil {
		return fmt.Errorf("complete order %s of %s: %w", m.OutBusinessNo, m.UserID, err)
	}
	return nil
}

// IsPermanent reports whether a credit error cannot be fixed by trying again.
func IsPermanent(err error) bool {
	return errors.Is(err, ErrInvalidTrade) || errors.Is(err, ErrAwardNotFound) || errors.Is(err, activity.ErrRechargeNotFound)
}

// newBusinessNo is a 12-digit out_business_no for a credit-paid order, as big-market's.
func newBusinessNo() string { return fmt.Sprintf("%012d", rand.Int64N(1_000_000_000_000)) }
