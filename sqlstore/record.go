package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/outbox"
)

// recording is one RecordAward call waiting for its group's transaction.
type recording struct {
	rec   award.Record
	task  outbox.Task
	table int

	err  error
	done chan struct{}
}

// Columns of the award writes.
var (
	awardRecordInsertColumns = []string{"user_id", "activity_id", "strategy_id", "order_id", "award_id", "award_title",
		"award_time", "award_state", "update_time"}
)

// RecordAward writes a draw's award record and its outbox task in one transaction with
// marking the raffle order used, so an order authorises exactly one award. An order that
// is used, cancelled or missing, or a record or task that already exists, is an error
// wrapping activity.ErrOrderUsed and nothing is written for it. Awards that reach a user
// database together are recorded in one transaction (group commit); one whose order is
// not usable is left out alone, and a transaction that fails for another reason is run
// again one award at a time.
func (s *UserStore) RecordAward(ctx context.Context, rec award.Record, task outbox.Task) error {
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
		task.State = outbox.Create
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r := s.router.Route(rec.UserID)
	c := &recording{rec: rec, task: task, table: r.Table, done: make(chan struct{})}
	s.recordings[r.DB].submit(c)
	<-c.done
	if c.err != nil {
		return fmt.Errorf("record award %s/%s: %w", rec.UserID, rec.OrderID, c.err)
	}
	return nil
}

// runRecordings is the group of database dbi's award records.
func (s *UserStore) runRecordings(dbi int, batch []*recording) {
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	err := s.inGroupTx(ctx, s.dbs[dbi], func(tx *sql.Tx, multi bool) error { return s.recordTx(ctx, tx, multi, dbi, batch) })
	if err != nil && len(batch) > 1 {
		for _, c := range batch {
			s.runRecordings(dbi, []*recording{c})
		}
		return
	}
	if IsDuplicate(err) { // alone: its record or task exists already
		err = fmt.Errorf("award record or task exists: %w", activity.ErrOrderUsed)
	}
	var committed []outbox.Task
	for _, c := range batch {
		if err != nil {
			c.err = err
		}
		if c.err == nil {
			committed = append(committed, c.task)
		}
		close(c.done)
	}
	s.tasksCommitted(committed)
}

// tableOrder names a raffle order: order ids are unique within a table.
type tableOrder struct {
	table int
	id    string
}

// recordTx runs batch in tx in two scripts: first, per table, the orders still in state
// create locked (SELECT … FOR UPDATE by order id); then, per table, one UPDATE marking the
// usable ones used and one INSERT of their award records, and one INSERT of every task.
func (s *UserStore) recordTx(ctx context.Context, tx *sql.Tx, multi bool, dbi int, batch []*recording) error {
	d := s.dbs[dbi].Dialect
	now := sqlTime(s.now())
	byTable := make([][]*recording, s.router.Tables)
	for _, c := range batch {
		c.err = nil
		byTable[c.table] = append(byTable[c.table], c)
	}
	var (
		reads script
		open  = map[tableOrder]string{} // → user id, of orders in state create
	)
	for table, cs := range byTable {
		if len(cs) == 0 {
			continue
		}
		ids := make([]any, len(cs))
		for i, c := range cs {
			ids[i] = c.rec.OrderID
		}
		reads.read("lock raffle orders", "SELECT order_id, user_id FROM user_raffle_order"+TableSuffix(table)+
			" WHERE order_id IN "+Placeholders(1, len(ids))+" AND order_state = 'create'"+d.ForUpdate(), ids,
			func(rows *sql.Rows) error {
				var id, user string
				if err := rows.Scan(&id, &user); err != nil {
					return err
				}
				open[tableOrder{table, id}] = user
				return nil
			})
	}
	if err := reads.run(ctx, tx, multi); err != nil {
		return err
	}
	var (
		writes script
		tasks  []outbox.Task
	)
	for table, cs := range byTable {
		var (
			use     []any
			records [][]any
		)
		for _, c := range cs {
			id := c.rec.OrderID
			if open[tableOrder{table, id}] != c.rec.UserID || slices.Contains(use, any(id)) {
				c.err = activity.ErrOrderUsed
				continue
			}
			use = append(use, id)
			r := c.rec
			records = append(records, []any{r.UserID, r.ActivityID, r.StrategyID, r.OrderID, r.AwardID, r.AwardTitle,
				sqlTime(r.AwardTime), string(r.State), now})
			tasks = append(tasks, c.task)
		}
		if len(use) == 0 {
			continue
		}
		sfx := TableSuffix(table)
		writes.write("use raffle orders", "UPDATE user_raffle_order"+sfx+" SET order_state = 'used', update_time = ?"+
			" WHERE order_id IN "+Placeholders(1, len(use))+" AND order_state = 'create'", append([]any{now}, use...), len(use), nil)
		writes.write("insert award records", insertSQL("user_award_record"+sfx, awardRecordInsertColumns, len(records)),
			flatten(records), len(records), nil)
	}
	writeTasks(&writes, tasks, now)
	return writes.run(ctx, tx, multi)
}
