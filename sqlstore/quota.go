package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/activity"
)

// quotaState is one quota key's rows in a transaction: as loaded (and locked), and as the
// writes of the transaction have left them so far.
type quotaState struct {
	key         activity.QuotaKey
	before, cur activity.Quota
}

// periodScope is what quota keys share apart from the user: one statement serves a scope.
type periodScope struct {
	activityID int64
	day, month string
}

func scopeOf(k activity.QuotaKey) periodScope {
	return periodScope{activityID: k.ActivityID, day: k.Day, month: k.Month}
}

// quotaSQL reads the account, month and day rows of users users in one scope, each row
// tagged a, m or d and carrying its user. Locked on MySQL, every part carries FOR UPDATE
// and the parts run in order, each scanning its unique index in user order: the account
// rows are locked first and in ascending user order by every transaction, which
// serialises a user's participations in an activity without deadlocks, and the lazily
// inserted month and day rows cannot deadlock either. SQLite's BEGIN IMMEDIATE already
// holds the database's write lock.
func quotaSQL(d Dialect, users int, locked bool) string {
	in := Placeholders(1, users)
	parts := []string{
		`SELECT 'a', user_id, total_count, total_count_surplus, day_count, day_count_surplus, month_count, month_count_surplus
		FROM raffle_activity_account WHERE activity_id = ? AND user_id IN ` + in,
		`SELECT 'm', user_id, month_count, month_count_surplus, 0, 0, 0, 0
		FROM raffle_activity_account_month WHERE activity_id = ? AND month = ? AND user_id IN ` + in,
		`SELECT 'd', user_id, day_count, day_count_surplus, 0, 0, 0, 0
		FROM raffle_activity_account_day WHERE activity_id = ? AND day = ? AND user_id IN ` + in,
	}
	if locked && d == MySQL {
		for i, p := range parts {
			parts[i] = "(" + p + d.ForUpdate() + ")"
		}
	}
	return strings.Join(parts, " UNION ALL ")
}

// quotaArgs are quotaSQL's arguments for users in scope sc.
func quotaArgs(sc periodScope, users []string) []any {
	args := make([]any, 0, 5+3*len(users))
	args = append(args, sc.activityID)
	args = appendStrings(args, users)
	args = append(args, sc.activityID, sc.month)
	args = appendStrings(args, users)
	args = append(args, sc.activityID, sc.day)
	return appendStrings(args, users)
}

func appendStrings(args []any, ss []string) []any {
	for _, s := range ss {
		args = append(args, s)
	}
	return args
}

// loadQuotas reads the quota rows of keys (locked when locked is set), one statement per
// scope, and returns a state per distinct key.
func loadQuotas(ctx context.Context, q queryer, d Dialect, keys []activity.QuotaKey, locked bool) (map[activity.QuotaKey]*quotaState, error) {
	states := make(map[activity.QuotaKey]*quotaState, len(keys))
	scopes := map[periodScope][]string{}
	for _, k := range keys {
		if _, ok := states[k]; ok {
			continue
		}
		states[k] = &quotaState{key: k}
		scopes[scopeOf(k)] = append(scopes[scopeOf(k)], k.UserID)
	}
	for sc, users := range scopes {
		slices.Sort(users)
		if err := loadScope(ctx, q, d, sc, users, states, locked); err != nil {
			return nil, err
		}
	}
	for _, st := range states {
		st.cur = cloneQuota(st.before)
	}
	return states, nil
}

