package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// lockUserTables takes LOCK TABLES … WRITE on tables of user's home database, in a
// connection of its own, and returns the function that lifts the lock. A name ending in
// "{suffix}" is a sharded table and gets the user's table suffix.
func (d *deployment) lockUserTables(t *testing.T, user string, tables ...string) (unlock func()) {
	t.Helper()
	router, err := sqlstore.NewRouter(2, 4)
	if err != nil {
		t.Fatal(err)
	}
	shard := router.Route(user)
	ctx := context.Background()
	conn, err := d.userDBs[shard.DB].SQL.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	locks := make([]string, len(tables))
	for i, name := range tables {
		locks[i] = strings.Replace(name, "{suffix}", shard.Suffix, 1) + " WRITE"
	}
	if _, err := conn.ExecContext(ctx, "LOCK TABLES "+strings.Join(locks, ", ")); err != nil {
		conn.Close()
		t.Fatal(err)
	}
	var done bool
	unlock = func() {
		if done {
			return
		}
		done = true
		if _, err := conn.ExecContext(ctx, "UNLOCK TABLES"); err != nil {
			t.Errorf("unlock tables: %v", err)
		}
		conn.Close()
	}
	t.Cleanup(unlock)
	return unlock
}

// stockLeft sums the Redis stock counters of faultStrategy's awards.
func (d *deployment) stockLeft(t *testing.T) int64 {
	t.Helper()
	got, err := d.counters(context.Background(), readStockAwards(t, d.db))
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, n := range got {
		sum += n
	}
	return sum
}

// userRows counts user's award records and unused raffle orders in faultActivity.
func (d *deployment) userRows(t *testing.T, user string) (records, unused int) {
	t.Helper()
	ctx := context.Background()
	recs, err := d.users.AwardRecords(ctx, user, faultActivity)
	if err != nil {
		t.Fatal(err)
	}
	orders, err := d.users.RaffleOrders(ctx, user, faultActivity)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range orders {
		if o.State == activity.OrderCreate {
			unused++
		}
	}
	return len(recs), unused
}

// TestRandomRaffleIsASystemEndpoint runs random_raffle on a production serve process: it
// needs the admin token (an anonymous call takes no stock), and it passes the degrade
// switch.
func TestRandomRaffleIsASystemEndpoint(t *testing.T) {
	d := newDeployment(t, "")
	_, base := d.start(t, "BIGMARKET_MODE=production", "BIGMARKET_JWT_SECRET="+e2eJWTSecret)
	admin := "Bearer " + d.adminToken
	if r := call(t, "GET", base+fmt.Sprintf("/api/v1/raffle/strategy/strategy_armory?strategyId=%d", faultStrategy), nil, "Authorization: "+admin); r.Status != 200 || r.Code != "0000" {
		t.Fatalf("strategy armory: %+v", r)
	}
	body := fmt.Sprintf(`{"strategyId":%d}`, faultStrategy)
	before := d.stockLeft(t)
	for _, auth := range []string{"", "Bearer wrong-token", "Basic " + d.adminToken} {
		for range 5 {
			if r := call(t, "POST", base+"/api/v1/raffle/strategy/random_raffle", body, "Authorization: "+auth); r.Status != http.StatusUnauthorized || r.Code != "0003" {
				t.Fatalf("random_raffle with %q: %+v, want 401 0003", auth, r)
			}
		}
	}
	if after := d.stockLeft(t); after != before {
		t.Fatalf("refused random_raffle calls took %d units of stock", before-after)
	}
	if r := call(t, "POST", base+"/api/v1/raffle/strategy/random_raffle", body, "Authorization: "+admin); r.Status != 200 || r.Code != "0000" {
		t.Fatalf("random_raffle with the admin token: %+v", r)
	}
	if r := call(t, "GET", base+"/api/v1/raffle/dcc/update_config?key=degradeSwitch&value=open", nil, "Authorization: "+admin); r.Code != "0000" {
		t.Fatalf("update_config degradeSwitch=open: %+v", r)
	}
	testenv.Eventually(t, 5*time.Second, "random_raffle degraded", func() bool {
		r := call(t, "POST", base+"/api/v1/raffle/strategy/random_raffle", body, "Authorization: "+admin)
		return r.Code == "0004"
	})
	left := d.stockLeft(t)
	for range 5 {
		if r := call(t, "POST", base+"/api/v1/raffle/strategy/random_raffle", body, "Authorization: "+admin); r.Code != "0004" {
			t.Fatalf("random_raffle while degraded: %+v, want 0004", r)
		}
	}
	if after := d.stockLeft(t); after != left {
		t.Fatalf("degraded random_raffle calls took %d units of stock", left-after)
	}
}

