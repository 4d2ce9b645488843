package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/bigmarket/bigmarket/outbox"
)

var _ outbox.Store = (*UserStore)(nil)

// taskInsertColumns are the columns of a task INSERT; create_time is written from the
// store's clock, so that the compensation job's grace is measured on one clock.
var taskInsertColumns = []string{"user_id", "topic", "message_id", "message", "state", "create_time", "update_time"}

// writeTasks adds the INSERT of tasks, if any, to sc.
func writeTasks(sc *script, tasks []outbox.Task, now time.Time) {
	if len(tasks) == 0 {
		return
	}
	rows := make([][]any, len(tasks))
	for i, t := range tasks {
		state := t.State
		if state == "" {
			state = outbox.Create
		}
		rows[i] = []any{t.UserID, t.Topic, t.MessageID, t.Message, string(state), now, now}
	}
	sc.write("insert tasks", insertSQL("task", taskInsertColumns, len(rows)), flatten(rows), len(rows), nil)
}

// tasksCommitted tells UserOptions.Committed of tasks whose transaction has committed.
func (s *UserStore) tasksCommitted(tasks []outbox.Task) {
	if len(tasks) > 0 && s.committed != nil {
		s.committed(tasks)
	}
}

// sqlTasks reads a user's outbox tasks; task is per database, not sharded by table.
const sqlTasks = `SELECT user_id, topic, message_id, message, state, create_time FROM task WHERE user_id = ? ORDER BY id`

// Tasks returns the user's outbox tasks in insertion order.
func (s *UserStore) Tasks(ctx context.Context, userID string) ([]outbox.Task, error) {
	sh := s.route(userID)
	var tasks []outbox.Task
	err := queryEach(ctx, sh.db.SQL, sqlTasks, []any{userID}, func(rows *sql.Rows) error {
		t, err := scanTask(rows)
		tasks = append(tasks, t)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tasks %s: %w", userID, err)
	}
	return tasks, nil
}

func scanTask(rows *sql.Rows) (outbox.Task, error) {
	var (
		t  outbox.Task
		at NullTime
	)
	err := rows.Scan(&t.UserID, &t.Topic, &t.MessageID, &t.Message, &t.State, &at)
	t.Created = at.Time
	return t, err
}

// MarkTasks implements outbox.Store: one UPDATE per user database.
func (s *UserStore) MarkTasks(ctx context.Context, tasks []outbox.Task, state outbox.State) error {
	byDB := make([][]any, len(s.dbs))
	for _, t := range tasks {
		dbi := s.router.Route(t.UserID).DB
		byDB[dbi] = append(byDB[dbi], t.MessageID)
	}
	for dbi, ids := range byDB {
		if err := s.markTasks(ctx, s.dbs[dbi].SQL.ExecContext, ids, state); err != nil {
			return err
		}
	}
	return nil
}

// markTasks moves the tasks with message ids ids, of one database, that are still in
// create or fail to state, with exec (a pool's or a transaction's).
func (s *UserStore) markTasks(ctx context.Context, exec func(ctx context.Context, query string, args ...any) (sql.Result, error),
	ids []any, state outbox.State) error {
	if len(ids) == 0 {
		return nil
	}
	args := append([]any{string(state), sqlTime(s.now())}, ids...)
	if _, err := exec(ctx, "UPDATE task SET state = ?, update_time = ? WHERE message_id IN "+Placeholders(1, len(ids))+
		" AND state IN ('create', 'fail')", args...); err != nil {
		return fmt.Errorf("mark %d tasks %s: %w", len(ids), state, err)
	}
	return nil
}

// ResendTasks implements outbox.Store. On MySQL each database's claim is a transaction
// that locks the rows it selects with SKIP LOCKED, so concurrent nodes claim different
// tasks and none waits; the locks are held while send publishes. On SQLite, one process
// owns the files and the claim is a plain read: holding SQLite's write lock across a
// publish would stall every write of the database.
func (s *UserStore) ResendTasks(ctx context.Context, before time.Time, limit int,
	send func(ctx context.Context, tasks []outbox.Task) []error) (int, error) {
	total := 0
	for _, db := range s.dbs {
		n, err := s.resendTasks(ctx, db, sqlTime(before), limit, send)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (s *UserStore) resendTasks(ctx context.Context, db *DB, before time.Time, limit int,
	send func(ctx context.Context, tasks []outbox.Task) []error) (int, error) {
	query := "SELECT user_id, topic, message_id, message, state, create_time FROM task" +
		" WHERE state IN ('create', 'fail') AND create_time < ? LIMIT ?" + db.Dialect.ForUpdateSkipLocked()
	claim := func(q queryer, exec func(ctx context.Context, query string, args ...any) (sql.Result, error)) (int, error) {
		var tasks []outbox.Task
		if err := queryEach(ctx, q, query, []any{before, limit}, func(rows *sql.Rows) error {
			t, err := scanTask(rows)
			tasks = append(tasks, t)
			return err
		}); err != nil {
			return 0, fmt.Errorf("claim tasks: %w", err)
		}
		if len(tasks) == 0 {
			return 0, nil
		}
		errs := send(ctx, tasks)
		var ok, failed []any
		for i, t := range tasks {
			if i < len(errs) && errs[i] == nil {
				ok = append(ok, t.MessageID)
			} else {
				failed = append(failed, t.MessageID)
			}
		}
		if err := s.markTasks(ctx, exec, ok, outbox.Completed); err != nil {
			return len(tasks), err
		}
		return len(tasks), s.markTasks(ctx, exec, failed, outbox.Fail)
	}
	if db.Dialect == SQLite {
		return claim(db.SQL, db.SQL.ExecContext)
	}
	n := 0
	err := runTx(ctx, db.SQL, func(tx *sql.Tx) error {
		var err error
		n, err = claim(tx, tx.ExecContext)
		return err
	})
	return n, err
}
