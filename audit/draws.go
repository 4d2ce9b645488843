// Package audit runs reconcile's checks on a live deployment's stores — the SQL
// databases, the draws stream and the hot quotas — for verify and bench draw.
package audit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/nats"
	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/redis"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// Draws runs the draw checks of issue 14 (reconcile's DrawEvents, HotQuotas,
// OneWin, OverStock) on a deployment's stores. Log and Hot are nil when verify cannot
// reach the broker or Redis (embedded: they live in the serve process).
type Draws struct {
	configs    *sqlstore.ConfigStore
	activities *sqlstore.ActivityStore
	settings   *sqlstore.SettingStore
	users      *sqlstore.UserStore
	log        *nats.DrawLog
	hot        *redis.DrawQuota
	// unreachable says why log or hot is nil ("" when they are set).
	unreachable string
	// settleWait bounds the wait for the writer before a hot quota mismatch is read again.
	settleWait time.Duration
}

// DrawReport is what the draw checks found and how much they covered; Skipped names the
// checks (or parts) not made, and why: a skipped check did not pass.
type DrawReport struct {
	Discrepancies   []reconcile.Discrepancy
	Events          int // draw events checked against their rows
	EventsUnapplied int // draw events after the writer's progress, not checked
	HotCompared     int // hot copies compared with SQL
	HotPending      int // hot copies not compared: the user has pending draws
	OneWin          int // one-win activities checked
	Strategies      int // strategies whose awards were checked against their stock
	Skipped         []string
}

func (r DrawReport) String() string {
	return fmt.Sprintf("%d draw events against their rows, %d hot quotas (%d with pending draws not compared), %d one-win activities, awards of %d strategies against their stock",
		r.Events, r.HotCompared, r.HotPending, r.OneWin, r.Strategies)
}

func NewDraws(configDB *sqlstore.DB, userDBs []*sqlstore.DB, router sqlstore.Router, loc *time.Location) *Draws {
	return &Draws{
		configs: sqlstore.NewConfigStore(configDB), activities: sqlstore.NewActivityStore(configDB, loc),
		settings: sqlstore.NewSettingStore(configDB), users: sqlstore.NewUserStore(userDBs, router),
		settleWait: 10 * time.Second,
	}
}

// WithFlash lets the verifier read the draws stream (js under the server's event options)
// and the hot quotas (hot); either may be nil.
func (v *Draws) WithFlash(js jetstream.JetStream, opts nats.EventOptions, hot *redis.DrawQuota) {
	if js != nil {
		l := nats.NewDrawLog(js, opts)
		v.log = &l
	}
	v.hot = hot
}

// Run makes every check: the stock and one-win checks over SQL, the draw events and
// hot quotas when the stream and Redis are in reach; draw events from since on.
func (v *Draws) Run(ctx context.Context, since time.Time) (DrawReport, error) {
	var rep DrawReport
	if err := v.stock(ctx, &rep); err != nil {
		return rep, err
	}
	if err := v.oneWin(ctx, &rep); err != nil {
		return rep, err
	}
	if v.log == nil {
		if v.unreachable != "" {
			rep.Skipped = append(rep.Skipped, "draw events and hot quotas: "+v.unreachable)
		}
		return rep, nil
	}
	last, applied, err := v.log.Progress(ctx)
	if errors.Is(err, nats.ErrNoDrawStream) {
		return rep, nil // no draw ever ran on this broker
	}
	if err != nil {
		return rep, err
	}
	if err := v.drawEvents(ctx, since, last, applied, &rep); err != nil {
		return rep, err
	}
	switch {
	case v.hot == nil:
		rep.Skipped = append(rep.Skipped, "hot quota = SQL quota: Redis out of reach ("+cmp.Or(v.unreachable, "not configured")+")")
	case applied < last:
		rep.Skipped = append(rep.Skipped, fmt.Sprintf("hot quota = SQL quota: the draw writer is %d events behind", last-applied))
	default:
		if err := v.hotQuotas(ctx, &rep); err != nil {
			return rep, err
		}
	}
	reconcile.Sort(rep.Discrepancies)
	return rep, nil
}