// TestDrawCommitPoint stalls a draw on either side of its commit point with a budget of
// 1 s (generous, so that what comes before the commit always fits on a loaded machine;
// the stalls are longer). Stalled after its commit point for 3 s (paused between the fix
// of its outcome and its publish), within the commit timeout of 5 s, the draw has taken
// its unit: the answer waits for the award and tells it. With a commit timeout of 500 ms
// the same stall answers 0009, and at most one award record ever appears. Stalled on the
// user's quota tables (the SQL read of the load of a hot quota, after the commit point),
// it answers 0009 and took nothing: no award record ever appears, no stock is taken, and
// the next draw takes one unit only.
func TestDrawCommitPoint(t *testing.T) {
	t.Parallel()
	const stall = 3 * time.Second
	d := newDeployment(t, "")
	env := []string{"BIGMARKET_DRAW_TIMEOUT=1s", "BIGMARKET_FAULT_DELAY_BEFORE_RECORD=" + stall.String()}
	_, base := d.start(t, env...)
	_, shortCommit := d.start(t, append(env, "BIGMARKET_DRAW_COMMIT_TIMEOUT=500ms")...)
	d.armory(t, base, shortCommit)

	// stallAfterCommit draws for a new user on base while the draw is stalled after its
	// commit point for 3 s; it returns the user, the answer and when it came after the
	// stall ended (negative: before).
	stallAfterCommit := func(t *testing.T, base, prefix string) (user string, r envelope, sincePause time.Duration) {
		user = testenv.Unique(prefix)
		if c := d.recharge(t, base, user, 9011, user+"-r").Code; c != "0000" {
			t.Fatalf("recharge: %s", c)
		}
		// The pause starts after the draw's take and pick, so it ends after this.
		start := time.Now()
		r = call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{user, faultActivity})
		return user, r, time.Since(start) - stall
	}

	t.Run("stalled after the commit point", func(t *testing.T) {
		user, r, sincePause := stallAfterCommit(t, base, "cp")
		d.drainDraws(t)
		records, _ := d.userRows(t, user)
		t.Logf("draw answered %s %s, %s after the pause; %d award records", r.Code, r.Data, sincePause.Round(time.Millisecond), records)
		// The stall (3 s) is within the commit timeout (5 s): the draw is waited for.
		if r.Code != "0000" {
			t.Fatalf("draw answered %+v; want 0000 with its award", r)
		}
		if records != 1 {
			t.Fatalf("draw answered 0000 but the user has %d award records", records)
		}
		if sincePause < 0 {
			t.Fatalf("draw answered 0000 %s before its pause ended", -sincePause)
		}
	})

	t.Run("stalled after the commit point past the commit timeout", func(t *testing.T) {
		user, r, sincePause := stallAfterCommit(t, shortCommit, "cu")
		t.Logf("draw answered %s %s, %s after the pause", r.Code, r.Info, sincePause.Round(time.Millisecond))
		// The stall (3 s) outlasts the commit timeout (500 ms), which ends before the
		// budget (1 s) does: the outcome is unknown, never 0006 nor a bare 0001.
		if r.Code != "0009" || sincePause >= 0 {
			t.Fatalf("draw answered %+v %s after the pause ended; want 0009 during the pause", r, sincePause)
		}
		// Long enough for the cut-off transaction to commit if it ever does.
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			if records, _ := d.userRows(t, user); records > 1 {
				t.Fatalf("one draw answered 0009 left %d award records", records)
			}
		}
		d.drainDraws(t)
		if records, _ := d.userRows(t, user); records > 1 {
			t.Fatalf("one draw answered 0009 left %d award records", records)
		}
	})

	t.Run("stalled on the quota tables", func(t *testing.T) {
		user := testenv.Unique("cq")
		if c := d.recharge(t, base, user, 9011, user+"-r").Code; c != "0000" {
			t.Fatalf("recharge: %s", c)
		}
		stock := d.stockLeft(t)
		unlock := d.lockUserTables(t, user, "raffle_activity_account", "raffle_activity_account_day", "raffle_activity_account_month")
		r := call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{user, faultActivity})
		time.Sleep(time.Second) // hold the stall past the answer, as a slow database would
		unlock()
		if r.Code != "0009" {
			t.Fatalf("draw stalled on its quota tables: %+v, want 0009", r)
		}
		// Long enough for a draw going on behind the answer to record its award.
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			if records, _ := d.userRows(t, user); records != 0 {
				t.Fatalf("draw answered %s but an award record appeared afterwards", r.Code)
			}
		}
		if left := d.stockLeft(t); left != stock {
			t.Fatalf("draw answered %s but took %d units of stock", r.Code, stock-left)
		}
		testenv.Eventually(t, 15*time.Second, "a draw after the stall", func() bool {
			return call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{user, faultActivity}).Code == "0000"
		})
		d.drainDraws(t)
		if records, unused := d.userRows(t, user); records != 1 || unused != 0 {
			t.Fatalf("after one successful draw: %d award records, %d unused orders; want 1 and 0", records, unused)
		}
		if got := totalSurplus(t, base, user); got != 149 {
			t.Fatalf("total surplus %d after one award, want 149 (the timed-out draw took nothing)", got)
		}
	})
}

