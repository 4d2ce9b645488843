package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// consoleUser is the part of GET admin/user/{userId} the e2e test reads.
type consoleUser struct {
	UserID   string       `json:"userId"`
	Credit   *json.Number `json:"credit"`
	Accounts []struct {
		ActivityID        int64 `json:"activityId"`
		TotalCount        int64 `json:"totalCount"`
		TotalCountSurplus int64 `json:"totalCountSurplus"`
	} `json:"accounts"`
	Awards []struct {
		OrderID   string `json:"orderId"`
		AwardID   int    `json:"awardId"`
		AwardTime int64  `json:"awardTime"`
		State     string `json:"state"`
	} `json:"awards"`
	Blacklisted bool `json:"blacklisted"`
}

type consoleReconcile struct {
	OK     bool `json:"ok"`
	Checks []struct {
		Name          string   `json:"name"`
		OK            bool     `json:"ok"`
		Discrepancies []string `json:"discrepancies"`
		Skipped       []string `json:"skipped"`
	} `json:"checks"`
}

// TestConsoleViews runs the operator console's views on the real backends: the user view
// after a recharge and a draw shows the account and the award, the strategy view's stock
// left is Redis's counter, and admin/reconcile is ok on a clean run and reports a
// deliberately deleted award record.
func TestConsoleViews(t *testing.T) {
	d := newDeployment(t, "")
	_, base := d.start(t)
	d.armory(t, base)
	admin := bearer(d.adminToken)
	user := "cv" + d.prefix[len(d.prefix)-6:]
	if r := d.recharge(t, base, user, 9011, user+"-9011"); r.Code != "0000" {
		t.Fatalf("recharge: %s", r)
	}
	if r := call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{user, faultActivity}); r.Code != "0000" {
		t.Fatalf("draw: %s", r)
	}
	// The award record is written behind the draw's answer: poll the view.
	var view consoleUser
	testenv.Eventually(t, 60*time.Second, "the user view shows the draw's award", func() (bool, string) {
		r := call(t, "GET", base+"/api/v1/admin/user/"+user, nil, admin)
		v, err := dataOf[consoleUser](r)
		if err != nil || r.Code != "0000" {
			return false, r.String()
		}
		view = v
		return len(v.Awards) == 1, r.String()
	})
	if view.UserID != user || len(view.Accounts) != 1 || view.Accounts[0].ActivityID != faultActivity ||
		view.Accounts[0].TotalCount == 0 || view.Accounts[0].TotalCountSurplus != view.Accounts[0].TotalCount-1 ||
		view.Credit == nil || view.Blacklisted {
		t.Errorf("user view: %+v", view)
	}
	recs, err := d.users.AwardRecords(context.Background(), user, faultActivity)
	if err != nil || len(recs) != 1 || recs[0].OrderID != view.Awards[0].OrderID || recs[0].AwardID != view.Awards[0].AwardID {
		t.Fatalf("award records %+v %v, the view shows %+v", recs, err, view.Awards)
	}
	for _, path := range []string{"/api/v1/admin/user/%20" + user, "/api/v1/admin/strategy/424242", "/api/v1/admin/strategy/x"} {
		if r := call(t, "GET", base+path, nil, admin); r.Code != "0002" {
			t.Errorf("%s: %s, want 0002", path, r)
		}
	}
	if r := call(t, "GET", base+"/api/v1/admin/user/"+user, nil); r.Status != 401 {
		t.Errorf("user view without the token: %s", r)
	}

	// The strategy view's stock left is what Redis holds.
	r := call(t, "GET", fmt.Sprintf("%s/api/v1/admin/strategy/%d", base, faultStrategy), nil, admin)
	sv, err := dataOf[struct {
		StrategyID int64 `json:"strategyId"`
		Armed      bool  `json:"armed"`
		Awards     []struct {
			AwardID   int    `json:"awardId"`
			Rate      string `json:"rate"`
			StockLeft *int64 `json:"stockLeft"`
		} `json:"awards"`
		Rules []struct{ RuleModel string } `json:"rules"`
	}](r)
	if err != nil || r.Code != "0000" || sv.StrategyID != faultStrategy || !sv.Armed || len(sv.Awards) == 0 || len(sv.Rules) == 0 {
		t.Fatalf("strategy view: %s", r)
	}
	for _, a := range sv.Awards {
		raw, err := d.redis.Get(context.Background(), d.counterKey(a.AwardID)).Result()
		if err != nil {
			t.Fatalf("counter of award %d: %v", a.AwardID, err)
		}
		want, _ := strconv.ParseInt(raw, 10, 64)
		if a.StockLeft == nil || *a.StockLeft != want || a.Rate == "" {
			t.Errorf("award %d: stockLeft %v rate %q, Redis holds %d", a.AwardID, a.StockLeft, a.Rate, want)
		}
	}

	// Reconcile: ok once the run settled (the award's distribution is behind the draw).
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	reconcileNow := func() (consoleReconcile, envelope) {
		r := call(t, "POST", base+"/api/v1/admin/reconcile", map[string]any{"since": since}, admin)
		v, err := dataOf[consoleReconcile](r)
		if err != nil || r.Code != "0000" || len(v.Checks) != 3 {
			t.Fatalf("reconcile: %s", r)
		}
		return v, r
	}
	// Ok and nothing skipped: the draw writer's progress covers the draw, so the draw
	// events are checked too.
	testenv.Eventually(t, 90*time.Second, "reconcile ok with every check made", func() (bool, string) {
		v, r := reconcileNow()
		for _, c := range v.Checks {
			if len(c.Skipped) > 0 {
				return false, r.String()
			}
		}
		return v.OK, r.String()
	})
	// A deleted award record: its draw event is unwritten (and a credit award's credit
	// order an orphan, which depends on the award drawn).
	ctx := context.Background()
	route := sqlstore.Router{DBs: 2, Tables: 4}.Route(user)
	res, err := d.userDBs[route.DB].SQL.ExecContext(ctx, "DELETE FROM user_award_record"+route.Suffix+" WHERE order_id = ?", recs[0].OrderID)
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("delete the award record: %d %v", n, err)
	}
	v, raw := reconcileNow()
	found := map[string]bool{}
	for _, c := range v.Checks {
		for _, d := range c.Discrepancies {
			kind, rest, _ := strings.Cut(d, " ")
			found[c.Name+" "+kind] = !c.OK && strings.HasPrefix(rest, "user="+user+" ")
		}
	}
	if v.OK || !found["draws "+reconcile.KindDrawUnwritten] {
		t.Errorf("reconcile after a deleted record: %s, want draws to report %s of %s", raw, reconcile.KindDrawUnwritten, user)
	}
	if r := call(t, "POST", base+"/api/v1/admin/reconcile", map[string]any{"since": "2000-01-01T00:00:00Z"}, admin); r.Code != "0002" {
		t.Errorf("reconcile since 2000: %s, want 0002", r)
	}

	// The red packet list shows an operator packet sent through the admin endpoint.
	if r := call(t, "POST", base+"/api/v1/admin/redpacket/send", map[string]any{"totalAmount": "1.00", "count": 2}, admin); r.Code != "0000" {
		t.Fatalf("campaign packet: %s", r)
	}
	r = call(t, "GET", base+"/api/v1/admin/redpacket/packets?limit=5", nil, admin)
	packets, err := dataOf[[]struct {
		Kind, Status string
		Count        int
		Grabbed      int
	}](r)
	if err != nil || r.Code != "0000" || len(packets) != 1 || packets[0].Kind != "campaign" || packets[0].Count != 2 || packets[0].Status != "open" {
		t.Errorf("red packets: %s", r)
	}
}

