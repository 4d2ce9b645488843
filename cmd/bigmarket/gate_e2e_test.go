package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/httpapi"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/redis"
)

// The gate's activities, each with its own strategy (raffle_activity.strategy_id is
// unique): soldOutActivity's strategy has no fallback (implicit_luck_award none for it),
// oneWinActivity's and pathActivity's fall back to award 101.
const (
	soldOutActivity = 990001
	oneWinActivity  = 990002
	pathActivity    = 990003
)

// gateEnv makes soldOutActivity's strategy one without fallback.
var gateEnv = "BIGMARKET_IMPLICIT_LUCK_AWARD_BY_STRATEGY=" + strconv.Itoa(soldOutActivity) + "=none"

// insertGateActivity adds an open activity whose strategy (same id) has the given
// tree-less awards (id → count, rates equal), and a SKU (same id) of draws draws.
func insertGateActivity(t *testing.T, s stack, id int64, draws int, awards map[int]int) {
	t.Helper()
	ctx := context.Background()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := s.db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`INSERT INTO strategy (strategy_id, strategy_desc, rule_models) VALUES (?, ?, '')`, id, "gate test")
	sort := 1
	for award, count := range awards {
		exec(`INSERT INTO strategy_award (strategy_id, award_id, award_title, award_subtitle, award_count,
			award_count_surplus, award_rate, rule_models, sort) VALUES (?, ?, ?, '', ?, ?, ?, '', ?)`,
			id, award, fmt.Sprintf("award %d", award), count, count, fmt.Sprintf("%.4f", 1/float64(len(awards))), sort)
		sort++
	}
	exec(`INSERT INTO raffle_activity (activity_id, activity_name, activity_desc, begin_date_time, end_date_time,
		strategy_id, state) VALUES (?, 'gate', 'gate test', '2020-01-01 00:00:00', '2099-01-01 00:00:00', ?, 'open')`, id, id)
	exec(`INSERT INTO raffle_activity_count (activity_count_id, total_count, day_count, month_count) VALUES (?, ?, ?, ?)`,
		id, draws, draws, draws)
	exec(`INSERT INTO raffle_activity_sku (sku, activity_id, activity_count_id, stock_count, stock_count_surplus,
		product_amount) VALUES (?, ?, ?, 1000000, 1000000, '1.00')`, id, id, id)
	if r := call(t, "GET", s.bases[0]+"/api/v1/raffle/activity/armory?activityId="+strconv.FormatInt(id, 10), nil); r.Code != "0000" {
		t.Fatalf("armory of activity %d: %+v", id, r)
	}
}

// rechargeAll grants each user the activity's SKU once, a few at a time.
func rechargeAll(t *testing.T, s stack, activityID int64, users []string) {
	t.Helper()
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, u := range users {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			body := map[string]any{"userId": u, "sku": activityID, "outBusinessNo": u + "-gate"}
			if r := call(t, "POST", s.bases[0]+"/api/v1/admin/activity/recharge", body, bearer(s.adminToken)); r.Code != "0000" {
				t.Errorf("recharge %s: %+v", u, r)
			}
		})
	}
	wg.Wait()
}

// accountOf reads the user's account view in the activity.
func accountOf(t *testing.T, base, user string, activityID int64) map[string]int64 {
	t.Helper()
	r := call(t, "POST", base+"/api/v1/raffle/activity/query_user_activity_account", drawReq{user, activityID})
	v, err := dataOf[map[string]int64](r)
	if err != nil || r.Code != "0000" {
		t.Fatalf("account of %s: %+v %v", user, r, err)
	}
	return v
}

// userAuth is the Authorization value of a demo user token for user.
func userAuth(user string) string {
	return "Bearer " + httpapi.SignToken([]byte("bigmarket-demo-jwt-secret"), user, time.Now().Add(time.Hour))
}

func settingsCall(t *testing.T, s stack, body string) envelope {
	t.Helper()
	return call(t, "POST", s.bases[0]+"/api/v1/admin/activity/settings", []byte(body), bearer(s.adminToken))
}

// TestGateOnRealBackends runs two serve processes on MariaDB, Redis and NATS and checks
// the interception of issue 14: a sold-out activity without fallback, one win per user,
// signed draw paths and the settings endpoint.
func TestGateOnRealBackends(t *testing.T) {
	d := newDeployment(t, "")
	var bases []string
	for range 2 {
		_, base := d.start(t, gateEnv)
		bases = append(bases, base)
	}
	s := d.stack(bases...)
	insertGateActivity(t, s, pathActivity, 100, map[int]int{102: 1000})
	t.Run("settings validation", func(t *testing.T) { checkSettingsValidation(t, s) })
	t.Run("sold out without fallback", func(t *testing.T) { checkSoldOut(t, d, s, 20, 200, 10) })
	t.Run("one win", func(t *testing.T) { checkOneWin(t, d, s) })
	t.Run("signed paths", func(t *testing.T) { checkSignedPaths(t, s) })
}

