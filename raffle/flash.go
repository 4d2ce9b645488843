package raffle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/flash"
	"github.com/bigmarket/bigmarket/gate"
	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/internal/tick"
	"github.com/bigmarket/bigmarket/strategy"
)

// The flash draw answers from hot state in Redis plus one broker ack and leaves the SQL
// writes to the draw writer (issue 14):
//
//	take a unit of hot quota and create the pending draw (one script: the commit point)
//	→ pick in process (the stock scripts deduct) → fix the outcome on the pending draw
//	→ publish the draw event, wait for the ack → clear the pending draw → answer.
//
// A pending draw whose event is not acked in time is answered flash.ErrUnavailable (0009); its
// outcome, once fixed, never changes, and the user's next draw in the activity, on any
// node, publishes that draw again (same message id: the broker drops the copy) and
// answers it instead of taking a new unit. The sweep does the same for pending draws
// nobody came back for.

// flashActivities is what the flash draw needs of the activity service.
type flashActivities interface {
	Open(ctx context.Context, activityID int64) (activity.Activity, error)
	Activity(ctx context.Context, activityID int64) (activity.Activity, error)
	Periods(t time.Time) (day, month string)
	StoredQuota(ctx context.Context, userID string, activityID int64, day, month string) (activity.Quota, error)
}

// Flash configures the flash draw, the Service's draw.
type Flash struct {
	Activities flashActivities
	Hot        flash.HotQuota
	Events     flash.Publisher
	Drain      flash.Drainer
	// Writer writes draw events to SQL (the draw writer's store); the credit green
	// channel (CreditWins) writes a user's unwritten credit wins with it. Rejected tells
	// an event it refuses for good (it is forgotten as a written one is).
	Writer   flash.Writer
	Rejected func(error) bool
	// PublishTimeout bounds the wait for the broker's ack (default 2s).
	PublishTimeout time.Duration
	// Lease is how long a pending draw belongs to the request that took or resumed it
	// (default PublishTimeout + 3s); that request publishes nothing after it.
	Lease time.Duration
	// RecoverGrace is how long a restore after a Redis loss waits before it drains the
	// draw events, so that draws in flight at the loss have published or given up
	// (default and least Lease + 1s).
	RecoverGrace time.Duration
	// RecoverTimeout bounds a restore (default RecoverGrace + 30s).
	RecoverTimeout time.Duration
	// SweepAge is how old a pending draw is before the sweep publishes it (default 10s,
	// least Lease).
	SweepAge time.Duration
	// BeforePublish, when set, runs between the fix of the outcome and its publish (fault
	// tests).
	BeforePublish func(ctx context.Context)
}

func (f *Flash) withDefaults() {
	if f.PublishTimeout <= 0 {
		f.PublishTimeout = 2 * time.Second
	}
	if f.Lease <= 0 {
		f.Lease = f.PublishTimeout + 3*time.Second
	}
	if f.RecoverGrace < f.Lease+time.Second {
		f.RecoverGrace = f.Lease + time.Second
	}
	if f.RecoverTimeout <= f.RecoverGrace {
		f.RecoverTimeout = f.RecoverGrace + 30*time.Second
	}
	if f.SweepAge < f.Lease {
		f.SweepAge = max(f.Lease, 10*time.Second)
	}
}

// hotExpiry is when a hot quota may go: a day after its activity ends, as stock keys.
func hotExpiry(a activity.Activity) time.Time { return a.End.Add(24 * time.Hour) }

