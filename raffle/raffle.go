// Package raffle orchestrates a draw across domains: participation (activity), the
// strategy engine, and the award record with its outbox task.
package raffle

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/gate"
	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/strategy"
	"golang.org/x/sync/singleflight"
)

type activities interface {
	Activity(ctx context.Context, activityID int64) (activity.Activity, error)
	Armory(ctx context.Context, activityID int64) (activity.Activity, error)
	Participate(ctx context.Context, userID string, activityID int64, newOrderID string) (activity.Participation, error)
	ParticipateNew(ctx context.Context, userID string, activityID int64, newOrderID string) (activity.Participation, error)
	Quota(ctx context.Context, userID string, activityID int64) (activity.Quota, error)
	Stage(ctx context.Context, id int64) (activity.Stage, error)
	ActivateStage(ctx context.Context, id int64) error
}

type strategies interface {
	Armory(ctx context.Context, strategyID int64) (*strategy.Assembled, error)
	Assembled(ctx context.Context, strategyID int64) (*strategy.Assembled, error)
	Draw(ctx context.Context, in strategy.Input) (strategy.Result, error)
}

type recorder interface {
	// RecordAward writes the record and its task and marks the order used, in one
	// transaction; an order not in state create gives activity.ErrOrderUsed.
	RecordAward(ctx context.Context, rec award.Record, task outbox.Task) error
}

type claimer interface {
	Claim(ctx context.Context, orderID string, ttl time.Duration) (token string, ok bool, err error)
	// Extend renews the caller's claim for ttl from now; false when it is no longer the
	// caller's.
	Extend(ctx context.Context, orderID, token string, ttl time.Duration) (bool, error)
	Release(ctx context.Context, orderID, token string) error
}

// Options configures a Service.
type Options struct {
	Activities activities
	Strategies strategies
	Records    recorder
	Claims     claimer
	// ClaimTTL is the least time a draw claims its raffle order for (default 5s); after
	// a crash the order is reusable once the claim expires. A guarded draw claims it for
	// as long as the guard may let it run (claimTTL), and a draw still running at half
	// its claim renews it (hold).
	ClaimTTL time.Duration
	Now      func() time.Time
	Logger   *slog.Logger
	// BeforeRecord, when set, runs between the strategy's pick and the award transaction.
	// It exists for fault tests that kill the process at that point.
	BeforeRecord func(ctx context.Context)
	// Gate intercepts draws before they take quota (sold out, one win); nil admits all.
	Gate gate.Checker
	// HoldTTL is the least time a one-win draw holds the user's slot in the activity
	// (default 30s; longer when the guard lets the draw run longer). Only a crashed draw
	// keeps it that long: the user's next draw there answers 0009 meanwhile.
	HoldTTL time.Duration
	// Flash, when set, makes Draw the flash draw (flash.go): hot quota in Redis, one
	// broker ack, SQL written behind by the draw writer.
	Flash *Flash
}

// claimMargin is how long a draw's claim outlasts the latest end of the draw's contexts,
// for a store's last round trip in flight when they end.
const claimMargin = time.Second

// Service draws for users in activities.
type Service struct {
	opts      Options
	restoring singleflight.Group // one restore of the hot quota markers at a time on this node
}

