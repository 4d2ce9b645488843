package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/reconcile"
)

// Reads of the flash draw's checks (reconcile.DrawEvents, OneWin, OverStock). They scan
// shard tables or look rows up by order id in batches: for verify and the benches, not
// the draw path.

// inBatch is how many order ids one IN list holds.
const inBatch = 500

// DrawWritten returns, by order id, the rows SQL holds for each draw event: its raffle
// order and award record (looked up in the event's user's table) and the task with the
// order id as message id (in the user's database).
func (s *UserStore) DrawWritten(ctx context.Context, events []reconcile.DrawEvent) (map[string]reconcile.DrawWritten, error) {
	type table struct{ db, t int }
	byTable := map[table][]any{}
	byDB := map[int][]any{}
	for _, e := range events {
		r := s.router.Route(e.UserID)
		byTable[table{r.DB, r.Table}] = append(byTable[table{r.DB, r.Table}], e.OrderID)
		byDB[r.DB] = append(byDB[r.DB], e.OrderID)
	}
	out := map[string]reconcile.DrawWritten{}
	for tb, ids := range byTable {
		sfx := TableSuffix(tb.t)
		err := inBatches(ids, func(part []any) error {
			// The only text spliced in is the router's table suffix and the placeholders.
			in := " WHERE order_id IN " + Placeholders(1, len(part))
			err := queryRows(ctx, s.dbs[tb.db].SQL, "raffle orders", "SELECT order_id, user_id, order_state FROM user_raffle_order"+sfx+in,
				func(rows *sql.Rows) error {
					var id, user, state string
					if err := rows.Scan(&id, &user, &state); err != nil {
						return err
					}
					w := out[id]
					w.OrderUser, w.OrderState = user, activity.OrderState(state)
					out[id] = w
					return nil
				}, part...)
			if err != nil {
				return err
			}
			return queryRows(ctx, s.dbs[tb.db].SQL, "award records", "SELECT order_id, user_id, award_id FROM user_award_record"+sfx+in,
				func(rows *sql.Rows) error {
					var (
						id, user string
						awardID  int
					)
					if err := rows.Scan(&id, &user, &awardID); err != nil {
						return err
					}
					w := out[id]
					w.RecordFound, w.RecordUser, w.RecordAward = true, user, awardID
					out[id] = w
					return nil
				}, part...)
		})
		if err != nil {
			return nil, fmt.Errorf("user database %02d: %w", tb.db+1, err)
		}
	}
	for db, ids := range byDB {
		err := inBatches(ids, func(part []any) error {
			return queryRows(ctx, s.dbs[db].SQL, "tasks", "SELECT message_id, user_id, topic FROM task WHERE message_id IN "+Placeholders(1, len(part)),
				func(rows *sql.Rows) error {
					var id, user, topic string
					if err := rows.Scan(&id, &user, &topic); err != nil {
						return err
					}
					w := out[id]
					w.TaskUser, w.TaskTopic = user, topic
					out[id] = w
					return nil
				}, part...)
		})
		if err != nil {
			return nil, fmt.Errorf("user database %02d: %w", db+1, err)
		}
	}
	return out, nil
}

// inBatches calls fn on ids inBatch at a time.
func inBatches(ids []any, fn func(part []any) error) error {
	for start := 0; start < len(ids); start += inBatch {
		if err := fn(ids[start:min(start+inBatch, len(ids))]); err != nil {
			return err
		}
	}
	return nil
}

// AwardRecordsOf returns every award record of the activity whose award is one of
// awardIDs, across every shard table, for reconcile.OneWin.
func (s *UserStore) AwardRecordsOf(ctx context.Context, activityID int64, awardIDs []int) ([]reconcile.Win, error) {
	if len(awardIDs) == 0 {
		return nil, nil
	}
	args := []any{activityID}
	for _, id := range awardIDs {
		args = append(args, id)
	}
	var wins []reconcile.Win
	err := s.eachTable(ctx, func(db *DB, suffix string) error {
		return queryRows(ctx, db.SQL, "award records"+suffix, "SELECT user_id, order_id, award_id FROM user_award_record"+suffix+
			" WHERE activity_id = ? AND award_id IN "+Placeholders(1, len(awardIDs)), func(rows *sql.Rows) error {
			w := reconcile.Win{ActivityID: activityID}
			if err := rows.Scan(&w.UserID, &w.OrderID, &w.AwardID); err != nil {
				return err
			}
			wins = append(wins, w)
			return nil
		}, args...)
	})
	if err != nil {
		return nil, fmt.Errorf("award records of activity %d: %w", activityID, err)
	}
	return wins, nil
}

// OneWinActivities lists the activities whose settings have one win on.
func (s *SettingStore) OneWinActivities(ctx context.Context) ([]int64, error) {
	var ids []int64
	err := queryRows(ctx, s.db.SQL, "one-win activities", "SELECT activity_id FROM raffle_activity_setting WHERE one_win = ? ORDER BY activity_id",
		func(rows *sql.Rows) error {
			var id int64
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
			return nil
		}, true)
	return ids, err
}

// StrategyIDs lists every strategy of the config database.
func (s *ConfigStore) StrategyIDs(ctx context.Context) ([]int64, error) {
	var ids []int64
	err := queryRows(ctx, s.db.SQL, "strategies", "SELECT strategy_id FROM strategy ORDER BY strategy_id", func(rows *sql.Rows) error {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return err
		}
		ids = append(ids, id)
		return nil
	})
	return ids, err
}

// StrategyGrants counts each award's records of the strategy across every shard, split
// into stocked and fallback grants by their tasks (reconcile.Grants, reconcile.Stocked),
// for reconcile.AwardStock.
func StrategyGrants(ctx context.Context, configs *ConfigStore, users *UserStore, strategyID int64) ([]reconcile.AwardGrants, error) {
	cfg, err := configs.LoadStrategy(ctx, strategyID)
	if err != nil {
		return nil, err
	}
	counts, err := users.AwardRecordCounts(ctx, strategyID)
	if err != nil {
		return nil, err
	}
	stocked := map[int]int64{}
	for id := range reconcile.FallbackAwards(cfg) {
		if counts[id] == 0 {
			continue
		}
		tasks, err := users.AwardGrantTasks(ctx, strategyID, id)
		if err != nil {
			return nil, err
		}
		stocked[id] = reconcile.Stocked(tasks)
	}
	return reconcile.Grants(cfg, counts, stocked), nil
}
