package app

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	"github.com/bigmarket/bigmarket/httpapi"
	"github.com/bigmarket/bigmarket/nats"
	"github.com/bigmarket/bigmarket/redis"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/strategy"
)

// gauges reads the numbers of the operator console (admin/stats) that come from the
// backends, as this node sees them; httpapi reads them at most once a second. Each is
// read on its own: one that fails is logged and shown as null (its list empty), the rest
// still shown.
type gauges struct {
	activities  *sqlstore.ActivityStore
	configs     *sqlstore.ConfigStore
	users       *sqlstore.UserStore
	strategies  *strategy.Service
	stock       *redis.Stock
	skuStock    *redis.SKUStock
	writer      *nats.Consumer   // the flash draw writer
	consumers   []*nats.Consumer // the event consumers, the writer excluded
	deadLetters *nats.DeadLetters
	log         *slog.Logger
}

// Gauges implements the gauge reader of httpapi.Options: the reads run concurrently.
func (g gauges) Gauges(ctx context.Context) httpapi.Gauges {
	var (
		out httpapi.Gauges
		wg  sync.WaitGroup
	)
	wg.Go(func() { out.AwardStock = g.awardStock(ctx) })
	wg.Go(func() { out.SKUStock = g.skuStockLeft(ctx) })
	wg.Go(func() {
		n, err := g.users.PendingTasks(ctx)
		out.Outbox = g.known(n, err, "outbox backlog")
	})
	wg.Go(func() {
		n, err := g.writer.Pending(ctx)
		out.Writer = g.known(n, err, "draw writer backlog")
	})
	wg.Go(func() {
		var total int64
		for _, c := range g.consumers {
			n, err := c.Pending(ctx)
			if err != nil {
				g.known(0, err, "consumer backlog")
				return
			}
			total += n
		}
		out.Consumer = &total
	})
	wg.Go(func() {
		n, err := g.deadLetters.Count(ctx)
		out.DeadLetters = g.known(n, err, "dead letters")
	})
	wg.Wait()
	return out
}

// known returns n, or nil after logging err.
func (g gauges) known(n int64, err error, what string) *int64 {
	if err != nil {
		g.log.Warn("operator console: "+what+" unknown", "err", err)
		return nil
	}
	return &n
}

// awardStock lists the awards of the strategies of open activities and of every strategy
// assembled on this node (random_raffle's, say), by strategy and sort, with the units
// Redis can still grant.
func (g gauges) awardStock(ctx context.Context) []httpapi.AwardStockLeft {
	ids, err := g.activities.OpenStrategyIDs(ctx)
	if err != nil {
		g.log.Warn("operator console: award stock unknown", "err", err)
		return nil
	}
	for _, ref := range g.strategies.AwardRefs() {
		ids = append(ids, ref.StrategyID)
	}
	slices.Sort(ids)
	var (
		out  []httpapi.AwardStockLeft
		refs []strategy.AwardRef
	)
	for _, id := range slices.Compact(ids) {
		awards, err := g.configs.StrategyAwards(ctx, id)
		if err != nil {
			g.log.Warn("operator console: award stock unknown", "err", err)
			return nil
		}
		for _, a := range awards {
			out = append(out, httpapi.AwardStockLeft{StrategyID: id, AwardID: a.AwardID, AwardTitle: a.Title, Total: a.Count})
			refs = append(refs, strategy.AwardRef{StrategyID: id, AwardID: a.AwardID})
		}
	}
	levels, err := g.stock.Levels(ctx, refs)
	if err != nil {
		g.log.Warn("operator console: award stock unknown", "err", err)
		return nil
	}
	for i, l := range levels {
		out[i].Left, out[i].Total = grantable(l, out[i].Total)
	}
	return out
}

// skuStockLeft lists the SKUs of open activities with the units Redis can still sell.
func (g gauges) skuStockLeft(ctx context.Context) []httpapi.SKUStockLeft {
	skus, err := g.activities.OpenSKUs(ctx)
	if err != nil {
		g.log.Warn("operator console: sku stock unknown", "err", err)
		return nil
	}
	ids := make([]int64, len(skus))
	for i, k := range skus {
		ids[i] = k.SKU
	}
	levels, err := g.skuStock.Levels(ctx, ids)
	if err != nil {
		g.log.Warn("operator console: sku stock unknown", "err", err)
		return nil
	}
	out := make([]httpapi.SKUStockLeft, len(skus))
	for i, k := range skus {
		out[i] = httpapi.SKUStockLeft{SKU: k.SKU, ActivityID: k.ActivityID}
		out[i].Left, out[i].Total = grantable(levels[i], k.Stock)
	}
	return out
}

// grantable returns the units a counter can still grant (nil when it is not in Redis) and
// its total: Redis's, which a top-up raises first, else the SQL count.
func grantable(l redis.Level, count int64) (*int64, int64) {
	if l.HasTotal {
		count = l.Total
	}
	left, ok := l.Grantable()
	if !ok {
		return nil, count
	}
	return &left, count
}
