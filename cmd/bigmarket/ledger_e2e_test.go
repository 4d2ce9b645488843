package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/redis"
)

// The fault tests assert the same invariants of the draw (checkLedger, checkStock):
//
//   - a draw answered 0000 is never lost: its award record appears, with that award;
//   - a draw not answered (0009, a transport error) is absent or recorded once;
//   - no unit of quota is taken twice, nor lost: each unit taken ends as one raffle
//     order, and each order used has one award record and one task;
//   - 0006 only when nothing was taken; an unknown outcome is 0009;
//   - no award beyond its stock.

// drawLedger is what a client saw of one user's draws in faultActivity: the awards of
// the draws answered 0000, and how many draws answered 0009 (outcome unknown).
type drawLedger struct {
	answered []int
	unknown  int
}

// note adds a draw's answer to the ledger.
func (l *drawLedger) note(t *testing.T, r envelope) {
	t.Helper()
	switch r.Code {
	case "0000":
		res, err := dataOf[drawResult](r)
		if err != nil || res.AwardID == 0 {
			t.Errorf("draw data %s: %v", r.Data, err)
		}
		l.answered = append(l.answered, res.AwardID)
	case "0009":
		l.unknown++
	}
}

// checkLedger checks the draw invariants for user's draws in faultActivity against what
// the client saw, once the draw writer has drained (d.drainDraws): every draw answered 0000 has its
// award record with the award it was answered with; there are no more records than draws
// answered 0000 or 0009 (a draw refused took nothing, a draw not answered is recorded at
// most once); each record is on its own raffle order, which is used, with one task; the
// units of quota taken are the raffle orders; the hot quota, when there is one, equals
// SQL's. It returns the user's award records and units taken.
func (d *deployment) checkLedger(t *testing.T, user string, l drawLedger) (records int, taken int64) {
	t.Helper()
	ctx := context.Background()
	recs, err := d.users.AwardRecords(ctx, user, faultActivity)
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[int]int{}
	onOrder := map[string]int{}
	for _, r := range recs {
		recorded[r.AwardID]++
		onOrder[r.OrderID]++
	}
	for _, id := range l.answered {
		if recorded[id] == 0 {
			t.Errorf("user %s: a draw answered 0000 with award %d has no record (answered %v, records %v)", user, id, l.answered, recorded)
		}
		recorded[id]--
	}
	if len(recs) > len(l.answered)+l.unknown {
		t.Errorf("user %s: %d award records for %d draws answered 0000 and %d answered 0009", user, len(recs), len(l.answered), l.unknown)
	}
	orders, err := d.users.RaffleOrders(ctx, user, faultActivity)
	if err != nil {
		t.Fatal(err)
	}
	used := 0
	for _, o := range orders {
		if o.State == activity.OrderUsed {
			used++
			if onOrder[o.OrderID] != 1 {
				t.Errorf("user %s: used order %s has %d award records", user, o.OrderID, onOrder[o.OrderID])
			}
		}
	}
	if used != len(recs) || len(onOrder) != len(recs) {
		t.Errorf("user %s: %d award records on %d orders, %d used raffle orders", user, len(recs), len(onOrder), used)
	}
	tasks, err := d.users.Tasks(ctx, user)
	if err != nil || len(tasks) != len(recs) {
		t.Errorf("user %s: %d tasks (%v) for %d award records", user, len(tasks), err, len(recs))
	}
	now := time.Now().In(shanghai(t))
	key := activity.QuotaKey{UserID: user, ActivityID: faultActivity, Day: now.Format(time.DateOnly), Month: now.Format("2006-01")}
	q, err := d.users.Quota(ctx, key)
	if err != nil || q.Account == nil {
		t.Fatalf("user %s: SQL quota %+v %v", user, q.Account, err)
	}
	taken = q.Account.Total - q.Account.TotalSurplus
	if taken != int64(len(orders)) {
		t.Errorf("user %s: %d units of quota taken for %d raffle orders (%d used)", user, taken, len(orders), used)
	}
	if h, ok, err := redis.NewDrawQuota(d.redis, d.prefix).Read(ctx, key); err != nil || (ok && *h.Account != *q.Account) {
		t.Errorf("user %s: hot quota %s (%v), SQL %s", user, showQuota(h), err, showQuota(q))
	}
	return len(recs), taken
}

// checkStock fails when an award of faultStrategy has more records than its stock.
func (d *deployment) checkStock(t *testing.T) {
	t.Helper()
	counts, err := d.users.AwardRecordCounts(context.Background(), faultStrategy)
	if err != nil {
		t.Fatal(err)
	}
	for _, aw := range readStockAwards(t, d.db) {
		if aw.id != 101 && counts[aw.id] > aw.count {
			t.Errorf("award %d: %d records, stock %d", aw.id, counts[aw.id], aw.count)
		}
	}
}

// pendingDraws returns user's pending draws in faultActivity: order id → the
// outcome fixed for it ("" before its pick).
func (d *deployment) pendingDraws(t *testing.T, user string) map[string]string {
	t.Helper()
	key := fmt.Sprintf("%s:fq:{u:%s}:%d:p", d.prefix, user, faultActivity)
	fields, err := d.redis.HGetAll(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	pending := map[string]string{}
	for f, v := range fields {
		if order, ok := strings.CutPrefix(f, "i:"); ok {
			pending[order] += ""
		} else if order, ok := strings.CutPrefix(f, "o:"); ok {
			pending[order] = v
		}
	}
	return pending
}

// pendingLease returns when the lease of user's pending draw order ends.
func (d *deployment) pendingLease(t *testing.T, user, order string) time.Time {
	t.Helper()
	key := fmt.Sprintf("%s:fq:{u:%s}:%d:p", d.prefix, user, faultActivity)
	ms, err := d.redis.HGet(context.Background(), key, "l:"+order).Int64()
	if err != nil {
		t.Fatalf("lease of pending draw %s: %v", order, err)
	}
	return time.UnixMilli(ms)
}

// endsClean ends a fault test: no award beyond its stock, every one of the total award
// records distributed, and then a clean bigmarket verify (run with env), whose report is
// logged.
func (d *deployment) endsClean(t *testing.T, env []string, total int) {
	t.Helper()
	d.checkStock(t)
	testenv.Eventually(t, 120*time.Second, "every award distributed", func() bool {
		return d.awardStates(t)["completed"] == total
	})
	var out string
	testenv.Eventually(t, 60*time.Second, "verify clean", func() bool {
		var clean bool
		out, clean = d.verify(t, env, "-grace", "0s")
		return clean
	})
	t.Logf("verify: %s", strings.TrimSpace(out))
}