// NewService returns a Service.
func NewService(opts Options) *Service {
	if opts.ClaimTTL <= 0 {
		opts.ClaimTTL = 5 * time.Second
	}
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
	if opts.Flash != nil {
		f := *opts.Flash
		f.withDefaults()
		opts.Flash = &f
	}
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

// Draw draws once for the user in the activity. With Options.Flash it is the flash draw
// (flash.go). Otherwise, on the SQL path, it takes part in the activity (reusing an
// unused raffle order), claims the order so no concurrent request draws on it, runs the
// strategy, and records the award, its send_award task and the used order in one
// transaction.
//
// Behind the guard, the draw commits (guard.Commit) after the claim and before the
// strategy takes stock: a draw over its budget before that point answers 0006 having
// taken nothing; one past it is waited for.
//
// A new order's id is claimed before the order is written, so no concurrent request of
// the same user can take a fresh order from its creator. When the reusable order is held
// by another request, the draw takes a fresh order from the quota instead, so concurrent
// requests use the quota rather than collide on one order.
//
// Before any of that the gate admits the draw (sold-out activity, one win), and a stocked
// win is noted with it before it is recorded (see package gate).
func (s *Service) Draw(ctx context.Context, userID string, activityID int64) (Result, error) {
	if s.opts.Flash != nil {
		return s.flashDraw(ctx, userID, activityID)
	}
	ttl := s.claimTTL(ctx)
	pass, err := s.opts.Gate.Admit(ctx, userID, activityID, max(ttl, s.opts.HoldTTL))
	if err != nil {
		return Result{}, err
	}
	defer pass.Close()
	fresh := activity.NewOrderID(s.opts.Now())
	token, ok, err := s.opts.Claims.Claim(ctx, fresh, ttl)
	if err != nil {
		return Result{}, fmt.Errorf("draw: %w", err)
	}
	if !ok { // a new id is known to nobody; only a clash of random ids gets here
		return Result{}, fmt.Errorf("order id %s already claimed: %w", fresh, activity.ErrOrderUsed)
	}
	p, err := s.opts.Activities.Participate(ctx, userID, activityID, fresh)
	if err != nil {
		s.release(fresh, token)
		return Result{}, err
	}
	if p.Order.OrderID != fresh { // an unused order was reused
		reused, ok, err := s.opts.Claims.Claim(ctx, p.Order.OrderID, ttl)
		switch {
		case err != nil:
			s.release(fresh, token)
			return Result{}, fmt.Errorf("draw: %w", err)
		case ok:
			s.release(fresh, token)
			token = reused
		default:
			if p, err = s.opts.Activities.ParticipateNew(ctx, userID, activityID, fresh); err != nil {
				s.release(fresh, token)
				return Result{}, err
			}
		}
	}
	orderID := p.Order.OrderID
	defer s.hold(orderID, token, ttl)()
	// The commit point: the strategy's stock deduction cannot be handed back. Up to here
	// nothing is taken that the user's next draw does not reuse (the order stays unused
	// once its claim is released), so a draw over its time budget stops here and is
	// answered 0006; from here on the guard waits for its outcome, and ctx is the commit
	// context, which the budget no longer cancels.
	if ctx, err = guard.Commit(ctx); err != nil {
		s.release(orderID, token)
		return Result{}, fmt.Errorf("draw order %s: %w", orderID, err)
	}
	res, err := s.opts.Strategies.Draw(ctx, strategy.Input{
		UserID: userID, StrategyID: p.Activity.StrategyID, Score: p.Score(), DrawsToday: p.DrawsToday(),
	})
	if err == nil {
		err = pass.Won(ctx, res)
	}
	if err != nil { // the order stays unused: the user's next draw reuses it
		s.release(orderID, token)
		return Result{}, fmt.Errorf("draw order %s: %w", orderID, err)
	}
	if s.opts.BeforeRecord != nil {
		s.opts.BeforeRecord(ctx)
	}
	rec := award.Record{
		UserID: userID, ActivityID: activityID, StrategyID: p.Activity.StrategyID, OrderID: orderID,
		AwardID: res.AwardID, AwardTitle: res.Title, AwardTime: s.opts.Now(), State: award.StateCreate,
	}
	if err := s.opts.Records.RecordAward(ctx, rec, award.NewSendAwardTask(rec, res.RuleValue)); err != nil {
		// Any stock the strategy took for this draw is lost: undersell, never oversell.
		// A transaction cut off by the end of the draw's context may still commit: its
		// order stays claimed until the claim expires, so that a retry takes a fresh
		// order rather than draw again on one that may be used.
		if ctx.Err() == nil {
			s.release(orderID, token)
			pass.Unrecorded()
		}
		return Result{}, fmt.Errorf("record award of order %s: %w", orderID, err)
	}
	return Result{AwardID: res.AwardID, AwardTitle: res.Title, AwardIndex: res.Sort}, nil
}

// claimTTL is how long a draw running under ctx claims its order: until the latest time
// the guard may let the draw run (guard.Deadline: what is left of its budget plus the
// commit timeout, a commit at the budget's last moment included) and claimMargin more,
// so that the claim of a committed draw that is still being waited for never expires
// under it and lets another request of the user draw on the same order (DESIGN invariant
// 1). It is never less than ClaimTTL, the whole hold of a draw no guard bounds.
//
// It costs no round trip, and a long claim costs nothing while the draw runs: a draw that
// finds the user's unused order claimed takes a fresh order from the quota (Draw). Only a
// draw that crashed, or could not give its order back, keeps it claimed until the claim
// expires; the order is reused after that.
func (s *Service) claimTTL(ctx context.Context) time.Duration {
	ttl := s.opts.ClaimTTL
	if end, ok := guard.Deadline(ctx); ok {
		ttl = max(ttl, time.Until(end)+claimMargin)
	}
	return ttl
}

// hold keeps the draw's claim on its order for as long as the draw runs, and returns the
// func that stops it when the draw returns. A draw that returns within half its claim's
// TTL costs a timer and no round trip; one still running then (a store that does not
// give up with its context, such as the award's group commit, or a draw no guard bounds)
// renews its claim every half ClaimTTL, so that no other request of the user draws on
// the order while the draw may still use it.
func (s *Service) hold(orderID, token string, ttl time.Duration) (stop func()) {
	var (
		mu      sync.Mutex
		stopped bool
		timer   *time.Timer
	)
	renew := func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.ClaimTTL/2)
		ok, err := s.opts.Claims.Extend(ctx, orderID, token, s.opts.ClaimTTL)
		cancel()
		mu.Lock()
		defer mu.Unlock()
		switch {
		case stopped: // the draw returned meanwhile
		case err != nil:
			s.opts.Logger.Warn("renew raffle order claim; trying again", "order_id", orderID, "err", err)
			timer.Reset(s.opts.ClaimTTL / 2)
		case !ok:
			s.opts.Logger.Warn("raffle order claim expired while its draw runs", "order_id", orderID)
		default:
			timer.Reset(s.opts.ClaimTTL / 2)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	timer = time.AfterFunc(ttl/2, renew)
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		timer.Stop()
	}
}

// release gives a claimed order back after a failed draw, so a retry need not wait for
// the claim to expire.
func (s *Service) release(orderID, token string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.opts.Claims.Release(ctx, orderID, token); err != nil {
		s.opts.Logger.Warn("release raffle order claim", "order_id", orderID, "err", err)
	}
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
