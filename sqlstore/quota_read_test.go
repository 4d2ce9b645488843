package sqlstore_test

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/flash"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/sqlstore/sqltest"
)

// TestGroupedQuotaReads reads many users' quotas at once, of two days (two period scopes
// in one group), so that the reads share statements: each gets its own user's rows as
// recharges and written draws left them, a user without an account gets none, and a read
// whose context has ended fails without its rows.
func TestGroupedQuotaReads(t *testing.T) {
	t.Parallel()
	sqltest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := t.Context()
		f := newUserFixture(t, db)
		const users, readers, activityID = 30, 4, 100501
		want := map[activity.QuotaKey]activity.Quota{}
		for u := range users {
			k1, k2 := key(day1, fmt.Sprintf("qr%02d", u), activityID), key(day2, fmt.Sprintf("qr%02d", u), activityID)
			var q activity.Quota
			if u%5 != 4 {
				c := activity.Count{Total: int64(5 + u), Day: 3, Month: 4}
				f.recharge(t, k1, fmt.Sprintf("qr-biz-%d", u), c)
				q.Add(c)
			}
			if u%3 == 0 && q.Account != nil {
				if errs := f.store.ApplyDraws(ctx, []flash.Event{drawEvent(k1, fmt.Sprintf("qr-draw-%d", u), 101, at)}); errs[0] != nil {
					t.Fatal(errs[0])
				}
				if err := q.Take(day1.Day, day1.Month); err != nil {
					t.Fatal(err)
				}
			}
			want[k1] = q
			q2 := q.Clone()
			q2.Day = nil // day1's row is not day2's
			want[k2] = q2
		}
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			mu    sync.Mutex
			bad   []string
		)
		for k, w := range want {
			for range readers {
				wg.Go(func() {
					<-start
					got, err := f.store.Quota(ctx, k)
					if err != nil || !reflect.DeepEqual(got, w) {
						mu.Lock()
						defer mu.Unlock()
						bad = append(bad, fmt.Sprintf("%s %s: %s, %v; want %s", k.UserID, k.Day, show(got), err, show(w)))
					}
				})
			}
		}
		close(start)
		wg.Wait()
		for _, b := range bad {
			t.Error(b)
		}
		done, cancel := context.WithCancel(ctx)
		cancel()
		if q, err := f.store.Quota(done, key(day1, "qr00", activityID)); err == nil || q.Account != nil {
			t.Errorf("read with an ended context = %s, %v; want an error and no rows", show(q), err)
		}
	})
}

func show(q activity.Quota) string {
	s := "account <nil>"
	if q.Account != nil {
		s = fmt.Sprintf("account %+v", *q.Account)
	}
	if q.Month != nil {
		s += fmt.Sprintf(" month %+v", *q.Month)
	}
	if q.Day != nil {
		s += fmt.Sprintf(" day %+v", *q.Day)
	}
	return s
}