// flashDraw is Draw.
func (s *Service) flashDraw(ctx context.Context, userID string, activityID int64) (Result, error) {
	f := s.opts.Flash
	if err := activity.CheckUserID(userID); err != nil {
		return Result{}, err
	}
	a, err := f.Activities.Open(ctx, activityID)
	if err != nil {
		return Result{}, err
	}
	// The gate (sold-out activity, one win) refuses before any quota is taken.
	pass, err := s.opts.Gate.Admit(ctx, userID, activityID, s.holdTTL(ctx))
	if err != nil {
		if errors.Is(err, gate.ErrRebuilding) {
			// A one-win set lost with Redis waits for the restore, which only a draw
			// needing the hot state starts: this one may be the only kind coming.
			s.restoreAsync()
		}
		return Result{}, err
	}
	defer pass.Close()
	now := s.opts.Now()
	day, month := f.Activities.Periods(now)
	key := activity.QuotaKey{UserID: userID, ActivityID: activityID, Day: day, Month: month}
	orderID := activity.NewOrderID(now)
	// The commit point: the take script. A draw over its budget before it answers 0006
	// having taken nothing; from here on the guard waits for its outcome.
	if ctx, err = guard.Commit(ctx); err != nil {
		return Result{}, fmt.Errorf("draw %s in %d: %w", userID, activityID, err)
	}
	// Nothing of this draw is published after its lease: a restore after a Redis loss
	// waits that long before it trusts SQL.
	ctx, cancel := context.WithTimeout(ctx, f.Lease)
	defer cancel()
	p, _, err := s.take(ctx, a, key, orderID, now)
	if err != nil {
		return Result{}, err
	}
	o, err := s.settle(ctx, a, userID, p, pass)
	if err != nil {
		return Result{}, err
	}
	return Result{AwardID: o.AwardID, AwardTitle: o.AwardTitle, AwardIndex: o.Sort}, nil
}

// take runs the take script, loading the hot quota from SQL when it is missing (the
// load and the take again in one script), and healing it from SQL once when it says the
// quota is exhausted (a recharge whose hot step was lost in a crash).
func (s *Service) take(ctx context.Context, a activity.Activity, key activity.QuotaKey, orderID string, now time.Time) (flash.Pending, bool, error) {
	f := s.opts.Flash
	healed := false
	var missing *flash.HotMissing
	for attempt := 0; ; attempt++ {
		var (
			p       flash.Pending
			resumed bool
			err     error
		)
		if missing != nil {
			p, resumed, err = s.loadTake(ctx, a, key, missing.Epoch, orderID, now)
			missing = nil
		} else {
			p, resumed, err = f.Hot.Take(ctx, key, orderID, now, f.Lease)
		}
		switch {
		case err == nil:
			return p, resumed, nil
		case errors.Is(err, flash.ErrHotStale) && attempt < maxTakes:
			// A loss and restore since the read (or none yet): nothing was loaded or
			// taken; the next round takes again and reads SQL again if told to.
		case errors.As(err, &missing) && attempt < maxTakes:
			// The next round reads SQL and loads and takes in one script.
		case errors.Is(err, errLoad):
			// Nothing was taken; the retry loads again.
			return flash.Pending{}, false, fmt.Errorf("%w (%w)", flash.ErrUnavailable, err)
		case errors.Is(err, flash.ErrHotNotReady), errors.As(err, &missing):
			s.restoreAsync()
			return flash.Pending{}, false, fmt.Errorf("draw %s in %d: hot quota being restored: %w (%w)", key.UserID, key.ActivityID, flash.ErrUnavailable, err)
		case !healed && isExhausted(err):
			healed = true
			if herr := s.heal(ctx, key); herr != nil {
				s.opts.Logger.Warn("heal hot quota from sql", "user_id", key.UserID, "activity_id", key.ActivityID, "err", herr)
				return flash.Pending{}, false, fmt.Errorf("draw %s in %d: %w", key.UserID, key.ActivityID, err)
			}
		default:
			if isExhausted(err) {
				return flash.Pending{}, false, fmt.Errorf("participate %s in %d: %w", key.UserID, key.ActivityID, err)
			}
			// The script may or may not have run (a timeout): the outcome is unknown. A
			// unit it took is a pending draw that a later draw or the sweep settles.
			return flash.Pending{}, false, fmt.Errorf("draw %s in %d: take hot quota: %w (%w)", key.UserID, key.ActivityID, flash.ErrUnavailable, err)
		}
	}
}

func isExhausted(err error) bool {
	return errors.Is(err, activity.ErrTotalQuotaExhausted) || errors.Is(err, activity.ErrMonthQuotaExhausted) ||
		errors.Is(err, activity.ErrDayQuotaExhausted)
}

// maxTakes bounds the rounds of take: a take that finds no hot quota and a load and take
// under the epoch it got, three times.
const maxTakes = 6

// errLoad marks a load whose SQL read failed.
var errLoad = errors.New("read quota from sql")

