package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// faultActivity is the seeded activity the fault tests draw in; its strategy is
// faultStrategy, whose awards 101–108 have small stocks and whose rule_weight tiers are
// 10:102,103 70:106,107 1000:104,105.
const (
	faultActivity = 100301
	faultStrategy = 100006
)

// armory runs the activity armory on every base.
func (d *deployment) armory(t *testing.T, bases ...string) {
	t.Helper()
	for _, base := range bases {
		if r := call(t, "GET", fmt.Sprintf("%s/api/v1/raffle/activity/armory?activityId=%d", base, faultActivity), nil); r.Code != "0000" || string(r.Data) != "true" {
			t.Fatalf("activity armory on %s: %+v", base, r)
		}
	}
}

// recharge sends the operator recharge to base and returns the answer. It may run on any
// goroutine.
func (d *deployment) recharge(t *testing.T, base, userID string, sku int64, outBusinessNo string) envelope {
	return call(t, "POST", base+"/api/v1/admin/activity/recharge",
		map[string]any{"userId": userID, "sku": sku, "outBusinessNo": outBusinessNo}, bearer(d.adminToken))
}

// totalSurplus reads the user's totalCountSurplus in the activity through base.
func totalSurplus(t *testing.T, base, userID string) int64 {
	t.Helper()
	r := call(t, "POST", base+"/api/v1/raffle/activity/query_user_activity_account", drawReq{userID, faultActivity})
	v, err := dataOf[struct {
		TotalCountSurplus int64 `json:"totalCountSurplus"`
	}](r)
	if err != nil || r.Code != "0000" {
		t.Fatalf("account of %s: %+v %v", userID, r, err)
	}
	return v.TotalCountSurplus
}

// drawResult is the data of a successful activity draw.
type drawResult struct {
	AwardID    int    `json:"awardId"`
	AwardTitle string `json:"awardTitle"`
	AwardIndex int    `json:"awardIndex"`
}

