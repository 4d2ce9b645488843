// Package flash holds the facts of the flash draw (issue 14) that its adapters share:
// the pending draw and its outcome in the hot state, the draw event the broker carries to
// the draw writer, and the contracts of the hot quota, the publisher and the writer's
// drain. The raffle package runs the draw on them.
package flash

import (
	"context"
	"errors"
	"time"

	"github.com/bigmarket/bigmarket/activity"
)

// ErrUnavailable means the draw cannot be answered now but may be on a retry: its event
// is not durable yet (its outcome is fixed and the next draw answers it), or the hot
// quota is being rebuilt after a Redis loss. It is never "no quota".
var ErrUnavailable = errors.New("draw unavailable, retry")

// Errors of the hot quota (HotQuota).
var (
	// ErrHotMissing means the user's hot quota is not loaded; HotMissing carries the
	// epoch a load must name.
	ErrHotMissing = errors.New("hot quota not loaded")
	// ErrHotNotReady means hot quotas of the user's slot may not be loaded from SQL yet:
	// after a Redis loss the draw writer may not have applied every draw event.
	ErrHotNotReady = errors.New("hot quota not ready to load")
	// ErrHotStale means the epoch a load named is gone (a loss and a restore since the
	// quota was read from SQL): read it again.
	ErrHotStale = errors.New("hot quota epoch changed")
	// ErrPendingGone means the pending draw was cleared by another request or the sweep.
	ErrPendingGone = errors.New("pending draw gone")
)

// HotMissing is ErrHotMissing with the slot's epoch, which the load must name.
type HotMissing struct{ Epoch string }

func (e *HotMissing) Error() string { return ErrHotMissing.Error() }

// Is makes errors.Is(err, ErrHotMissing) hold.
func (e *HotMissing) Is(target error) bool { return target == ErrHotMissing }

// Outcome is a pending draw's picked award; once stored on the pending draw it is fixed.
type Outcome struct {
	AwardID    int    `json:"awardId"`
	AwardTitle string `json:"awardTitle"`
	Sort       int    `json:"sort"`
	RuleValue  string `json:"ruleValue,omitempty"`
	AwardTime  int64  `json:"awardTime"` // Unix ms
	// Credit says the award only moves credit (随机积分): its draw is kept among the
	// user's unwritten credit wins until the writer has written it, for the credit
	// green channel.
	Credit bool `json:"credit,omitempty"`
}

// Pending is a draw that took its unit of hot quota and is not durable yet.
type Pending struct {
	OrderID   string
	OrderTime time.Time
	// Day and Month are the period keys the unit was taken from.
	Day, Month string
	// Score is the user's draws in the activity before this one (rule_weight); DrawsToday
	// the draws of the day before this one (rule_lock).
	Score, DrawsToday int64
	Outcome           *Outcome // nil until picked
}

// PendingRef names a pending draw the sweep found.
type PendingRef struct {
	UserID     string
	ActivityID int64
	OrderID    string
}

