package activity

import "context"

// SKULevels reads the hot SKU stock's high watermark of grants: the units granted so far,
// and false when the counter holds none. The redis adapter implements it.
type SKULevels interface {
	Issued(ctx context.Context, sku int64) (issued int64, ok bool, err error)
}

// SKUSurplusStore lists the SKUs and applies synced stock to SQL with the monotone update
// stock_count_surplus = min(stock_count_surplus, stock_count − issued); sqlstore
// implements it.
type SKUSurplusStore interface {
	SKUIDs(ctx context.Context) ([]int64, error)
	SyncSKUIssued(ctx context.Context, sku, issued int64) error
}

// ReconcileSKUStock is one pass of the stock reconcile job over every SKU. It raises each
// SKU's cached total to stock_count (RaiseSKUTotals, a max), so that a top-up cut off
// after its SQL step becomes grantable, and copies each SKU's high watermark of grants to
// raffle_activity_sku with the same monotone update as award stock. A SKU whose stock ran
// out is synced at once by the activity_sku_stock_zero event; this is the backstop when
// that event was not published. Failures are logged and retried by the next pass.
func (s *Service) ReconcileSKUStock(ctx context.Context, levels SKULevels, store SKUSurplusStore) {
	log := s.opts.Logger
	skus, err := store.SKUIDs(ctx)
	if err != nil {
		log.Warn("reconcile sku stock: list skus", "err", err)
		return
	}
	if err := s.RaiseSKUTotals(ctx, skus); err != nil {
		log.Warn("reconcile sku stock: raise totals", "err", err)
	}
	for _, sku := range skus {
		issued, ok, err := levels.Issued(ctx, sku)
		if err != nil {
			log.Warn("reconcile sku stock: read level", "sku", sku, "err", err)
			continue
		}
		if !ok {
			continue
		}
		if err := store.SyncSKUIssued(ctx, sku, issued); err != nil {
			log.Warn("reconcile sku stock: sync surplus", "sku", sku, "err", err)
		}
	}
}