// TestConsoleEmbedded runs the console's reconcile, rain list and settings on the demo's
// embedded stack (SQLite, in-process Redis and broker, all in reach of the serve process).
func TestConsoleEmbedded(t *testing.T) {
	cfg, base, _ := startEmbedded(t, nil)
	admin := bearer(cfg.AdminToken)
	testenv.Eventually(t, 60*time.Second, "reconcile ok on a fresh demo", func() (bool, string) {
		r := call(t, "POST", base+"/api/v1/admin/reconcile", nil, admin)
		v, err := dataOf[consoleReconcile](r)
		return err == nil && r.Code == "0000" && v.OK && len(v.Checks) == 3, r.String()
	})

	start := time.Now().Add(time.Hour)
	id := createRain(t, base, cfg.AdminToken, fmt.Sprintf(`{"title":"console","startTime":%d,"endTime":%d,"userCap":1,"burst":100,
		"prizes":[{"kind":"cash","amount":"0.10","count":100}]}`, start.UnixMilli(), start.Add(time.Minute).UnixMilli()))
	r := call(t, "GET", base+"/api/v1/admin/rain/sessions", nil, admin)
	sessions, err := dataOf[[]struct {
		ID     int64            `json:"id"`
		Name   string           `json:"name"`
		Start  int64            `json:"start"`
		Total  int              `json:"total"`
		Issued int              `json:"issued"`
		Nodes  map[string]int64 `json:"nodes"`
	}](r)
	if err != nil || r.Code != "0000" || len(sessions) != 1 || sessions[0].ID != id || sessions[0].Name != "console" ||
		sessions[0].Total != 100 || sessions[0].Issued != 0 || sessions[0].Start != start.UnixMilli() || sessions[0].Nodes == nil {
		t.Errorf("rain sessions: %s", r)
	}

	if r := call(t, "GET", base+"/api/v1/raffle/dcc/update_config?key=rateLimiterBurst&value=9", nil, admin); r.Code != "0000" {
		t.Fatalf("update_config: %s", r)
	}
	testenv.Eventually(t, 30*time.Second, "the update in admin/settings", func() (bool, string) {
		r := call(t, "GET", base+"/api/v1/admin/settings", nil, admin)
		list, err := dataOf[[]struct {
			Key, Value, Default string
			Overridden          bool
		}](r)
		for _, s := range list {
			if s.Key == "rateLimiterBurst" {
				return err == nil && s.Value == "9" && s.Default != "9" && s.Overridden, r.String()
			}
		}
		return false, r.String()
	})
}
