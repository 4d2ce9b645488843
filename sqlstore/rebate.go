package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/rebate"
)

var _ rebate.Store = (*UserStore)(nil)

var rebateOrderColumns = []string{"user_id", "order_id", "behavior_type", "rebate_desc", "rebate_type", "rebate_config",
	"out_business_no", "biz_id", "update_time"}

// SaveRebates implements rebate.Store: the orders in one multi-row INSERT and the tasks
// in another, in one transaction; the biz_id unique key turns a repeat into
// rebate.ErrDuplicate.
func (s *UserStore) SaveRebates(ctx context.Context, userID string, orders []rebate.Order, tasks []outbox.Task) error {
	if len(orders) == 0 {
		return nil
	}
	r := s.router.Route(userID)
	now := sqlTime(s.now())
	rows := make([][]any, len(orders))
	for i, o := range orders {
		if o.UserID != userID {
			return fmt.Errorf("save rebates of %s: order %s is for %s", userID, o.OrderID, o.UserID)
		}
		rows[i] = []any{o.UserID, o.OrderID, string(o.Behavior), o.Desc, string(o.Type), o.Value, o.OutBusinessNo, o.BizID, now}
	}
	for _, t := range tasks {
		if t.UserID != userID {
			return fmt.Errorf("save rebates of %s: task %s is for %s", userID, t.MessageID, t.UserID)
		}
	}
	err := s.inTx(ctx, s.dbs[r.DB], func(tx *sql.Tx) error {
		var writes script
		writes.write("insert rebate orders", insertSQL("user_behavior_rebate_order"+r.Suffix, rebateOrderColumns, len(rows)),
			flatten(rows), len(rows), func(err error) error {
				if IsDuplicate(err) {
					return fmt.Errorf("biz id %s: %w", orders[0].BizID, rebate.ErrDuplicate)
				}
				return fmt.Errorf("insert rebate orders: %w", err)
			})
		writeTasks(&writes, tasks, now)
		return writes.run(ctx, tx, false)
	})
	if err != nil {
		return fmt.Errorf("save rebates of %s: %w", userID, err)
	}
	s.tasksCommitted(tasks)
	return nil
}

// HasRebate implements rebate.Store.
func (s *UserStore) HasRebate(ctx context.Context, userID string, behavior rebate.Behavior, outBusinessNo string) (bool, error) {
	r := s.router.Route(userID)
	var one int
	err := s.dbs[r.DB].SQL.QueryRowContext(ctx, "SELECT 1 FROM user_behavior_rebate_order"+r.Suffix+
		" WHERE user_id = ? AND out_business_no = ? AND behavior_type = ? LIMIT 1", userID, outBusinessNo, string(behavior)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("rebate of %s for %s: %w", behavior, userID, err)
	}
	return true, nil
}

// UnpaidOrder implements activity.UserStore: the user's newest wait_pay order of the SKU
// made at or after since that no credit order has paid yet.
func (s *UserStore) UnpaidOrder(ctx context.Context, userID string, sku int64, since time.Time) (activity.RechargeOrder, bool, error) {
	r := s.router.Route(userID)
	var (
		o  activity.RechargeOrder
		at NullTime
	)
	err := s.dbs[r.DB].SQL.QueryRowContext(ctx, "SELECT "+rechargeOrderColumns+" FROM raffle_activity_order"+r.Suffix+" o"+
		" WHERE user_id = ? AND sku = ? AND state = 'wait_pay' AND order_time >= ? AND NOT EXISTS"+
		" (SELECT 1 FROM user_credit_order"+r.Suffix+" c WHERE c.out_business_no = o.out_business_no)"+
		" ORDER BY id DESC LIMIT 1", userID, sku, sqlTime(since)).
		Scan(&o.UserID, &o.SKU, &o.ActivityID, &o.ActivityName, &o.StrategyID, &o.OrderID, &at,
			&o.Count.Total, &o.Count.Day, &o.Count.Month, &o.PayAmount, &o.State, &o.OutBusinessNo)
	if errors.Is(err, sql.ErrNoRows) {
		return activity.RechargeOrder{}, false, nil
	}
	if err != nil {
		return activity.RechargeOrder{}, false, fmt.Errorf("unpaid order of %s for sku %d: %w", userID, sku, err)
	}
	o.OrderTime = at.Time
	return o, true, nil
}
