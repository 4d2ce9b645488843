package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/bigmarket/bigmarket/activity"
)

// ActivityStore reads activity configuration from the config database.
type ActivityStore struct {
	db  *DB
	loc *time.Location
}

var (
	_ activity.ConfigStore = (*ActivityStore)(nil)
	// As the activity service's StockStore it also makes ReserveSKU's units durable.
	_ activity.IssuedSyncer = (*ActivityStore)(nil)
)

// NewActivityStore returns an ActivityStore on db. An activity's begin and end columns
// are wall-clock times in loc (the configured zone), as big-market's operators write them.
func NewActivityStore(db *DB, loc *time.Location) *ActivityStore {
	if loc == nil {
		loc = time.UTC
	}
	return &ActivityStore{db: db, loc: loc}
}

// wallClock reads t's wall-clock fields as a time in the store's zone.
func (s *ActivityStore) wallClock(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), s.loc)
}

// Activity implements activity.ConfigStore.
func (s *ActivityStore) Activity(ctx context.Context, activityID int64) (activity.Activity, error) {
	a := activity.Activity{ID: activityID}
	var begin, end NullTime
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
	a.Begin, a.End = s.wallClock(begin.Time), s.wallClock(end.Time)
	return a, nil
}

// SKU implements activity.ConfigStore.
func (s *ActivityStore) SKU(ctx context.Context, sku int64) (activity.SKU, error) {
	skus, err := s.querySKUs(ctx, "k.sku = ?", sku)
	if err != nil {
		return activity.SKU{}, err
	}
	if len(skus) == 0 {
		return activity.SKU{}, fmt.Errorf("sku %d: %w", sku, activity.ErrSKUNotFound)
	}
	return skus[0], nil
}

// SKUs implements activity.ConfigStore.
func (s *ActivityStore) SKUs(ctx context.Context, activityID int64) ([]activity.SKU, error) {
	return s.querySKUs(ctx, "k.activity_id = ?", activityID)
}

// querySKUs lists SKUs with their counts; where is a fixed condition with one argument.
func (s *ActivityStore) querySKUs(ctx context.Context, where string, arg any) ([]activity.SKU, error) {
	rows, err := s.db.SQL.QueryContext(ctx, `
		SELECT k.sku, k.activity_id, k.activity_count_id, k.stock_count, k.stock_count_surplus, k.product_amount,
		       COALESCE(c.total_count, 0), COALESCE(c.day_count, 0), COALESCE(c.month_count, 0)
		FROM raffle_activity_sku k LEFT JOIN raffle_activity_count c ON c.activity_count_id = k.activity_count_id
		WHERE `+where+` ORDER BY k.sku`, arg)
	if err != nil {
		return nil, fmt.Errorf("list skus (%s %v): %w", where, arg, err)
	}
	defer rows.Close()
	var skus []activity.SKU
	for rows.Next() {
		var k activity.SKU
		if err := rows.Scan(&k.SKU, &k.ActivityID, &k.CountID, &k.Stock, &k.StockSurplus, &k.Price,
			&k.Count.Total, &k.Count.Day, &k.Count.Month); err != nil {
			return nil, fmt.Errorf("scan sku: %w", err)
		}
		k.Count.ID = k.CountID
		skus = append(skus, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list skus (%s %v): %w", where, arg, err)
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

// OpenActivityIDs lists the activities in state open, for serve to arm their SKU stock at
// start.
func (s *ActivityStore) OpenActivityIDs(ctx context.Context) ([]int64, error) {
	return s.ids(ctx, "list open activities", `SELECT activity_id FROM raffle_activity WHERE state = 'open' ORDER BY activity_id`)
}

// SKUIDs lists every SKU, for the job that reconciles their stock.
func (s *ActivityStore) SKUIDs(ctx context.Context) ([]int64, error) {
	return s.ids(ctx, "list skus", `SELECT sku FROM raffle_activity_sku ORDER BY sku`)
}

// ids runs a query of one integer column and returns its values; what names the query in
// errors.
func (s *ActivityStore) ids(ctx context.Context, what, query string) ([]int64, error) {
	rows, err := s.db.SQL.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return ids, nil
}

// SyncSKUIssued records that issued units of the SKU were sold: its stock_count_surplus
// becomes min(surplus, stock_count − issued) (at least 0), which a top-up (adding to both
// columns in one statement) survives, as SyncAwardIssued.
func (s *ActivityStore) SyncSKUIssued(ctx context.Context, sku, issued int64) error {
	issued = max(issued, 0)
	_, err := s.db.SQL.ExecContext(ctx, `UPDATE raffle_activity_sku
		SET stock_count_surplus = CASE WHEN stock_count > ? THEN stock_count - ? ELSE 0 END, update_time = ?
		WHERE sku = ? AND stock_count_surplus > CASE WHEN stock_count > ? THEN stock_count - ? ELSE 0 END`,
		issued, issued, time.Now().UTC(), sku, issued, issued)
	if err != nil {
		return fmt.Errorf("sync issued of sku %d: %w", sku, err)
	}
	return nil
}

// AddSKUStock adds units to the SKU's stock_count and stock_count_surplus in one
// statement and returns the new stock_count. An unknown SKU is activity.ErrSKUNotFound;
// a count that would pass the column's range is activity.ErrInvalidUnits.
func (s *ActivityStore) AddSKUStock(ctx context.Context, sku, units int64) (int64, error) {
	total, err := addStock(ctx, s.db, `
		UPDATE raffle_activity_sku SET stock_count = stock_count + ?, stock_count_surplus = stock_count_surplus + ?, update_time = ?
		WHERE sku = ? AND stock_count <= ?`,
		`SELECT stock_count FROM raffle_activity_sku WHERE sku = ?`,
		units, time.Now().UTC(), []any{sku})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, fmt.Errorf("add stock to sku %d: %w", sku, activity.ErrSKUNotFound)
	case errors.Is(err, errCountRange):
		return 0, fmt.Errorf("add %d units to sku %d: %w: %w", units, sku, activity.ErrInvalidUnits, err)
	case err != nil:
		return 0, fmt.Errorf("add stock to sku %d: %w", sku, err)
	}
	return total, nil
}

// SyncSKUSurplus lowers a SKU's stock_count_surplus to remaining, never raising it: the
// update is a monotone minimum for the old form of the stock zero event, which carried
// no sequence number.
func (s *ActivityStore) SyncSKUSurplus(ctx context.Context, sku, remaining int64) error {
	remaining = max(remaining, 0)
	_, err := s.db.SQL.ExecContext(ctx, `UPDATE raffle_activity_sku SET stock_count_surplus = ?, update_time = ?
		WHERE sku = ? AND stock_count_surplus > ?`, remaining, time.Now().UTC(), sku, remaining)
	if err != nil {
		return fmt.Errorf("sync surplus of sku %d: %w", sku, err)
	}
	return nil
}
