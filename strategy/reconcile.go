package strategy

import "context"

// IssuedLevels reads the hot stock's high watermark of grants of an award: the units
// granted so far, and false when the counter holds none (absent, or of the old form).
// The redis adapter implements it.
type IssuedLevels interface {
	Issued(ctx context.Context, ref AwardRef) (issued int64, ok bool, err error)
}

// ReconcileStock is one pass of the stock reconcile job over the awards assembled on this
// node. It raises each counter's cached total to award_count (RaiseTotals, a max), so that
// a top-up cut off after its SQL step becomes grantable, and copies each award's high
// watermark of grants to SQL. That covers grants whose sync message was lost with a
// crashed process; the update is monotone (surplus = min(surplus, award_count − issued))
// and survives a top-up, so every node may run it. Counters of the old form are left to
// their conversion. Failures are logged and retried by the next pass.
func (s *Service) ReconcileStock(ctx context.Context, levels IssuedLevels, store SurplusStore) {
	log := s.opts.Logger
	if err := s.RaiseTotals(ctx); err != nil {
		log.Warn("reconcile award stock: raise totals", "err", err)
	}
	for _, ref := range s.AwardRefs() {
		issued, ok, err := levels.Issued(ctx, ref)
		if err != nil {
			log.Warn("reconcile award stock: read level", "strategy_id", ref.StrategyID, "award_id", ref.AwardID, "err", err)
			continue
		}
		if !ok {
			continue
		}
		if err := store.SyncAwardIssued(ctx, ref, issued); err != nil {
			log.Warn("reconcile award stock: sync surplus", "strategy_id", ref.StrategyID, "award_id", ref.AwardID, "err", err)
		}
	}
}