// stock checks every strategy's awards against their stock.
func (v *Draws) stock(ctx context.Context, rep *DrawReport) error {
	ids, err := v.configs.StrategyIDs(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		grants, err := sqlstore.StrategyGrants(ctx, v.configs, v.users, id)
		if err != nil {
			return err
		}
		rep.Discrepancies = append(rep.Discrepancies, reconcile.OverStock(id, grants)...)
		rep.Strategies++
	}
	return nil
}

// oneWin checks the activities with one win on.
func (v *Draws) oneWin(ctx context.Context, rep *DrawReport) error {
	ids, err := v.settings.OneWinActivities(ctx)
	if err != nil {
		return err
	}
	oneWin := map[int64]bool{}
	stocked := map[int64]map[int]bool{}
	var records []reconcile.Win
	for _, id := range ids {
		act, err := v.activities.Activity(ctx, id)
		if errors.Is(err, activity.ErrActivityNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		cfg, err := v.configs.LoadStrategy(ctx, act.StrategyID)
		if err != nil {
			return err
		}
		oneWin[id], stocked[id] = true, reconcile.StockedAwards(cfg)
		wins, err := v.users.AwardRecordsOf(ctx, id, slices.Sorted(maps.Keys(stocked[id])))
		if err != nil {
			return err
		}
		records = append(records, wins...)
		rep.OneWin++
	}
	rep.Discrepancies = append(rep.Discrepancies, reconcile.OneWin(oneWin, stocked, records)...)
	return nil
}

// drawEventBatch is how many draw events are looked up in SQL at once.
const drawEventBatch = 2000

// drawEvents checks the draw events stored from since on, up to the writer's progress,
// against their rows; the later ones are counted as not checked.
func (v *Draws) drawEvents(ctx context.Context, since time.Time, last, applied uint64, rep *DrawReport) error {
	var batch []reconcile.DrawEvent
	flush := func() error {
		written, err := v.users.DrawWritten(ctx, batch)
		if err != nil {
			return err
		}
		rep.Discrepancies = append(rep.Discrepancies, reconcile.DrawEvents(batch, written)...)
		rep.Events += len(batch)
		batch = batch[:0]
		return nil
	}
	err := v.log.Walk(ctx, since, applied, func(d nats.StoredDraw) error {
		if d.Err != nil {
			rep.Discrepancies = append(rep.Discrepancies, reconcile.Discrepancy{Kind: reconcile.KindDrawUnwritten,
				Key: fmt.Sprint(d.Seq), Detail: d.Err.Error()})
			return nil
		}
		e := d.Event
		batch = append(batch, reconcile.DrawEvent{Seq: d.Seq, Stored: d.Stored, OrderID: e.OrderID, UserID: e.UserID,
			ActivityID: e.ActivityID, AwardID: e.AwardID})
		if len(batch) == drawEventBatch {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	if last > applied {
		rep.EventsUnapplied = int(last - applied)
		rep.Skipped = append(rep.Skipped, fmt.Sprintf("draw events: %d published after the draw writer's progress (sequence %d of %d) not checked",
			last-applied, applied, last))
	}
	return nil
}

// hotQuotas compares every hot copy with its SQL quota. A mismatch is read again once
// the writer has no backlog (a draw may have been answered between the two reads); only
// one that persists with the same hot copy is reported.
func (v *Draws) hotQuotas(ctx context.Context, rep *DrawReport) error {
	var pairs []reconcile.QuotaPair
	err := v.hot.Copies(ctx, func(h reconcile.HotCopy) error {
		s, err := v.sqlQuota(ctx, h)
		if err != nil {
			return err
		}
		pairs = append(pairs, reconcile.QuotaPair{Hot: h, SQL: s})
		return nil
	})
	if err != nil {
		return err
	}
	ds, compared, pending := reconcile.HotQuotas(pairs)
	rep.HotCompared, rep.HotPending = compared, pending
	if len(ds) == 0 {
		return nil
	}
	// Read the mismatches again once the writer has applied what was published meanwhile.
	mismatched := map[string]bool{}
	for _, d := range ds {
		mismatched[d.UserID+"|"+d.Key] = true
	}
	if err := v.awaitWriter(ctx); err != nil {
		rep.Skipped = append(rep.Skipped, fmt.Sprintf("hot quota = SQL quota: %d mismatches not confirmed: %v", len(ds), err))
		return nil
	}
	var again []reconcile.QuotaPair
	for _, p := range pairs {
		if !mismatched[p.Hot.UserID+"|"+fmt.Sprint(p.Hot.ActivityID)] {
			continue
		}
		h, ok, err := v.hot.Copy(ctx, p.Hot.UserID, p.Hot.ActivityID)
		if err != nil {
			return err
		}
		if !ok || h.Pending > 0 || reconcile.HotQuotaDiff(h.Quota, p.Hot.Quota) != "" {
			rep.HotPending++ // drawn meanwhile: not comparable now
			rep.HotCompared--
			continue
		}
		s, err := v.sqlQuota(ctx, h)
		if err != nil {
			return err
		}
		again = append(again, reconcile.QuotaPair{Hot: h, SQL: s})
	}
	ds, _, _ = reconcile.HotQuotas(again)
	rep.Discrepancies = append(rep.Discrepancies, ds...)
	return nil
}

// awaitWriter waits, up to settleWait, until the draw writer has no backlog.
func (v *Draws) awaitWriter(ctx context.Context) error {
	deadline := time.Now().Add(v.settleWait)
	for {
		last, applied, err := v.log.Progress(ctx)
		if err != nil {
			return err
		}
		if applied >= last {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the draw writer is %d events behind", last-applied)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sqlQuota reads the SQL quota of a hot copy's user and activity, for the periods the
// copy holds (none: a key no row has).
func (v *Draws) sqlQuota(ctx context.Context, h reconcile.HotCopy) (activity.Quota, error) {
	key := activity.QuotaKey{UserID: h.UserID, ActivityID: h.ActivityID, Day: "-", Month: "-"}
	if h.Quota.Day != nil {
		key.Day = h.Quota.Day.Key
	}
	if h.Quota.Month != nil {
		key.Month = h.Quota.Month.Key
	}
	return v.users.Quota(ctx, key)
}

// Checks runs the draw checks for bench draw's verification: one line per check, a
// skipped check failing (it did not pass), discrepancies named by their first few.
func (v *Draws) Checks(ctx context.Context, since time.Time) (reconcile.Checks, error) {
	rep, err := v.Run(ctx, since)
	if err != nil {
		return nil, err
	}
	byKind := map[string][]reconcile.Discrepancy{}
	for _, d := range rep.Discrepancies {
		byKind[d.Kind] = append(byKind[d.Kind], d)
	}
	var c reconcile.Checks
	line := func(name, kind, scope string) {
		ds := byKind[kind]
		if len(ds) == 0 {
			c.Add(name, true, "%s", scope)
			return
		}
		c.Add(name, false, "%s; %d discrepancies, first: %s", scope, len(ds), ds[0])
	}
	line("draw events written", reconcile.KindDrawUnwritten, fmt.Sprintf("%d draw events against their rows", rep.Events))
	line("hot quota = SQL quota", reconcile.KindHotQuota, fmt.Sprintf("%d hot quotas compared, %d with pending draws not", rep.HotCompared, rep.HotPending))
	line("one win", reconcile.KindOneWin, fmt.Sprintf("%d one-win activities", rep.OneWin))
	line("records <= stock", reconcile.KindAwardOverStock, fmt.Sprintf("awards of %d strategies", rep.Strategies))
	for _, s := range rep.Skipped {
		c.Add("skipped", false, "%s", s)
	}
	return c, nil
}
