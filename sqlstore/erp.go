package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
)

// RecentRaffleOrders returns the newest raffle orders, newest first, at most limit: of one
// user when userID is set (one shard), otherwise across every shard, for operators.
func (s *UserStore) RecentRaffleOrders(ctx context.Context, userID string, limit int) ([]activity.RaffleOrder, error) {
	query := func(suffix string) string {
		where := ""
		if userID != "" {
			where = " WHERE user_id = ?"
		}
		return "SELECT " + raffleOrderColumns + ", create_time, update_time FROM user_raffle_order" + suffix +
			where + " ORDER BY order_time DESC, id DESC LIMIT ?"
	}
	var orders []activity.RaffleOrder
	collect := func(db *DB, suffix string) error {
		args := []any{limit}
		if userID != "" {
			args = []any{userID, limit}
		}
		return queryEach(ctx, db.SQL, query(suffix), args, func(rows *sql.Rows) error {
			var (
				o                     activity.RaffleOrder
				at, created, modified NullTime
			)
			if err := rows.Scan(&o.UserID, &o.ActivityID, &o.ActivityName, &o.StrategyID, &o.OrderID, &at, &o.State,
				&created, &modified); err != nil {
				return err
			}
			o.OrderTime, o.Created, o.Updated = at.Time, created.Time, modified.Time
			orders = append(orders, o)
			return nil
		})
	}
	var err error
	if userID != "" {
		r := s.router.Route(userID)
		err = collect(s.dbs[r.DB], r.Suffix)
	} else {
		err = s.eachTable(ctx, collect)
	}
	if err != nil {
		return nil, fmt.Errorf("recent raffle orders: %w", err)
	}
	slices.SortStableFunc(orders, func(a, b activity.RaffleOrder) int { return b.OrderTime.Compare(a.OrderTime) })
	if len(orders) > limit {
		orders = orders[:limit]
	}
	return orders, nil
}

// Stages implements activity.ConfigStore.
func (s *ActivityStore) Stages(ctx context.Context) ([]activity.Stage, error) {
	var stages []activity.Stage
	err := queryEach(ctx, s.db.SQL, `SELECT id, channel, source, activity_id, state FROM raffle_activity_stage ORDER BY id`, nil,
		func(rows *sql.Rows) error {
			var st activity.Stage
			if err := rows.Scan(&st.ID, &st.Channel, &st.Source, &st.ActivityID, &st.State); err != nil {
				return err
			}
			stages = append(stages, st)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("list stages: %w", err)
	}
	return stages, nil
}

// Stage implements activity.ConfigStore.
func (s *ActivityStore) Stage(ctx context.Context, id int64) (activity.Stage, error) {
	st := activity.Stage{ID: id}
	err := s.db.SQL.QueryRowContext(ctx, `SELECT channel, source, activity_id, state FROM raffle_activity_stage WHERE id = ?`, id).
		Scan(&st.Channel, &st.Source, &st.ActivityID, &st.State)
	if errors.Is(err, sql.ErrNoRows) {
		return activity.Stage{}, fmt.Errorf("stage %d: %w", id, activity.ErrStageNotFound)
	}
	if err != nil {
		return activity.Stage{}, fmt.Errorf("load stage %d: %w", id, err)
	}
	return st, nil
}

// ActivateStage implements activity.ConfigStore.
func (s *ActivityStore) ActivateStage(ctx context.Context, id int64) error {
	res, err := s.db.SQL.ExecContext(ctx, `UPDATE raffle_activity_stage SET state = 'active', update_time = ? WHERE id = ?`,
		time.Now().UTC(), id)
	if err != nil {
		return fmt.Errorf("activate stage %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		// MySQL reports 0 for an unchanged row too; tell the two apart.
		if _, err := s.Stage(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// RecentAwardRecords returns the user's newest award records, newest first, at most limit:
// in one activity, or in every activity when activityID is 0. One shard holds them all.
func (s *UserStore) RecentAwardRecords(ctx context.Context, userID string, activityID int64, limit int) ([]award.Record, error) {
	r := s.router.Route(userID)
	where, args := " WHERE user_id = ?", []any{userID}
	if activityID != 0 {
		where += " AND activity_id = ?"
		args = append(args, activityID)
	}
	args = append(args, limit)
	query := "SELECT " + awardRecordColumns + " FROM user_award_record" + r.Suffix + where +
		" ORDER BY award_time DESC, id DESC LIMIT ?"
	recs := []award.Record{}
	err := queryEach(ctx, s.dbs[r.DB].SQL, query, args, func(rows *sql.Rows) error {
		rec, err := scanAwardRecord(rows)
		if err != nil {
			return err
		}
		recs = append(recs, rec)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recent award records of %s: %w", userID, err)
	}
	return recs, nil
}
