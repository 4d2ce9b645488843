package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/bigmarket/bigmarket/activity"
)

// ActivityStore reads activity configuration from the config database.
type ActivityStore struct {
	db *DB
}

var _ activity.ConfigStore = (*ActivityStore)(nil)

// NewActivityStore returns an ActivityStore on db.
func NewActivityStore(db *DB) *ActivityStore { return &ActivityStore{db: db} }

// Activity implements activity.ConfigStore.
func (s *ActivityStore) Activity(ctx context.Context, activityID int64) (activity.Activity, error) {
	a := activity.Activity{ID: activityID}
	var begin, end nullTime
	err := s.db.SQL.QueryRowContext(ctx, `
		SELECT activity_name, activity_desc, begin_date_time, end_date_time, strategy_id, state
		FROM raffle_activity WHERE activity_id = ?`, activityID).
		Scan(&a.Name, &a.Desc, &begin, &end, &a.StrategyID, &a.State)
	if errors.Is(err, sql.ErrNoRows) {
		return activity.Activity{}, fmt.Errorf("activity %d: %w", activityID, activity.ErrActivityNotFound)
	}
	if err != nil {
		return activity.Activity{}, fmt.Errorf("load activity %d: %w", activityID, err)
	}
	a.Begin, a.End = begin.Time, end.Time
	return a, nil
}

// SKUs implements activity.ConfigStore.
func (s *ActivityStore) SKUs(ctx context.Context, activityID int64) ([]activity.SKU, error) {
	rows, err := s.db.SQL.QueryContext(ctx, `
		SELECT k.sku, k.activity_id, k.activity_count_id, k.stock_count, k.stock_count_surplus, k.product_amount,
		       COALESCE(c.total_count, 0), COALESCE(c.day_count, 0), COALESCE(c.month_count, 0)
		FROM raffle_activity_sku k LEFT JOIN raffle_activity_count c ON c.activity_count_id = k.activity_count_id
		WHERE k.activity_id = ? ORDER BY k.sku`, activityID)
	if err != nil {
		return nil, fmt.Errorf("list skus of activity %d: %w", activityID, err)
	}
	defer rows.Close()
	var skus []activity.SKU
	for rows.Next() {
		var k activity.SKU
		if err := rows.Scan(&k.SKU, &k.ActivityID, &k.CountID, &k.Stock, &k.StockSurplus, &k.Price,
			&k.Count.Total, &k.Count.Day, &k.Count.Month); err != nil {
			return nil, fmt.Errorf("scan sku of activity %d: %w", activityID, err)
		}
		k.Count.ID = k.CountID
		skus = append(skus, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list skus of activity %d: %w", activityID, err)
	}
	return skus, nil
}

// StageActivity implements activity.ConfigStore.
func (s *ActivityStore) StageActivity(ctx context.Context, channel, source string) (int64, error) {
	var id int64
	err := s.db.SQL.QueryRowContext(ctx, `
		SELECT activity_id FROM raffle_activity_stage
		WHERE channel = ? AND source = ? AND state = 'active' ORDER BY id DESC LIMIT 1`, channel, source).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("stage %s/%s: %w", channel, source, activity.ErrNoStageActivity)
	}
	if err != nil {
		return 0, fmt.Errorf("load stage %s/%s: %w", channel, source, err)
	}
	return id, nil
}