// loadTake reads the user's quota from SQL, puts it in the hot state under epoch and
// takes, in one script.
func (s *Service) loadTake(ctx context.Context, a activity.Activity, key activity.QuotaKey, epoch, orderID string, now time.Time) (flash.Pending, bool, error) {
	f := s.opts.Flash
	q, err := f.Activities.StoredQuota(ctx, key.UserID, key.ActivityID, key.Day, key.Month)
	if err != nil {
		return flash.Pending{}, false, fmt.Errorf("load hot quota of %s in %d: %w: %w", key.UserID, key.ActivityID, errLoad, err)
	}
	return f.Hot.LoadTake(ctx, key, epoch, q, hotExpiry(a), orderID, now, f.Lease)
}

// raiser is the part of the hot quota a heal uses (the redis adapter has it).
type raiser interface {
	Raise(ctx context.Context, key activity.QuotaKey, q activity.Quota) error
}

// heal raises the hot quota's counts to what SQL holds: a recharge adds to SQL first and
// then to the hot copy, so a crash between the two leaves the hot copy short, never over.
func (s *Service) heal(ctx context.Context, key activity.QuotaKey) error {
	f := s.opts.Flash
	r, ok := f.Hot.(raiser)
	if !ok {
		return errors.New("hot quota cannot be raised")
	}
	q, err := f.Activities.StoredQuota(ctx, key.UserID, key.ActivityID, key.Day, key.Month)
	if err != nil {
		return err
	}
	return r.Raise(ctx, key, q)
}

// settle picks a pending draw's award if it has none (telling the gate's pass of the
// pick before it is fixed), fixes it, publishes the draw and clears it once the broker
// has it, before the answer. A failure leaves the draw pending and its lease released, so the user's next
// draw settles it.
func (s *Service) settle(ctx context.Context, a activity.Activity, userID string, p flash.Pending, pass gate.Pass) (flash.Outcome, error) {
	f := s.opts.Flash
	fail := func(err error) (flash.Outcome, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if rerr := f.Hot.Release(rctx, userID, a.ID, p.OrderID); rerr != nil {
			s.opts.Logger.Warn("release pending draw", "order_id", p.OrderID, "err", rerr)
		}
		return flash.Outcome{}, err
	}
	if p.Outcome == nil {
		res, err := s.opts.Strategies.Draw(ctx, strategy.Input{
			UserID: userID, StrategyID: a.StrategyID, Score: p.Score, DrawsToday: p.DrawsToday,
		})
		if err == nil {
			// A stocked win of a one-win activity is noted before the outcome is fixed.
			err = pass.Won(ctx, res)
		}
		if errors.Is(err, strategy.ErrSoldOut) {
			// Lost the race for the last prize of an activity without fallback: the unit
			// goes back in the same step and the answer is "sold out" — or, if that
			// cannot be done, the draw stays pending and is retried.
			ok, rerr := f.Hot.Refund(ctx, userID, a.ID, p.OrderID)
			if rerr == nil && ok {
				return flash.Outcome{}, fmt.Errorf("draw order %s: %w", p.OrderID, err)
			}
			if rerr == nil {
				rerr = errors.New("pending draw gone or already picked")
			}
			return fail(fmt.Errorf("draw order %s sold out, unit not yet given back: %w (%w)", p.OrderID, flash.ErrUnavailable, rerr))
		}
		if err != nil {
			// The unit is taken and the draw stays pending: whatever stopped the pick
			// (stock being rebuilt, Redis out of reach), the retry picks it.
			return fail(fmt.Errorf("draw order %s taken, not yet picked, retry: %w (%w)", p.OrderID, flash.ErrUnavailable, err))
		}
		o := flash.Outcome{AwardID: res.AwardID, AwardTitle: res.Title, Sort: res.Sort, RuleValue: res.RuleValue,
			AwardTime: s.opts.Now().UnixMilli(), Credit: award.IsCredit(res.AwardKey)}
		// A credit win joins the user's unwritten credit wins in the same script, so the
		// credit green channel finds it from the moment its outcome is fixed.
		var keep *flash.Event
		if o.Credit {
			e := drawEvent(a, userID, p, o)
			keep = &e
		}
		fixed, err := f.Hot.Fix(ctx, userID, a.ID, p.OrderID, o, keep)
		if err != nil {
			// Any stock taken for this pick is lost: undersell, never oversell.
			return fail(fmt.Errorf("draw order %s: fix outcome: %w (%w)", p.OrderID, flash.ErrUnavailable, err))
		}
		p.Outcome = &fixed
	}
	if f.BeforePublish != nil {
		f.BeforePublish(ctx)
	}
	o := *p.Outcome
	e := drawEvent(a, userID, p, o)
	pctx, cancel := context.WithTimeout(ctx, f.PublishTimeout)
	err := f.Events.PublishDraw(pctx, e)
	cancel()
	if err != nil {
		return fail(fmt.Errorf("draw order %s picked but not yet durable, retry: %w (%w)", p.OrderID, flash.ErrUnavailable, err))
	}
	// The draw is durable. Its pending entry goes before the answer: a pending entry left
	// behind would be resumed by the user's next draw once its lease ran out, and answered
	// a second time for one unit. If it cannot go, the answer is 0009 (the outcome is
	// fixed and durable): the retry resumes the entry, clears it and answers it once.
	if err := f.Hot.Clear(ctx, userID, a.ID, p.OrderID); err != nil {
		return fail(fmt.Errorf("draw order %s durable, pending entry not cleared, retry: %w (%w)", p.OrderID, flash.ErrUnavailable, err))
	}
	return o, nil
}

