package activity

import (
	"errors"
	"testing"
)

func TestQuotaTake(t *testing.T) {
	t.Parallel()
	acct := func(total, day, month int64) *Account {
		return &Account{Total: 10, TotalSurplus: total, Day: 3, DaySurplus: day, Month: 5, MonthSurplus: month}
	}
	for _, tc := range []struct {
		name      string
		q         Quota
		want      error
		wantTotal int64
		wantDay   Period
		wantMonth Period
	}{
		{name: "no account", q: Quota{}, want: ErrTotalQuotaExhausted},
		{name: "total used up", q: Quota{Account: acct(0, 3, 5)}, want: ErrTotalQuotaExhausted},
		{name: "first draw of the month creates both rows", q: Quota{Account: acct(10, 3, 5)},
			wantTotal: 9, wantDay: Period{"2026-11-22", 3, 2}, wantMonth: Period{"2026-11", 5, 4}},
		{name: "month used up", q: Quota{Account: acct(8, 3, 0), Month: &Period{"2026-11", 5, 0}}, want: ErrMonthQuotaExhausted},
		{name: "day used up", q: Quota{Account: acct(8, 0, 3), Month: &Period{"2026-11", 5, 3}, Day: &Period{"2026-11-22", 3, 0}}, want: ErrDayQuotaExhausted},
		{name: "new day of a used month", q: Quota{Account: acct(8, 0, 3), Month: &Period{"2026-11", 5, 3}},
			wantTotal: 7, wantDay: Period{"2026-11-22", 3, 2}, wantMonth: Period{"2026-11", 5, 2}},
		{name: "limit zero", q: Quota{Account: &Account{Total: 5, TotalSurplus: 5, Month: 5, MonthSurplus: 5}}, want: ErrDayQuotaExhausted},
	} {
		before := tc.q
		var acctBefore Account
		if tc.q.Account != nil {
			acctBefore = *tc.q.Account
		}
		err := tc.q.Take("2026-11-22", "2026-11")
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
			continue
		}
		if tc.want != nil {
			if tc.q.Month != before.Month || tc.q.Day != before.Day || (tc.q.Account != nil && *tc.q.Account != acctBefore) {
				t.Errorf("%s: a refused take changed the quota", tc.name)
			}
			continue
		}
		if tc.q.Account.TotalSurplus != tc.wantTotal || *tc.q.Day != tc.wantDay || *tc.q.Month != tc.wantMonth {
			t.Errorf("%s: total %d day %+v month %+v", tc.name, tc.q.Account.TotalSurplus, *tc.q.Day, *tc.q.Month)
		}
		if tc.q.Account.DaySurplus != tc.wantDay.Surplus || tc.q.Account.MonthSurplus != tc.wantMonth.Surplus {
			t.Errorf("%s: account mirrors %d/%d", tc.name, tc.q.Account.DaySurplus, tc.q.Account.MonthSurplus)
		}
	}
}

func TestQuotaAddAndView(t *testing.T) {
	t.Parallel()
	var q Quota
	if v := q.View(); v != (View{}) {
		t.Errorf("no account: %+v", v)
	}
	q.Add(Count{Total: 5, Day: 2, Month: 4})
	if v := q.View(); v != (View{Total: 5, TotalSurplus: 5, Day: 2, DaySurplus: 2, Month: 4, MonthSurplus: 4}) {
		t.Errorf("after first recharge: %+v", v)
	}
	if err := q.Take("d", "m"); err != nil {
		t.Fatal(err)
	}
	q.Add(Count{Total: 1, Day: 1, Month: 1})
	want := View{Total: 6, TotalSurplus: 5, Day: 3, DaySurplus: 2, Month: 5, MonthSurplus: 4}
	if v := q.View(); v != want {
		t.Errorf("after take and recharge: %+v, want %+v", v, want)
	}
	if q.UsedTotal() != 1 || q.UsedToday() != 1 {
		t.Errorf("used total %d today %d", q.UsedTotal(), q.UsedToday())
	}
}