// TestGateSoldOutFullScale is the issue's scale: 100 stocked units, 20,000 draws. It is
// left out of -short runs.
func TestGateSoldOutFullScale(t *testing.T) {
	if testing.Short() {
		t.Skip("full scale: 20,000 draws")
	}
	d := newDeployment(t, "")
	var bases []string
	for range 2 {
		_, base := d.start(t, gateEnv)
		bases = append(bases, base)
	}
	checkSoldOut(t, d, d.stack(bases...), 100, 1000, 20)
}

func checkSettingsValidation(t *testing.T, s stack) {
	get := func() envelope {
		return call(t, "GET", s.bases[0]+"/api/v1/admin/activity/settings?activityId="+strconv.Itoa(pathActivity), nil, bearer(s.adminToken))
	}
	if r := get(); r.Code != "0000" || string(r.Data) != `{"activityId":990003,"oneWin":false,"signedPath":false,"pathWindowSeconds":0}` {
		t.Fatalf("settings of an activity without a row: %+v, want the defaults", r)
	}
	for _, bad := range []string{
		`{}`,
		`{"activityId":0,"oneWin":true}`,
		`{"activityId":-5,"oneWin":true}`,
		`{"activityId":"x","oneWin":true}`,
		`{"activityId":990003}`,
		`{"activityId":990003,"oneWin":"yes"}`,
		`{"activityId":990003,"signedPath":true}`, // no window
		`{"activityId":990003,"signedPath":true,"pathWindowSeconds":0}`,
		`{"activityId":990003,"pathWindowSeconds":-1}`,
		`{"activityId":990003,"pathWindowSeconds":86401}`,
		`{"activityId":990003,"pathWindowSeconds":1.5}`,
		`{"activityId":424242,"oneWin":true}`, // no such activity
		`[1]`,
		`not json`,
	} {
		if r := settingsCall(t, s, bad); r.Code != "0002" {
			t.Errorf("settings %s: %+v, want 0002", bad, r)
		}
	}
	if r := get(); string(r.Data) != `{"activityId":990003,"oneWin":false,"signedPath":false,"pathWindowSeconds":0}` {
		t.Fatalf("refused settings changed something: %+v", r)
	}
	if r := call(t, "POST", s.bases[0]+"/api/v1/admin/activity/settings", []byte(`{"activityId":990003,"oneWin":true}`)); r.Code != "0003" {
		t.Errorf("settings without the admin token: %+v, want 0003", r)
	}
	if r := settingsCall(t, s, `{"activityId":990003,"pathWindowSeconds":30}`); r.Code != "0000" ||
		string(r.Data) != `{"activityId":990003,"oneWin":false,"signedPath":false,"pathWindowSeconds":30}` {
		t.Fatalf("set a window: %+v", r)
	}
	// A field left out keeps its value.
	if r := settingsCall(t, s, `{"activityId":990003,"signedPath":true}`); r.Code != "0000" ||
		string(r.Data) != `{"activityId":990003,"oneWin":false,"signedPath":true,"pathWindowSeconds":30}` {
		t.Fatalf("turn signed paths on: %+v", r)
	}
	if r := settingsCall(t, s, `{"activityId":990003,"signedPath":false,"pathWindowSeconds":0}`); r.Code != "0000" {
		t.Fatalf("turn signed paths off: %+v", r)
	}
}