func loadScope(ctx context.Context, q queryer, d Dialect, sc periodScope, users []string, states map[activity.QuotaKey]*quotaState, locked bool) error {
	rows, err := q.QueryContext(ctx, quotaSQL(d, len(users), locked), quotaArgs(sc, users)...)
	if err != nil {
		return fmt.Errorf("load quota: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			kind, user string
			c          [6]int64
		)
		if err := rows.Scan(&kind, &user, &c[0], &c[1], &c[2], &c[3], &c[4], &c[5]); err != nil {
			return fmt.Errorf("scan quota: %w", err)
		}
		st := states[activity.QuotaKey{UserID: user, ActivityID: sc.activityID, Day: sc.day, Month: sc.month}]
		if st == nil {
			continue // a collation's idea of equal that Go does not share; cannot happen with utf8mb4_bin
		}
		switch kind {
		case "a":
			st.before.Account = &activity.Account{Total: c[0], TotalSurplus: c[1], Day: c[2], DaySurplus: c[3], Month: c[4], MonthSurplus: c[5]}
		case "m":
			st.before.Month = &activity.Period{Key: sc.month, Count: c[0], Surplus: c[1]}
		case "d":
			st.before.Day = &activity.Period{Key: sc.day, Count: c[0], Surplus: c[1]}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load quota: %w", err)
	}
	return nil
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

// quotaWrites are the statements that take a scope's rows from before to cur.
type quotaWrites struct {
	accountIns, monthIns, dayIns [][]any   // rows of multi-row INSERTs
	accountUpd, monthUpd, dayUpd []caseRow // rows of CASE UPDATEs
}

// caseRow is one user's new values in a CASE UPDATE.
type caseRow struct {
	user string
	vals []int64
}

// writeQuotas writes what changed in states: the rows of each scope in at most six
// statements, INSERTs for rows that became non-nil and absolute UPDATEs for rows that
// changed. Absolute values are exact because the rows were loaded locked in the same
// transaction. Rows cannot be removed, period keys must be the state's key, and no count
// may be negative.
func writeQuotas(ctx context.Context, tx *sql.Tx, states []*quotaState, now time.Time) error {
	scopes := map[periodScope]*quotaWrites{}
	slices.SortFunc(states, func(a, b *quotaState) int { return cmp.Compare(a.key.UserID, b.key.UserID) })
	for _, st := range states {
		if err := checkQuota(st.key, st.before, st.cur); err != nil {
			return err
		}
		sc := scopeOf(st.key)
		w := scopes[sc]
		if w == nil {
			w = &quotaWrites{}
			scopes[sc] = w
		}
		k, b, a := st.key, st.before, st.cur
		if a.Account != nil {
			v := []int64{a.Account.Total, a.Account.TotalSurplus, a.Account.Day, a.Account.DaySurplus, a.Account.Month, a.Account.MonthSurplus}
			switch {
			case b.Account == nil:
				w.accountIns = append(w.accountIns, []any{k.UserID, k.ActivityID, v[0], v[1], v[2], v[3], v[4], v[5], now})
			case *a.Account != *b.Account:
				w.accountUpd = append(w.accountUpd, caseRow{k.UserID, v})
			}
		}
		w.monthIns, w.monthUpd = periodWrite(w.monthIns, w.monthUpd, k, k.Month, b.Month, a.Month, now)
		w.dayIns, w.dayUpd = periodWrite(w.dayIns, w.dayUpd, k, k.Day, b.Day, a.Day, now)
	}
	for sc, w := range scopes {
		if err := w.exec(ctx, tx, sc, now); err != nil {
			return err
		}
	}
	return nil
}

func periodWrite(ins [][]any, upd []caseRow, k activity.QuotaKey, period string, b, a *activity.Period, now time.Time) ([][]any, []caseRow) {
	switch {
	case a == nil:
	case b == nil:
		ins = append(ins, []any{k.UserID, k.ActivityID, period, a.Count, a.Surplus, now})
	case *a != *b:
		upd = append(upd, caseRow{k.UserID, []int64{a.Count, a.Surplus}})
	}
	return ins, upd
}

// Columns of the quota tables' writes.
var (
	accountColumns = []string{"user_id", "activity_id", "total_count", "total_count_surplus", "day_count",
		"day_count_surplus", "month_count", "month_count_surplus", "update_time"}
	accountCounts = accountColumns[2:8]
	monthColumns  = []string{"user_id", "activity_id", "month", "month_count", "month_count_surplus", "update_time"}
	dayColumns    = []string{"user_id", "activity_id", "day", "day_count", "day_count_surplus", "update_time"}
)

func (w *quotaWrites) exec(ctx context.Context, tx *sql.Tx, sc periodScope, now time.Time) error {
	steps := []struct {
		name    string
		table   string
		columns []string
		ins     [][]any
		upd     []caseRow
		counts  []string
		scope   string
		args    []any
	}{
		{"account", "raffle_activity_account", accountColumns, w.accountIns, w.accountUpd, accountCounts,
			"activity_id = ?", []any{sc.activityID}},
		{"month", "raffle_activity_account_month", monthColumns, w.monthIns, w.monthUpd, monthColumns[3:5],
			"activity_id = ? AND month = ?", []any{sc.activityID, sc.month}},
		{"day", "raffle_activity_account_day", dayColumns, w.dayIns, w.dayUpd, dayColumns[3:5],
			"activity_id = ? AND day = ?", []any{sc.activityID, sc.day}},
	}
	for _, s := range steps {
		if len(s.ins) > 0 {
			if _, err := tx.ExecContext(ctx, insertSQL(s.table, s.columns, len(s.ins)), flatten(s.ins)...); err != nil {
				return insertError(s.name, err)
			}
		}
		if len(s.upd) > 0 {
			query, args := caseUpdate(s.table, s.counts, s.scope, s.args, s.upd, now)
			if err := execN(ctx, tx, s.name, len(s.upd), query, args...); err != nil {
				return err
			}
		}
	}
	return nil
}

// insertSQL is a multi-row INSERT of rows rows into table.
func insertSQL(table string, columns []string, rows int) string {
	return "INSERT INTO " + table + " (" + strings.Join(columns, ", ") + ") VALUES " + Placeholders(rows, len(columns))
}

func flatten(rows [][]any) []any {
	var args []any
	for _, r := range rows {
		args = append(args, r...)
	}
	return args
}

// caseUpdate sets columns of the rows of table in scope, keyed by user_id, to each row's
// values in one statement:
//
//	UPDATE t SET c1 = CASE user_id WHEN ? THEN ? … END, …, update_time = ? WHERE scope AND user_id IN (…)
func caseUpdate(table string, columns []string, scope string, scopeArgs []any, rows []caseRow, now time.Time) (string, []any) {
	var b strings.Builder
	args := make([]any, 0, len(rows)*(2*len(columns)+1)+len(scopeArgs)+1)
	b.WriteString("UPDATE " + table + " SET ")
	for i, c := range columns {
		b.WriteString(c + " = CASE user_id")
		for _, r := range rows {
			b.WriteString(" WHEN ? THEN ?")
			args = append(args, r.user, r.vals[i])
		}
		b.WriteString(" END, ")
	}
	b.WriteString("update_time = ? WHERE " + scope + " AND user_id IN " + Placeholders(1, len(rows)))
	args = append(args, now)
	args = append(args, scopeArgs...)
	for _, r := range rows {
		args = append(args, r.user)
	}
	return b.String(), args
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

// execN runs an UPDATE that must change exactly n rows; fewer means a row vanished or
// changed under a concurrent writer, and the transaction is retried.
func execN(ctx context.Context, tx *sql.Tx, name string, n int, query string, args ...any) error {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("update %s: %w", name, err)
	}
	got, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("update %s: %w", name, err)
	}
	if got != int64(n) {
		return fmt.Errorf("update %s changed %d rows of %d: %w", name, got, n, errConflict)
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

// updateQuota loads key's rows locked in tx, runs fn on them and writes what it changed.
func updateQuota(ctx context.Context, tx *sql.Tx, d Dialect, key activity.QuotaKey, now time.Time, fn func(*activity.Quota)) error {
	states, err := loadQuotas(ctx, tx, d, []activity.QuotaKey{key}, true)
	if err != nil {
		return err
	}
	st := states[key]
	fn(&st.cur)
	return writeQuotas(ctx, tx, []*quotaState{st}, now)
}
