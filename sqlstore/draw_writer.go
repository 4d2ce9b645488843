package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/flash"
	"github.com/bigmarket/bigmarket/outbox"
)

// ErrDrawRejected means the database refuses a draw event for good: its user id is
// invalid, or its quota rows cannot give the unit it took (the hot quota and SQL
// disagree, which verify reports). Redelivery cannot fix it; the event is dead-lettered.
var ErrDrawRejected = errors.New("draw event rejected")

// ApplyDraws is the draw writer: each event's raffle order (state used), its
// unit of account, month and day quota (month and day rows created from the account's
// limits as activity.Quota.Take creates them), its award record and its send_award task,
// one transaction per user database for the whole batch. It is idempotent by order id:
// an event whose order is in the database already changes nothing and is nil again. The
// committed tasks go to the outbox relay (UserOptions.Committed). errs[i] is events[i]'s
// outcome.
func (s *UserStore) ApplyDraws(ctx context.Context, events []flash.Event) []error {
	errs := make([]error, len(events))
	byDB := map[int][]int{}
	for i, e := range events {
		if err := activity.CheckUserID(e.UserID); err != nil {
			errs[i] = fmt.Errorf("draw %s: %w: %w", e.OrderID, ErrDrawRejected, err)
			continue
		}
		if e.OrderID == "" {
			errs[i] = fmt.Errorf("draw without order id: %w", ErrDrawRejected)
			continue
		}
		db := s.router.Route(e.UserID).DB
		byDB[db] = append(byDB[db], i)
	}
	var wg sync.WaitGroup
	for dbi, idx := range byDB {
		wg.Go(func() { s.applyDraws(ctx, dbi, events, idx, errs) })
	}
	wg.Wait()
	return errs
}

// applyDraws runs the events idx of database dbi in one transaction; when it fails as a
// whole, each event runs alone, so a bad one fails alone.
func (s *UserStore) applyDraws(ctx context.Context, dbi int, events []flash.Event, idx []int, errs []error) {
	var committed []outbox.Task
	err := s.inGroupTx(ctx, s.dbs[dbi], func(tx *sql.Tx, multi bool) error {
		var err error
		committed, err = s.drawTx(ctx, tx, multi, dbi, events, idx, errs)
		return err
	})
	if err != nil && len(idx) > 1 {
		for _, i := range idx {
			s.applyDraws(ctx, dbi, events, []int{i}, errs)
		}
		return
	}
	if err != nil {
		errs[idx[0]] = fmt.Errorf("apply draw %s: %w", events[idx[0]].OrderID, err)
		return
	}
	s.tasksCommitted(committed)
}

// drawTx writes events idx in tx: first the quota rows of their keys locked and the
// orders that exist already; then, in order, each new event takes its unit; then the
// changed quota rows, the orders, the award records and the tasks in multi-row
// statements. An event whose take fails gets its own error and is left out.
func (s *UserStore) drawTx(ctx context.Context, tx *sql.Tx, multi bool, dbi int, events []flash.Event, idx []int, errs []error) ([]outbox.Task, error) {
	d := s.dbs[dbi].Dialect
	keys := make([]activity.QuotaKey, 0, len(idx))
	byTable := map[int][]int{}
	for _, i := range idx {
		errs[i] = nil
		keys = append(keys, events[i].Key())
		t := s.router.Route(events[i].UserID).Table
		byTable[t] = append(byTable[t], i)
	}
	var reads script
	// The quota rows first, locked in user order: they serialise the writers of one user.
	states := readQuotas(&reads, d, keys, true)
	exists := map[string]bool{}
	for table := range s.router.Tables {
		is := byTable[table]
		if len(is) == 0 {
			continue
		}
		ids := make([]any, len(is))
		for j, i := range is {
			ids[j] = events[i].OrderID
		}
		reads.read("applied draws", "SELECT order_id FROM user_raffle_order"+TableSuffix(table)+
			" WHERE order_id IN "+Placeholders(1, len(ids)), ids, func(rows *sql.Rows) error {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			exists[id] = true
			return nil
		})
	}
	if err := reads.run(ctx, tx, multi); err != nil {
		return nil, err
	}
	started(states)
	var (
		changed = map[activity.QuotaKey]bool{}
		orders  = map[int][][]any{}
		records = map[int][][]any{}
		tasks   []outbox.Task
		now     = sqlTime(s.now())
	)
	for table := range s.router.Tables {
		for _, i := range byTable[table] {
			e := events[i]
			if exists[e.OrderID] {
				continue // applied before: a redelivery
			}
			exists[e.OrderID] = true
			st := states[e.Key()]
			q := st.cur.Clone()
			if err := q.Take(e.Day, e.Month); err != nil {
				errs[i] = fmt.Errorf("draw %s of %s in %d: %w: %w", e.OrderID, e.UserID, e.ActivityID, ErrDrawRejected, err)
				continue
			}
			st.cur, changed[e.Key()] = q, true
			orders[table] = append(orders[table], []any{e.UserID, e.ActivityID, e.ActivityName, e.StrategyID, e.OrderID,
				sqlTime(e.OrderTime), string(activity.OrderUsed), now})
			rec := award.Record{UserID: e.UserID, ActivityID: e.ActivityID, StrategyID: e.StrategyID, OrderID: e.OrderID,
				AwardID: e.AwardID, AwardTitle: e.AwardTitle, AwardTime: e.AwardTime, State: award.StateCreate}
			records[table] = append(records[table], []any{rec.UserID, rec.ActivityID, rec.StrategyID, rec.OrderID, rec.AwardID,
				rec.AwardTitle, sqlTime(rec.AwardTime), string(rec.State), now})
			tasks = append(tasks, award.NewSendAwardTask(rec, e.RuleValue))
		}
	}
	write := make([]*quotaState, 0, len(changed))
	for k := range changed {
		write = append(write, states[k])
	}
	var writes script
	if err := writeQuotas(&writes, write, now); err != nil {
		return nil, err
	}
	for table := range s.router.Tables {
		if len(orders[table]) == 0 {
			continue
		}
		sfx := TableSuffix(table)
		// Another node's writer may have inserted an order meanwhile (its transaction
		// took the quota locks first): the duplicate retries the transaction, which then
		// finds it.
		writes.write("insert used raffle orders", insertSQL("user_raffle_order"+sfx, raffleOrderInsertColumns, len(orders[table])),
			flatten(orders[table]), len(orders[table]), func(err error) error { return insertError("raffle orders", err) })
		writes.write("insert award records", insertSQL("user_award_record"+sfx, awardRecordInsertColumns, len(records[table])),
			flatten(records[table]), len(records[table]), nil)
	}
	writeTasks(&writes, tasks, now)
	if err := writes.run(ctx, tx, multi); err != nil {
		return nil, err
	}
	return tasks, nil
}

// Columns of the draw writer's inserts.
var (
	raffleOrderInsertColumns = append(strings.Split(raffleOrderColumns, ", "), "update_time")
	awardRecordInsertColumns = []string{"user_id", "activity_id", "strategy_id", "order_id", "award_id", "award_title",
		"award_time", "award_state", "update_time"}
)