// TestCrashBetweenPickAndPublish SIGKILLs a serve process while a draw is paused after
// its commit point, between its pick and its durable write (unit of hot quota taken,
// outcome fixed on the pending draw, event not published), and proves across the crash:
// the crashed draw wrote no award and took exactly one unit of quota; once its lease has
// expired, the next draw on another process settles the very same order with the outcome
// fixed before the crash, so the crash cost the user no quota and the order authorises
// exactly one award.
func TestCrashBetweenPickAndPublish(t *testing.T) {
	t.Parallel()
	d := newDeployment(t, "")
	// The sweep would settle the crashed draw on its own 10 s after it took its unit; the
	// test wants the user's next draw to settle it.
	_, live := d.start(t, "BIGMARKET_DRAW_SWEEP_EVERY=1h")
	// A one-win hold lasts the draw's budget plus the commit timeout plus a second: a
	// budget of 2 s rather than the deployment's minute keeps the crashed draw's short.
	slowProc, slow := d.start(t, "BIGMARKET_FAULT_DELAY_BEFORE_RECORD=30s", "BIGMARKET_DRAW_TIMEOUT=2s")
	s := d.stack(live)
	d.armory(t, live, slow)
	ctx := context.Background()
	awards := readStockAwards(t, d.db)

	user := testenv.Unique("c")
	if r := call(t, "POST", s.bases[0]+"/api/v1/admin/activity/recharge", map[string]any{"userId": user, "sku": 9011, "outBusinessNo": user}, bearer(s.adminToken)); r.Code != "0000" {
		t.Fatalf("recharge sku 9011: %+v", r)
	}
	before := totalSurplus(t, live, user)
	if before != 150 {
		t.Fatalf("total surplus after a recharge of sku 9011: %d, want 150", before)
	}

	// The draw on the slow process must die with it: no answer, a transport error.
	type answer struct {
		status int
		body   string
		err    error
	}
	slowDraw := make(chan answer, 1)
	go func() {
		resp, body, err := do("POST", slow+"/api/v1/raffle/activity/draw", drawReq{user, faultActivity}, "Content-Type: application/json")
		if resp == nil {
			slowDraw <- answer{err: err}
			return
		}
		slowDraw <- answer{status: resp.StatusCode, body: string(body)}
	}()

	// crashed is the order of the draw paused on the slow process; fixed the outcome fixed
	// for it before the pause.
	var crashed, fixed string
	// The outcome is fixed right before the pause: once it is there, the draw is in it.
	testenv.Eventually(t, 20*time.Second, "the slow draw's pending draw with its outcome fixed", func() bool {
		pending := d.pendingDraws(t, user)
		if len(pending) > 1 {
			t.Fatalf("one draw made %d pending draws: %v", len(pending), pending)
		}
		for order, outcome := range pending {
			crashed, fixed = order, outcome
		}
		return fixed != ""
	})
	if err := slowProc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-slowProc.exited
	select {
	case a := <-slowDraw:
		if a.err == nil {
			t.Fatalf("the draw on the killed process answered HTTP %d %s; want a transport error", a.status, a.body)
		}
		t.Logf("the draw on the killed process failed as it should: %v", a.err)
	case <-time.After(10 * time.Second):
		t.Fatal("the draw on the killed process did not end within 10s of the kill")
	}

	if after := totalSurplus(t, live, user); after != before-1 {
		t.Fatalf("total surplus after the crashed draw: %d, want %d (exactly one unit taken)", after, before-1)
	}
	d.drainDraws(t)
	if recs, err := d.users.AwardRecords(ctx, user, faultActivity); err != nil || len(recs) != 0 {
		t.Fatalf("award records after the crash: %+v %v, want none", recs, err)
	}

	// A draw of the user while the crashed draw is still leased takes a unit of its own
	// (as a concurrent request does); once the lease is over it resumes it.
	lease := d.pendingLease(t, user, crashed)
	time.Sleep(time.Until(lease) + 200*time.Millisecond) // the lease the test is about, not a wait for async work

	r := call(t, "POST", live+"/api/v1/raffle/activity/draw", drawReq{user, faultActivity})
	res, err := dataOf[drawResult](r)
	if err != nil || r.Code != "0000" || res.AwardID < 101 || res.AwardID > 108 {
		t.Fatalf("draw on the live process after the crash: %+v %v", r, err)
	}
	var o struct {
		AwardID int `json:"awardId"`
	}
	if err := json.Unmarshal([]byte(fixed), &o); err != nil || o.AwardID != res.AwardID {
		t.Errorf("the draw after the crash answered award %d; the crashed draw had fixed %s (%v)", res.AwardID, fixed, err)
	}
	d.drainDraws(t)
	recs, err := d.users.AwardRecords(ctx, user, faultActivity)
	if err != nil || len(recs) != 1 {
		t.Fatalf("award records after the draw that followed the crash: %+v %v, want exactly 1", recs, err)
	}
	if recs[0].OrderID != crashed || recs[0].AwardID != res.AwardID {
		t.Errorf("the draw after the crash recorded award %d on order %s; want award %d on the crashed order %s",
			recs[0].AwardID, recs[0].OrderID, res.AwardID, crashed)
	}
	if after := totalSurplus(t, live, user); after != before-1 {
		t.Errorf("total surplus after the draw that settled the crashed order: %d, want %d (no second unit)", after, before-1)
	}
	orders, err := d.users.RaffleOrders(ctx, user, faultActivity)
	if err != nil || len(orders) != 1 || orders[0].OrderID != crashed || orders[0].State != activity.OrderUsed {
		t.Errorf("raffle orders at the end: %+v %v; want only the crashed order, used", orders, err)
	}
	d.checkLedger(t, user, drawLedger{answered: []int{res.AwardID}})
	// Stock across the crash: the crashed pick may have taken a unit that no record will
	// ever use (undersell), the recorded award took its unit unless it was the fallback;
	// nothing more.
	left, err := d.counters(ctx, awards)
	if err != nil {
		t.Fatal(err)
	}
	var taken int64
	for _, aw := range awards {
		n := aw.surplus - left[aw.id]
		taken += n
		if n < 0 || (aw.id == res.AwardID && aw.id != 101 && n < 1) {
			t.Errorf("award %d: %d units taken from its stock; record of award %d", aw.id, n, res.AwardID)
		}
	}
	if taken > 2 {
		t.Errorf("%d units of stock taken by one crashed and one recorded draw; want at most 2", taken)
	}
}