// checkSoldOut draws draws times per user for users users, concurrently across the nodes,
// in an activity without fallback whose two stocked awards hold units units: exactly units
// draws win, every other answers ERR_BIZ_010, and every user's quota is whole: the lost
// draws' units are in at most one unused order the next draw reuses.
func checkSoldOut(t *testing.T, d *deployment, s stack, units, users, draws int) {
	insertGateActivity(t, s, soldOutActivity, draws, map[int]int{102: units / 4, 103: units - units/4})
	ids := make([]string, users)
	for i := range ids {
		ids[i] = testenv.Unique("so")
	}
	rechargeAll(t, s, soldOutActivity, ids)
	var mu sync.Mutex
	codes := map[string]int{}
	wins := map[string]int{}
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i, u := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			for j := range draws {
				r := call(t, "POST", s.bases[(i+j)%len(s.bases)]+"/api/v1/raffle/activity/draw", drawReq{u, soldOutActivity})
				mu.Lock()
				codes[r.Code]++
				if r.Code == "0000" {
					wins[u]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if codes["0000"] != units || codes["ERR_BIZ_010"] != users*draws-units {
		t.Fatalf("%d draws on %d stocked units without fallback: codes %v; want exactly %d wins and the rest ERR_BIZ_010",
			users*draws, units, codes, units)
	}
	d.drainDraws(t)
	ctx := context.Background()
	for _, u := range ids {
		orders, err := d.users.RaffleOrders(ctx, u, soldOutActivity)
		if err != nil {
			t.Fatal(err)
		}
		used, unused := 0, 0
		for _, o := range orders {
			switch o.State {
			case activity.OrderUsed:
				used++
			case activity.OrderCreate:
				unused++
			}
		}
		recs, err := d.users.AwardRecords(ctx, u, soldOutActivity)
		if err != nil {
			t.Fatal(err)
		}
		v := accountOf(t, s.bases[0], u, soldOutActivity)
		if used != wins[u] || len(recs) != wins[u] || unused > 1 || v["totalCountSurplus"]+int64(unused+used) != int64(draws) {
			t.Errorf("user %s: %d wins answered, %d records, %d used and %d unused orders, account %v; want the quota whole",
				u, wins[u], len(recs), used, unused, v)
		}
	}
	// Now that every node knows: a fresh user's draws on each node are refused before any
	// quota is read or taken (a user without quota is told the activity is sold out, not
	// that the quota is exhausted), and a user with quota keeps it all.
	fresh, funded := testenv.Unique("so"), testenv.Unique("so")
	rechargeAll(t, s, soldOutActivity, []string{funded})
	for _, base := range s.bases {
		for _, u := range []string{fresh, funded} {
			if r := call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{u, soldOutActivity}); r.Code != "ERR_BIZ_010" {
				t.Errorf("draw of %s on %s after the sell-out: %+v, want ERR_BIZ_010", u, base, r)
			}
		}
	}
	if v := accountOf(t, s.bases[0], funded, soldOutActivity); v["totalCountSurplus"] != int64(draws) {
		t.Errorf("account after refused draws: %v, want all %d draws left", v, draws)
	}
	if orders, err := d.users.RaffleOrders(ctx, funded, soldOutActivity); err != nil || len(orders) != 0 {
		t.Errorf("refused draws wrote orders %v (%v)", orders, err)
	}
}

// checkOneWin draws 10 times concurrently for each of 20 users across the nodes in a
// one-win activity whose one stocked award has stock for all: each user wins it exactly
// once, the other draws are refused (ERR_BIZ_011, or 0009 while the user's winning draw
// runs). After the user's one-win set is lost, it is rebuilt from the award records.
func checkOneWin(t *testing.T, d *deployment, s stack) {
	insertGateActivity(t, s, oneWinActivity, 10, map[int]int{102: 1000})
	if r := settingsCall(t, s, `{"activityId":990002,"oneWin":true}`); r.Code != "0000" {
		t.Fatalf("one win on: %+v", r)
	}
	ids := make([]string, 20)
	for i := range ids {
		ids[i] = testenv.Unique("ow")
	}
	rechargeAll(t, s, oneWinActivity, ids)
	// The other node hears of the change through NATS.
	testenv.Eventually(t, 10*time.Second, "one win reaches the second node", func() bool {
		r := call(t, "GET", s.bases[1]+"/api/v1/admin/activity/settings?activityId=990002", nil, bearer(s.adminToken))
		return string(r.Data) == `{"activityId":990002,"oneWin":true,"signedPath":false,"pathWindowSeconds":0}`
	})
	var mu sync.Mutex
	codes := map[string]int{}
	var wg sync.WaitGroup
	for _, u := range ids {
		for j := range 10 {
			wg.Go(func() {
				r := call(t, "POST", s.bases[j%len(s.bases)]+"/api/v1/raffle/activity/draw", drawReq{u, oneWinActivity})
				mu.Lock()
				codes[r.Code]++
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	if codes["0000"]+codes["ERR_BIZ_011"]+codes["0009"] != 200 || codes["0000"] > 20 {
		t.Fatalf("codes %v: want at most one win per user, the rest ERR_BIZ_011 or 0009", codes)
	}
	ctx := context.Background()
	for _, u := range ids {
		// A user whose draws all met another's hold wins now.
		testenv.Eventually(t, 10*time.Second, "a win of "+u, func() (bool, string) {
			recs, err := d.users.AwardRecords(ctx, u, oneWinActivity)
			if err != nil {
				return false, err.Error()
			}
			if len(recs) == 0 {
				r := call(t, "POST", s.bases[0]+"/api/v1/raffle/activity/draw", drawReq{u, oneWinActivity})
				return false, r.Code
			}
			return true, ""
		})
		recs, err := d.users.AwardRecords(ctx, u, oneWinActivity)
		if err != nil || len(recs) != 1 || recs[0].AwardID != 102 {
			t.Errorf("user %s holds %+v (%v); want exactly one stocked award", u, recs, err)
		}
	}
	// A lost set (a flush, an eviction) is rebuilt from the award records before it
	// answers: the winner is still refused.
	wins := redis.NewWins(s.redis, s.prefix, 0)
	if err := s.redis.Del(ctx, wins.SetKey(ids[0])).Err(); err != nil {
		t.Fatal(err)
	}
	for _, base := range s.bases {
		if r := call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{ids[0], oneWinActivity}); r.Code != "ERR_BIZ_011" {
			t.Errorf("draw of a winner after the loss of the one-win set, on %s: %+v, want ERR_BIZ_011", base, r)
		}
	}
	if recs, _ := d.users.AwardRecords(ctx, ids[0], oneWinActivity); len(recs) != 1 {
		t.Errorf("winner holds %d records after the loss, want 1", len(recs))
	}
}

// checkSignedPaths turns signed paths on and checks each refusal: the plain draw (body
// and token variants), another user's path, a used path, on either node; a path works
// once for its user on any node.
func checkSignedPaths(t *testing.T, s stack) {
	if r := settingsCall(t, s, `{"activityId":990003,"signedPath":true,"pathWindowSeconds":60}`); r.Code != "0000" {
		t.Fatalf("signed paths on: %+v", r)
	}
	alice, bob := testenv.Unique("sp"), testenv.Unique("sp")
	rechargeAll(t, s, pathActivity, []string{alice, bob})
	body, _ := json.Marshal(map[string]any{"activityId": pathActivity})
	drawAt := func(base, path, user string) envelope {
		r := call(t, "POST", base+path, body, "Authorization: "+userAuth(user))
		return r
	}
	testenv.Eventually(t, 10*time.Second, "the plain draw refused on every node", func() bool {
		for _, base := range s.bases {
			if r := drawAt(base, "/api/v1/raffle/activity/draw_by_token", alice); r.Code != "ERR_BIZ_012" {
				return false
			}
		}
		return true
	})
	for _, base := range s.bases {
		if r := call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{alice, pathActivity}); r.Code != "ERR_BIZ_012" {
			t.Errorf("plain draw with the user in the body on %s: %+v, want ERR_BIZ_012", base, r)
		}
	}
	issue := func(user string) (string, int64) {
		r := call(t, "GET", s.bases[0]+"/api/v1/raffle/activity/draw_path_by_token?activityId="+url.QueryEscape(strconv.Itoa(pathActivity)), nil, "Authorization: "+userAuth(user))
		p, err := dataOf[struct {
			Path      string `json:"path"`
			ExpiresAt int64  `json:"expiresAt"`
		}](r)
		if err != nil || r.Code != "0000" || p.Path == "" {
			t.Fatalf("draw path of %s: %+v %v", user, r, err)
		}
		return p.Path, p.ExpiresAt
	}
	path, exp := issue(alice)
	if left := time.Until(time.UnixMilli(exp)); left <= 50*time.Second || left > 61*time.Second {
		t.Errorf("path expires in %s, want the 60s window", left)
	}
	if r := drawAt(s.bases[1], path, bob); r.Code != "ERR_BIZ_012" {
		t.Errorf("bob draws on alice's path: %+v, want ERR_BIZ_012", r)
	}
	if r := drawAt(s.bases[1], path, alice); r.Code != "0000" {
		t.Fatalf("alice draws on her path: %+v", r) // bob's attempt did not spend it
	}
	for _, base := range s.bases {
		if r := drawAt(base, path, alice); r.Code != "ERR_BIZ_012" {
			t.Errorf("alice draws on her used path on %s: %+v, want ERR_BIZ_012", base, r)
		}
	}
	// Concurrent uses of one path: one draw.
	path, _ = issue(bob)
	var ok atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if r := drawAt(s.bases[i%2], path, bob); r.Code == "0000" {
				ok.Add(1)
			} else if r.Code != "ERR_BIZ_012" {
				t.Errorf("concurrent use of one path: %+v", r)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Errorf("%d draws on one path, want 1", ok.Load())
	}
	// A path of another activity, or a mangled one.
	for _, p := range []string{path[:len(path)-2] + "AA", "/api/v1/raffle/activity/draw/short"} {
		if r := drawAt(s.bases[0], p, bob); r.Code != "ERR_BIZ_012" {
			t.Errorf("draw on %s: %+v, want ERR_BIZ_012", p, r)
		}
	}
	// With signed paths off again, the plain draw works.
	if r := settingsCall(t, s, `{"activityId":990003,"signedPath":false}`); r.Code != "0000" {
		t.Fatalf("signed paths off: %+v", r)
	}
	testenv.Eventually(t, 10*time.Second, "the plain draw works again on the second node", func() bool {
		return drawAt(s.bases[1], "/api/v1/raffle/activity/draw_by_token", alice).Code == "0000"
	})
}
