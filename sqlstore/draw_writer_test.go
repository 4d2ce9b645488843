package sqlstore_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/flash"
	"github.com/bigmarket/bigmarket/outbox"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/sqlstore/sqltest"
)

// TestApplyDraws runs the draw writer's store on SQLite and MySQL: a batch writes each
// draw's order, quota unit, award record and task once, however often it is delivered,
// and a draw the quota cannot give is rejected alone.
func TestApplyDraws(t *testing.T) {
	t.Parallel()
	sqltest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		f := newUserFixture(t, db)
		var committed atomic.Int64
		f.store = sqlstore.NewUserStoreWith(f.dbs, f.router, sqlstore.UserOptions{
			Committed: func(ts []outbox.Task) { committed.Add(int64(len(ts))) }})
		t.Run("idempotent", func(t *testing.T) { f.testApplyDrawsIdempotent(t, &committed) })
		t.Run("concurrent", f.testApplyDrawsConcurrent)
	})
}

func drawEvent(k activity.QuotaKey, orderID string, award int, when time.Time) flash.Event {
	return flash.Event{OrderID: orderID, UserID: k.UserID, ActivityID: k.ActivityID, ActivityName: "测试活动",
		StrategyID: 100006, OrderTime: when, Day: k.Day, Month: k.Month, AwardID: award, AwardTitle: fmt.Sprint("award ", award),
		RuleValue: "1,100", AwardTime: when.Add(time.Millisecond)}
}

func (f *userFixture) testApplyDrawsIdempotent(t *testing.T, committed *atomic.Int64) {
	ctx := t.Context()
	k := key(day1, "drawer-1", 100401)
	f.recharge(t, k, "dw-biz", activity.Count{Total: 3, Day: 2, Month: 3})
	want, err := f.store.Quota(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	e1, e2 := drawEvent(k, "dw-1", 101, at), drawEvent(k, "dw-2", 102, at.Add(time.Second))
	nobody := drawEvent(key(day1, "drawer-none", 100401), "dw-x", 101, at)
	// The same draw twice in a batch, then the batch again (a redelivery).
	for round := range 2 {
		errs := f.store.ApplyDraws(ctx, []flash.Event{e1, e2, e1, nobody})
		for i, err := range errs[:3] {
			if err != nil {
				t.Fatalf("round %d: event %d: %v", round, i, err)
			}
		}
		if !errors.Is(errs[3], sqlstore.ErrDrawRejected) || !errors.Is(errs[3], activity.ErrTotalQuotaExhausted) {
			t.Fatalf("round %d: draw of a user without quota = %v", round, errs[3])
		}
	}
	for range 2 {
		if err := want.Take(k.Day, k.Month); err != nil {
			t.Fatal(err)
		}
	}
	got, err := f.store.Quota(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if *got.Account != *want.Account || *got.Month != *want.Month || *got.Day != *want.Day {
		t.Errorf("quota after two draws %+v %+v %+v, want %+v %+v %+v", *got.Account, *got.Month, *got.Day, *want.Account, *want.Month, *want.Day)
	}
	orders, err := f.store.RaffleOrders(ctx, k.UserID, k.ActivityID)
	if err != nil || len(orders) != 2 {
		t.Fatalf("RaffleOrders = %+v, %v; want 2", orders, err)
	}
	for _, o := range orders {
		if o.State != activity.OrderUsed {
			t.Errorf("order %s is %s, want used", o.OrderID, o.State)
		}
	}
	recs, err := f.store.AwardRecords(ctx, k.UserID, k.ActivityID)
	if err != nil || len(recs) != 2 || recs[0].OrderID != "dw-1" || recs[1].AwardID != 102 {
		t.Fatalf("AwardRecords = %+v, %v", recs, err)
	}
	tasks, err := f.store.Tasks(ctx, k.UserID)
	if err != nil || len(tasks) != 2 {
		t.Fatalf("Tasks = %d, %v; want 2", len(tasks), err)
	}
	if n := committed.Load(); n != 2 {
		t.Errorf("%d tasks handed to the relay, want 2", n)
	}
	// The third unit on the next day (the day's two are used), then a fourth the quota
	// does not have: rejected alone.
	next := key(day2, k.UserID, k.ActivityID)
	errs := f.store.ApplyDraws(ctx, []flash.Event{drawEvent(next, "dw-3", 101, at.Add(2*time.Second)), drawEvent(next, "dw-4", 101, at.Add(3*time.Second))})
	if errs[0] != nil || !errors.Is(errs[1], sqlstore.ErrDrawRejected) {
		t.Fatalf("third and fourth draw: %v", errs)
	}
}

// testApplyDrawsConcurrent delivers the same draws to several writers at once, as two
// nodes may after a redelivery: one set of rows.
func (f *userFixture) testApplyDrawsConcurrent(t *testing.T) {
	ctx := t.Context()
	const users, draws, writers = 6, 5, 4
	var events []flash.Event
	for u := range users {
		k := key(day2, fmt.Sprintf("drawer-c%d", u), 100402)
		f.recharge(t, k, fmt.Sprintf("dwc-biz-%d", u), activity.Count{Total: draws, Day: draws, Month: draws})
		for d := range draws {
			events = append(events, drawEvent(k, fmt.Sprintf("dwc-%d-%d", u, d), 101, at.Add(time.Duration(d)*time.Second)))
		}
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			batch := append(append([]flash.Event(nil), events[w*3:]...), events[:w*3]...)
			for i, err := range f.store.ApplyDraws(ctx, batch) {
				if err != nil {
					t.Errorf("writer %d event %s: %v", w, batch[i].OrderID, err)
				}
			}
		})
	}
	wg.Wait()
	for u := range users {
		k := key(day2, fmt.Sprintf("drawer-c%d", u), 100402)
		q, err := f.store.Quota(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if q.Account.TotalSurplus != 0 || q.Day == nil || q.Day.Surplus != 0 {
			t.Errorf("user %d: quota %+v day %+v, want every unit used once", u, *q.Account, q.Day)
		}
		recs, err := f.store.AwardRecords(ctx, k.UserID, k.ActivityID)
		if err != nil || len(recs) != draws {
			t.Errorf("user %d: %d records, %v; want %d", u, len(recs), err, draws)
		}
	}
}
