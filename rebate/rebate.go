// Package rebate is big-market's behaviour rebate domain: a user's behaviour (a daily
// sign-in, a payment reported by another service) earns the rebates configured for it —
// a free SKU recharge or credit — once per business number.
package rebate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/ident"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/outbox"
)

// Errors of rebates.
var (
	// ErrDuplicate means the user already earned the behaviour's rebates for the business
	// number (a second sign-in the same day).
	ErrDuplicate = errors.New("rebate already granted")
	// ErrInvalid means a behaviour request is malformed: no user, no business number, a
	// business id too long for the tables.
	ErrInvalid = errors.New("invalid rebate request")
	// ErrNoRebate means the behaviour has no open rebate configured.
	ErrNoRebate = errors.New("no rebate configured for behaviour")
	// ErrBadConfig means a rebate row's config does not fit its type (a SKU that is not a
	// number, an amount that is not positive); redelivery cannot fix it.
	ErrBadConfig = errors.New("bad rebate config")
)

// Behavior is daily_behavior_rebate.behavior_type.
type Behavior string

// Behaviours of the demo data.
const (
	BehaviorSign      Behavior = "sign"
	BehaviorOpenAIPay Behavior = "openai_pay"
)

// TopicSendRebate is the task topic whose consumer delivers a rebate.
const TopicSendRebate = "send_rebate"

// maxBusinessNoWidth is the width of the out_business_no columns a business id lands in.
const maxBusinessNoWidth = 64

// Type is daily_behavior_rebate.rebate_type.
type Type string

// Rebate types: a free SKU recharge, or credit.
const (
	TypeSKU      Type = "sku"
	TypeIntegral Type = "integral"
)

// Config is a daily_behavior_rebate row.
type Config struct {
	Behavior Behavior
	Desc     string
	Type     Type
	Value    string // the SKU, or the credit amount in yuan
}

// Order is a user_behavior_rebate_order.
type Order struct {
	UserID        string
	OrderID       string
	Behavior      Behavior
	Desc          string
	Type          Type
	Value         string
	OutBusinessNo string
	BizID         string // {userId}_{rebateType}_{outBusinessNo}, unique
}

// SendRebate is the data of a send_rebate message (big-market's SendRebateMessage).
type SendRebate struct {
	UserID       string `json:"userId"`
	RebateDesc   string `json:"rebateDesc"`
	RebateType   Type   `json:"rebateType"`
	RebateConfig string `json:"rebateConfig"`
	BizID        string `json:"bizId"`
}

// Configs reads the rebate rows.
type Configs interface {
	BehaviorRebates(ctx context.Context, behavior Behavior) ([]Config, error)
}

// Store keeps rebate orders in the user databases.
type Store interface {
	// SaveRebates writes orders (all of one user) and their tasks in one transaction; a
	// biz_id already written makes it fail with an error wrapping ErrDuplicate and write
	// nothing.
	SaveRebates(ctx context.Context, userID string, orders []Order, tasks []outbox.Task) error
	// HasRebate reports whether the user has a rebate order of the behaviour with the
	// business number.
	HasRebate(ctx context.Context, userID string, behavior Behavior, outBusinessNo string) (bool, error)
}

// Pending lists a user's credit rebates recorded but not yet credited, as the
// send_rebate messages that will credit them (the green channel's source).
type Pending interface {
	PendingCreditRebates(ctx context.Context, userID string) ([]SendRebate, error)
}

// Options configures a Service.
type Options struct {
	Configs Configs
	Store   Store
	// Pending is read by Settle; nil: Settle does nothing.
	Pending Pending
	// Recharge grants a SKU rebate (activity.Service.Recharge).
	Recharge func(ctx context.Context, req activity.RechargeRequest) (activity.RechargeOrder, error)
	// Credits grants a credit rebate.
	Credits interface {
		ApplyCredit(ctx context.Context, changes []credit.Change) []error
	}
	Now func() time.Time
	// Location is the zone of the sign-in day (default UTC).
	Location *time.Location
}

// Service records behaviours and delivers their rebates.
type Service struct{ opts Options }

// NewService returns a Service.
func NewService(opts Options) *Service {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	return &Service{opts: opts}
}

