// Package activity is big-market's activity domain: activities, their quota packages
// (counts), the SKUs that sell them, and the channel stages that point at them.
package activity

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bigmarket/bigmarket/money"
)

// Domain errors; httpapi maps them to big-market codes.
var (
	// ErrActivityNotFound means no raffle_activity row has the id.
	ErrActivityNotFound = errors.New("activity not found")
	// ErrNoStageActivity means no active stage points a channel/source at an activity.
	ErrNoStageActivity = errors.New("no active activity for channel and source")
	// ErrStageNotFound means no raffle_activity_stage row has the id.
	ErrStageNotFound = errors.New("stage not found")
)

// State is raffle_activity.state.
type State string

// Activity states.
const (
	StateCreate State = "create"
	StateOpen   State = "open"
	StateClose  State = "close"
)

// Activity is a raffle_activity row.
type Activity struct {
	ID         int64
	Name       string
	Desc       string
	Begin      time.Time
	End        time.Time
	StrategyID int64
	State      State
}

// Count is a raffle_activity_count row: the draws a SKU's purchase adds to the user's
// total, month and day quotas.
type Count struct {
	ID    int64
	Total int64
	Day   int64
	Month int64
}

// SKU is a raffle_activity_sku row with its count.
type SKU struct {
	SKU          int64
	ActivityID   int64
	CountID      int64
	Stock        int64
	StockSurplus int64
	Price        money.Cents
	Count        Count
}

// Stage is a raffle_activity_stage row: a channel and source pointing at an activity.
type Stage struct {
	ID         int64
	Channel    string
	Source     string
	ActivityID int64
	State      string // create, active, expire
}

// ConfigStore reads activity configuration; sqlstore implements it.
type ConfigStore interface {
	// Activity returns the activity or an error wrapping ErrActivityNotFound.
	Activity(ctx context.Context, activityID int64) (Activity, error)
	// SKU returns one SKU with its count, or an error wrapping ErrSKUNotFound.
	SKU(ctx context.Context, sku int64) (SKU, error)
	// SKUs returns the activity's SKUs with their counts, ordered by SKU.
	SKUs(ctx context.Context, activityID int64) ([]SKU, error)
	// StageActivity returns the activity of the newest active stage for channel and
	// source, or an error wrapping ErrNoStageActivity.
	StageActivity(ctx context.Context, channel, source string) (int64, error)
	// Stages lists every stage; Stage returns one or an error wrapping ErrStageNotFound.
	Stages(ctx context.Context) ([]Stage, error)
	Stage(ctx context.Context, id int64) (Stage, error)
	// ActivateStage sets a stage active.
	ActivateStage(ctx context.Context, id int64) error
}

// Products lists the SKUs on sale for an activity; an unknown activity is an error, an
// activity without SKUs an empty list.
func (s *Service) Products(ctx context.Context, activityID int64) ([]SKU, error) {
	if _, err := s.opts.Configs.Activity(ctx, activityID); err != nil {
		return nil, err
	}
	skus, err := s.opts.Configs.SKUs(ctx, activityID)
	if err != nil {
		return nil, fmt.Errorf("list skus of activity %d: %w", activityID, err)
	}
	return skus, nil
}

// Stages lists the channel stages, for operators.
func (s *Service) Stages(ctx context.Context) ([]Stage, error) { return s.opts.Configs.Stages(ctx) }

// Stage returns one stage.
func (s *Service) Stage(ctx context.Context, id int64) (Stage, error) {
	return s.opts.Configs.Stage(ctx, id)
}

// ActivateStage puts a stage live; the caller warms its activity first.
func (s *Service) ActivateStage(ctx context.Context, id int64) error {
	return s.opts.Configs.ActivateStage(ctx, id)
}

// RecentOrders returns the newest raffle orders (of one user, or of everyone when userID
// is empty), for operators.
func (s *Service) RecentOrders(ctx context.Context, userID string, limit int) ([]RaffleOrder, error) {
	if userID != "" {
		if err := CheckUserID(userID); err != nil {
			return nil, err
		}
	}
	return s.opts.Users.RecentRaffleOrders(ctx, userID, limit)
}

// StageActivity returns the activity a channel and source currently point at.
func (s *Service) StageActivity(ctx context.Context, channel, source string) (int64, error) {
	return s.opts.Configs.StageActivity(ctx, channel, source)
}
