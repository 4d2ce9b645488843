package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/rebate"
)

// creditLedger is what the user databases say of a user's credit: the credit orders by
// business number and the user's award records by order id with their state.
type creditLedger struct {
	orders map[string]money.Cents
	dups   int // business numbers with more than one order
	awards map[string]string
	sum    money.Cents
}

func (d *deployment) creditLedger(t *testing.T, user string) creditLedger {
	t.Helper()
	ctx := context.Background()
	l := creditLedger{orders: map[string]money.Cents{}, awards: map[string]string{}}
	orders, err := d.users.CreditOrders(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range orders {
		if _, ok := l.orders[o.OutBusinessNo]; ok {
			l.dups++
		}
		l.orders[o.OutBusinessNo] = o.Amount
		l.sum += o.Amount
	}
	recs, err := d.users.AwardRecords(ctx, user, faultActivity)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.AwardID == 101 { // 随机积分, user_credit_random
			l.awards[r.OrderID] = string(r.State)
		}
	}
	return l
}

// TestCreditGreenChannelE2E holds the award and rebate consumers back (fault point
// delay_credit_consumers) and checks that a credit query right after 随机积分 wins and a
// sign-in shows that credit at once, credited by the green channel under the events'
// business numbers; then the consumers start, deliver the same events, and change
// nothing; verify stays clean. The draw writer runs as usual, so a win's record may or
// may not be in SQL at the credit query.
func TestCreditGreenChannelE2E(t *testing.T) {
	d := newDeployment(t, "")
	_, base := d.start(t, "BIGMARKET_FAULT_DELAY_CREDIT_CONSUMERS=40s",
		"BIGMARKET_OUTBOX_GRACE=1s", "BIGMARKET_OUTBOX_EVERY=1s")
	d.armory(t, base)
	// user001 and user002 are on strategy 100006's blacklist: every draw wins 101.
	users := []string{"user001", "user002", testenv.Unique("gc")[:14], testenv.Unique("gc")[:14]}
	signIn := map[string]string{}
	after := map[string]creditLedger{}
	for _, u := range users {
		if code := d.recharge(t, base, u, 9012, "green-"+u).Code; code != "0000" {
			t.Fatalf("recharge %s: %s", u, code)
		}
		for i := range 4 {
			if r := call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{u, faultActivity}); r.Code != "0000" {
				t.Fatalf("draw %d of %s: %+v", i, u, r)
			}
		}
		if r := call(t, "POST", base+"/api/v1/raffle/activity/calendar_sign_rebate?userId="+u, nil); r.Code != "0000" {
			t.Fatalf("sign-in of %s: %+v", u, r)
		}
		before := d.creditLedger(t, u)
		if len(before.orders) != 0 {
			t.Fatalf("%s credited before any credit query, with the consumers held back: %v", u, before.orders)
		}
		for order, state := range before.awards {
			if state != string(award.StateCreate) {
				t.Fatalf("%s: award %s in %s before any credit query", u, order, state)
			}
		}
		got := creditOf(t, base, u)
		l := d.creditLedger(t, u)
		signIn[u] = u + "_" + string(rebate.TypeIntegral) + "_" + time.Now().In(shanghai(t)).Format("20060102")
		if l.orders[signIn[u]] != 1000 {
			t.Errorf("%s: sign-in credit %v, want 10.00 under %s", u, l.orders, signIn[u])
		}
		for order, state := range l.awards {
			if state != string(award.StateCompleted) || l.orders[order] <= 0 {
				t.Errorf("%s: credit award %s %s with credit %s after the credit query, want completed and credited", u, order, state, l.orders[order])
			}
		}
		if u == "user001" && len(l.awards) != 4 {
			t.Errorf("user001 (blacklisted) has %d credit awards, want 4", len(l.awards))
		}
		if got != l.sum || l.dups != 0 || len(l.orders) != len(l.awards)+1 {
			t.Errorf("%s: credit query answered %s; orders %v (sum %s, %d repeated) for %d credit awards and a sign-in",
				u, got, l.orders, l.sum, l.dups, len(l.awards))
		}
		after[u] = l
	}
	// All of that happened before the consumers existed.
	for _, topic := range []string{award.TopicSendAward, rebate.TopicSendRebate} {
		if _, err := d.consumerInfo(t, topic); err == nil {
			t.Fatalf("the %s consumer is already running: the test did not finish within the fault's hold", topic)
		}
	}

	// The consumers start and deliver every event again: nothing changes.
	testenv.Eventually(t, 120*time.Second, "the award and rebate consumers drained", func() bool {
		return d.eventsSettled(t, award.TopicSendAward) && d.eventsSettled(t, rebate.TopicSendRebate)
	})
	for _, u := range users {
		l := d.creditLedger(t, u)
		if fmt.Sprint(l.orders) != fmt.Sprint(after[u].orders) || l.dups != 0 {
			t.Errorf("%s: credit orders %v after the consumers, want %v as the green channel left them", u, l.orders, after[u].orders)
		}
		if got := creditOf(t, base, u); got != after[u].sum {
			t.Errorf("%s: credit %s after the consumers, want %s", u, got, after[u].sum)
		}
	}
	if d.deadLetters(t) != 0 {
		t.Errorf("send_award dead letters after the consumers: %d", d.deadLetters(t))
	}
	d.drainDraws(t)
	out, clean := d.verify(t, nil, "-grace", "0s")
	if !clean {
		t.Errorf("verify after the consumers:\n%.3000s", out)
	}
}

// shanghai is the deployment's zone of the sign-in day (the default).
func shanghai(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}
