package reconcile

import (
	"fmt"
	"strings"

	"github.com/bigmarket/bigmarket/activity"
)

// UserDraws is one user's draws of a run as its client saw them, and the user's rows
// after the run: the user is new to the activity (all its records and used quota are the
// run's).
type UserDraws struct {
	UserID   string
	Answered []int // the awards of the draws answered 0000, in any order
	Unknown  int   // draws whose outcome nobody was told: 0009, or no answer at all
	Records  []int // the awards of the user's award records in the activity
	// Quota is the user's SQL quota in the activity for the day and month of the run.
	Quota activity.Quota
}

// usedQuota returns the units taken from the account, the month and the day: what was
// recharged less what is left. A missing month or day row has had nothing taken.
func (u UserDraws) usedQuota() (total, month, day int64, ok bool) {
	if u.Quota.Account == nil {
		return 0, 0, 0, false
	}
	total = u.Quota.Account.Total - u.Quota.Account.TotalSurplus
	if u.Quota.Month != nil {
		month = u.Quota.Month.Count - u.Quota.Month.Surplus
	}
	if u.Quota.Day != nil {
		day = u.Quota.Day.Count - u.Quota.Day.Surplus
	}
	return total, month, day, true
}

// UserDrawChecks checks each user of a run of fixed draws per user, after the writer
// drained, against what its client was answered:
//
//   - quota: the units taken (recharged − left, in SQL) are the same for the account,
//     the month and the day, and are the draws answered 0000, plus at most the draws
//     of unknown outcome;
//   - records: one award record per unit taken;
//   - answers: every draw answered 0000 has a record of the award it was answered with.
//
// Each check reports how many users failed it and names the first few.
func UserDrawChecks(users []UserDraws) Checks {
	var (
		quota, records, answers             offenders
		taken, answered, unknown, recTotals int64
	)
	for _, u := range users {
		total, month, day, ok := u.usedQuota()
		n, k := int64(len(u.Answered)), int64(u.Unknown)
		taken += total
		answered += n
		unknown += k
		recTotals += int64(len(u.Records))
		switch {
		case !ok:
			quota.add("%s has no quota account", u.UserID)
		case total != month || total != day:
			quota.add("%s took %d units of its account, %d of its month, %d of its day", u.UserID, total, month, day)
		case total < n || total > n+k:
			quota.add("%s took %d units for %d draws answered 0000 and %d unknown", u.UserID, total, n, k)
		}
		if ok && int64(len(u.Records)) != total {
			records.add("%s has %d award records for %d units taken", u.UserID, len(u.Records), total)
		}
		left := map[int]int{}
		for _, id := range u.Records {
			left[id]++
		}
		for _, id := range u.Answered {
			if left[id] == 0 {
				answers.add("%s was answered award %d and has no record of it left (records %v)", u.UserID, id, u.Records)
				break
			}
			left[id]--
		}
	}
	var c Checks
	c.Add("quota per user", quota.n == 0, "%d users took %d units for %d draws answered 0000 and %d unknown%s",
		len(users), taken, answered, unknown, quota)
	c.Add("records per user", records.n == 0, "%d award records for %d units taken%s", recTotals, taken, records)
	c.Add("answered draws recorded", answers.n == 0, "%d draws answered 0000 checked for a record of their award%s",
		answered, answers)
	return c
}

// offenders counts the users failing a check and keeps the first few descriptions.
type offenders struct {
	n     int
	first []string
}

const offendersShown = 3

func (o *offenders) add(format string, args ...any) {
	o.n++
	if len(o.first) < offendersShown {
		o.first = append(o.first, fmt.Sprintf(format, args...))
	}
}

// String is "" for none, else "; N users off: first, second…".
func (o offenders) String() string {
	if o.n == 0 {
		return ""
	}
	more := ""
	if o.n > len(o.first) {
		more = "; …"
	}
	return fmt.Sprintf("; %d users off: %s%s", o.n, strings.Join(o.first, "; "), more)
}