// stockAward is one award of faultStrategy as SQL has it.
type stockAward struct {
	id             int
	count, surplus int64
}

func readStockAwards(t *testing.T, db *sqlstore.DB) []stockAward {
	t.Helper()
	rows, err := db.SQL.Query(`SELECT award_id, award_count, award_count_surplus FROM strategy_award
		WHERE strategy_id = ? ORDER BY award_id`, faultStrategy)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var awards []stockAward
	for rows.Next() {
		var a stockAward
		if err := rows.Scan(&a.id, &a.count, &a.surplus); err != nil {
			t.Fatal(err)
		}
		awards = append(awards, a)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return awards
}

// counterKey is the Redis stock counter of an award of faultStrategy.
func (d *deployment) counterKey(awardID int) string {
	return fmt.Sprintf("%s:award_stock:{%d_%d}", d.prefix, faultStrategy, awardID)
}

// counters reads the stock counters of awards in one round trip; a missing counter fails.
func (d *deployment) counters(ctx context.Context, awards []stockAward) (map[int]int64, error) {
	keys := make([]string, len(awards))
	for i, a := range awards {
		keys[i] = d.counterKey(a.id)
	}
	vals, err := d.redis.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	got := make(map[int]int64, len(awards))
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("stock counter %s is %v", keys[i], v)
		}
		var n int64
		if _, err := fmt.Sscan(s, &n); err != nil {
			return nil, fmt.Errorf("stock counter %s is %q", keys[i], s)
		}
		got[awards[i].id] = n
	}
	return got, nil
}

// fanOut runs job(i) for i in [0, n) on at most limit goroutines.
func fanOut(n, limit int, job func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, limit) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				job(i)
			}
		})
	}
	wg.Wait()
}