// HotQuota is the flash draw's hot state: per (user, activity) the quota rows as
// activity.Quota holds them and the pending draws, with the same Take semantics.
type HotQuota interface {
	// Take resumes a pending draw of the user whose lease has run out (resumed set), or
	// takes one unit as activity.Quota.Take does and creates a pending draw with orderID
	// leased to the caller for lease. Errors: *HotMissing, ErrHotNotReady, the
	// activity quota errors.
	Take(ctx context.Context, key activity.QuotaKey, orderID string, now time.Time, lease time.Duration) (p Pending, resumed bool, err error)
	// Load puts q in place as the user's hot quota unless one is there; ErrHotStale when
	// the slot's epoch is no longer epoch.
	Load(ctx context.Context, key activity.QuotaKey, epoch string, q activity.Quota, expireAt time.Time) error
	// LoadTake is Load followed by Take in one step (a first touch): ErrHotStale, having
	// loaded and taken nothing, when the slot's epoch is no longer epoch.
	LoadTake(ctx context.Context, key activity.QuotaKey, epoch string, q activity.Quota, expireAt time.Time,
		orderID string, now time.Time, lease time.Duration) (p Pending, resumed bool, err error)
	// Fix stores o on the pending draw unless an outcome is there, and returns the one
	// stored; ErrPendingGone when the draw is no longer pending. When it stores o and
	// keep is set, keep (the draw's event) joins the user's unwritten credit wins in the
	// same step.
	Fix(ctx context.Context, userID string, activityID int64, orderID string, o Outcome, keep *Event) (Outcome, error)
	// Unwritten returns the user's unwritten credit wins: the events of the draws whose
	// credit award was fixed and that nobody has told Forget yet, oldest first.
	Unwritten(ctx context.Context, userID string) ([]Event, error)
	// Forget drops events from their users' unwritten credit wins, once SQL holds them.
	Forget(ctx context.Context, events []Event) error
	// Clear forgets a pending draw once its event is durable.
	Clear(ctx context.Context, userID string, activityID int64, orderID string) error
	// Refund gives the unit of a pending draw without an outcome back and forgets the
	// draw; false when it is gone or has an outcome.
	Refund(ctx context.Context, userID string, activityID int64, orderID string) (bool, error)
	// Release ends the caller's lease on a pending draw, so the next draw resumes it at once.
	Release(ctx context.Context, userID string, activityID int64, orderID string) error
	// Abandoned lists pending draws taken before before, at most limit.
	Abandoned(ctx context.Context, before time.Time, limit int) ([]PendingRef, error)
	// Resume leases an abandoned pending draw to the caller; false when it is gone or
	// leased to another.
	Resume(ctx context.Context, ref PendingRef, now time.Time, lease time.Duration) (Pending, bool, error)
	// MarkReady lets every slot's hot quotas be loaded from SQL again.
	MarkReady(ctx context.Context) error
	// Ready reports whether every slot may load.
	Ready(ctx context.Context) (bool, error)
}

// Event is one answered draw's facts: what the draw writer puts in SQL (the raffle
// order used, the quota unit, the award record and its send_award task).
type Event struct {
	OrderID      string    `json:"orderId"`
	UserID       string    `json:"userId"`
	ActivityID   int64     `json:"activityId"`
	ActivityName string    `json:"activityName"`
	StrategyID   int64     `json:"strategyId"`
	OrderTime    time.Time `json:"orderTime"`
	Day          string    `json:"day"`
	Month        string    `json:"month"`
	AwardID      int       `json:"awardId"`
	AwardTitle   string    `json:"awardTitle"`
	RuleValue    string    `json:"ruleValue,omitempty"`
	AwardTime    time.Time `json:"awardTime"`
	// Credit is the outcome's: the event is among the user's unwritten credit wins, which
	// the writer leaves once it has written it.
	Credit bool `json:"credit,omitempty"`
}

// Key is the quota key the event's unit was taken from.
func (e Event) Key() activity.QuotaKey {
	return activity.QuotaKey{UserID: e.UserID, ActivityID: e.ActivityID, Day: e.Day, Month: e.Month}
}

// Publisher makes a draw durable: it returns once the broker has stored the event.
type Publisher interface {
	PublishDraw(ctx context.Context, e Event) error
}

// Writer writes draw events to SQL, idempotently by order id (sqlstore.UserStore):
// errs[i] is events[i]'s outcome.
type Writer interface {
	ApplyDraws(ctx context.Context, events []Event) []error
}

// Drainer waits until every draw event published so far has been applied to SQL.
type Drainer interface {
	WaitApplied(ctx context.Context) error
}

// DrainFunc is a func as a Drainer.
type DrainFunc func(ctx context.Context) error

// WaitApplied calls f.
func (f DrainFunc) WaitApplied(ctx context.Context) error { return f(ctx) }
