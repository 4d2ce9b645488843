package activity

import (
	"errors"
	"fmt"
)

// Quota errors, in the order a draw checks them.
var (
	// ErrTotalQuotaExhausted means the user has no account in the activity or no draws left.
	ErrTotalQuotaExhausted = errors.New("total quota exhausted")
	// ErrMonthQuotaExhausted means the user's draws for this month are used up.
	ErrMonthQuotaExhausted = errors.New("month quota exhausted")
	// ErrDayQuotaExhausted means the user's draws for today are used up.
	ErrDayQuotaExhausted = errors.New("day quota exhausted")
)

// Account is raffle_activity_account: the user's total draws in an activity, with the day
// and month limits that new day and month rows start from. DaySurplus and MonthSurplus
// mirror the current period's rows, as big-market keeps them.
type Account struct {
	Total, TotalSurplus int64
	Day, DaySurplus     int64
	Month, MonthSurplus int64
}

// Period is a raffle_activity_account_day or _month row.
type Period struct {
	Key     string // "2006-01-02" or "2006-01" in the configured time zone
	Count   int64
	Surplus int64
}

// Quota is what one user holds in one activity for the current day and month, as the
// store loaded (and, inside a transaction, locked) it. A nil field is a row that does not
// exist; Take and Add may create them, and the store inserts what became non-nil.
type Quota struct {
	Account *Account
	Month   *Period
	Day     *Period
}

// Take uses one draw: one unit of total, month and day surplus. Month and day rows are
// created from the account's limits when the period has none yet. On error nothing is
// changed.
func (q *Quota) Take(day, month string) error {
	if q.Account == nil || q.Account.TotalSurplus <= 0 {
		return ErrTotalQuotaExhausted
	}
	m := q.Month
	if m == nil {
		m = &Period{Key: month, Count: q.Account.Month, Surplus: q.Account.Month}
	}
	if m.Surplus <= 0 {
		return ErrMonthQuotaExhausted
	}
	d := q.Day
	if d == nil {
		d = &Period{Key: day, Count: q.Account.Day, Surplus: q.Account.Day}
	}
	if d.Surplus <= 0 {
		return ErrDayQuotaExhausted
	}
	if m.Key != month || d.Key != day {
		return fmt.Errorf("quota loaded for %s/%s, taken for %s/%s", m.Key, d.Key, month, day)
	}
	q.Account.TotalSurplus--
	m.Surplus--
	d.Surplus--
	q.Account.MonthSurplus, q.Account.DaySurplus = m.Surplus, d.Surplus
	q.Month, q.Day = m, d
	return nil
}

// Add credits a purchased count: to the account (created when missing) and to the
// current month and day rows when they exist, so that a purchase is usable today.
func (q *Quota) Add(c Count) {
	if q.Account == nil {
		q.Account = &Account{}
	}
	a := q.Account
	a.Total += c.Total
	a.TotalSurplus += c.Total
	a.Month += c.Month
	a.MonthSurplus += c.Month
	a.Day += c.Day
	a.DaySurplus += c.Day
	if q.Month != nil {
		q.Month.Count += c.Month
		q.Month.Surplus += c.Month
	}
	if q.Day != nil {
		q.Day.Count += c.Day
		q.Day.Surplus += c.Day
	}
}

// View is a user's quota as the account query shows it: today's and this month's rows
// when they exist, otherwise the full limits the rows would start from.
type View struct {
	Total, TotalSurplus int64
	Day, DaySurplus     int64
	Month, MonthSurplus int64
}

// View returns what the user can see of q; zeros when there is no account.
func (q Quota) View() View {
	if q.Account == nil {
		return View{}
	}
	v := View{Total: q.Account.Total, TotalSurplus: q.Account.TotalSurplus,
		Day: q.Account.Day, DaySurplus: q.Account.Day, Month: q.Account.Month, MonthSurplus: q.Account.Month}
	if q.Day != nil {
		v.Day, v.DaySurplus = q.Day.Count, q.Day.Surplus
	}
	if q.Month != nil {
		v.Month, v.MonthSurplus = q.Month.Count, q.Month.Surplus
	}
	return v
}

// UsedTotal is the number of draws the user has taken in the activity.
func (q Quota) UsedTotal() int64 {
	if q.Account == nil {
		return 0
	}
	return q.Account.Total - q.Account.TotalSurplus
}

// UsedToday is the number of draws the user has taken today.
func (q Quota) UsedToday() int64 {
	if q.Day == nil {
		return 0
	}
	return q.Day.Count - q.Day.Surplus
}

// Clone copies q's rows, so that what Take or Add changes later does not reach the copy.
func (q Quota) Clone() Quota {
	var c Quota
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
