package reconcile

import (
	"strings"
	"testing"

	"github.com/bigmarket/bigmarket/activity"
)

func TestUserDrawChecks(t *testing.T) {
	// quota returns a quota of 150 recharged with used units taken from each of account,
	// month and day.
	quota := func(total, month, day int64) activity.Quota {
		return activity.Quota{
			Account: &activity.Account{Total: 150, TotalSurplus: 150 - total, Day: 150, DaySurplus: 150 - total, Month: 150, MonthSurplus: 150 - total},
			Month:   &activity.Period{Key: "2026-12", Count: 150, Surplus: 150 - month},
			Day:     &activity.Period{Key: "2026-12-02", Count: 150, Surplus: 150 - day},
		}
	}
	ok := UserDraws{UserID: "u1", Answered: []int{101, 102, 101}, Records: []int{101, 101, 102}, Quota: quota(3, 3, 3)}
	for _, tc := range []struct {
		name string
		user UserDraws
		fail []string // names of the checks that fail
		text string   // in the failing check's detail
	}{
		{"answers, records and quota agree", ok, nil, ""},
		{"a 0009 draw recorded", UserDraws{UserID: "u2", Answered: []int{101}, Unknown: 1, Records: []int{103, 101}, Quota: quota(2, 2, 2)}, nil, ""},
		{"a 0009 draw not recorded", UserDraws{UserID: "u3", Answered: []int{101}, Unknown: 1, Records: []int{101}, Quota: quota(1, 1, 1)}, nil, ""},
		{"a unit taken beyond the answers", UserDraws{UserID: "u4", Answered: []int{101}, Records: []int{101, 101}, Quota: quota(2, 2, 2)},
			[]string{"quota per user"}, "u4 took 2 units for 1 draws answered 0000 and 0 unknown"},
		{"an answered draw lost", UserDraws{UserID: "u5", Answered: []int{101, 104}, Records: []int{101}, Quota: quota(1, 1, 1)},
			[]string{"quota per user", "answered draws recorded"}, "u5 was answered award 104"},
		{"the answer's award differs from the record's", UserDraws{UserID: "u6", Answered: []int{101, 104}, Records: []int{101, 105}, Quota: quota(2, 2, 2)},
			[]string{"answered draws recorded"}, "u6 was answered award 104"},
		{"a record without its unit", UserDraws{UserID: "u7", Answered: []int{101}, Unknown: 1, Records: []int{101, 101}, Quota: quota(1, 1, 1)},
			[]string{"records per user"}, "u7 has 2 award records for 1 units taken"},
		{"the day taken apart from the account", UserDraws{UserID: "u8", Answered: []int{101}, Records: []int{101}, Quota: quota(1, 1, 2)},
			[]string{"quota per user"}, "u8 took 1 units of its account, 1 of its month, 2 of its day"},
		{"no account", UserDraws{UserID: "u9"}, []string{"quota per user"}, "u9 has no quota account"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checks := UserDrawChecks([]UserDraws{ok, tc.user})
			var failed []string
			for _, c := range checks {
				if !c.Pass {
					failed = append(failed, c.Name)
					if tc.text != "" && c.Name == tc.fail[len(tc.fail)-1] && !strings.Contains(c.Detail, tc.text) {
						t.Errorf("%s: %q lacks %q", c.Name, c.Detail, tc.text)
					}
				}
			}
			if strings.Join(failed, ",") != strings.Join(tc.fail, ",") {
				t.Errorf("failed checks %v, want %v: %+v", failed, tc.fail, checks)
			}
			if checks.Pass() != (len(tc.fail) == 0) {
				t.Errorf("pass %v with failed checks %v", checks.Pass(), failed)
			}
		})
	}
}

func TestUserDrawChecksNamesFewOffenders(t *testing.T) {
	var users []UserDraws
	for i := range 10 {
		users = append(users, UserDraws{UserID: "x" + string(rune('a'+i))})
	}
	c := UserDrawChecks(users)[0]
	if c.Pass || !strings.Contains(c.Detail, "10 users off: xa has no quota account; xb") || strings.Contains(c.Detail, "xd") {
		t.Errorf("detail %q: want the count and the first three users", c.Detail)
	}
}