// Behave records that the user did behavior under outBusinessNo: one rebate order per
// open rebate row and one send_rebate task each, in one transaction. It returns the
// rebate order ids; a repeat of the same business number wraps ErrDuplicate and changes
// nothing.
func (s *Service) Behave(ctx context.Context, userID string, behavior Behavior, outBusinessNo string) ([]string, error) {
	if err := activity.CheckUserID(userID); err != nil {
		return nil, fmt.Errorf("rebate: %w: %w", ErrInvalid, err)
	}
	if err := ident.Check(string(behavior), ident.MaxBehavior); err != nil {
		return nil, fmt.Errorf("rebate for %s: behaviour %w: %w", userID, err, ErrInvalid)
	}
	if err := ident.Check(outBusinessNo, ident.MaxBusinessNo); err != nil {
		return nil, fmt.Errorf("rebate %s for %s: business number %w: %w", behavior, userID, err, ErrInvalid)
	}
	configs, err := s.opts.Configs.BehaviorRebates(ctx, behavior)
	if err != nil {
		return nil, err
	}
	if len(configs) == 0 {
		return nil, fmt.Errorf("behaviour %q: %w", behavior, ErrNoRebate)
	}
	now := s.opts.Now()
	var (
		orders []Order
		tasks  []outbox.Task
		ids    []string
	)
	for _, c := range configs {
		o := Order{
			UserID: userID, OrderID: activity.NewOrderID(now), Behavior: behavior, Desc: c.Desc, Type: c.Type, Value: c.Value,
			OutBusinessNo: outBusinessNo, BizID: userID + "_" + string(c.Type) + "_" + outBusinessNo,
		}
		if len(o.BizID) > maxBusinessNoWidth {
			return nil, fmt.Errorf("business id %q longer than %d: %w", o.BizID, maxBusinessNoWidth, ErrInvalid)
		}
		orders = append(orders, o)
		ids = append(ids, o.OrderID)
		tasks = append(tasks, outbox.NewTask(userID, TopicSendRebate, o.OrderID, now, SendRebate{
			UserID: userID, RebateDesc: c.Desc, RebateType: c.Type, RebateConfig: c.Value, BizID: o.BizID,
		}))
	}
	// The commit point: the transaction grants the rebates. Behind the guard, a
	// behaviour over its budget stops here having written nothing (0006); from here on
	// it is waited for.
	ctx, err = guard.Commit(ctx)
	if err != nil {
		return nil, fmt.Errorf("rebate %s for %s: %w", behavior, userID, err)
	}
	if err := s.opts.Store.SaveRebates(ctx, userID, orders, tasks); err != nil {
		return nil, fmt.Errorf("rebate %s for %s: %w", behavior, userID, err)
	}
	return ids, nil
}

// Today is the sign-in business number of now: the date yyyyMMdd in the configured zone.
func (s *Service) Today() string { return s.opts.Now().In(s.opts.Location).Format("20060102") }

// SignIn is the daily sign-in: the sign behaviour with today's date as business number;
// a second sign-in the same day wraps ErrDuplicate.
func (s *Service) SignIn(ctx context.Context, userID string) error {
	_, err := s.Behave(ctx, userID, BehaviorSign, s.Today())
	return err
}

// SignedIn reports whether the user signed in today.
func (s *Service) SignedIn(ctx context.Context, userID string) (bool, error) {
	if err := activity.CheckUserID(userID); err != nil {
		return false, fmt.Errorf("rebate: %w: %w", ErrInvalid, err)
	}
	return s.opts.Store.HasRebate(ctx, userID, BehaviorSign, s.Today())
}

// Deliver grants one rebate: a free recharge of the SKU or a forward credit trade, both
// keyed by the rebate's business id, so a redelivered message changes nothing.
func (s *Service) Deliver(ctx context.Context, m SendRebate) error {
	switch m.RebateType {
	case TypeSKU:
		sku, err := strconv.ParseInt(m.RebateConfig, 10, 64)
		if err != nil || sku <= 0 {
			return fmt.Errorf("rebate %s: sku %q: %w", m.BizID, m.RebateConfig, ErrBadConfig)
		}
		_, err = s.opts.Recharge(ctx, activity.RechargeRequest{UserID: m.UserID, SKU: sku, OutBusinessNo: m.BizID,
			Policy: activity.PolicyFree})
		if err != nil && !errors.Is(err, activity.ErrDuplicateOrder) {
			return fmt.Errorf("rebate %s: %w", m.BizID, err)
		}
		return nil
	case TypeIntegral:
		amount, err := money.Parse(m.RebateConfig)
		if err != nil || amount <= 0 {
			return fmt.Errorf("rebate %s: amount %q: %w", m.BizID, m.RebateConfig, ErrBadConfig)
		}
		errs := s.opts.Credits.ApplyCredit(ctx, []credit.Change{{UserID: m.UserID, Order: &credit.Order{
			UserID: m.UserID, OrderID: activity.NewOrderID(s.opts.Now()), Name: credit.NameRebate, Type: credit.Forward,
			Amount: amount, OutBusinessNo: m.BizID,
		}}})
		if err := errs[0]; err != nil && !errors.Is(err, credit.ErrDuplicate) {
			return fmt.Errorf("rebate %s: %w", m.BizID, err)
		}
		return nil
	default:
		return fmt.Errorf("rebate %s: type %q: %w", m.BizID, m.RebateType, ErrBadConfig)
	}
}

// Settle is the credit green channel of rebates: before a user's credit is read, the
// user's credit rebates recorded but not yet credited (a sign-in a moment ago) are
// delivered now, as their send_rebate messages will be, keyed by the rebate's biz_id, so
// the consumer's delivery that follows or runs at the same time changes nothing, and this
// changes nothing after it. SKU rebates are left to the consumer. A rebate whose config
// cannot be credited is left to the consumer's dead letters; any other failure is
// returned, and the consumer still credits it.
func (s *Service) Settle(ctx context.Context, userID string) error {
	if s.opts.Pending == nil {
		return nil
	}
	pending, err := s.opts.Pending.PendingCreditRebates(ctx, userID)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range pending {
		if m.RebateType != TypeIntegral {
			continue
		}
		if err := s.Deliver(ctx, m); err != nil && !errors.Is(err, ErrBadConfig) && !credit.IsPermanent(err) {
			errs = append(errs, fmt.Errorf("settle rebate %s: %w", m.BizID, err))
		}
	}
	return errors.Join(errs...)
}
