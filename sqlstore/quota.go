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
// serialises a user's quota writes in an activity without deadlocks, and the lazily
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

// readQuotas adds to sc the reads of the quota rows of keys (locked when locked is set),
// one statement per scope, and returns a state per distinct key, filled when sc has run
// (then call started).
func readQuotas(sc *script, d Dialect, keys []activity.QuotaKey, locked bool) map[activity.QuotaKey]*quotaState {
	states := make(map[activity.QuotaKey]*quotaState, len(keys))
	scopes := map[periodScope][]string{}
	var order []periodScope
	for _, k := range keys {
		if _, ok := states[k]; ok {
			continue
		}
		states[k] = &quotaState{key: k}
		if _, ok := scopes[scopeOf(k)]; !ok {
			order = append(order, scopeOf(k))
		}
		scopes[scopeOf(k)] = append(scopes[scopeOf(k)], k.UserID)
	}
	for _, ps := range order {
		users := scopes[ps]
		slices.Sort(users)
		sc.read("load quota", quotaSQL(d, len(users), locked), quotaArgs(ps, users), func(rows *sql.Rows) error {
			return scanQuotaRow(rows, ps, states)
		})
	}
	return states
}

// started makes each state's cur a copy of what was loaded.
func started(states map[activity.QuotaKey]*quotaState) {
	for _, st := range states {
		st.cur = st.before.Clone()
	}
}

func scanQuotaRow(rows *sql.Rows, ps periodScope, states map[activity.QuotaKey]*quotaState) error {
	var (
		kind, user string
		c          [6]int64
	)
	if err := rows.Scan(&kind, &user, &c[0], &c[1], &c[2], &c[3], &c[4], &c[5]); err != nil {
		return fmt.Errorf("scan quota: %w", err)
	}
	st := states[activity.QuotaKey{UserID: user, ActivityID: ps.activityID, Day: ps.day, Month: ps.month}]
	if st == nil {
		return nil // a collation's idea of equal that Go does not share; cannot happen with utf8mb4_bin
	}
	switch kind {
	case "a":
		st.before.Account = &activity.Account{Total: c[0], TotalSurplus: c[1], Day: c[2], DaySurplus: c[3], Month: c[4], MonthSurplus: c[5]}
	case "m":
		st.before.Month = &activity.Period{Key: ps.month, Count: c[0], Surplus: c[1]}
	case "d":
		st.before.Day = &activity.Period{Key: ps.day, Count: c[0], Surplus: c[1]}
	}
	return nil
}

// quotaWrites are the statements that take a scope's rows from before to cur.
type quotaWrites struct {
	accountIns, monthIns, dayIns [][]any   // rows of multi-row INSERTs
	accountUpd, monthUpd, dayUpd []caseRow // rows of CASE UPDATEs
}

// caseRow is one user's new values in a CASE UPDATE.
type caseRow struct {
	user string
	vals []any
}

// writeQuotas adds to sc the writes of what changed in states: the rows of each scope in
// at most six statements, INSERTs for rows that became non-nil and absolute UPDATEs for rows that
// changed. Absolute values are exact because the rows were loaded locked in the same
// transaction. Rows cannot be removed, period keys must be the state's key, and no count
// may be negative.
func writeQuotas(sc *script, states []*quotaState, now time.Time) error {
	scopes := map[periodScope]*quotaWrites{}
	var order []periodScope
	slices.SortFunc(states, func(a, b *quotaState) int { return cmp.Compare(a.key.UserID, b.key.UserID) })
	for _, st := range states {
		if err := checkQuota(st.key, st.before, st.cur); err != nil {
			return err
		}
		ps := scopeOf(st.key)
		w := scopes[ps]
		if w == nil {
			w = &quotaWrites{}
			scopes[ps] = w
			order = append(order, ps)
		}
		k, b, a := st.key, st.before, st.cur
		if a.Account != nil {
			v := []int64{a.Account.Total, a.Account.TotalSurplus, a.Account.Day, a.Account.DaySurplus, a.Account.Month, a.Account.MonthSurplus}
			switch {
			case b.Account == nil:
				w.accountIns = append(w.accountIns, []any{k.UserID, k.ActivityID, v[0], v[1], v[2], v[3], v[4], v[5], now})
			case *a.Account != *b.Account:
				w.accountUpd = append(w.accountUpd, caseRow{k.UserID, []any{v[0], v[1], v[2], v[3], v[4], v[5]}})
			}
		}
		w.monthIns, w.monthUpd = periodWrite(w.monthIns, w.monthUpd, k, k.Month, b.Month, a.Month, now)
		w.dayIns, w.dayUpd = periodWrite(w.dayIns, w.dayUpd, k, k.Day, b.Day, a.Day, now)
	}
	for _, ps := range order {
		scopes[ps].add(sc, ps, now)
	}
	return nil
}

func periodWrite(ins [][]any, upd []caseRow, k activity.QuotaKey, period string, b, a *activity.Period, now time.Time) ([][]any, []caseRow) {
	switch {
	case a == nil:
	case b == nil:
		ins = append(ins, []any{k.UserID, k.ActivityID, period, a.Count, a.Surplus, now})
	case *a != *b:
		upd = append(upd, caseRow{k.UserID, []any{a.Count, a.Surplus}})
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

func (w *quotaWrites) add(sc *script, ps periodScope, now time.Time) {
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
			"activity_id = ?", []any{ps.activityID}},
		{"month", "raffle_activity_account_month", monthColumns, w.monthIns, w.monthUpd, monthColumns[3:5],
			"activity_id = ? AND month = ?", []any{ps.activityID, ps.month}},
		{"day", "raffle_activity_account_day", dayColumns, w.dayIns, w.dayUpd, dayColumns[3:5],
			"activity_id = ? AND day = ?", []any{ps.activityID, ps.day}},
	}
	for _, s := range steps {
		if len(s.ins) > 0 {
			name := s.name
			sc.write("insert "+name, insertSQL(s.table, s.columns, len(s.ins)), flatten(s.ins), len(s.ins),
				func(err error) error { return insertError(name, err) })
		}
		if len(s.upd) > 0 {
			query, args := caseUpdate(s.table, s.counts, s.scope, s.args, s.upd, now)
			sc.write("update "+s.name, query, args, len(s.upd), nil)
		}
	}
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
//
// An empty scope updates by user_id alone (tables with one row per user).
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
	b.WriteString("update_time = ? WHERE ")
	if scope != "" {
		b.WriteString(scope + " AND ")
	}
	b.WriteString("user_id IN " + Placeholders(1, len(rows)))
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
	var reads script
	states := readQuotas(&reads, d, []activity.QuotaKey{key}, true)
	if err := reads.run(ctx, tx, false); err != nil {
		return err
	}
	started(states)
	st := states[key]
	fn(&st.cur)
	var writes script
	if err := writeQuotas(&writes, []*quotaState{st}, now); err != nil {
		return err
	}
	return writes.run(ctx, tx, false)
}
