package sqlstore_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/flash"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/raffle"
	"github.com/bigmarket/bigmarket/redis"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/sqlstore/sqltest"
)

// TestFlashCreditGreenChannel checks the flash draw's credit green channel on this store,
// a real Redis hot state and the award service: credit wins fixed in the hot state and
// not yet written are written by the credit query (raffle.CreditWins) and credited by the
// award green channel, while the draw writer (raffle.Service.ApplyDraws) and the
// send_award consumer run at the same time; every draw is written once, every credit win
// credited once under its order id, the other awards left to the writer, the SQL quota
// equal to the hot one, and no unwritten credit win left. A credit win SQL refuses is
// forgotten, not retried at every query.
func TestFlashCreditGreenChannel(t *testing.T) {
	t.Parallel()
	sqltest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		f := newGreenFixture(t, db)
		ctx := t.Context()
		client, err := redis.Open(ctx, redis.Options{Addrs: []string{testenv.RedisAddr(t)}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		hot := redis.NewDrawQuota(client, testenv.Unique("fgreen"))
		if err := hot.MarkReady(ctx); err != nil {
			t.Fatal(err)
		}
		svc := raffle.NewService(raffle.Options{Flash: raffle.Flash{Hot: hot, Writer: f.store,
			Rejected: func(err error) bool { return errors.Is(err, sqlstore.ErrDrawRejected) }}})
		green := raffle.CreditWins{S: svc}
		user := "flashgreen" + fmt.Sprint(db.Dialect)
		k := key(day1, user, 100301)
		f.recharge(t, k, "fg-"+user, activity.Count{Total: 100, Day: 100, Month: 100})
		_, _, err = hot.Take(ctx, k, "probe", at, time.Second)
		missing, ok := errors.AsType[*flash.HotMissing](err)
		if !ok {
			t.Fatalf("Take before load = %v", err)
		}
		if err := hot.Load(ctx, k, missing.Epoch, f.quota(t, k), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		// draw takes a unit in the hot state and fixes award on it, keeping the event among
		// the unwritten credit wins when the award is credit, as the flash draw does.
		draw := func(orderID string, awardID int, credit bool) flash.Event {
			t.Helper()
			p, _, err := hot.Take(ctx, k, orderID, at, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			e := flash.Event{OrderID: orderID, UserID: user, ActivityID: 100301, ActivityName: "测试活动", StrategyID: 100006,
				OrderTime: p.OrderTime, Day: p.Day, Month: p.Month, AwardID: awardID, AwardTitle: fmt.Sprint("award ", awardID),
				RuleValue: "1,100", AwardTime: at, Credit: credit}
			var keep *flash.Event
			if credit {
				keep = &e
			}
			o := flash.Outcome{AwardID: awardID, AwardTitle: e.AwardTitle, RuleValue: e.RuleValue, AwardTime: at.UnixMilli(), Credit: credit}
			if _, err := hot.Fix(ctx, user, 100301, orderID, o, keep); err != nil {
				t.Fatal(err)
			}
			return e
		}
		const rounds = 10
		var wins []string
		for i := range rounds {
			win := draw(fmt.Sprintf("fgw-%d", i), 101, true)
			other := draw(fmt.Sprintf("fgo-%d", i), 104, false)
			wins = append(wins, win.OrderID)
			if i%2 == 1 {
				// The writer held back: a credit query alone credits the win, at once.
				if err := green.Settle(ctx, user); err != nil {
					t.Fatal(err)
				}
				if err := f.awards.Settle(ctx, user); err != nil {
					t.Fatal(err)
				}
				if os := f.creditOrders(t, user)[win.OrderID]; len(os) != 1 {
					t.Errorf("round %d: credit orders of the win before the writer: %+v, want one", i, os)
				}
				if recs, err := f.store.AwardRecords(ctx, user, 100301); err != nil || len(recs) != 2*i+1 {
					t.Errorf("round %d: %d award records before the writer, %v; want the %d written and the new win",
						i, len(recs), err, 2*i)
				}
			}
			start := make(chan struct{})
			errs := make(chan error, 8)
			var wg sync.WaitGroup
			// Two credit queries, each the flash green channel then the award one.
			for range 2 {
				wg.Go(func() {
					<-start
					if err := green.Settle(ctx, user); err != nil {
						errs <- err
						return
					}
					errs <- f.awards.Settle(ctx, user)
				})
			}
			// The draw writer, then the send_award consumer with what it committed.
			wg.Go(func() {
				<-start
				for _, err := range svc.ApplyDraws(ctx, []flash.Event{other, win}) {
					if err != nil {
						errs <- err
					}
				}
				m := award.SendAward{UserID: user, OrderID: win.OrderID, AwardID: 101, AwardTitle: win.AwardTitle, AwardConfig: win.RuleValue}
				errs <- f.awards.Distribute(ctx, []award.SendAward{m})[0]
			})
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Errorf("round %d: %v", i, err)
				}
			}
		}
		if amounts := f.checkCredited(t, user, wins...); len(amounts) != rounds {
			t.Errorf("%d business numbers credited, want %d", len(amounts), rounds)
		}
		recs, err := f.store.AwardRecords(ctx, user, 100301)
		if err != nil || len(recs) != 2*rounds {
			t.Fatalf("award records %d, %v; want %d", len(recs), err, 2*rounds)
		}
		for _, r := range recs {
			if want := map[int]award.State{101: award.StateCompleted, 104: award.StateCreate}[r.AwardID]; r.State != want {
				t.Errorf("record %s of award %d in %s, want %s", r.OrderID, r.AwardID, r.State, want)
			}
		}
		h, _, err := hot.Read(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if s := f.quota(t, k); fmt.Sprint(*h.Account, *h.Day, *h.Month) != fmt.Sprint(*s.Account, *s.Day, *s.Month) {
			t.Errorf("hot quota %+v %+v %+v, SQL %+v %+v %+v", *h.Account, *h.Day, *h.Month, *s.Account, *s.Day, *s.Month)
		}
		if us, err := hot.Unwritten(ctx, user); err != nil || len(us) != 0 {
			t.Errorf("unwritten credit wins %+v, %v after the rounds; want none", us, err)
		}

		// A credit win SQL refuses (no quota there): the query answers, the win goes.
		poor := key(day1, user+"p", 100301)
		if err := hot.Load(ctx, poor, missing.Epoch, activity.Quota{Account: &activity.Account{Total: 1, TotalSurplus: 1, Day: 1,
			DaySurplus: 1, Month: 1, MonthSurplus: 1}}, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := hot.Take(ctx, poor, "fg-poor", at, time.Minute); err != nil {
			t.Fatal(err)
		}
		e := flash.Event{OrderID: "fg-poor", UserID: poor.UserID, ActivityID: 100301, OrderTime: at, Day: poor.Day, Month: poor.Month,
			AwardID: 101, AwardTime: at, Credit: true}
		if _, err := hot.Fix(ctx, poor.UserID, 100301, "fg-poor", flash.Outcome{AwardID: 101, Credit: true}, &e); err != nil {
			t.Fatal(err)
		}
		if err := green.Settle(ctx, poor.UserID); err != nil {
			t.Errorf("green channel of a refused win: %v", err)
		}
		if us, err := hot.Unwritten(ctx, poor.UserID); err != nil || len(us) != 0 {
			t.Errorf("refused credit win still kept: %+v %v", us, err)
		}
	})
}