// TestManyUsersTwoProcesses runs 1,000 users × 3 draws through two serve processes sharing
// MariaDB, Redis and NATS, with 50 of the users past the first rule_weight tier so that
// tier picks compete for the small stocks of awards 102 and 103, and proves invariants
// 1–3 under that load: no award is granted beyond its stock, every unit taken from Redis
// has its award record (awards 102–108, which are never a fallback, exactly; award 101,
// also the fallback, at most), every successful draw has exactly one award record and one
// task on its own raffle order, and the SQL surplus converges to the Redis counter.
func TestManyUsersTwoProcesses(t *testing.T) {
	const (
		users        = 1000
		drawsPerUser = 3
		weighted     = 50 // users[:weighted] draw 10 times before the run: score ≥ 10
		preDraws     = 10
	)
	start := time.Now()
	d := newDeployment(t, "")
	_, a := d.start(t)
	_, b := d.start(t)
	bases := []string{a, b}
	ctx := context.Background()
	started := time.Now()

	// The SQL surplus before the armory is what the armory preheats into Redis (a fresh
	// prefix has no counters), so it is the start of every unit counted below.
	awards := readStockAwards(t, d.db)
	if len(awards) != 8 {
		t.Fatalf("strategy %d has %d awards, want 8", faultStrategy, len(awards))
	}
	d.armory(t, bases...)
	if got, err := d.counters(ctx, awards); err != nil {
		t.Fatal(err)
	} else {
		for _, aw := range awards {
			if got[aw.id] != aw.surplus {
				t.Fatalf("counter of award %d after the armory: %d, want the SQL surplus %d", aw.id, got[aw.id], aw.surplus)
			}
		}
	}

	// Sample every counter while draws run: none may ever be negative.
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var sampled sync.WaitGroup
	var samples atomic.Int64
	sampled.Go(func() {
		for sampleCtx.Err() == nil {
			got, err := d.counters(sampleCtx, awards)
			if err != nil {
				if sampleCtx.Err() == nil {
					t.Errorf("sample counters: %v", err)
				}
				return
			}
			for id, n := range got {
				if n < 0 {
					t.Errorf("counter of award %d is %d", id, n)
				}
			}
			samples.Add(1)
			time.Sleep(10 * time.Millisecond)
		}
	})
	defer func() { stopSampling(); sampled.Wait() }()

	ids := make([]string, users)
	run := testenv.Unique("")
	for i := range ids {
		ids[i] = fmt.Sprintf("m%s%04d", run, i)
	}
	// Provisioning is part of what is tested: distinct users' first recharges run
	// concurrently on both processes and must all succeed. Those that fail are reported,
	// then retried one at a time so that the draw invariants below are still checked.
	type recharge struct {
		user string
		sku  int64
	}
	var failedMu sync.Mutex
	failed := map[string][]recharge{} // by code
	fanOut(users, 16, func(i int) {
		for _, sku := range []int64{9013, 9011} {
			if sku == 9011 && i >= weighted {
				break
			}
			if code := d.recharge(t, bases[i%2], ids[i], sku, fmt.Sprintf("%s-%d", ids[i], sku)).Code; code != "0000" {
				failedMu.Lock()
				failed[code] = append(failed[code], recharge{ids[i], sku})
				failedMu.Unlock()
			}
		}
	})
	for code, rs := range failed {
		t.Errorf("%d of %d concurrent first recharges of distinct users failed with %s (e.g. %s sku %d; the serve logs below have the cause)",
			len(rs), users+weighted, code, rs[0].user, rs[0].sku)
		for _, r := range rs {
			if code := d.recharge(t, bases[0], r.user, r.sku, fmt.Sprintf("%s-%d", r.user, r.sku)).Code; code != "0000" {
				t.Fatalf("recharge sku %d for %s again, alone: %s", r.sku, r.user, code)
			}
		}
	}
	provisioned := time.Now()

	var mu sync.Mutex
	successes := make(map[string]int, users) // per user
	codes := map[string]int{}
	mainAwards := map[int]int{} // main run, users past tier 10
	type refusal struct{ user, code, info string }
	var refused []refusal
	tally := func(user string, r envelope, weightedMain bool) {
		mu.Lock()
		defer mu.Unlock()
		codes[r.Code]++
		if r.Code != "0000" {
			refused = append(refused, refusal{user, r.Code, r.Info})
			return
		}
		res, err := dataOf[drawResult](r)
		if err != nil || res.AwardID < 101 || res.AwardID > 108 || res.AwardIndex != res.AwardID-100 || res.AwardTitle == "" {
			t.Errorf("draw data %s: %v", r.Data, err)
		}
		successes[user]++
		if weightedMain {
			mainAwards[res.AwardID]++
		}
	}
	// Before the run: each weighted user draws until 10 draws have succeeded, one draw
	// after another, so that its score is at least 10 in the run. Refusals are reported.
	fanOut(weighted, 25, func(i int) {
		for j := 0; j < 4*preDraws; j++ {
			mu.Lock()
			done := successes[ids[i]] == preDraws
			mu.Unlock()
			if done {
				return
			}
			tally(ids[i], call(t, "POST", bases[(i+j)%2]+"/api/v1/raffle/activity/draw", drawReq{ids[i], faultActivity}), false)
		}
	})
	for _, id := range ids[:weighted] {
		if successes[id] != preDraws {
			t.Fatalf("user %s: %d successful draws of %d wanted before the run (codes %v)", id, successes[id], preDraws, codes)
		}
	}
	if codes["0000"] != len(ids[:weighted])*preDraws {
		t.Errorf("draws before the run, one at a time per user: %v; want only successes", codes)
	}
	preFailed := 0
	for code, n := range codes {
		if code != "0000" {
			preFailed += n
		}
	}
	codes = map[string]int{}
	preRun := time.Now()

	// The run: every user's 3 draws in a shuffled order, so that draws of one user
	// sometimes overlap, spread over both processes. 32 in flight: each serve process
	// keeps about as many MySQL connections open as it had requests in flight, and the
	// shared server's max_connections (151 by default) serves other tests too.
	jobs := make([]int, 0, users*drawsPerUser)
	for i := range users {
		for range drawsPerUser {
			jobs = append(jobs, i)
		}
	}
	rand.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })
	fanOut(len(jobs), 32, func(k int) {
		i := jobs[k]
		tally(ids[i], call(t, "POST", bases[k%2]+"/api/v1/raffle/activity/draw", drawReq{ids[i], faultActivity}), i < weighted)
	})
	ran := time.Now()
	stopSampling()
	sampled.Wait()

	total := 0
	for _, n := range successes {
		total += n
	}
	mainOK := total - weighted*preDraws
	t.Logf("run: %d draws, codes %v; users past tier 10 drew %v; %d counter samples", len(jobs), codes, mainAwards, samples.Load())
	// A failed draw may have taken a unit of stock before it failed (undersell); all
	// others must match their records exactly.
	failedDraws := preFailed + len(jobs) - codes["0000"]
	// With 5 units of quota and 3 draws each, no draw may be refused: a draw claims a new
	// order's id before the order exists, so overlapping draws of one user never take a
	// fresh order from its creator (which once refused 1 draw in 3,000 with ERR_BIZ_009).
	if n := len(jobs) - codes["0000"]; n > 0 {
		t.Errorf("%d of %d draws did not succeed (%v); with 5 units of quota and 3 draws each, none should be refused",
			n, len(jobs), codes)
	}
	if mainOK != codes["0000"] {
		t.Errorf("successes per user add up to %d in the run, codes say %d", mainOK, codes["0000"])
	}
	// Draws of users past tier 10 pick in the tier's table (102, 103) and, when those are
	// out, get the luck award: never any other award.
	for id, n := range mainAwards {
		if id != 101 && id != 102 && id != 103 {
			t.Errorf("users with score ≥ 10 drew award %d %d times; tier 10 holds only 102 and 103 (101 as the fallback)", id, n)
		}
	}

	// Every successful draw has exactly one award record and one task, each on its own
	// raffle order, and every raffle order was used by exactly one draw.
	type perUser struct {
		recs, tasks, orders, unused int
		taken                       int64 // units of total quota taken
		orderIDs                    []string
		orderStates                 []string
		err                         error
	}
	d.drainDraws(t)
	found := make([]perUser, users)
	fanOut(users, 8, func(i int) {
		p := &found[i]
		recs, err := d.users.AwardRecords(ctx, ids[i], faultActivity)
		if err != nil {
			p.err = err
			return
		}
		p.recs = len(recs)
		for _, r := range recs {
			if r.StrategyID != faultStrategy {
				p.err = fmt.Errorf("record of strategy %d", r.StrategyID)
			}
			p.orderIDs = append(p.orderIDs, r.OrderID)
		}
		tasks, err := d.users.Tasks(ctx, ids[i])
		if err != nil {
			p.err = err
			return
		}
		p.tasks = len(tasks)
		orders, err := d.users.RaffleOrders(ctx, ids[i], faultActivity)
		if err != nil {
			p.err = err
			return
		}
		p.orders = len(orders)
		for _, o := range orders {
			if o.State != activity.OrderUsed {
				p.unused++
			}
			p.orderStates = append(p.orderStates, o.OrderID+":"+string(o.State))
		}
		q, err := d.users.Quota(ctx, activity.QuotaKey{UserID: ids[i], ActivityID: faultActivity})
		if err != nil {
			p.err = err
			return
		}
		if q.Account == nil || q.Account.TotalSurplus < 0 {
			p.err = fmt.Errorf("account %+v", q.Account)
			return
		}
		p.taken = q.Account.Total - q.Account.TotalSurplus
	})
	index := make(map[string]int, users)
	for i, id := range ids {
		index[id] = i
	}
	for _, r := range refused {
		p := found[index[r.user]]
		t.Logf("refused draw of %s: %s %q; the user's orders %v, award records on %v", r.user, r.code, r.info, p.orderStates, p.orderIDs)
	}
	seen := make(map[string]string, total)
	records := 0
	for i, p := range found {
		if p.err != nil {
			t.Fatalf("records of %s: %v", ids[i], p.err)
		}
		if p.taken != int64(p.orders) {
			t.Errorf("user %s: %d units of quota taken for %d raffle orders; one unit authorises one order", ids[i], p.taken, p.orders)
		}
		records += p.recs
		if p.recs != successes[ids[i]] || p.tasks != p.recs {
			t.Errorf("user %s: %d successful draws, %d award records, %d tasks; want all equal", ids[i], successes[ids[i]], p.recs, p.tasks)
		}
		if p.orders-p.unused != p.recs || (failedDraws == 0 && p.unused != 0) {
			t.Errorf("user %s: %d raffle orders (%d unused) for %d award records; every used order has one record, and with no failed draw none is unused",
				ids[i], p.orders, p.unused, p.recs)
		}
		for _, id := range p.orderIDs {
			if other, dup := seen[id]; dup {
				t.Errorf("order %s has award records of %s and %s", id, other, ids[i])
			}
			seen[id] = ids[i]
		}
	}
	if records != total {
		t.Errorf("award records: %d, successful draws: %d", records, total)
	}

	// No oversell, and no unit of stock taken without its record.
	counts, err := d.users.AwardRecordCounts(ctx, faultStrategy)
	if err != nil {
		t.Fatal(err)
	}
	left, err := d.counters(ctx, awards)
	if err != nil {
		t.Fatal(err)
	}
	var counted int64
	for _, aw := range awards {
		n, consumed := counts[aw.id], aw.surplus-left[aw.id]
		counted += n
		t.Logf("award %d: count %d, surplus at armory %d, counter now %d (%d units taken), %d records", aw.id, aw.count, aw.surplus, left[aw.id], consumed, n)
		if n > aw.count {
			t.Errorf("award %d: %d records, more than its award_count %d", aw.id, n, aw.count)
		}
		if left[aw.id] < 0 {
			t.Errorf("award %d: counter %d is negative", aw.id, left[aw.id])
		}
		switch {
		case aw.id == 101: // also granted as the fallback, which takes no stock
			if consumed > n {
				t.Errorf("award 101: %d units taken from Redis but only %d records", consumed, n)
			}
		case consumed < n:
			t.Errorf("award %d: %d records but only %d units taken from Redis: oversold", aw.id, n, consumed)
		case consumed > n+int64(failedDraws):
			t.Errorf("award %d: %d units taken from Redis, %d records, only %d failed draws that could have lost a unit", aw.id, consumed, n, failedDraws)
		case failedDraws == 0 && consumed != n:
			t.Errorf("award %d: %d units taken from Redis, %d records; with no failed draw and none in flight they must be equal", aw.id, consumed, n)
		}
		if aw.id != 101 && n > aw.surplus {
			t.Errorf("award %d: %d records, more than its surplus %d at armory time", aw.id, n, aw.surplus)
		}
	}
	if counted != int64(total) {
		t.Errorf("AwardRecordCounts add up to %d, successful draws %d", counted, total)
	}

	// The stock sync brings every SQL surplus to its Redis counter.
	var sqlNow []stockAward
	end := time.Now().Add(30 * time.Second)
	for {
		sqlNow = readStockAwards(t, d.db)
		synced := len(sqlNow) == len(awards)
		for i := range sqlNow {
			synced = synced && sqlNow[i].surplus == left[sqlNow[i].id]
		}
		if synced {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("SQL surplus %+v did not reach the Redis counters %v within 30s", sqlNow, left)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("timings: deployment %s, armory and provisioning %s, %d draws before the run %s, %d draws %s (%.0f/s), checks and sync %s",
		started.Sub(start).Round(time.Millisecond), provisioned.Sub(started).Round(time.Millisecond),
		weighted*preDraws, preRun.Sub(provisioned).Round(time.Millisecond),
		len(jobs), ran.Sub(preRun).Round(time.Millisecond), float64(len(jobs))/ran.Sub(preRun).Seconds(), time.Since(ran).Round(time.Millisecond))
}
