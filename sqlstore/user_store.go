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
	"github.com/bigmarket/bigmarket/outbox"
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
// few times when it loses a lock race; the draw writer's writes go in batches (ApplyDraws).
// It implements activity.UserStore.
type UserStore struct {
	dbs    []*DB
	router Router
	shards [][]*userSQL // [database][table]: the statements of that shard
	now    func() time.Time

	committed func([]outbox.Task) // told of tasks once their transaction committed; may be nil

	quotaReads quotaReads // Quota's read groups, by database
}

var _ activity.UserStore = (*UserStore)(nil)

// NewUserStore returns a UserStore on the migrated user databases, dbs[i] being database
// i of router. It builds the single-row statements of every shard once; batched writes
// (the draw writer's) build theirs per transaction. It panics when the number of
// databases does not match the router, a wiring mistake.
func NewUserStore(dbs []*DB, router Router) *UserStore {
	return NewUserStoreWith(dbs, router, UserOptions{})
}

// UserOptions configure a UserStore beyond its databases.
type UserOptions struct {
	// Committed is told of the tasks every transaction of the store wrote, once it has
	// committed: the outbox relay's feed (outbox.Queue.Committed). It must not block.
	// nil: the tasks wait for the relay's compensation job.
	Committed func([]outbox.Task)
}

// NewUserStoreWith is NewUserStore with committed tasks told as opts says.
func NewUserStoreWith(dbs []*DB, router Router, opts UserOptions) *UserStore {
	if len(dbs) != router.DBs || router.Tables < 1 {
		panic(fmt.Sprintf("sqlstore: NewUserStore with %d databases for a %dx%d router", len(dbs), router.DBs, router.Tables))
	}
	s := &UserStore{dbs: dbs, router: router, now: time.Now, shards: make([][]*userSQL, len(dbs)), committed: opts.Committed}
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
	raffleOrders        string
	awardRecords        string
	rechargeExists      string
	insertRechargeOrder string
	rechargeOrders      string
}

func newUserSQL(d Dialect, sfx string) *userSQL {
	return &userSQL{
		raffleOrders: "SELECT " + raffleOrderColumns + " FROM user_raffle_order" + sfx +
			" WHERE user_id = ? AND activity_id = ? ORDER BY order_time, id",
		awardRecords: "SELECT " + awardRecordColumns + " FROM user_award_record" + sfx +
			" WHERE user_id = ? AND activity_id = ? ORDER BY award_time, id",
		rechargeExists: "SELECT 1 FROM raffle_activity_order" + sfx + " WHERE out_business_no = ? LIMIT 1",
		insertRechargeOrder: "INSERT INTO raffle_activity_order" + sfx + " (" + rechargeOrderColumns + ", update_time) VALUES " +
			Placeholders(1, 14),
		rechargeOrders: "SELECT " + rechargeOrderColumns + " FROM raffle_activity_order" + sfx +
			" WHERE user_id = ? ORDER BY order_time, id",
	}
}

// queryer is what reads need of *sql.DB and *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
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
		return updateQuota(ctx, tx, sh.db.Dialect, key, now, add)
	})
	if err != nil {
		return fmt.Errorf("recharge %s/%d: %w", key.UserID, key.ActivityID, err)
	}
	return nil
}

// AwardRecords returns the user's award records in the activity, oldest first.
func (s *UserStore) AwardRecords(ctx context.Context, userID string, activityID int64) ([]award.Record, error) {
	sh := s.route(userID)
	var recs []award.Record
	err := queryEach(ctx, sh.db.SQL, sh.sql.awardRecords, []any{userID, activityID}, func(rows *sql.Rows) error {
		r, err := scanAwardRecord(rows)
		if err != nil {
			return err
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("award records %s/%d: %w", userID, activityID, err)
	}
	return recs, nil
}

// scanAwardRecord reads a row of awardRecordColumns.
func scanAwardRecord(rows *sql.Rows) (award.Record, error) {
	var (
		r  award.Record
		at NullTime
	)
	err := rows.Scan(&r.UserID, &r.ActivityID, &r.StrategyID, &r.OrderID, &r.AwardID, &r.AwardTitle, &at, &r.State)
	r.AwardTime = at.Time
	return r, err
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
			at NullTime
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
		at NullTime
	)
	if err := row.Scan(&o.UserID, &o.ActivityID, &o.ActivityName, &o.StrategyID, &o.OrderID, &at, &o.State); err != nil {
		return activity.RaffleOrder{}, err
	}
	o.OrderTime = at.Time
	return o, nil
}

// sqlTime is how the user store writes times: UTC, whole seconds, which both dialects'
// DATETIME columns store exactly (MariaDB truncates fractions, MySQL rounds them).
func sqlTime(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

// inTx runs fn in a transaction on db and commits it, retrying the whole transaction up
// to txRetries times with a jittered backoff when it lost a lock race.
func (s *UserStore) inTx(ctx context.Context, db *DB, fn func(*sql.Tx) error) error {
	return retryTx(ctx, db.SQL, fn)
}

// inGroupTx is inTx for grouped transactions: on MySQL it runs on the multi-statement pool,
// and fn is told so, to send each of its scripts in one round trip.
func (s *UserStore) inGroupTx(ctx context.Context, db *DB, fn func(tx *sql.Tx, multi bool) error) error {
	if db.multi != nil {
		return retryTx(ctx, db.multi, func(tx *sql.Tx) error { return fn(tx, true) })
	}
	return retryTx(ctx, db.SQL, func(tx *sql.Tx) error { return fn(tx, false) })
}

// retryTx runs fn in a transaction on pool, again when it lost a lock race (see inTx).
func retryTx(ctx context.Context, pool *sql.DB, fn func(*sql.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := runTx(ctx, pool, fn)
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
func runTx(ctx context.Context, pool *sql.DB, fn func(*sql.Tx) error) error {
	tx, err := pool.BeginTx(ctx, nil)
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
