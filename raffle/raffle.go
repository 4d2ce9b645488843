// Package raffle orchestrates a draw across domains: the user's quota (activity), the
// strategy engine, and the draw event the draw writer turns into the order, the award
// record and its outbox task.
package raffle

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/gate"
	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/strategy"
	"golang.org/x/sync/singleflight"
)

type activities interface {
	Activity(ctx context.Context, activityID int64) (activity.Activity, error)
	Armory(ctx context.Context, activityID int64) (activity.Activity, error)
	Quota(ctx context.Context, userID string, activityID int64) (activity.Quota, error)
	Stage(ctx context.Context, id int64) (activity.Stage, error)
	ActivateStage(ctx context.Context, id int64) error
}

type strategies interface {
	Armory(ctx context.Context, strategyID int64) (*strategy.Assembled, error)
	Assembled(ctx context.Context, strategyID int64) (*strategy.Assembled, error)
	Draw(ctx context.Context, in strategy.Input) (strategy.Result, error)
}

// Options configures a Service.
type Options struct {
	Activities activities
	Strategies strategies
	Now        func() time.Time
	Logger     *slog.Logger
	// Gate intercepts draws before they take quota (sold out, one win); nil admits all.
	Gate gate.Checker
	// HoldTTL is the least time a one-win draw holds the user's slot in the activity
	// (default 30s; longer when the guard lets the draw run longer). Only a crashed draw
	// keeps it that long: the user's next draw there answers 0009 meanwhile.
	HoldTTL time.Duration
	// Flash is the draw (flash.go): hot quota in Redis, one broker ack, SQL written
	// behind by the draw writer.
	Flash Flash
}

// holdMargin is how long a draw's gate hold outlasts the latest end of the draw's
// contexts, for a store's last round trip in flight when they end.
const holdMargin = time.Second

// Service draws for users in activities.
type Service struct {
	opts      Options
	restoring singleflight.Group // one restore of the hot quota markers at a time on this node
}

// NewService returns a Service.
func NewService(opts Options) *Service {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Gate == nil {
		opts.Gate = gate.None
	}
	if opts.HoldTTL <= 0 {
		opts.HoldTTL = 30 * time.Second
	}
	opts.Flash.withDefaults()
	return &Service{opts: opts}
}

// Armory warms the activity (config, SKU stock) and assembles its strategy.
func (s *Service) Armory(ctx context.Context, activityID int64) error {
	a, err := s.opts.Activities.Armory(ctx, activityID)
	if err != nil {
		return err
	}
	if _, err := s.opts.Strategies.Armory(ctx, a.StrategyID); err != nil {
		return fmt.Errorf("armory activity %d: %w", activityID, err)
	}
	return nil
}

// ActivateStage puts a channel stage live the way big-market's operators do: it warms the
// stage's activity and assembles its strategy first, then marks the stage active.
func (s *Service) ActivateStage(ctx context.Context, stageID int64) error {
	st, err := s.opts.Activities.Stage(ctx, stageID)
	if err != nil {
		return err
	}
	if err := s.Armory(ctx, st.ActivityID); err != nil {
		return fmt.Errorf("activate stage %d: %w", stageID, err)
	}
	return s.opts.Activities.ActivateStage(ctx, stageID)
}

// Result is a draw's award as the 9-grid shows it.
type Result struct {
	AwardID    int
	AwardTitle string
	AwardIndex int // the award's sort
}

// Draw draws once for the user in the activity (flash.go): the gate admits it (sold-out
// activity, one win), one script takes a unit of the user's hot quota and creates the
// pending draw, the strategy picks, the outcome is fixed and published, and the user is
// answered once the broker has stored it; the draw writer writes it to SQL behind.
//
// Behind the guard, the draw commits (guard.Commit) just before the take script: a draw
// over its budget before that point answers 0006 having taken nothing; one past it is
// waited for.
func (s *Service) Draw(ctx context.Context, userID string, activityID int64) (Result, error) {
	return s.flashDraw(ctx, userID, activityID)
}

// holdTTL is how long a draw running under ctx holds the user's one-win slot: until the
// latest time the guard may let the draw run (guard.Deadline: what is left of its budget
// plus the commit timeout) and holdMargin more, and never less than the draw's lease or
// HoldTTL, so that no second draw of the user runs while the first may still win.
func (s *Service) holdTTL(ctx context.Context) time.Duration {
	ttl := max(s.opts.HoldTTL, s.opts.Flash.Lease)
	if end, ok := guard.Deadline(ctx); ok {
		ttl = max(ttl, time.Until(end)+holdMargin)
	}
	return ttl
}

// AwardView is one award of the activity's 9-grid with its unlock state for the user.
type AwardView struct {
	AwardID         int
	Title           string
	Subtitle        string
	Sort            int
	RuleLockCount   int64
	Unlocked        bool
	WaitUnlockCount int64
}

// AwardList returns the activity's awards by sort, with each rule_lock's count and
// whether the user's draws today have reached it.
func (s *Service) AwardList(ctx context.Context, userID string, activityID int64) ([]AwardView, error) {
	a, q, err := s.assembledWithQuota(ctx, userID, activityID)
	if err != nil {
		return nil, err
	}
	today := q.UsedToday()
	views := make([]AwardView, 0, len(a.Awards))
	for _, aw := range a.Awards {
		n := a.Tree(aw.AwardID).LockCount()
		views = append(views, AwardView{
			AwardID: aw.AwardID, Title: aw.Title, Subtitle: aw.Subtitle, Sort: aw.Sort,
			RuleLockCount: n, Unlocked: today >= n, WaitUnlockCount: max(n-today, 0),
		})
	}
	return views, nil
}

// WeightView is one rule_weight tier and how far the user is along it.
type WeightView struct {
	Threshold int64
	UsedTotal int64
	Awards    []strategy.Award
}

// RuleWeights returns the tiers of the activity's strategy with the user's draws so far;
// a strategy without rule_weight gives strategy.ErrRuleWeightMissing.
func (s *Service) RuleWeights(ctx context.Context, userID string, activityID int64) ([]WeightView, error) {
	a, q, err := s.assembledWithQuota(ctx, userID, activityID)
	if err != nil {
		return nil, err
	}
	if len(a.Tiers) == 0 {
		return nil, fmt.Errorf("strategy %d: %w", a.StrategyID, strategy.ErrRuleWeightMissing)
	}
	views := make([]WeightView, 0, len(a.Tiers))
	for _, tier := range a.Tiers {
		v := WeightView{Threshold: tier.Threshold, UsedTotal: q.UsedTotal()}
		for _, id := range tier.AwardIDs {
			aw, _ := a.Award(id)
			v.Awards = append(v.Awards, aw)
		}
		views = append(views, v)
	}
	return views, nil
}

func (s *Service) assembledWithQuota(ctx context.Context, userID string, activityID int64) (*strategy.Assembled, activity.Quota, error) {
	q, err := s.opts.Activities.Quota(ctx, userID, activityID)
	if err != nil {
		return nil, activity.Quota{}, err
	}
	act, err := s.opts.Activities.Activity(ctx, activityID)
	if err != nil {
		return nil, activity.Quota{}, err
	}
	a, err := s.opts.Strategies.Assembled(ctx, act.StrategyID)
	if err != nil {
		return nil, activity.Quota{}, err
	}
	return a, q, nil
}
