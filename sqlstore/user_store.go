package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/go-sql-driver/mysql"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
)

// Retry of transactions that lost a lock race: MySQL deadlocks and lock wait timeouts,
// SQLITE_BUSY, and the rare conflicts the write guards detect.
const (
	txRetries     = 3
	txBackoffBase = 5 * time.Millisecond
)

// MySQL error numbers that mean "run the transaction again".
const (
	mysqlLockWaitTimeout = 1205
	mysqlDeadlock        = 1213
)

// errConflict means a guarded write found its row changed or already created by another
// transaction; the whole transaction is retried.
var errConflict = errors.New("concurrent quota change")

// UserStore keeps users' quota accounts, raffle and recharge orders, award records and
// outbox tasks in the sharded user databases. Every method routes by the user id with the
// big-market Router, and every write is one transaction on the user's database, retried a
// few times when it loses a lock race. It implements activity.UserStore.
type UserStore struct {
	dbs    []*DB
	router Router
	shards [][]*userSQL // [database][table]: the statements of that shard
	now    func() time.Time
}

var _ activity.UserStore = (*UserStore)(nil)

// NewUserStore returns a UserStore on the migrated user databases, dbs[i] being database
// i of router. It builds every shard's statements once, so no call formats SQL. It panics
// when the number of databases does not match the router, a wiring mistake.
func NewUserStore(dbs []*DB, router Router) *UserStore {
	if len(dbs) != router.DBs || router.Tables < 1 {
		panic(fmt.Sprintf("sqlstore: NewUserStore with %d databases for a %dx%d router", len(dbs), router.DBs, router.Tables))
	}
	s := &UserStore{dbs: dbs, router: router, now: time.Now, shards: make([][]*userSQL, len(dbs))}
	for i, db := range dbs {
		s.shards[i] = make([]*userSQL, router.Tables)
		for t := range router.Tables {
			s.shards[i][t] = newUserSQL(db.Dialect, TableSuffix(t))
		}
	}
	return s
}

// shard is one user's database and the statements of the user's tables in it.
type shard struct {
	db  *DB
	sql *userSQL
}

// route returns the user's shard.
func (s *UserStore) route(userID string) shard {
	r := s.router.Route(userID)
	return shard{db: s.dbs[r.DB], sql: s.shards[r.DB][r.Table]}
}