// drawEvent is the event of a pending draw with its outcome: what is published, and
// what a credit win keeps among the user's unwritten credit wins.
func drawEvent(a activity.Activity, userID string, p flash.Pending, o flash.Outcome) flash.Event {
	return flash.Event{
		OrderID: p.OrderID, UserID: userID, ActivityID: a.ID, ActivityName: a.Name, StrategyID: a.StrategyID,
		OrderTime: p.OrderTime, Day: p.Day, Month: p.Month, AwardID: o.AwardID, AwardTitle: o.AwardTitle,
		RuleValue: o.RuleValue, AwardTime: time.UnixMilli(o.AwardTime), Credit: o.Credit,
	}
}

// ApplyDraws writes draw events to SQL through Flash.Writer (the draw writer's handler
// and the credit green channel both write this way) and then forgets the credit wins
// among them that SQL now holds, or refuses for good. A forget that fails is only
// logged: the win stays kept until its time to live, and the green channel finding it
// written again changes nothing and forgets it.
func (s *Service) ApplyDraws(ctx context.Context, events []flash.Event) []error {
	f := s.opts.Flash
	errs := f.Writer.ApplyDraws(ctx, events)
	var done []flash.Event
	for i, e := range events {
		if e.Credit && (errs[i] == nil || f.Rejected != nil && f.Rejected(errs[i])) {
			done = append(done, e)
		}
	}
	if len(done) > 0 {
		if err := f.Hot.Forget(ctx, done); err != nil {
			s.opts.Logger.Warn("forget written credit wins", "events", len(done), "err", err)
		}
	}
	return errs
}

// CreditWins is the draw's part of the credit green channel (an httpapi.Settler,
// run before the award green channel): a user's draws won with a credit award and
// answered, whose records the draw writer has not written yet, are written now through
// the writer's own code, under the draws' order ids. The award green channel that follows
// then credits them from their records and send_award tasks, as any
// written win; the writer's later delivery finds the orders there and changes nothing, and the
// send_award consumer finds the credit given. Only the credit wins are kept for this, so
// the draw's answer path pays nothing for other awards, and a credit query writes only
// what it is about to credit.
type CreditWins struct{ S *Service }

// Settle writes the user's unwritten credit wins to SQL. The writes are bounded by the
// draw's lease, which the restore after a Redis loss waits out before it trusts SQL, so
// no win read from Redis before a loss lands in SQL after the restore has read it.
func (c CreditWins) Settle(ctx context.Context, userID string) error {
	s := c.S
	f := s.opts.Flash
	if f.Writer == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, f.Lease)
	defer cancel()
	events, err := f.Hot.Unwritten(ctx, userID)
	if err != nil || len(events) == 0 {
		return err
	}
	var errs []error
	for i, err := range s.ApplyDraws(ctx, events) {
		if err != nil && (f.Rejected == nil || !f.Rejected(err)) {
			errs = append(errs, fmt.Errorf("write credit win %s of %s: %w", events[i].OrderID, userID, err))
		}
	}
	return errors.Join(errs...)
}

