package sqlstore

import (
	"context"
	"fmt"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/strategy"
)

// The reads below feed the operator console's live numbers (admin/stats), which a node
// reads at most once a second.

// OpenStrategyIDs lists the strategies of the activities in state open.
func (s *ActivityStore) OpenStrategyIDs(ctx context.Context) ([]int64, error) {
	return s.ids(ctx, "list strategies of open activities",
		`SELECT DISTINCT strategy_id FROM raffle_activity WHERE state = 'open' ORDER BY strategy_id`)
}

// OpenSKUs lists the SKUs of the activities in state open, by SKU.
func (s *ActivityStore) OpenSKUs(ctx context.Context) ([]activity.SKU, error) {
	return s.querySKUs(ctx, "k.activity_id IN (SELECT activity_id FROM raffle_activity WHERE state = ?)", string(activity.StateOpen))
}

// StrategyAwards returns the strategy's awards (joined with award) in sort order, in one
// query: the part of LoadStrategy that lists them. A strategy without awards has none.
func (s *ConfigStore) StrategyAwards(ctx context.Context, strategyID int64) ([]strategy.Award, error) {
	awards, err := s.loadAwards(ctx, strategyID)
	if err != nil {
		return nil, fmt.Errorf("awards of strategy %d: %w", strategyID, err)
	}
	return awards, nil
}

// PendingTasks counts the outbox tasks of every user database not yet published (state
// create or fail), which the relay or its compensation job still has to send; an index
// range of idx_state_create_time.
func (s *UserStore) PendingTasks(ctx context.Context) (int64, error) {
	var total int64
	for i, db := range s.dbs {
		var n int64
		if err := db.SQL.QueryRowContext(ctx, `SELECT COUNT(*) FROM task WHERE state IN ('create', 'fail')`).Scan(&n); err != nil {
			return 0, fmt.Errorf("count pending tasks of user database %d: %w", i+1, err)
		}
		total += n
	}
	return total, nil
}
