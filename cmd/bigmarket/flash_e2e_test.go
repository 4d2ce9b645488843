package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/nats"
	"github.com/bigmarket/bigmarket/redis"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// awaitDrawRecords waits until the user has n award records in the activity (the draw
// writer writes them behind the answers).
func awaitDrawRecords(t *testing.T, users *sqlstore.UserStore, user string, activityID int64, n int) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, fmt.Sprintf("%d award records of %s", n, user), func() (bool, string) {
		recs, err := users.AwardRecords(context.Background(), user, activityID)
		if err != nil || len(recs) > n {
			t.Fatalf("award records of %s: %d, %v; want %d", user, len(recs), err, n)
		}
		return len(recs) == n, fmt.Sprintf("%d records", len(recs))
	})
}

// drainDraws waits until the deployment's draw writer has applied every draw event
// published so far.
func (d *deployment) drainDraws(t *testing.T) {
	t.Helper()
	d.withJetStream(t, func(_ context.Context, js jetstream.JetStream, opts nats.EventOptions) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := nats.NewEventDrain(js, nats.DrawEventOptions(opts), nats.TopicDraw).WaitApplied(ctx); err != nil {
			t.Fatalf("draw writer: %v", err)
		}
	})
}

// TestFlashManyUsersTwoProcesses draws users × draws through two flash serve processes
// sharing MariaDB, Redis and NATS, 64 in flight, a user's draws alternating between the
// processes, and checks after the writer drained: each user's hot quota equals its SQL
// quota and has lost exactly the answered draws; each answered draw has one record with the award it was answered with,
// one task and one used order; no award beyond its stock.
func TestFlashManyUsersTwoProcesses(t *testing.T) {
	// Issue 14's 10,000 users × 20 draws runs in "bench draw -draws-per-user" (bench/scale.sh);
	// this is the scale that fits about a minute under -race in CI.
	const users, draws = 600, 20
	d := newDeployment(t, "")
	_, a := d.start(t)
	_, b := d.start(t)
	bases := []string{a, b}
	d.armory(t, bases...)
	ids := make([]string, users)
	for i := range ids {
		ids[i] = fmt.Sprintf("fl%s%04d", d.prefix[len(d.prefix)-6:], i)
	}
	fanOut(users, 16, func(i int) {
		if r := d.recharge(t, bases[i%2], ids[i], 9011, ids[i]+"-9011"); r.Code != "0000" {
			t.Errorf("recharge %s: %s", ids[i], r)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	var (
		mu       sync.Mutex
		answered = map[string][]int{} // awards answered, by user
		codes    = map[string]int{}
	)
	fanOut(users*draws, 64, func(i int) {
		user := ids[i%users]
		// Draw k of a user goes to process (user + k) mod 2: each user's hot quota is
		// used from both.
		r := call(t, "POST", bases[(i%users+i/users)%2]+"/api/v1/raffle/activity/draw", drawReq{user, faultActivity})
		mu.Lock()
		defer mu.Unlock()
		codes[r.Code]++
		if r.Code == "0000" {
			var got struct {
				AwardID int `json:"awardId"`
			}
			if err := json.Unmarshal(r.Data, &got); err != nil {
				t.Errorf("draw data %s: %v", r.Data, err)
			}
			answered[user] = append(answered[user], got.AwardID)
		}
	})
	if codes["0000"] != users*draws {
		t.Fatalf("draw answers %v; want all %d 0000 (9011 gives each user 150)", codes, users*draws)
	}
	d.drainDraws(t)

	ctx := context.Background()
	hot := redis.NewDrawQuota(d.redis, d.prefix)
	day, month := time.Now().In(shanghai(t)).Format(time.DateOnly), time.Now().In(shanghai(t)).Format("2006-01")
	for _, user := range ids {
		key := activity.QuotaKey{UserID: user, ActivityID: faultActivity, Day: day, Month: month}
		h, ok, err := hot.Read(ctx, key)
		if err != nil || !ok {
			t.Fatalf("hot quota of %s: %v %v", user, ok, err)
		}
		s, err := d.users.Quota(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if s.Account == nil || *h.Account != *s.Account || h.Day == nil || s.Day == nil || *h.Day != *s.Day ||
			h.Month == nil || s.Month == nil || *h.Month != *s.Month {
			t.Fatalf("user %s: hot quota %s, SQL %s", user, showQuota(h), showQuota(s))
		}
		if used := s.Account.Total - s.Account.TotalSurplus; used != int64(len(answered[user])) {
			t.Errorf("user %s: %d units used, %d draws answered", user, used, len(answered[user]))
		}
		recs, err := d.users.AwardRecords(ctx, user, faultActivity)
		if err != nil {
			t.Fatal(err)
		}
		var recorded []int
		for _, r := range recs {
			recorded = append(recorded, r.AwardID)
		}
		slices.Sort(recorded)
		want := slices.Sorted(slices.Values(answered[user]))
		if !slices.Equal(recorded, want) {
			t.Errorf("user %s: records %v, answered %v", user, recorded, want)
		}
		orders, err := d.users.RaffleOrders(ctx, user, faultActivity)
		if err != nil || len(orders) != len(want) {
			t.Errorf("user %s: %d orders, %v; want %d", user, len(orders), err, len(want))
		}
		for _, o := range orders {
			if o.State != activity.OrderUsed {
				t.Errorf("order %s in state %s", o.OrderID, o.State)
			}
		}
		tasks, err := d.users.Tasks(ctx, user)
		if err != nil || len(tasks) != len(want) {
			t.Errorf("user %s: %d tasks, %v; want %d", user, len(tasks), err, len(want))
		}
	}
	t.Run("recharge reaches the hot quota", func(t *testing.T) { checkFlashRecharge(t, d, bases) })
	counts, err := d.users.AwardRecordCounts(ctx, faultStrategy)
	if err != nil {
		t.Fatal(err)
	}
	for _, aw := range readStockAwards(t, d.db) {
		if aw.id != 101 && counts[aw.id] > aw.count {
			t.Errorf("award %d: %d records, stock %d", aw.id, counts[aw.id], aw.count)
		}
	}
}

func showQuota(q activity.Quota) string {
	s := ""
	if q.Account != nil {
		s += fmt.Sprintf("account %+v ", *q.Account)
	}
	if q.Month != nil {
		s += fmt.Sprintf("month %+v ", *q.Month)
	}
	if q.Day != nil {
		s += fmt.Sprintf("day %+v", *q.Day)
	}
	return s
}

// checkFlashRecharge uses up a user's hot quota (SKU 9013: 5 draws), recharges it on the
// other node and draws at once: the new units are there, in the draw and the account.
func checkFlashRecharge(t *testing.T, d *deployment, bases []string) {
	user := fmt.Sprintf("flr%s", d.prefix[len(d.prefix)-6:])
	if r := d.recharge(t, bases[0], user, 9013, user+"-1"); r.Code != "0000" {
		t.Fatalf("recharge: %s", r)
	}
	for i := range 5 {
		if r := call(t, "POST", bases[i%2]+"/api/v1/raffle/activity/draw", drawReq{user, faultActivity}); r.Code != "0000" {
			t.Fatalf("draw %d: %+v", i+1, r)
		}
	}
	if r := call(t, "POST", bases[0]+"/api/v1/raffle/activity/draw", drawReq{user, faultActivity}); r.Code != "ERR_BIZ_006" {
		t.Fatalf("sixth draw: %s, want ERR_BIZ_006", r.Code)
	}
	if r := d.recharge(t, bases[1], user, 9013, user+"-2"); r.Code != "0000" {
		t.Fatalf("second recharge: %s", r)
	}
	r := call(t, "POST", bases[0]+"/api/v1/raffle/activity/query_user_activity_account", drawReq{user, faultActivity})
	var v map[string]int64
	if err := json.Unmarshal(r.Data, &v); err != nil || v["totalCount"] != 10 || v["totalCountSurplus"] != 5 || v["dayCountSurplus"] != 5 {
		t.Fatalf("account right after the recharge: %s %s", r.Code, r.Data)
	}
	if r := call(t, "POST", bases[0]+"/api/v1/raffle/activity/draw", drawReq{user, faultActivity}); r.Code != "0000" {
		t.Fatalf("draw right after the recharge: %+v", r)
	}
}

// TestFlashRedisFlush FLUSHALLs the Redis two flash serve processes share while users
// draw, each user retrying 0009 and 0006 (as a client is told to) until its quota is
// used up. Afterwards, once the writer drained: every draw answered 0000 has its record
// with that award; a user has no more records than draws answered 0000 plus those left
// unknown; each used unit of SQL quota has its record, never two; the hot quota rebuilt
// after the flush equals SQL; no award is granted beyond its stock; draws went on
// after the flush; and once the awards are distributed, bigmarket verify is clean.
func TestFlashRedisFlush(t *testing.T) {
	const users, quota = 60, 5 // SKU 9013: 5 draws
	d := newDeployment(t, startPrivateRedis(t))
	var bases []string
	for range 2 {
		_, base := d.start(t, "BIGMARKET_RECOVERY_GRACE=1s", "BIGMARKET_OUTBOX_GRACE=1s", "BIGMARKET_OUTBOX_EVERY=1s")
		bases = append(bases, base)
	}
	d.armory(t, bases...)
	ids := make([]string, users)
	for i := range ids {
		ids[i] = fmt.Sprintf("ff%s%03d", d.prefix[len(d.prefix)-5:], i)
		if r := d.recharge(t, bases[i%2], ids[i], 9013, ids[i]+"-9013"); r.Code != "0000" {
			t.Fatalf("recharge %s: %s", ids[i], r)
		}
	}
	var (
		mu                sync.Mutex
		answered          = map[string][]int{}
		unknown           = map[string]int{}
		codes             = map[string]int{}
		successes, afterN int
		flushed           bool
	)
	flushAt := make(chan struct{})
	var flusher sync.WaitGroup
	flusher.Go(func() {
		<-flushAt
		if err := d.redis.FlushAll(context.Background()).Err(); err != nil {
			t.Errorf("flushall: %v", err)
		}
		mu.Lock()
		flushed = true
		mu.Unlock()
	})
	deadline := time.Now().Add(2 * time.Minute)
	fanOut(users, 32, func(i int) {
		user := ids[i]
		for n := 0; time.Now().Before(deadline); n++ {
			r := call(t, "POST", bases[(i+n)%2]+"/api/v1/raffle/activity/draw", drawReq{user, faultActivity})
			mu.Lock()
			codes[r.Code]++
			switch r.Code {
			case "0000":
				var got struct {
					AwardID int `json:"awardId"`
				}
				if err := json.Unmarshal(r.Data, &got); err != nil {
					t.Errorf("draw data %s: %v", r.Data, err)
				}
				answered[user] = append(answered[user], got.AwardID)
				successes++
				if flushed {
					afterN++
				}
				if successes == users*quota/3 {
					close(flushAt)
				}
			case "0009":
				unknown[user]++
			case "0006":
			case "ERR_BIZ_006":
				mu.Unlock()
				return
			default:
				t.Errorf("draw %s: %s %s", user, r.Code, r.Info)
			}
			mu.Unlock()
			if r.Code == "0009" || r.Code == "0006" {
				time.Sleep(50 * time.Millisecond) // a client's retry, as the answer asks
			}
		}
		t.Errorf("user %s: quota not used up within the run", user)
	})
	flusher.Wait()
	t.Logf("draw answers %v; %d answered 0000 after the flush", codes, afterN)
	if afterN == 0 {
		t.Error("no draw answered 0000 after the flush")
	}
	d.drainDraws(t)

	ctx := context.Background()
	hot := redis.NewDrawQuota(d.redis, d.prefix)
	now := time.Now().In(shanghai(t))
	total := 0
	for _, user := range ids {
		key := activity.QuotaKey{UserID: user, ActivityID: faultActivity, Day: now.Format(time.DateOnly), Month: now.Format("2006-01")}
		s, err := d.users.Quota(ctx, key)
		if err != nil || s.Account == nil {
			t.Fatalf("SQL quota of %s: %+v %v", user, s.Account, err)
		}
		// A user done before the flush has no hot quota since: its next draw loads one.
		if h, ok, err := hot.Read(ctx, key); err != nil || (ok && *h.Account != *s.Account) {
			t.Errorf("user %s: hot quota %s (%v), SQL %s", user, showQuota(h), err, showQuota(s))
		}
		recs, err := d.users.AwardRecords(ctx, user, faultActivity)
		if err != nil {
			t.Fatal(err)
		}
		recorded := map[int]int{}
		for _, r := range recs {
			recorded[r.AwardID]++
		}
		for _, id := range answered[user] {
			if recorded[id] == 0 {
				t.Errorf("user %s: draw answered award %d has no record (records %v)", user, id, recorded)
			}
			recorded[id]--
		}
		if used := s.Account.Total - s.Account.TotalSurplus; used != int64(len(recs)) || used != quota {
			t.Errorf("user %s: %d units used, %d records; want %d each", user, used, len(recs), quota)
		}
		if len(recs) > len(answered[user])+unknown[user] {
			t.Errorf("user %s: %d records for %d draws answered 0000 and %d unknown", user, len(recs), len(answered[user]), unknown[user])
		}
		total += len(recs)
	}
	d.endsClean(t, nil, total)
}
