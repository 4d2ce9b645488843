package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/rebate"
	"github.com/bigmarket/bigmarket/redis"
)

// lockWaits reads the award list's waitUnLockCount of the locked awards 105–107 of
// activity 100301 for the user.
func lockWaits(t *testing.T, base, userID string) map[int]int64 {
	t.Helper()
	r := call(t, "POST", base+"/api/v1/raffle/strategy/query_raffle_award_list", drawReq{userID, faultActivity})
	list, err := dataOf[[]struct {
		AwardID  int   `json:"awardId"`
		Wait     int64 `json:"waitUnLockCount"`
		Unlocked bool  `json:"isAwardUnlock"`
	}](r)
	if err != nil || r.Code != "0000" {
		t.Fatalf("query_raffle_award_list %s: %+v %v", userID, r, err)
	}
	w := map[int]int64{}
	for _, a := range list {
		if a.AwardID >= 105 && a.AwardID <= 107 {
			w[a.AwardID] = a.Wait
			if a.Unlocked != (a.Wait == 0) {
				t.Errorf("%s: award %d unlocked %v with %d draws to wait", userID, a.AwardID, a.Unlocked, a.Wait)
			}
		}
	}
	return w
}

// TestFlashGreenChannelWriterHeldBack is the issue's "green channel with the writer
// paused": with the draw writer held back (fault point
// delay_draw_writer) and the award and rebate consumers too, every answered draw shows at
// once in the user's account, in the award list's lock counts and — for 随机积分 wins and
// the sign-in — in the credit, credited once under the draw's order id; the only rows in
// SQL before the writer starts are the credit wins the green channel wrote. Then the
// writer and the consumers start and change none of it: one record per answered draw,
// credit orders as the green channel left them, the hot quota equal to SQL's, no dead
// letters, verify clean.
func TestFlashGreenChannelWriterHeldBack(t *testing.T) {
	const hold = "60s"
	d := newDeployment(t, "")
	_, base := d.start(t, "BIGMARKET_FAULT_DELAY_DRAW_WRITER="+hold, "BIGMARKET_FAULT_DELAY_CREDIT_CONSUMERS="+hold,
		"BIGMARKET_OUTBOX_GRACE=1s", "BIGMARKET_OUTBOX_EVERY=1s")
	d.armory(t, base)
	ctx := context.Background()
	// user001 is on strategy 100006's blacklist: every draw wins 101 (随机积分).
	users := []string{"user001", testenv.Unique("gw")[:14], testenv.Unique("gw")[:14]}
	const draws = 4
	answered := map[string][]string{} // credit wins' order ids are not in the answer: award ids
	credit := map[string]money.Cents{}
	for _, u := range users {
		if code := d.recharge(t, base, u, 9012, "gw-"+u).Code; code != "0000" {
			t.Fatalf("recharge %s: %s", u, code)
		}
		acct0 := accountOf(t, base, u, faultActivity)
		for i := range draws {
			r := call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{u, faultActivity})
			res, err := dataOf[drawResult](r)
			if r.Code != "0000" || err != nil {
				t.Fatalf("draw %d of %s: %+v %v", i, u, r, err)
			}
			answered[u] = append(answered[u], fmt.Sprint(res.AwardID))
			n := int64(i + 1)
			// At once: the account and the lock counts.
			if a := accountOf(t, base, u, faultActivity); a["totalCountSurplus"] != acct0["totalCountSurplus"]-n ||
				a["dayCountSurplus"] != acct0["dayCount"]-n || a["monthCountSurplus"] != acct0["monthCount"]-n {
				t.Errorf("%s after %d draws: account %v (before %v)", u, n, a, acct0)
			}
			want := map[int]int64{105: max(3-n, 0), 106: max(2-n, 0), 107: max(1-n, 0)}
			if w := lockWaits(t, base, u); fmt.Sprint(w) != fmt.Sprint(want) {
				t.Errorf("%s after %d draws: lock waits %v, want %v", u, n, w, want)
			}
			// At once: the credit of every 随机积分 won so far.
			got := creditOf(t, base, u)
			l := d.creditLedger(t, u)
			wins := 0
			for _, a := range answered[u] {
				if a == "101" {
					wins++
				}
			}
			if len(l.awards) != wins || l.dups != 0 || len(l.orders) != wins || got != l.sum {
				t.Errorf("%s after %d draws (%v): credit %s, credit orders %v (%d repeated), 101 records %v; want one completed record and one order per 101 won",
					u, n, answered[u], got, l.orders, l.dups, l.awards)
			}
			for order, state := range l.awards {
				if state != string(award.StateCompleted) || l.orders[order] <= 0 {
					t.Errorf("%s: credit award %s %s with credit %s, want completed and credited", u, order, state, l.orders[order])
				}
			}
		}
		if r := call(t, "POST", base+"/api/v1/raffle/activity/calendar_sign_rebate?userId="+u, nil); r.Code != "0000" {
			t.Fatalf("sign-in of %s: %+v", u, r)
		}
		got := creditOf(t, base, u)
		l := d.creditLedger(t, u)
		if got != l.sum || l.orders[u+"_"+string(rebate.TypeIntegral)+"_"+time.Now().In(shanghai(t)).Format("20060102")] != 1000 {
			t.Errorf("%s: credit %s after the sign-in, orders %v", u, got, l.orders)
		}
		credit[u] = got
		// Only the credit wins are in SQL: the green channel wrote them, not the writer.
		recs, err := d.users.AwardRecords(ctx, u, faultActivity)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.AwardID != 101 {
				t.Errorf("%s: record of award %d in SQL with the draw writer held back", u, r.AwardID)
			}
		}
	}
	if slices.Contains(answered["user001"], "101") == false || len(answered["user001"]) != draws {
		t.Fatalf("user001 (blacklisted) answered %v, want 101 each time", answered["user001"])
	}
	// All of that happened before the writer and the consumers existed.
	if _, err := d.drawWriterInfo(t); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("the draw writer is already running (%v): the test did not finish within the fault's hold", err)
	}
	for _, topic := range []string{award.TopicSendAward, rebate.TopicSendRebate} {
		if _, err := d.consumerInfo(t, topic); err == nil {
			t.Fatalf("the %s consumer is already running: the test did not finish within the fault's hold", topic)
		}
	}

	// The writer and the consumers start: nothing changes.
	testenv.Eventually(t, 180*time.Second, "the draw writer and the award and rebate consumers drained", func() bool {
		info, err := d.drawWriterInfo(t)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 &&
			d.eventsSettled(t, award.TopicSendAward) && d.eventsSettled(t, rebate.TopicSendRebate)
	})
	d.drainDraws(t)
	hot := redis.NewDrawQuota(d.redis, d.prefix)
	day, month := time.Now().In(shanghai(t)).Format(time.DateOnly), time.Now().In(shanghai(t)).Format("2006-01")
	for _, u := range users {
		recs, err := d.users.AwardRecords(ctx, u, faultActivity)
		if err != nil {
			t.Fatal(err)
		}
		var recorded []string
		for _, r := range recs {
			recorded = append(recorded, fmt.Sprint(r.AwardID))
		}
		if slices.Sort(recorded); fmt.Sprint(recorded) != fmt.Sprint(slices.Sorted(slices.Values(answered[u]))) {
			t.Errorf("%s: records %v after the writer, answered %v", u, recorded, answered[u])
		}
		l := d.creditLedger(t, u)
		if l.sum != credit[u] || l.dups != 0 {
			t.Errorf("%s: credit orders %v (sum %s, %d repeated) after the writer and consumers, want the %s the green channel gave",
				u, l.orders, l.sum, l.dups, credit[u])
		}
		if got := creditOf(t, base, u); got != credit[u] {
			t.Errorf("%s: credit %s after the writer, want %s", u, got, credit[u])
		}
		key := activity.QuotaKey{UserID: u, ActivityID: faultActivity, Day: day, Month: month}
		h, ok, err := hot.Read(ctx, key)
		if err != nil || !ok {
			t.Fatalf("hot quota of %s: %v %v", u, ok, err)
		}
		s, err := d.users.Quota(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if showQuota(h) != showQuota(s) {
			t.Errorf("%s: hot quota %s, SQL %s after the writer", u, showQuota(h), showQuota(s))
		}
		if left, err := hot.Unwritten(ctx, u); err != nil || len(left) != 0 {
			t.Errorf("%s: unwritten credit wins %+v %v after the writer, want none", u, left, err)
		}
	}
	if d.deadLetters(t) != 0 {
		t.Errorf("send_award dead letters: %d", d.deadLetters(t))
	}
	out, clean := d.verify(t, nil, "-grace", "0s")
	if !clean {
		t.Errorf("verify after the writer:\n%.3000s", out)
	}
}

