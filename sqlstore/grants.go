package sqlstore

import (
	"context"
	"fmt"
)

// Grant counts across every user database and table. They are the durable record of
// what was given, read when hot stock must be rebuilt and when a run is verified; they
// scan each shard table, so they are for rare jobs, not the draw path.

// AwardRecordCounts returns, per award id, how many award records the strategy has.
func (s *UserStore) AwardRecordCounts(ctx context.Context, strategyID int64) (map[int]int64, error) {
	counts := map[int]int64{}
	err := s.eachTable(ctx, func(db *DB, suffix string) error {
		rows, err := db.SQL.QueryContext(ctx, `SELECT award_id, COUNT(*) FROM user_award_record`+suffix+
			` WHERE strategy_id = ? GROUP BY award_id`, strategyID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id int
			var n int64
			if err := rows.Scan(&id, &n); err != nil {
				return err
			}
			counts[id] += n
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("count award records of strategy %d: %w", strategyID, err)
	}
	return counts, nil
}

// SKUOrderCount returns how many recharge orders took a unit of the SKU.
func (s *UserStore) SKUOrderCount(ctx context.Context, sku int64) (int64, error) {
	var total int64
	err := s.eachTable(ctx, func(db *DB, suffix string) error {
		var n int64
		if err := db.SQL.QueryRowContext(ctx, `SELECT COUNT(*) FROM raffle_activity_order`+suffix+
			` WHERE sku = ?`, sku).Scan(&n); err != nil {
			return err
		}
		total += n
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count orders of sku %d: %w", sku, err)
	}
	return total, nil
}

// eachTable runs fn on every (database, table suffix) of the router; the suffix comes
// from TableSuffix, never from input.
func (s *UserStore) eachTable(ctx context.Context, fn func(db *DB, suffix string) error) error {
	for _, db := range s.dbs {
		for t := range s.router.Tables {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(db, TableSuffix(t)); err != nil {
				return err
			}
		}
	}
	return nil
}