// TestStalledUserDatabaseDoesNotBlacklist has a client retry a draw every 100 ms while
// its user database is stalled for 4 s, with the front line on (1 draw a second, burst 5,
// blacklisted after 10 refusals). The draw of a user whose hot quota is not loaded yet
// stalls in the SQL read of its load, past its commit point, and answers 0009. Those
// answers and the refusals that follow them are the system's failure, not the user's:
// once the stall ends, its draw succeeds and it is not blacklisted. A user drawing 60
// times back to back on the healthy system still is.
func TestStalledUserDatabaseDoesNotBlacklist(t *testing.T) {
	t.Parallel()
	d := newDeployment(t, "")
	// The stalled draw waits its commit timeout: as short as the budget, so that the
	// client retries often and the limiter refuses it.
	_, base := d.start(t, "BIGMARKET_DRAW_TIMEOUT=150ms", "BIGMARKET_DRAW_COMMIT_TIMEOUT=150ms", "BIGMARKET_RATE_LIMITER_SWITCH=open",
		"BIGMARKET_RATE_LIMIT_PER_SECOND=1", "BIGMARKET_RATE_LIMIT_BURST=5", "BIGMARKET_BLACKLIST_COUNT=10")
	d.armory(t, base)
	user := testenv.Unique("st")
	if c := d.recharge(t, base, user, 9011, user+"-r").Code; c != "0000" {
		t.Fatalf("recharge: %s", c)
	}
	limitedBefore := metric(t, base, `bigmarket_guard_rejected_total{reason="limited_local"}`)
	unlock := d.lockUserTables(t, user, "raffle_activity_account", "raffle_activity_account_day",
		"raffle_activity_account_month", "user_raffle_order{suffix}", "user_award_record{suffix}")
	stallEnds := time.Now().Add(4 * time.Second)
	codes := map[string]int{}
	var after []string
	deadline := stallEnds.Add(20 * time.Second)
	for {
		if !stallEnds.IsZero() && time.Now().After(stallEnds) {
			unlock()
			stallEnds = time.Time{}
		}
		r := call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{user, faultActivity})
		if stallEnds.IsZero() {
			after = append(after, r.Code)
			if r.Code == "0000" {
				break
			}
		} else {
			codes[r.Code]++
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful draw within 20 s of the stall's end: during it %v, after it %v", codes, after)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("during the stall %v; after it %v", codes, after)
	if codes["0006"]+codes["0009"] == 0 {
		t.Fatalf("no draw failed during the stall (%v): the test proves nothing", codes)
	}
	for code := range codes {
		if code != "0006" && code != "0009" && code != "0005" {
			t.Errorf("a draw during the stall answered %s (%v); want 0006, 0009 or the limiter's 0005", code, codes)
		}
	}
	limited := metric(t, base, `bigmarket_guard_rejected_total{reason="limited_local"}`) - limitedBefore
	if limited <= 10 {
		t.Fatalf("the limiter refused %v calls, want more than the blacklist count: the test proves nothing", limited)
	}
	if n := metric(t, base, "bigmarket_guard_blacklist_size"); n != 0 {
		t.Fatalf("blacklist size %v after a stall of the user's database", n)
	}
	// One more draw once the limiter has a token again (1 a second). Polled slowly: each
	// refusal now counts towards the blacklist, and fewer than 5 fit in a second.
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		r := call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{user, faultActivity})
		if r.Code == "0000" {
			break
		}
		if r.Code != "0005" || time.Now().After(end) {
			t.Fatalf("draw after recovering: %+v; want 0000 once the limiter has a token", r)
		}
	}

	flooder := testenv.Unique("fl")
	if c := d.recharge(t, base, flooder, 9011, flooder+"-r").Code; c != "0000" {
		t.Fatalf("recharge: %s", c)
	}
	for range 60 {
		call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{flooder, faultActivity})
	}
	if n := metric(t, base, "bigmarket_guard_blacklist_size"); n != 1 {
		t.Fatalf("blacklist size %v after 60 back-to-back draws of one user on a healthy system, want 1", n)
	}
}
