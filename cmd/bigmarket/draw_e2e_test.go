package main

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
)

type drawReq struct {
	UserID     string `json:"userId"`
	ActivityID int64  `json:"activityId"`
}

// checkActivityDraw runs the main job end to end: armory, operator recharge (idempotent),
// 50 concurrent draws of one user whose day quota is 5, and the queries.
func checkActivityDraw(t *testing.T, s stack) {
	const raffle = "/api/v1/raffle/"
	user := testenv.Unique("u")
	if r := call(t, "GET", s.bases[0]+raffle+"activity/armory?activityId=100301", nil); r.Code != "0000" {
		t.Fatalf("activity armory: %+v", r)
	}
	// SKU 99013 sells 100 total / 5 a day / 100 a month, so the day limit is what binds.
	ctx := context.Background()
	if _, err := s.db.ExecContext(ctx, `INSERT INTO raffle_activity_count (activity_count_id, total_count, day_count, month_count)
		VALUES (99101, 100, 5, 100)`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO raffle_activity_sku (sku, activity_id, activity_count_id, stock_count,
		stock_count_surplus, product_amount) VALUES (99013, 100301, 99101, 1000, 1000, '1.00')`); err != nil {
		t.Fatal(err)
	}
	if r := call(t, "GET", s.bases[0]+raffle+"activity/armory?activityId=100301", nil); r.Code != "0000" {
		t.Fatalf("activity armory after adding a sku: %+v", r)
	}
	recharge := map[string]any{"userId": user, "sku": 99013, "outBusinessNo": user + "-1"}
	if r := call(t, "POST", s.bases[0]+"/api/v1/admin/activity/recharge", recharge, bearer(s.adminToken)); r.Code != "0000" {
		t.Fatalf("recharge: %+v", r)
	}
	if r := call(t, "POST", s.bases[0]+"/api/v1/admin/activity/recharge", recharge, bearer(s.adminToken)); r.Code != "0003" {
		t.Fatalf("repeated recharge: %+v, want 0003", r)
	}
	account := func() map[string]int64 {
		r := call(t, "POST", s.bases[0]+raffle+"activity/query_user_activity_account", drawReq{user, 100301})
		v, err := dataOf[map[string]int64](r)
		if err != nil || r.Code != "0000" {
			t.Fatalf("account: %+v %v", r, err)
		}
		return v
	}
	if v := account(); v["totalCount"] != 100 || v["totalCountSurplus"] != 100 || v["dayCount"] != 5 || v["dayCountSurplus"] != 5 || v["monthCountSurplus"] != 100 {
		t.Fatalf("account after recharge of sku 99013 (100/5/100): %v", v)
	}

	var mu sync.Mutex
	codes := map[string]int{}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			r := call(t, "POST", s.bases[i%len(s.bases)]+raffle+"activity/draw", drawReq{user, 100301})
			mu.Lock()
			codes[r.Code]++
			mu.Unlock()
			if r.Code == "0000" {
				d, err := dataOf[drawResult](r)
				if err != nil || d.AwardID < 101 || d.AwardID > 108 || d.AwardIndex != d.AwardID-100 || d.AwardTitle == "" {
					t.Errorf("draw data %s", r.Data)
				}
			}
		})
	}
	wg.Wait()
	// A draw answered 0009 (outcome unknown: on a loaded machine its publish or a script
	// outlasted its lease) may have taken a unit, pending until the user's next draw
	// settles it (or, while its lease lasts, the sweep); the client retries those, as the
	// answer asks, until the day quota is refused. No unit is answered 0000 twice, and
	// every unit ends as one record (below).
	concurrent := maps.Clone(codes)
	for retries := codes["0009"]; retries > 0; {
		r := call(t, "POST", s.bases[0]+raffle+"activity/draw", drawReq{user, 100301})
		codes[r.Code]++
		switch r.Code {
		case "0009":
			time.Sleep(100 * time.Millisecond) // a client's retry, as the answer asks
		case "ERR_BIZ_008":
			retries = 0
		case "0000":
		default:
			t.Fatalf("retry of a draw answered 0009: %+v", r)
		}
		if codes["0009"] > 200 {
			t.Fatalf("draws still answer 0009 after %v", codes)
		}
	}
	if codes["0000"] > 5 || concurrent["0000"] > 5 || concurrent["0009"] == 0 && concurrent["0000"] != 5 || concurrent["0000"]+concurrent["0009"]+concurrent["ERR_BIZ_008"]+concurrent["ERR_BIZ_009"] != 50 {
		t.Fatalf("50 concurrent draws with day quota 5: %v, then with the retries of 0009 %v; want at most 5 successes (exactly 5 without 0009), the rest ERR_BIZ_008/009 or 0009", concurrent, codes)
	}
	if concurrent["0009"] > 0 {
		t.Logf("50 concurrent draws answered %v on a loaded machine; with the retries %v", concurrent, codes)
	}
	if v := account(); v["totalCountSurplus"] != 95 || v["dayCountSurplus"] != 0 || v["monthCountSurplus"] != 95 {
		t.Errorf("account after 5 draws: %v", v)
	}
	// The draw writer writes the records behind the answers: wait for them.
	testenv.Eventually(t, 30*time.Second, "5 award records and tasks", func() (bool, string) {
		recs, err := s.users.AwardRecords(ctx, user, 100301)
		if err != nil || len(recs) > 5 {
			t.Fatalf("award records: %d %v, want 5", len(recs), err)
		}
		tasks, err := s.users.Tasks(ctx, user)
		if err != nil || len(tasks) > 5 {
			t.Fatalf("tasks: %d %v, want 5", len(tasks), err)
		}
		return len(recs) == 5 && len(tasks) == 5, fmt.Sprintf("%d records, %d tasks", len(recs), len(tasks))
	})
	if r := call(t, "POST", s.bases[0]+raffle+"activity/draw", drawReq{user, 100301}); r.Code != "ERR_BIZ_008" {
		t.Errorf("draw with no day quota left: %s, want ERR_BIZ_008", r.Code)
	}

	r := call(t, "POST", s.bases[0]+raffle+"strategy/query_raffle_award_list", drawReq{user, 100301})
	list, err := dataOf[[]struct {
		AwardID   int   `json:"awardId"`
		Sort      int   `json:"sort"`
		LockCount int64 `json:"awardRuleLockCount"`
		Unlocked  bool  `json:"isAwardUnlock"`
		Wait      int64 `json:"waitUnLockCount"`
	}](r)
	if err != nil || len(list) != 8 {
		t.Fatalf("award list: %+v %v", r, err)
	}
	for i, a := range list {
		wantLock := map[int]int64{105: 3, 106: 2, 107: 1}[a.AwardID]
		if a.Sort != i+1 || a.LockCount != wantLock || !a.Unlocked || a.Wait != 0 {
			t.Errorf("award list entry %+v after 5 draws today", a)
		}
	}
	fresh := testenv.Unique("f")
	r = call(t, "POST", s.bases[0]+raffle+"strategy/query_raffle_award_list", drawReq{fresh, 100301})
	if !strings.Contains(string(r.Data), `"awardId":105,"awardTitle":"小米su7周体验"`) || !strings.Contains(string(r.Data), `"awardRuleLockCount":3,"isAwardUnlock":false,"waitUnLockCount":3`) {
		t.Errorf("award list of a user with no draws: %s", r.Data)
	}
	r = call(t, "POST", s.bases[0]+raffle+"strategy/query_raffle_strategy_rule_weight", drawReq{user, 100301})
	if r.Code != "0000" || !strings.HasPrefix(string(r.Data), `[{"ruleWeightCount":10,"userActivityAccountTotalUseCount":5,"strategyAwards":[{"awardId":102,`) {
		t.Errorf("rule weight: %s %s", r.Code, r.Data)
	}
}

// checkDrawRefusals sends draws that must be refused and checks nothing was written.
func checkDrawRefusals(t *testing.T, s stack) {
	const raffle = "/api/v1/raffle/"
	ctx := context.Background()
	past := time.Now().Add(-48 * time.Hour).UTC().Format(time.DateTime)
	for _, row := range []struct {
		id       int64
		strategy int64
		state    string
		end      string
	}{{900301, 100001, "close", "2099-01-01 00:00:00"}, {900302, 100002, "open", past}} {
		if _, err := s.db.ExecContext(ctx, `INSERT INTO raffle_activity (activity_id, activity_name, activity_desc,
			begin_date_time, end_date_time, strategy_id, state) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			row.id, "test", "", "2020-01-01 00:00:00", row.end, row.strategy, row.state); err != nil {
			t.Fatal(err)
		}
	}
	user := testenv.Unique("r")
	for _, tc := range []struct {
		name string
		body any
		want string
	}{
		{"closed activity", drawReq{user, 900301}, "ERR_BIZ_003"},
		{"ended activity", drawReq{user, 900302}, "ERR_BIZ_004"},
		{"unknown activity", drawReq{user, 123456789}, "0002"},
		{"no account", drawReq{user, 100301}, "ERR_BIZ_006"},
		{"missing user", map[string]any{"activityId": 100301}, "0002"},
		{"missing activity", map[string]any{"userId": user}, "0002"},
	} {
		if r := call(t, "POST", s.bases[0]+raffle+"activity/draw", tc.body); r.Code != tc.want {
			t.Errorf("%s: %s %q, want %s", tc.name, r.Code, r.Info, tc.want)
		}
	}
	if r := call(t, "POST", s.bases[0]+"/api/v1/admin/activity/recharge", map[string]any{"userId": user, "sku": 424242, "outBusinessNo": "x"}, bearer(s.adminToken)); r.Code != "0002" {
		t.Errorf("recharge of an unknown sku: %s", r.Code)
	}
	r := call(t, "POST", s.bases[0]+"/api/v1/admin/activity/recharge", []byte(fmt.Sprintf(`{"userId":%q,"sku":9013,"outBusinessNo":"y"}`, user)))
	if r.Code != "0003" {
		t.Errorf("recharge without the admin token: %s, want 0003", r.Code)
	}
	orders, err := s.users.RaffleOrders(ctx, user, 100301)
	if err != nil || len(orders) != 0 {
		t.Errorf("refused draws left orders: %v %v", orders, err)
	}
	if recharges, err := s.users.RechargeOrders(ctx, user); err != nil || len(recharges) != 0 {
		t.Errorf("refused recharges left orders: %v %v", recharges, err)
	}
}

// checkERP reads and changes the stage list through the operator endpoints.
func checkERP(t *testing.T, s stack) {
	get := func(path string) envelope { return call(t, "GET", s.bases[0]+path, nil, bearer(s.adminToken)) }
	r := get("/api/v1/raffle/erp/query_raffle_activity_stage_list")
	stages, err := dataOf[[]struct {
		ID         int64  `json:"id"`
		ActivityID int64  `json:"activityId"`
		State      string `json:"state"`
	}](r)
	if err != nil || r.Code != "0000" || len(stages) == 0 {
		t.Fatalf("stage list: %+v %v", r, err)
	}
	if r := call(t, "POST", s.bases[0]+"/api/v1/raffle/erp/update_stage_activity_2_active", map[string]any{"id": stages[0].ID}, bearer(s.adminToken)); r.Code != "0000" {
		t.Errorf("activate stage %d: %+v", stages[0].ID, r)
	}
	if r := call(t, "POST", s.bases[0]+"/api/v1/raffle/erp/update_stage_activity_2_active", map[string]any{"id": 987654}, bearer(s.adminToken)); r.Code != "0002" {
		t.Errorf("activate unknown stage: %s", r.Code)
	}
	r = get("/api/v1/raffle/erp/query_user_raffle_order?limit=3")
	if r.Code != "0000" || strings.Count(string(r.Data), `"orderId"`) != 3 {
		t.Errorf("recent raffle orders: %s %s", r.Code, r.Data)
	}
}