// Statements on the per-database tables, the same in both dialects.
const (
	sqlInsertAccount = `INSERT INTO raffle_activity_account (user_id, activity_id, total_count, total_count_surplus,
		day_count, day_count_surplus, month_count, month_count_surplus, update_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// sqlUpdateAccount applies deltas and refuses (0 rows) to take any surplus below zero,
	// a guard that holds even if the row lock were missing.
	sqlUpdateAccount = `UPDATE raffle_activity_account SET total_count = total_count + ?,
		total_count_surplus = total_count_surplus + ?, day_count = day_count + ?, day_count_surplus = day_count_surplus + ?,
		month_count = month_count + ?, month_count_surplus = month_count_surplus + ?, update_time = ?
		WHERE user_id = ? AND activity_id = ?
		AND total_count_surplus + ? >= 0 AND day_count_surplus + ? >= 0 AND month_count_surplus + ? >= 0`
	sqlInsertMonth = `INSERT INTO raffle_activity_account_month (user_id, activity_id, month, month_count,
		month_count_surplus, update_time) VALUES (?, ?, ?, ?, ?, ?)`
	sqlUpdateMonth = `UPDATE raffle_activity_account_month SET month_count = month_count + ?,
		month_count_surplus = month_count_surplus + ?, update_time = ?
		WHERE user_id = ? AND activity_id = ? AND month = ? AND month_count_surplus + ? >= 0`
	sqlInsertDay = `INSERT INTO raffle_activity_account_day (user_id, activity_id, day, day_count,
		day_count_surplus, update_time) VALUES (?, ?, ?, ?, ?, ?)`
	sqlUpdateDay = `UPDATE raffle_activity_account_day SET day_count = day_count + ?,
		day_count_surplus = day_count_surplus + ?, update_time = ?
		WHERE user_id = ? AND activity_id = ? AND day = ? AND day_count_surplus + ? >= 0`
	sqlInsertTask = `INSERT INTO task (user_id, topic, message_id, message, state, update_time) VALUES (?, ?, ?, ?, ?, ?)`
	sqlTasks      = `SELECT user_id, topic, message_id, message, state FROM task WHERE user_id = ? ORDER BY id`
)

// Column lists shared by inserts and reads.
const (
	raffleOrderColumns   = "user_id, activity_id, activity_name, strategy_id, order_id, order_time, order_state"
	awardRecordColumns   = "user_id, activity_id, strategy_id, order_id, award_id, award_title, award_time, award_state"
	rechargeOrderColumns = "user_id, sku, activity_id, activity_name, strategy_id, order_id, order_time, " +
		"total_count, day_count, month_count, pay_amount, state, out_business_no"
)

// userSQL holds the statements of one shard: the sharded tables' names carry the router's
// suffix, the only text ever spliced into them.
type userSQL struct {
	quota, quotaLocked  string // account, month and day rows in one round trip; locked: FOR UPDATE (MySQL)
	unusedOrder         string
	insertRaffleOrder   string
	raffleOrders        string
	useRaffleOrder      string
	insertAwardRecord   string
	awardRecords        string
	rechargeExists      string
	insertRechargeOrder string
	rechargeOrders      string
}

func newUserSQL(d Dialect, sfx string) *userSQL {
	return &userSQL{
		quota:       quotaSQL(d, false),
		quotaLocked: quotaSQL(d, true),
		unusedOrder: "SELECT " + raffleOrderColumns + " FROM user_raffle_order" + sfx +
			" WHERE user_id = ? AND activity_id = ? AND order_state = 'create' ORDER BY order_time, id LIMIT 1",
		insertRaffleOrder: "INSERT INTO user_raffle_order" + sfx + " (" + raffleOrderColumns + ", update_time) VALUES " +
			Placeholders(1, 8),
		raffleOrders: "SELECT " + raffleOrderColumns + " FROM user_raffle_order" + sfx +
			" WHERE user_id = ? AND activity_id = ? ORDER BY order_time, id",
		useRaffleOrder: "UPDATE user_raffle_order" + sfx + " SET order_state = 'used', update_time = ?" +
			" WHERE order_id = ? AND user_id = ? AND order_state = 'create'",
		insertAwardRecord: "INSERT INTO user_award_record" + sfx + " (" + awardRecordColumns + ", update_time) VALUES " +
			Placeholders(1, 9),
		awardRecords: "SELECT " + awardRecordColumns + " FROM user_award_record" + sfx +
			" WHERE user_id = ? AND activity_id = ? ORDER BY award_time, id",
		rechargeExists: "SELECT 1 FROM raffle_activity_order" + sfx + " WHERE out_business_no = ? LIMIT 1",
		insertRechargeOrder: "INSERT INTO raffle_activity_order" + sfx + " (" + rechargeOrderColumns + ", update_time) VALUES " +
			Placeholders(1, 14),
		rechargeOrders: "SELECT " + rechargeOrderColumns + " FROM raffle_activity_order" + sfx +
			" WHERE user_id = ? ORDER BY order_time, id",
	}
}

// quotaSQL reads the account, month and day rows of a quota key in one statement, each
// row tagged a, m or d. Locked on MySQL, every part carries FOR UPDATE and the parts run
// in order, so the account row is locked first: that serialises a user's participations
// in an activity, and the lazily inserted month and day rows cannot deadlock. SQLite's
// BEGIN IMMEDIATE already holds the database's write lock.
func quotaSQL(d Dialect, locked bool) string {
	parts := []string{
		`SELECT 'a', total_count, total_count_surplus, day_count, day_count_surplus, month_count, month_count_surplus
		FROM raffle_activity_account WHERE user_id = ? AND activity_id = ?`,
		`SELECT 'm', month_count, month_count_surplus, 0, 0, 0, 0
		FROM raffle_activity_account_month WHERE user_id = ? AND activity_id = ? AND month = ?`,
		`SELECT 'd', day_count, day_count_surplus, 0, 0, 0, 0
		FROM raffle_activity_account_day WHERE user_id = ? AND activity_id = ? AND day = ?`,
	}
	if locked && d == MySQL {
		for i, p := range parts {
			parts[i] = "(" + p + d.ForUpdate() + ")"
		}
	}
	return parts[0] + " UNION ALL " + parts[1] + " UNION ALL " + parts[2]
}

// quotaArgs are quotaSQL's arguments.
func quotaArgs(key activity.QuotaKey) []any {
	return []any{key.UserID, key.ActivityID, key.UserID, key.ActivityID, key.Month, key.UserID, key.ActivityID, key.Day}
}

// queryer is what reads need of *sql.DB and *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// loadQuota runs a quotaSQL statement.
func loadQuota(ctx context.Context, q queryer, query string, key activity.QuotaKey) (activity.Quota, error) {
	rows, err := q.QueryContext(ctx, query, quotaArgs(key)...)
	if err != nil {
		return activity.Quota{}, fmt.Errorf("load quota: %w", err)
	}
	defer rows.Close()
	var quota activity.Quota
	for rows.Next() {
		var (
			kind string
			c    [6]int64
		)
		if err := rows.Scan(&kind, &c[0], &c[1], &c[2], &c[3], &c[4], &c[5]); err != nil {
			return activity.Quota{}, fmt.Errorf("scan quota: %w", err)
		}
		switch kind {
		case "a":
			quota.Account = &activity.Account{Total: c[0], TotalSurplus: c[1], Day: c[2], DaySurplus: c[3], Month: c[4], MonthSurplus: c[5]}
		case "m":
			quota.Month = &activity.Period{Key: key.Month, Count: c[0], Surplus: c[1]}
		case "d":
			quota.Day = &activity.Period{Key: key.Day, Count: c[0], Surplus: c[1]}
		}
	}
	if err := rows.Err(); err != nil {
		return activity.Quota{}, fmt.Errorf("load quota: %w", err)
	}
	return quota, nil
}

// Quota implements activity.UserStore: one unlocked statement.
func (s *UserStore) Quota(ctx context.Context, key activity.QuotaKey) (activity.Quota, error) {
	sh := s.route(key.UserID)
	q, err := loadQuota(ctx, sh.db.SQL, sh.sql.quota, key)
	if err != nil {
		return activity.Quota{}, fmt.Errorf("quota %s/%d: %w", key.UserID, key.ActivityID, err)
	}
	return q, nil
}

// UnusedOrder implements activity.UserStore.
func (s *UserStore) UnusedOrder(ctx context.Context, userID string, activityID int64) (activity.RaffleOrder, bool, error) {
	sh := s.route(userID)
	o, err := scanRaffleOrder(sh.db.SQL.QueryRowContext(ctx, sh.sql.unusedOrder, userID, activityID))
	if errors.Is(err, sql.ErrNoRows) {
		return activity.RaffleOrder{}, false, nil
	}
	if err != nil {
		return activity.RaffleOrder{}, false, fmt.Errorf("unused order %s/%d: %w", userID, activityID, err)
	}
	return o, true, nil
}

// Participate implements activity.UserStore. In one transaction it locks the account row
// first, then the month and day rows (one statement), runs take, writes the changes and
// inserts order. take's error is returned as it is, and nothing changes.
func (s *UserStore) Participate(ctx context.Context, key activity.QuotaKey, order activity.RaffleOrder, take func(*activity.Quota) error) (activity.Quota, error) {
	order, err := s.raffleOrderFor(key, order)
	if err != nil {
		return activity.Quota{}, fmt.Errorf("participate %s/%d: %w", key.UserID, key.ActivityID, err)
	}
	sh := s.route(key.UserID)
	var (
		out     activity.Quota
		takeErr error
	)
	err = s.inTx(ctx, sh.db, func(tx *sql.Tx) error {
		takeErr = nil
		q, err := loadQuota(ctx, tx, sh.sql.quotaLocked, key)
		if err != nil {
			return err
		}
		before := cloneQuota(q)
		if err := take(&q); err != nil {
			takeErr = err
			return err
		}
		now := sqlTime(s.now())
		if err := writeQuota(ctx, tx, key, before, q, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, sh.sql.insertRaffleOrder, order.UserID, order.ActivityID, order.ActivityName,
			order.StrategyID, order.OrderID, sqlTime(order.OrderTime), string(order.State), now); err != nil {
			return fmt.Errorf("insert raffle order %s: %w", order.OrderID, err)
		}
		out = q
		return nil
	})
	if takeErr != nil && errors.Is(err, takeErr) {
		return activity.Quota{}, takeErr
	}
	if err != nil {
		return activity.Quota{}, fmt.Errorf("participate %s/%d: %w", key.UserID, key.ActivityID, err)
	}
	return out, nil
}

// raffleOrderFor fills order's user, activity, time and state from key where unset and
// refuses an order that belongs elsewhere, which would land in another user's shard.
func (s *UserStore) raffleOrderFor(key activity.QuotaKey, o activity.RaffleOrder) (activity.RaffleOrder, error) {
	if o.UserID == "" {
		o.UserID = key.UserID
	}
	if o.ActivityID == 0 {
		o.ActivityID = key.ActivityID
	}
	if o.UserID != key.UserID || o.ActivityID != key.ActivityID {
		return o, fmt.Errorf("raffle order %s is for %s/%d", o.OrderID, o.UserID, o.ActivityID)
	}
	if o.OrderTime.IsZero() {
		o.OrderTime = s.now()
	}
	if o.State == "" {
		o.State = activity.OrderCreate
	}
	return o, nil
}

// RechargeExists implements activity.UserStore.
func (s *UserStore) RechargeExists(ctx context.Context, userID, outBusinessNo string) (bool, error) {
	sh := s.route(userID)
	var one int
	err := sh.db.SQL.QueryRowContext(ctx, sh.sql.rechargeExists, outBusinessNo).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("recharge exists %s/%s: %w", userID, outBusinessNo, err)
	}
	return true, nil
}

// Recharge implements activity.UserStore. The order's unique keys (order_id,
// out_business_no) make a repeated recharge fail with activity.ErrDuplicateOrder before
// any quota is touched.
func (s *UserStore) Recharge(ctx context.Context, key activity.QuotaKey, order activity.RechargeOrder, add func(*activity.Quota)) error {
	if order.UserID == "" {
		order.UserID = key.UserID
	}
	if order.ActivityID == 0 {
		order.ActivityID = key.ActivityID
	}
	if order.UserID != key.UserID || order.ActivityID != key.ActivityID {
		return fmt.Errorf("recharge %s/%d: order %s is for %s/%d", key.UserID, key.ActivityID, order.OrderID, order.UserID, order.ActivityID)
	}
	if order.OrderTime.IsZero() {
		order.OrderTime = s.now()
	}
	sh := s.route(key.UserID)
	err := s.inTx(ctx, sh.db, func(tx *sql.Tx) error {
		now := sqlTime(s.now())
		_, err := tx.ExecContext(ctx, sh.sql.insertRechargeOrder, order.UserID, order.SKU, order.ActivityID,
			order.ActivityName, order.StrategyID, order.OrderID, sqlTime(order.OrderTime), order.Count.Total,
			order.Count.Day, order.Count.Month, order.PayAmount.String(), string(order.State), order.OutBusinessNo, now)
		if IsDuplicate(err) {
			return fmt.Errorf("order %s, out_business_no %s: %w", order.OrderID, order.OutBusinessNo, activity.ErrDuplicateOrder)
		}
		if err != nil {
			return fmt.Errorf("insert recharge order %s: %w", order.OrderID, err)
		}
		if order.State != activity.RechargeCompleted {
			return nil
		}
		q, err := loadQuota(ctx, tx, sh.sql.quotaLocked, key)
		if err != nil {
			return err
		}
		before := cloneQuota(q)
		add(&q)
		return writeQuota(ctx, tx, key, before, q, now)
	})
	if err != nil {
		return fmt.Errorf("recharge %s/%d: %w", key.UserID, key.ActivityID, err)
	}
	return nil
}

// RecordAward writes a draw's award record and its outbox task in one transaction with
// marking the raffle order used, so an order authorises exactly one award. An order that
// is used, cancelled or missing, or a record or task that already exists, is an error
// wrapping activity.ErrOrderUsed and nothing is written.
func (s *UserStore) RecordAward(ctx context.Context, rec award.Record, task award.Task) error {
	if task.UserID == "" {
		task.UserID = rec.UserID
	}
	if task.UserID != rec.UserID {
		return fmt.Errorf("record award %s/%s: task is for %s", rec.UserID, rec.OrderID, task.UserID)
	}
	if rec.AwardTime.IsZero() {
		rec.AwardTime = s.now()
	}
	if rec.State == "" {
		rec.State = award.StateCreate
	}
	if task.State == "" {
		task.State = award.TaskCreate
	}
	sh := s.route(rec.UserID)
	err := s.inTx(ctx, sh.db, func(tx *sql.Tx) error {
		now := sqlTime(s.now())
		res, err := tx.ExecContext(ctx, sh.sql.useRaffleOrder, now, rec.OrderID, rec.UserID)
		if err != nil {
			return fmt.Errorf("use raffle order: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("use raffle order: %w", err)
		} else if n == 0 {
			return activity.ErrOrderUsed
		}
		_, err = tx.ExecContext(ctx, sh.sql.insertAwardRecord, rec.UserID, rec.ActivityID, rec.StrategyID, rec.OrderID,
			rec.AwardID, rec.AwardTitle, sqlTime(rec.AwardTime), string(rec.State), now)
		if IsDuplicate(err) {
			return fmt.Errorf("award record exists: %w", activity.ErrOrderUsed)
		}
		if err != nil {
			return fmt.Errorf("insert award record: %w", err)
		}
		_, err = tx.ExecContext(ctx, sqlInsertTask, task.UserID, task.Topic, task.MessageID, task.Message, string(task.State), now)
		if IsDuplicate(err) {
			return fmt.Errorf("task %s exists: %w", task.MessageID, activity.ErrOrderUsed)
		}
		if err != nil {
			return fmt.Errorf("insert task %s: %w", task.MessageID, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record award %s/%s: %w", rec.UserID, rec.OrderID, err)
	}
	return nil
}

// AwardRecords returns the user's award records in the activity, oldest first.
func (s *UserStore) AwardRecords(ctx context.Context, userID string, activityID int64) ([]award.Record, error) {
	sh := s.route(userID)
	var recs []award.Record
	err := queryEach(ctx, sh.db.SQL, sh.sql.awardRecords, []any{userID, activityID}, func(rows *sql.Rows) error {
		var (
			r  award.Record
			at nullTime
		)
		if err := rows.Scan(&r.UserID, &r.ActivityID, &r.StrategyID, &r.OrderID, &r.AwardID, &r.AwardTitle, &at, &r.State); err != nil {
			return err
		}
		r.AwardTime = at.Time
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("award records %s/%d: %w", userID, activityID, err)
	}
	return recs, nil
}

// Tasks returns the user's outbox tasks in insertion order.
func (s *UserStore) Tasks(ctx context.Context, userID string) ([]award.Task, error) {
	sh := s.route(userID)
	var tasks []award.Task
	err := queryEach(ctx, sh.db.SQL, sqlTasks, []any{userID}, func(rows *sql.Rows) error {
		var t award.Task
		if err := rows.Scan(&t.UserID, &t.Topic, &t.MessageID, &t.Message, &t.State); err != nil {
			return err
		}
		tasks = append(tasks, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tasks %s: %w", userID, err)
	}
	return tasks, nil
}

// RaffleOrders returns the user's raffle orders in the activity, oldest first.
func (s *UserStore) RaffleOrders(ctx context.Context, userID string, activityID int64) ([]activity.RaffleOrder, error) {
	sh := s.route(userID)
	var orders []activity.RaffleOrder
	err := queryEach(ctx, sh.db.SQL, sh.sql.raffleOrders, []any{userID, activityID}, func(rows *sql.Rows) error {
		o, err := scanRaffleOrder(rows)
		if err != nil {
			return err
		}
		orders = append(orders, o)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("raffle orders %s/%d: %w", userID, activityID, err)
	}
	return orders, nil
}

// RechargeOrders returns the user's recharge orders, oldest first. Count.ID is not stored
// with an order and reads back as zero.
func (s *UserStore) RechargeOrders(ctx context.Context, userID string) ([]activity.RechargeOrder, error) {
	sh := s.route(userID)
	var orders []activity.RechargeOrder
	err := queryEach(ctx, sh.db.SQL, sh.sql.rechargeOrders, []any{userID}, func(rows *sql.Rows) error {
		var (
			o  activity.RechargeOrder
			at nullTime
		)
		if err := rows.Scan(&o.UserID, &o.SKU, &o.ActivityID, &o.ActivityName, &o.StrategyID, &o.OrderID, &at,
			&o.Count.Total, &o.Count.Day, &o.Count.Month, &o.PayAmount, &o.State, &o.OutBusinessNo); err != nil {
			return err
		}
		o.OrderTime = at.Time
		orders = append(orders, o)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recharge orders %s: %w", userID, err)
	}
	return orders, nil
}

// scanRaffleOrder scans raffleOrderColumns.
func scanRaffleOrder(row interface{ Scan(...any) error }) (activity.RaffleOrder, error) {
	var (
		o  activity.RaffleOrder
		at nullTime
	)
	if err := row.Scan(&o.UserID, &o.ActivityID, &o.ActivityName, &o.StrategyID, &o.OrderID, &at, &o.State); err != nil {
		return activity.RaffleOrder{}, err
	}
	o.OrderTime = at.Time
	return o, nil
}

// cloneQuota copies q's rows, so that what take or add changes can be compared with
// what was loaded.
func cloneQuota(q activity.Quota) activity.Quota {
	var c activity.Quota
	if q.Account != nil {
		a := *q.Account
		c.Account = &a
	}
	if q.Month != nil {
		m := *q.Month
		c.Month = &m
	}
	if q.Day != nil {
		d := *q.Day
		c.Day = &d
	}
	return c
}

// writeQuota writes what changed from before to after: an UPDATE by deltas (guarded
// against going below zero) for rows that existed, an INSERT for rows that became
// non-nil. Rows cannot be deleted, period keys must be the key's, and no count may be
// negative.
func writeQuota(ctx context.Context, tx *sql.Tx, key activity.QuotaKey, before, after activity.Quota, now time.Time) error {
	if err := checkQuota(key, before, after); err != nil {
		return err
	}
	if a, b := after.Account, before.Account; a != nil {
		switch {
		case b == nil:
			if _, err := tx.ExecContext(ctx, sqlInsertAccount, key.UserID, key.ActivityID, a.Total, a.TotalSurplus,
				a.Day, a.DaySurplus, a.Month, a.MonthSurplus, now); err != nil {
				return insertError("account", err)
			}
		case *a != *b:
			dt, dts := a.Total-b.Total, a.TotalSurplus-b.TotalSurplus
			dd, dds := a.Day-b.Day, a.DaySurplus-b.DaySurplus
			dm, dms := a.Month-b.Month, a.MonthSurplus-b.MonthSurplus
			if err := execOne(ctx, tx, "account", sqlUpdateAccount, dt, dts, dd, dds, dm, dms, now,
				key.UserID, key.ActivityID, dts, dds, dms); err != nil {
				return err
			}
		}
	}
	if err := writePeriod(ctx, tx, "month", sqlInsertMonth, sqlUpdateMonth, key, key.Month, before.Month, after.Month, now); err != nil {
		return err
	}
	return writePeriod(ctx, tx, "day", sqlInsertDay, sqlUpdateDay, key, key.Day, before.Day, after.Day, now)
}

// writePeriod writes one month or day row for writeQuota.
func writePeriod(ctx context.Context, tx *sql.Tx, name, insert, update string, key activity.QuotaKey, period string, b, a *activity.Period, now time.Time) error {
	switch {
	case a == nil:
		return nil
	case b == nil:
		if _, err := tx.ExecContext(ctx, insert, key.UserID, key.ActivityID, period, a.Count, a.Surplus, now); err != nil {
			return insertError(name, err)
		}
	case *a != *b:
		ds := a.Surplus - b.Surplus
		return execOne(ctx, tx, name, update, a.Count-b.Count, ds, now, key.UserID, key.ActivityID, period, ds)
	}
	return nil
}

// checkQuota refuses writes the store cannot or must not make.
func checkQuota(key activity.QuotaKey, before, after activity.Quota) error {
	if (before.Account != nil && after.Account == nil) || (before.Month != nil && after.Month == nil) ||
		(before.Day != nil && after.Day == nil) {
		return errors.New("quota rows cannot be removed")
	}
	if a := after.Account; a != nil && min(a.Total, a.TotalSurplus, a.Day, a.DaySurplus, a.Month, a.MonthSurplus) < 0 {
		return fmt.Errorf("account would go negative: %+v", *a)
	}
	for _, p := range []struct {
		p   *activity.Period
		key string
	}{{after.Month, key.Month}, {after.Day, key.Day}} {
		if p.p == nil {
			continue
		}
		if p.p.Key != p.key {
			return fmt.Errorf("quota period %q written for key %q", p.p.Key, p.key)
		}
		if min(p.p.Count, p.p.Surplus) < 0 {
			return fmt.Errorf("period %s would go negative: %+v", p.key, *p.p)
		}
	}
	return nil
}

// execOne runs a guarded UPDATE that must change exactly one row; no row means the guard
// or the row's existence failed under a concurrent writer, and the transaction is retried.
func execOne(ctx context.Context, tx *sql.Tx, name, query string, args ...any) error {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("update %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("update %s: %w", name, err)
	}
	if n != 1 {
		return fmt.Errorf("update %s changed %d rows: %w", name, n, errConflict)
	}
	return nil
}

// insertError wraps a failed quota row INSERT; a duplicate means another transaction
// created the row first (possible on MySQL when the account did not exist yet), so the
// transaction is retried and then sees it.
func insertError(name string, err error) error {
	if IsDuplicate(err) {
		return fmt.Errorf("insert %s: %w (%w)", name, errConflict, err)
	}
	return fmt.Errorf("insert %s: %w", name, err)
}

// sqlTime is how the user store writes times: UTC, whole seconds, which both dialects'
// DATETIME columns store exactly (MariaDB truncates fractions, MySQL rounds them).
func sqlTime(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

// inTx runs fn in a transaction on db and commits it, retrying the whole transaction up
// to txRetries times with a jittered backoff when it lost a lock race.
func (s *UserStore) inTx(ctx context.Context, db *DB, fn func(*sql.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := runTx(ctx, db, fn)
		if err == nil || attempt >= txRetries || !retryable(err) {
			return err
		}
		backoff := txBackoffBase << attempt
		backoff += rand.N(backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}

// runTx runs fn in one transaction: commit on success, rollback otherwise.
func runTx(ctx context.Context, db *DB, fn func(*sql.Tx) error) error {
	tx, err := db.SQL.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// retryable reports whether err means the transaction lost a race and may succeed when
// run again: a MySQL deadlock or lock wait timeout, SQLITE_BUSY, or errConflict.
func retryable(err error) bool {
	if errors.Is(err, errConflict) {
		return true
	}
	if me, ok := errors.AsType[*mysql.MySQLError](err); ok {
		return me.Number == mysqlDeadlock || me.Number == mysqlLockWaitTimeout
	}
	if se, ok := errors.AsType[*sqlite.Error](err); ok {
		return se.Code()&0xff == sqlite3.SQLITE_BUSY
	}
	return false
}
