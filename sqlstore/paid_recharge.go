package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/bigmarket/bigmarket/activity"
)

// CompleteRecharge implements activity.UserStore: in one transaction it moves the user's
// wait_pay order with the out_business_no to completed and adds its count to the quota
// rows of the given day and month. An order already completed changes nothing and
// reports false, so a redelivered payment confirmation is harmless.
func (s *UserStore) CompleteRecharge(ctx context.Context, userID, outBusinessNo, day, month string,
	add func(activity.QuotaKey, *activity.Quota, activity.Count)) (bool, error) {
	r := s.router.Route(userID)
	db := s.dbs[r.DB]
	completed := false
	err := s.inTx(ctx, db, func(tx *sql.Tx) error {
		completed = false
		var (
			activityID int64
			count      activity.Count
			state      string
		)
		err := tx.QueryRowContext(ctx, `SELECT activity_id, total_count, day_count, month_count, state
			FROM raffle_activity_order`+r.Suffix+` WHERE user_id = ? AND out_business_no = ?`+db.Dialect.ForUpdate(),
			userID, outBusinessNo).Scan(&activityID, &count.Total, &count.Day, &count.Month, &state)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("out_business_no %s: %w", outBusinessNo, activity.ErrRechargeNotFound)
		}
		if err != nil {
			return fmt.Errorf("load recharge order: %w", err)
		}
		if activity.RechargeState(state) == activity.RechargeCompleted {
			return nil
		}
		now := sqlTime(s.now())
		res, err := tx.ExecContext(ctx, `UPDATE raffle_activity_order`+r.Suffix+` SET state = ?, update_time = ?
			WHERE user_id = ? AND out_business_no = ? AND state = ?`,
			string(activity.RechargeCompleted), now, userID, outBusinessNo, string(activity.RechargeWaitPay))
		if err != nil {
			return fmt.Errorf("complete recharge order: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("complete recharge order %s: %d rows in state wait_pay", outBusinessNo, n)
		}
		key := activity.QuotaKey{UserID: userID, ActivityID: activityID, Day: day, Month: month}
		if err := updateQuota(ctx, tx, db.Dialect, key, now, func(q *activity.Quota) { add(key, q, count) }); err != nil {
			return err
		}
		completed = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("complete recharge %s/%s: %w", userID, outBusinessNo, err)
	}
	return completed, nil
}
