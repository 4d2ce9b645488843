package sqlstore_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/sqlstore/sqltest"
)

// TestGroupCommit drives many users' participations and award records at once through a
// store with one lane per database, so that they share transactions, and checks that
// grouping changes no outcome: each take sees the takes before it, a write that cannot be
// made fails alone, and every count and row is exact.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	sqltest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := t.Context()
		f := newUserFixture(t, db, sqlstore.GroupCommit{Lanes: 1, Max: 64})
		s := f.store
		const (
			users, tries, dayQuota, activityID = 40, 5, 3, 100301
		)
		keys := make([]activity.QuotaKey, users)
		for u := range users {
			keys[u] = key(day1, fmt.Sprintf("gc%03d", u), activityID)
			f.recharge(t, keys[u], "gc-biz-"+keys[u].UserID, activity.Count{Total: 10, Day: dayQuota, Month: 10})
		}
		// An order id that exists already: its participation fails alone.
		dup := key(day1, "gcdup", activityID)
		f.recharge(t, dup, "gc-biz-dup", activity.Count{Total: 10, Day: dayQuota, Month: 10})
		f.participate(t, dup, "gc-taken", at)

		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			start   = make(chan struct{})
			taken   = map[string][]string{} // user → new order ids
			dayOut  = map[string]int{}
			dupErr  error
			others  []error
			ordered = map[string]bool{}
		)
		for u := range users {
			for i := range tries {
				wg.Go(func() {
					k := keys[u]
					id := fmt.Sprintf("gc-%s-%d", k.UserID, i)
					<-start
					tk, err := s.Participate(ctx, k, raffleOrder(k, id, at), false, take(k))
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						taken[k.UserID] = append(taken[k.UserID], tk.Order.OrderID)
						if ordered[tk.Order.OrderID] || tk.Order.OrderID != id {
							others = append(others, fmt.Errorf("order %s handed out as %s", id, tk.Order.OrderID))
						}
						ordered[tk.Order.OrderID] = true
					case errors.Is(err, activity.ErrDayQuotaExhausted):
						dayOut[k.UserID]++
					default:
						others = append(others, err)
					}
				})
			}
		}
		wg.Go(func() {
			<-start
			_, err := s.Participate(ctx, dup, raffleOrder(dup, "gc-taken", at), false, take(dup))
			mu.Lock()
			defer mu.Unlock()
			dupErr = err
		})
		close(start)
		wg.Wait()
		if len(others) > 0 {
			t.Fatalf("unexpected participation errors: %v", others)
		}
		if dupErr == nil || errors.Is(dupErr, activity.ErrDayQuotaExhausted) {
			t.Errorf("participation with an existing order id: %v, want a failure of its own", dupErr)
		}
		if q, err := s.Quota(ctx, dup); err != nil || q.Day.Surplus != dayQuota-1 {
			t.Errorf("quota of the failed participation's user: %+v, %v", q.Day, err)
		}
		for _, k := range keys {
			want := dayQuota
			if len(taken[k.UserID]) != want || dayOut[k.UserID] != tries-want {
				t.Errorf("%s: %d taken, %d refused; want %d, %d", k.UserID, len(taken[k.UserID]), dayOut[k.UserID], want, tries-want)
			}
			q, err := s.Quota(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			if q.Day == nil || q.Day.Surplus != 0 || q.Account.TotalSurplus != 10-dayQuota || q.Month.Surplus != 10-dayQuota {
				t.Errorf("%s quota after the run: %+v %+v %+v", k.UserID, q.Account, q.Month, q.Day)
			}
		}
		st := s.GroupStats()
		if st.Participations < users*tries || st.ParticipationTxs >= st.Participations {
			t.Errorf("participations were not grouped: %+v", st)
		}

		// Award records: every new order once, some twice, some orders that do not exist.
		var recOK, recUsed int
		others = nil
		record := func(k activity.QuotaKey, orderID string, awardID int) {
			rec := award.Record{UserID: k.UserID, ActivityID: activityID, StrategyID: 100006, OrderID: orderID,
				AwardID: awardID, AwardTime: at, State: award.StateCreate}
			task := award.NewSendAwardTask(rec, "")
			task.MessageID = fmt.Sprintf("%s-%d", orderID, awardID) // a second record's task would be new
			err := s.RecordAward(ctx, rec, task)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				recOK++
			case errors.Is(err, activity.ErrOrderUsed):
				recUsed++
			default:
				others = append(others, err)
			}
		}
		start = make(chan struct{})
		want := 0
		for _, k := range keys {
			for i, id := range taken[k.UserID] {
				want++
				wg.Go(func() { <-start; record(k, id, 101) })
				if i == 0 {
					wg.Go(func() { <-start; record(k, id, 102) })
					wg.Go(func() { <-start; record(k, id+"-missing", 103) })
				}
			}
		}
		close(start)
		wg.Wait()
		if len(others) > 0 || recOK != want || recUsed != 2*users {
			t.Fatalf("records: %d ok, %d used, errors %v; want %d, %d", recOK, recUsed, others, want, 2*users)
		}
		for _, k := range keys {
			recs, err := s.AwardRecords(ctx, k.UserID, activityID)
			if err != nil || len(recs) != len(taken[k.UserID]) {
				t.Errorf("%s: %d award records, %v; want %d", k.UserID, len(recs), err, len(taken[k.UserID]))
			}
			tasks, err := s.Tasks(ctx, k.UserID)
			if err != nil || len(tasks) != len(taken[k.UserID]) {
				t.Errorf("%s: %d tasks, %v; want %d", k.UserID, len(tasks), err, len(taken[k.UserID]))
			}
			if o, ok := f.unusedOrder(t, k); ok {
				t.Errorf("%s: unused order %s left", k.UserID, o.OrderID)
			}
		}
		if st := s.GroupStats(); st.RecordTxs >= st.Records {
			t.Errorf("award records were not grouped: %+v", st)
		}
	})
}
