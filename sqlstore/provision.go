package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/bigmarket/bigmarket/activity"
)

// provisionChunk bounds the users of one bulk recharge transaction.
const provisionChunk = 500

// RechargesExist implements activity.UserStore: one query per table holding the numbers.
func (s *UserStore) RechargesExist(ctx context.Context, numbers map[string]string) (map[string]bool, error) {
	type place struct{ db, table int }
	byPlace := map[place][]any{}
	users := make(map[string]string, len(numbers)) // number → user
	for user, no := range numbers {
		r := s.router.Route(user)
		p := place{r.DB, r.Table}
		byPlace[p] = append(byPlace[p], no)
		users[no] = user
	}
	found := map[string]bool{}
	for p, nos := range byPlace {
		for start := 0; start < len(nos); start += provisionChunk {
			part := nos[start:min(start+provisionChunk, len(nos))]
			err := queryEach(ctx, s.dbs[p.db].SQL, "SELECT out_business_no FROM raffle_activity_order"+TableSuffix(p.table)+
				" WHERE out_business_no IN "+Placeholders(1, len(part)), part, func(rows *sql.Rows) error {
				var no string
				if err := rows.Scan(&no); err != nil {
					return err
				}
				if u, ok := users[no]; ok {
					found[u] = true
				}
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("recharges exist: %w", err)
			}
		}
	}
	return found, nil
}

// RechargeMany implements activity.UserStore: the items of each user database in
// transactions of at most provisionChunk users, the databases in parallel. Each
// transaction reads which of its business numbers are already there and the quota rows of
// its keys locked (the same reads and writes as the draw writer's batch), runs add on the
// quota of every new order, and writes the quotas and the orders in multi-row statements.
// A number inserted meanwhile by another transaction fails the insert, and the
// transaction is run again, now skipping it.
func (s *UserStore) RechargeMany(ctx context.Context, items []activity.Recharging, add func(*activity.Quota)) ([]activity.Recharged, error) {
	byDB := make([][]activity.Recharging, len(s.dbs))
	for _, it := range items {
		o := it.Order
		if o.UserID != it.Key.UserID || o.ActivityID != it.Key.ActivityID || o.State != activity.RechargeCompleted ||
			o.OutBusinessNo == "" || o.OrderID == "" {
			return nil, fmt.Errorf("recharge many: order %s of %s/%d (%s) for key %s/%d", o.OrderID, o.UserID, o.ActivityID, o.State,
				it.Key.UserID, it.Key.ActivityID)
		}
		r := s.router.Route(it.Key.UserID)
		byDB[r.DB] = append(byDB[r.DB], it)
	}
	var (
		mu      sync.Mutex
		written []activity.Recharged
		errs    []error
		wg      sync.WaitGroup
	)
	for dbi, batch := range byDB {
		if len(batch) == 0 {
			continue
		}
		wg.Go(func() {
			for start := 0; start < len(batch); start += provisionChunk {
				chunk := batch[start:min(start+provisionChunk, len(batch))]
				var done []activity.Recharged
				err := s.inGroupTx(ctx, s.dbs[dbi], func(tx *sql.Tx, multi bool) error {
					var err error
					done, err = s.rechargeManyTx(ctx, tx, multi, dbi, chunk, add)
					return err
				})
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					written = append(written, done...)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return written, fmt.Errorf("recharge many (%d of %d written): %w", len(written), len(items), err)
	}
	return written, nil
}

func (s *UserStore) rechargeManyTx(ctx context.Context, tx *sql.Tx, multi bool, dbi int, chunk []activity.Recharging,
	add func(*activity.Quota)) ([]activity.Recharged, error) {
	d := s.dbs[dbi].Dialect
	nos := make([][]any, s.router.Tables)
	keys := make([]activity.QuotaKey, len(chunk))
	for i, it := range chunk {
		t := s.router.Route(it.Key.UserID).Table
		nos[t] = append(nos[t], it.Order.OutBusinessNo)
		keys[i] = it.Key
	}
	var reads script
	exists := map[string]bool{}
	for table, ids := range nos {
		if len(ids) == 0 {
			continue
		}
		reads.read("read recharge orders", "SELECT out_business_no FROM raffle_activity_order"+TableSuffix(table)+
			" WHERE out_business_no IN "+Placeholders(1, len(ids)), ids, func(rows *sql.Rows) error {
			var no string
			if err := rows.Scan(&no); err != nil {
				return err
			}
			exists[no] = true
			return nil
		})
	}
	states := readQuotas(&reads, d, keys, true)
	if err := reads.run(ctx, tx, multi); err != nil {
		return nil, err
	}
	started(states)
	now := sqlTime(s.now())
	var (
		changed []*quotaState
		orders  = make([][][]any, s.router.Tables)
		done    []activity.Recharged
	)
	for _, it := range chunk {
		o := it.Order
		if exists[o.OutBusinessNo] {
			continue
		}
		st := states[it.Key]
		q := st.cur.Clone()
		add(&q)
		st.cur = q
		changed = append(changed, st)
		t := s.router.Route(it.Key.UserID).Table
		orders[t] = append(orders[t], []any{o.UserID, o.SKU, o.ActivityID, o.ActivityName, o.StrategyID, o.OrderID,
			sqlTime(o.OrderTime), o.Count.Total, o.Count.Day, o.Count.Month, o.PayAmount.String(), string(o.State), o.OutBusinessNo, now})
		done = append(done, activity.Recharged{Key: it.Key, Quota: q.Clone()})
	}
	if len(done) == 0 {
		return nil, nil
	}
	var writes script
	if err := writeQuotas(&writes, changed, now); err != nil {
		return nil, err
	}
	for table, rows := range orders {
		if len(rows) > 0 {
			writes.write("insert recharge orders", insertSQL("raffle_activity_order"+TableSuffix(table), rechargeOrderInsertColumns, len(rows)),
				flatten(rows), len(rows), func(err error) error { return insertError("recharge orders", err) })
		}
	}
	if err := writes.run(ctx, tx, multi); err != nil {
		return nil, err
	}
	return done, nil
}

var rechargeOrderInsertColumns = append(strings.Split(rechargeOrderColumns, ", "), "update_time")