// restoreAsync starts a restore of the hot quota markers on this node unless one runs.
func (s *Service) restoreAsync() {
	f := s.opts.Flash
	s.restoring.DoChan("restore", func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), f.RecoverTimeout)
		defer cancel()
		err := s.restore(ctx, true)
		if err != nil {
			s.opts.Logger.Warn("restore hot quota", "err", err)
		}
		return nil, err
	})
}

// restore makes hot quotas loadable again after a Redis loss (or on a fresh Redis): it
// lets the draws in flight at the loss publish or give up (grace), waits until the draw
// writer has applied every event published so far, and only then sets the slots'
// markers, which every load checks atomically with itself.
func (s *Service) restore(ctx context.Context, grace bool) error {
	f := s.opts.Flash
	if ready, err := f.Hot.Ready(ctx); err != nil || ready {
		return err
	}
	if grace {
		t := time.NewTimer(f.RecoverGrace)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	if f.Drain == nil {
		return errors.New("no draw writer to wait for")
	}
	if err := f.Drain.WaitApplied(ctx); err != nil {
		return fmt.Errorf("wait for the draw writer: %w", err)
	}
	if err := f.Hot.MarkReady(ctx); err != nil {
		return err
	}
	s.opts.Logger.Info("hot quotas loadable: the draw writer has applied every earlier draw")
	return nil
}

// PrepareFlash makes the hot quotas loadable before the node serves: when Redis lacks
// the markers (a fresh Redis, or one that lost its data), it waits RecoverGrace and for
// the draw writer as a restore does.
func (s *Service) PrepareFlash(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Flash.RecoverTimeout)
	defer cancel()
	return s.restore(ctx, true)
}

// SweepPending publishes pending draws older than SweepAge that nobody came back for
// (picking those that have no outcome yet), and returns how many it settled.
func (s *Service) SweepPending(ctx context.Context) (int, error) {
	f := s.opts.Flash
	now := s.opts.Now()
	refs, err := f.Hot.Abandoned(ctx, now.Add(-f.SweepAge), 1000)
	if err != nil {
		return 0, err
	}
	n := 0
	var firstErr error
	for _, ref := range refs {
		settled, err := s.sweepOne(ctx, ref)
		if err != nil {
			s.opts.Logger.Warn("sweep pending draw", "order_id", ref.OrderID, "err", err)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if settled {
			n++
		}
	}
	return n, firstErr
}

// sweepOne settles one abandoned pending draw; false when it was gone or leased to
// another request meanwhile.
func (s *Service) sweepOne(ctx context.Context, ref flash.PendingRef) (bool, error) {
	f := s.opts.Flash
	a, err := f.Activities.Activity(ctx, ref.ActivityID)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, f.Lease)
	defer cancel()
	p, ok, err := f.Hot.Resume(ctx, ref, s.opts.Now(), f.Lease)
	if err != nil || !ok {
		return false, err
	}
	// No gate pass here: the draw took its unit before, and is settled whatever the gate
	// would say now.
	nopass, err := gate.None.Admit(ctx, ref.UserID, ref.ActivityID, f.Lease)
	if err != nil {
		return false, err
	}
	defer nopass.Close()
	_, err = s.settle(ctx, a, ref.UserID, p, nopass)
	return err == nil, err
}

// Lease is an exclusive, expiring claim on a job's name shared by the nodes
// (redis.NewLeases).
type Lease interface {
	Claim(ctx context.Context, name string, ttl time.Duration) (token string, ok bool, err error)
	Release(ctx context.Context, name, token string) error
}

// sweepLease names the pending draw sweep's lease.
const sweepLease = "draw_sweep"

// SweepPendingLeased runs SweepPending every interval until ctx ends, on one node at a
// time.
func (s *Service) SweepPendingLeased(ctx context.Context, lease Lease, interval time.Duration) error {
	return tick.Every(ctx, interval, func(ctx context.Context) {
		// A short lease: a node that dies holding it delays the others' sweeps by at
		// most interval + 15s. A sweep outliving it is harmless (each pending draw has
		// its own lease, and the message id drops a second publish).
		token, ok, err := lease.Claim(ctx, sweepLease, tick.LeaseTTL(interval))
		if err != nil || !ok {
			return
		}
		defer func() { _ = lease.Release(context.WithoutCancel(ctx), sweepLease, token) }()
		if n, err := s.SweepPending(ctx); err != nil || n > 0 {
			s.opts.Logger.Info("pending draw sweep", "published", n, "err", err)
		}
	})
}
