package app

import (
	"context"
	"time"

	"github.com/bigmarket/bigmarket/audit"
	"github.com/bigmarket/bigmarket/httpapi"
	"github.com/bigmarket/bigmarket/nats"
	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/redis"
	"github.com/bigmarket/bigmarket/strategy"
)

// console reads the operator console's views from the serving process's own stores.
type console struct{ n *App }

// reconcileGrace is admin/reconcile's grace: rows younger than it are not yet expected to
// be settled (verify's default).
const reconcileGrace = time.Minute

// reconcileSkew is admin/reconcile's clock-skew tolerance of the rain pacing check
// (verify's default).
const reconcileSkew = 100 * time.Millisecond

// Strategy reads the strategy's config from SQL and each award's stock left from Redis.
func (c console) Strategy(ctx context.Context, strategyID int64) (httpapi.StrategyView, error) {
	cfg, err := c.n.configs.LoadStrategy(ctx, strategyID)
	if err != nil {
		return httpapi.StrategyView{}, err
	}
	v := httpapi.StrategyView{StrategyID: cfg.StrategyID, Description: cfg.Desc, Armed: len(cfg.Awards) > 0,
		Awards: make([]httpapi.StrategyAwardView, 0, len(cfg.Awards)), Rules: make([]httpapi.StrategyRuleView, 0, len(cfg.Rules))}
	refs := make([]strategy.AwardRef, len(cfg.Awards))
	for i, a := range cfg.Awards {
		refs[i] = strategy.AwardRef{StrategyID: strategyID, AwardID: a.AwardID}
	}
	// One pipelined read of every counter; "left" is what the dashboard's awardStock shows:
	// the units Redis can still grant.
	levels, err := c.n.stock.Levels(ctx, refs)
	if err != nil {
		return httpapi.StrategyView{}, err
	}
	for i, a := range cfg.Awards {
		av := httpapi.StrategyAwardView{AwardID: a.AwardID, AwardTitle: a.Title, AwardSubtitle: a.Subtitle, Sort: a.Sort,
			Rate: a.Rate.String(), RuleModels: a.TreeID, StockTotal: a.Count, StockSurplus: a.Surplus}
		if left, ok := levels[i].Grantable(); ok {
			av.StockLeft = &left
		} else {
			v.Armed = false
		}
		v.Awards = append(v.Awards, av)
	}
	for _, r := range cfg.Rules {
		v.Rules = append(v.Rules, httpapi.StrategyRuleView{RuleModel: string(r.Model), RuleValue: r.Value, AwardID: r.AwardID})
	}
	return v, nil
}

// UserActivity reads the user's quota accounts in the open activities (those the user has
// one in) and the user's newest award records in any activity (the store's, shared with
// activity/query_user_award_record).
func (c console) UserActivity(ctx context.Context, userID string, limit int) ([]httpapi.AccountView, []httpapi.AwardView, error) {
	ids, err := c.n.activityStore.OpenActivityIDs(ctx)
	if err != nil {
		return nil, nil, err
	}
	var accounts []httpapi.AccountView
	for _, id := range ids {
		q, err := c.n.activities.Quota(ctx, userID, id)
		if err != nil {
			return nil, nil, err
		}
		if q.Account != nil {
			v := q.View()
			accounts = append(accounts, httpapi.AccountView{ActivityID: id, TotalCount: v.Total, TotalCountSurplus: v.TotalSurplus,
				DayCount: v.Day, DayCountSurplus: v.DaySurplus, MonthCount: v.Month, MonthCountSurplus: v.MonthSurplus})
		}
	}
	recs, err := c.n.users.RecentAwardRecords(ctx, userID, 0, limit)
	if err != nil {
		return nil, nil, err
	}
	awards := make([]httpapi.AwardView, 0, len(recs))
	for _, r := range recs {
		awards = append(awards, httpapi.AwardView{ActivityID: r.ActivityID, OrderID: r.OrderID, AwardID: r.AwardID,
			AwardTitle: r.AwardTitle, AwardTime: r.AwardTime.UnixMilli(), State: string(r.State)})
	}
	return accounts, awards, nil
}

// RedPackets lists the newest red packets of every user database.
func (c console) RedPackets(ctx context.Context, limit int) ([]httpapi.RedPacketView, error) {
	list, err := c.n.users.RecentRedPackets(ctx, limit)
	if err != nil {
		return nil, err
	}
	out := make([]httpapi.RedPacketView, 0, len(list))
	for _, s := range list {
		p := s.Packet
		kind := "user"
		if p.SenderID == "" {
			kind = "campaign"
		}
		out = append(out, httpapi.RedPacketView{PacketID: p.ID, Sender: p.SenderID, Kind: kind, Total: p.Total, Count: p.Count,
			Grabbed: s.Grabbed, Left: p.Total - s.GrabbedAmount, Status: string(p.State),
			CreateTime: p.Created.UnixMilli(), ExpireTime: p.ExpireAt.UnixMilli()})
	}
	return out, nil
}

// Reconcile runs verify's checks (audit.Run) on this process's SQL databases, broker and
// Redis (embedded ones included: they are this process's) over the rows created since.
func (c console) Reconcile(ctx context.Context, since time.Time) ([]httpapi.ReconcileCheck, error) {
	n := c.n
	d := audit.Deployment{ConfigDB: n.b.ConfigDB, UserDBs: n.b.UserDBs, Tables: n.cfg.TBCount, Location: n.cfg.Location(),
		JS: n.b.JS, Events: nats.EventOptions{Prefix: n.cfg.NATSPrefix}, Hot: redis.NewDrawQuota(n.b.Redis, n.cfg.RedisPrefix).Fence(n.b.RedisFence)}
	now := time.Now().UTC()
	res, err := audit.Run(ctx, d, reconcile.Window{Since: since, Settled: now.Add(-reconcileGrace)}, reconcileSkew)
	if err != nil {
		return nil, err
	}
	return []httpapi.ReconcileCheck{
		reconcileCheck("ledger", res.Ledger.Discrepancies, res.Ledger.Checked.String(), nil),
		reconcileCheck("draws", res.Draws.Discrepancies, res.Draws.String(), res.Draws.Skipped),
		reconcileCheck("rain", res.Rain.Discrepancies, res.Rain.String(), nil),
	}, nil
}

// reconcileCheck renders one family of checks: ok when it found no discrepancy, the first
// discrepancies as verify prints them. The parts not checked (the draw writer behind, say)
// are listed in skipped, not counted as a failure: an operator reads them next to ok.
func reconcileCheck(name string, ds []reconcile.Discrepancy, checked string, skipped []string) httpapi.ReconcileCheck {
	c := httpapi.ReconcileCheck{Name: name, OK: len(ds) == 0, Found: len(ds), Checked: checked,
		Discrepancies: []string{}, Skipped: []string{}}
	for i, d := range ds {
		if i == httpapi.MaxReconcileDiscrepancies {
			break
		}
		c.Discrepancies = append(c.Discrepancies, d.String())
	}
	c.Skipped = append(c.Skipped, skipped...)
	return c
}
