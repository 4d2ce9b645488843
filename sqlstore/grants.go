package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/redpacket"
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

// AwardGrantTasks returns the send_award task (or none) of each award record of the
// strategy's award, for reconcile.Stocked.
func (s *UserStore) AwardGrantTasks(ctx context.Context, strategyID int64, awardID int) ([]reconcile.Task, error) {
	var tasks []reconcile.Task
	err := s.eachTable(ctx, func(db *DB, suffix string) error {
		return queryRows(ctx, db.SQL, "award records"+suffix, `SELECT t.user_id, t.topic, t.message FROM user_award_record`+suffix+
			` r LEFT JOIN task t ON t.message_id = r.order_id WHERE r.strategy_id = ? AND r.award_id = ?`, func(rows *sql.Rows) error {
			var user, topic, msg sql.NullString
			if err := rows.Scan(&user, &topic, &msg); err != nil {
				return err
			}
			tasks = append(tasks, reconcile.Task{Found: msg.Valid, UserID: user.String, Topic: topic.String, Message: msg.String})
			return nil
		}, strategyID, awardID)
	})
	if err != nil {
		return nil, fmt.Errorf("grants of award %d: %w", awardID, err)
	}
	return tasks, nil
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

// CreditedGrabs returns the business numbers of the grabs' credit orders that exist, each
// looked up in its grabber's table.
func (s *UserStore) CreditedGrabs(ctx context.Context, grabs []redpacket.Grab) (map[string]bool, error) {
	type table struct{ db, t int }
	pending := map[table][]any{}
	for _, g := range grabs {
		r := s.router.Route(g.UserID)
		pending[table{r.DB, r.Table}] = append(pending[table{r.DB, r.Table}], g.BusinessNo())
	}
	credited := map[string]bool{}
	for tb, nos := range pending {
		for start := 0; start < len(nos); start += 500 {
			part := nos[start:min(start+500, len(nos))]
			// The only text spliced in is the router's table suffix and the placeholders.
			err := queryRows(ctx, s.dbs[tb.db].SQL, "grab credits", "SELECT out_business_no FROM user_credit_order"+TableSuffix(tb.t)+
				" WHERE out_business_no IN (?"+strings.Repeat(", ?", len(part)-1)+")", func(rows *sql.Rows) error {
				var no string
				if err := rows.Scan(&no); err != nil {
					return err
				}
				credited[no] = true
				return nil
			}, part...)
			if err != nil {
				return nil, fmt.Errorf("user database %02d: %w", tb.db+1, err)
			}
		}
	}
	return credited, nil
}
