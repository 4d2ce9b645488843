package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/outbox"
)

var _ credit.Store = (*UserStore)(nil)

// Columns of the credit writes.
var (
	creditAccountColumns = []string{"user_id", "total_amount", "available_amount", "account_status", "update_time"}
	creditOrderColumns   = []string{"user_id", "order_id", "trade_name", "trade_type", "trade_amount", "out_business_no", "update_time"}
)

// CreditAccount implements credit.Store.
func (s *UserStore) CreditAccount(ctx context.Context, userID string) (credit.Account, error) {
	sh := s.route(userID)
	a := credit.Account{UserID: userID}
	err := sh.db.SQL.QueryRowContext(ctx, "SELECT total_amount, available_amount FROM user_credit_account WHERE user_id = ?",
		userID).Scan(&a.Total, &a.Available)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return credit.Account{}, fmt.Errorf("credit account %s: %w", userID, err)
	}
	return a, nil
}

// CreditOrders returns the user's credit orders, oldest first.
func (s *UserStore) CreditOrders(ctx context.Context, userID string) ([]credit.Order, error) {
	r := s.router.Route(userID)
	var orders []credit.Order
	err := queryEach(ctx, s.dbs[r.DB].SQL, "SELECT user_id, order_id, trade_name, trade_type, trade_amount, out_business_no"+
		" FROM user_credit_order"+r.Suffix+" WHERE user_id = ? ORDER BY id", []any{userID}, func(rows *sql.Rows) error {
		var o credit.Order
		if err := rows.Scan(&o.UserID, &o.OrderID, &o.Name, &o.Type, &o.Amount, &o.OutBusinessNo); err != nil {
			return err
		}
		orders = append(orders, o)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("credit orders %s: %w", userID, err)
	}
	return orders, nil
}

// crediting is one change of an ApplyCredit call, with its place in the shards.
type crediting struct {
	change credit.Change
	table  int
	err    error
}

// ApplyCredit implements credit.Store. The changes that reach one user database run in one
// transaction of multi-row statements (the caller's batch is the group): the accounts of
// their users locked, the business numbers and award records they touch read, each change
// checked in order against the state the ones before it left, and only the valid ones
// written. A change that is a repeat, overdraws or names no award fails alone; a
// transaction that fails for another reason is run again one change at a time.
func (s *UserStore) ApplyCredit(ctx context.Context, changes []credit.Change) []error {
	errs := make([]error, len(changes))
	byDB := make([][]*crediting, len(s.dbs))
	all := make([]*crediting, len(changes))
	for i, ch := range changes {
		c := &crediting{change: ch}
		all[i] = c
		if err := checkChange(ch); err != nil {
			c.err = err
			continue
		}
		r := s.router.Route(ch.UserID)
		c.table = r.Table
		byDB[r.DB] = append(byDB[r.DB], c)
	}
	for dbi, batch := range byDB {
		if len(batch) > 0 {
			s.applyCredits(ctx, dbi, batch)
		}
	}
	for i, c := range all {
		if c.err != nil {
			errs[i] = fmt.Errorf("credit change of %s: %w", c.change.UserID, c.err)
		}
	}
	return errs
}

func checkChange(ch credit.Change) error {
	if ch.UserID == "" {
		return fmt.Errorf("no user: %w", credit.ErrInvalidTrade)
	}
	if ch.Order == nil && ch.AwardOrderID == "" && ch.Task == nil {
		return fmt.Errorf("empty change: %w", credit.ErrInvalidTrade)
	}
	if o := ch.Order; o != nil {
		if err := o.Check(); err != nil {
			return err
		}
		if o.UserID != ch.UserID || o.OrderID == "" {
			return fmt.Errorf("order %q of %s in a change of %s: %w", o.OrderID, o.UserID, ch.UserID, credit.ErrInvalidTrade)
		}
	}
	if t := ch.Task; t != nil && t.UserID != ch.UserID {
		return fmt.Errorf("task of %s in a change of %s: %w", t.UserID, ch.UserID, credit.ErrInvalidTrade)
	}
	return nil
}

// applyCredits runs batch, all of database dbi, in one transaction, or one change at a
// time when that fails.
func (s *UserStore) applyCredits(ctx context.Context, dbi int, batch []*crediting) {
	var tasks []outbox.Task
	err := s.inGroupTx(ctx, s.dbs[dbi], func(tx *sql.Tx, multi bool) error {
		var err error
		tasks, err = s.creditTx(ctx, tx, multi, dbi, batch)
		return err
	})
	if err != nil && len(batch) > 1 {
		for _, c := range batch {
			s.applyCredits(ctx, dbi, []*crediting{c})
		}
		return
	}
	if err != nil {
		if IsDuplicate(err) { // alone: a concurrent transaction wrote the same business number first
			err = fmt.Errorf("%w (%w)", credit.ErrDuplicate, err)
		}
		batch[0].err = err
		return
	}
	s.tasksCommitted(tasks)
}

// creditTx checks and writes batch in tx and returns the tasks it wrote.
func (s *UserStore) creditTx(ctx context.Context, tx *sql.Tx, multi bool, dbi int, batch []*crediting) ([]outbox.Task, error) {
	d := s.dbs[dbi].Dialect
	now := sqlTime(s.now())
	var (
		users    []any
		bizNos   = make([][]any, s.router.Tables)
		awardIDs = make([][]any, s.router.Tables)
	)
	for _, c := range batch {
		c.err = nil
		ch := c.change
		if ch.Order != nil {
			if !slices.Contains(users, any(ch.UserID)) {
				users = append(users, ch.UserID)
			}
			bizNos[c.table] = append(bizNos[c.table], ch.Order.OutBusinessNo)
		}
		if ch.AwardOrderID != "" {
			awardIDs[c.table] = append(awardIDs[c.table], ch.AwardOrderID)
		}
	}
	var (
		reads    script
		accounts = map[string]*creditState{}
		applied  = map[tableOrder]bool{}   // business numbers with an order
		records  = map[tableOrder]string{} // award order id → user, of records in state create
		present  = map[tableOrder]bool{}   // award records that exist
	)
	if len(users) > 0 {
		// Accounts are locked in user order, so two transactions never wait on each other.
		slices.SortFunc(users, func(a, b any) int { return strings.Compare(a.(string), b.(string)) })
		reads.read("lock credit accounts", "SELECT user_id, total_amount, available_amount FROM user_credit_account"+
			" WHERE user_id IN "+Placeholders(1, len(users))+" ORDER BY user_id"+d.ForUpdate(), users,
			func(rows *sql.Rows) error {
				var a credit.Account
				if err := rows.Scan(&a.UserID, &a.Total, &a.Available); err != nil {
					return err
				}
				accounts[a.UserID] = &creditState{before: a, cur: a, exists: true}
				return nil
			})
	}
	for table := range s.router.Tables {
		sfx := TableSuffix(table)
		if ids := bizNos[table]; len(ids) > 0 {
			reads.read("read credit orders", "SELECT out_business_no FROM user_credit_order"+sfx+
				" WHERE out_business_no IN "+Placeholders(1, len(ids)), ids, func(rows *sql.Rows) error {
				var no string
				if err := rows.Scan(&no); err != nil {
					return err
				}
				applied[tableOrder{table, no}] = true
				return nil
			})
		}
		if ids := awardIDs[table]; len(ids) > 0 {
			reads.read("lock award records", "SELECT order_id, user_id, award_state FROM user_award_record"+sfx+
				" WHERE order_id IN "+Placeholders(1, len(ids))+d.ForUpdate(), ids, func(rows *sql.Rows) error {
				var id, user, state string
				if err := rows.Scan(&id, &user, &state); err != nil {
					return err
				}
				present[tableOrder{table, id}] = true
				if award.State(state) == award.StateCreate {
					records[tableOrder{table, id}] = user
				}
				return nil
			})
		}
	}
	if err := reads.run(ctx, tx, multi); err != nil {
		return nil, err
	}

	var (
		orders    = make([][][]any, s.router.Tables)
		completes = make([][]any, s.router.Tables)
		tasks     []outbox.Task
	)
	for _, c := range batch {
		ch := c.change
		if ch.AwardOrderID != "" {
			key := tableOrder{c.table, ch.AwardOrderID}
			switch {
			case !present[key]:
				c.err = fmt.Errorf("award order %s: %w", ch.AwardOrderID, credit.ErrAwardNotFound)
				continue
			case records[key] != ch.UserID:
				c.err = fmt.Errorf("award order %s already completed: %w", ch.AwardOrderID, credit.ErrDuplicate)
				continue
			}
		}
		if o := ch.Order; o != nil {
			key := tableOrder{c.table, o.OutBusinessNo}
			if applied[key] {
				c.err = fmt.Errorf("out_business_no %s: %w", o.OutBusinessNo, credit.ErrDuplicate)
				continue
			}
			st := accounts[o.UserID]
			if st == nil {
				st = &creditState{before: credit.Account{UserID: o.UserID}, cur: credit.Account{UserID: o.UserID}}
				accounts[o.UserID] = st
			}
			next, err := st.cur.Apply(*o)
			if err != nil {
				c.err = err
				continue
			}
			st.cur = next
			applied[key] = true
			orders[c.table] = append(orders[c.table], []any{o.UserID, o.OrderID, o.Name, string(o.Type),
				o.Amount.String(), o.OutBusinessNo, now})
		}
		if ch.AwardOrderID != "" {
			delete(records, tableOrder{c.table, ch.AwardOrderID})
			completes[c.table] = append(completes[c.table], ch.AwardOrderID)
		}
		if ch.Task != nil {
			tasks = append(tasks, *ch.Task)
		}
	}

	var writes script
	var (
		inserts [][]any
		updates []caseRow
	)
	for _, u := range users {
		st := accounts[u.(string)]
		if st == nil || st.cur == st.before {
			continue
		}
		if st.exists {
			updates = append(updates, caseRow{st.cur.UserID, []any{st.cur.Total.String(), st.cur.Available.String()}})
		} else {
			inserts = append(inserts, []any{st.cur.UserID, st.cur.Total.String(), st.cur.Available.String(), "open", now})
		}
	}
	if len(inserts) > 0 {
		writes.write("insert credit accounts", insertSQL("user_credit_account", creditAccountColumns, len(inserts)),
			flatten(inserts), len(inserts), func(err error) error { return insertError("credit account", err) })
	}
	if len(updates) > 0 {
		// Absolute amounts: the rows were read locked in this transaction.
		query, args := caseUpdate("user_credit_account", creditAccountColumns[1:3], "", nil, updates, now)
		writes.write("update credit accounts", query, args, len(updates), nil)
	}
	for table := range s.router.Tables {
		sfx := TableSuffix(table)
		if rows := orders[table]; len(rows) > 0 {
			writes.write("insert credit orders", insertSQL("user_credit_order"+sfx, creditOrderColumns, len(rows)),
				flatten(rows), len(rows), nil)
		}
		if ids := completes[table]; len(ids) > 0 {
			writes.write("complete award records", "UPDATE user_award_record"+sfx+" SET award_state = 'completed', update_time = ?"+
				" WHERE order_id IN "+Placeholders(1, len(ids))+" AND award_state = 'create'", append([]any{now}, ids...), len(ids), nil)
		}
	}
	writeTasks(&writes, tasks, now)
	if err := writes.run(ctx, tx, multi); err != nil {
		return nil, err
	}
	return tasks, nil
}

// creditState is one account in a credit transaction: as read and as changed so far.
type creditState struct {
	before, cur credit.Account
	exists      bool
}

// tableOrder names a raffle order: order ids are unique within a table.
type tableOrder struct {
	table int
	id    string
}