// TestFlashProvisionRaisesHotQuota provisions users who already drew
// (so they have hot copies): their account answers the new units at once, from the hot
// copy, and after the writer drained the hot copy equals SQL.
func TestFlashProvisionRaisesHotQuota(t *testing.T) {
	d := newDeployment(t, "")
	_, base := d.start(t)
	d.armory(t, base)
	s := d.stack(base)
	ctx := context.Background()
	users := make([]string, 20)
	for i := range users {
		users[i] = fmt.Sprintf("fp%s_%d", d.prefix[len(d.prefix)-6:], i)
	}
	req := func(batch string) map[string]any {
		return map[string]any{"activityId": faultActivity, "sku": 9013, "outBusinessNo": batch, "users": users}
	}
	if r, p := provisionCall(t, s, req("p1")); r.Code != "0000" || p != (provisioned{len(users), 0}) {
		t.Fatalf("provision: %+v %+v", r, p)
	}
	before := map[string]map[string]int64{}
	for _, u := range users {
		if r := call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{u, faultActivity}); r.Code != "0000" {
			t.Fatalf("draw of %s: %+v", u, r)
		}
		before[u] = accountOf(t, base, u, faultActivity)
	}
	if r, p := provisionCall(t, s, req("p2")); r.Code != "0000" || p != (provisioned{len(users), 0}) {
		t.Fatalf("second provision: %+v %+v", r, p)
	}
	for _, u := range users {
		a, b := accountOf(t, base, u, faultActivity), before[u]
		for _, f := range []string{"totalCount", "totalCountSurplus", "dayCount", "dayCountSurplus", "monthCount", "monthCountSurplus"} {
			if a[f] != b[f]+5 {
				t.Errorf("%s: %s %d right after a provisioning of 5 draws, was %d", u, f, a[f], b[f])
			}
		}
	}
	d.drainDraws(t)
	hot := redis.NewDrawQuota(d.redis, d.prefix)
	day, month := time.Now().In(shanghai(t)).Format(time.DateOnly), time.Now().In(shanghai(t)).Format("2006-01")
	for _, u := range users {
		key := activity.QuotaKey{UserID: u, ActivityID: faultActivity, Day: day, Month: month}
		h, ok, err := hot.Read(ctx, key)
		if err != nil || !ok {
			t.Fatalf("hot quota of %s: %v %v", u, ok, err)
		}
		q, err := d.users.Quota(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if showQuota(h) != showQuota(q) {
			t.Errorf("%s: hot quota %s, SQL %s", u, showQuota(h), showQuota(q))
		}
	}
	// The draws' awards are distributed behind them too.
	testenv.Eventually(t, 90*time.Second, "every award record completed", func() (bool, string) {
		for _, u := range users {
			recs, err := d.users.AwardRecords(ctx, u, faultActivity)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if r.State != award.StateCompleted {
					return false, fmt.Sprintf("%s: award %d %s", u, r.AwardID, r.State)
				}
			}
		}
		return true, ""
	})
	out, clean := d.verify(t, nil, "-grace", "0s")
	if !clean {
		t.Errorf("verify after provisioning:\n%.3000s", out)
	}
}
