package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/strategy"
)

// fakeConsole is a console with Fn fields; a nil one answers an empty view.
type fakeConsole struct {
	StrategyFn  func(id int64) (StrategyView, error)
	ReconcileFn func(since time.Time) ([]ReconcileCheck, error)
	users       atomic.Int64 // UserActivity calls
}

func (f *fakeConsole) Strategy(_ context.Context, id int64) (StrategyView, error) {
	if f.StrategyFn != nil {
		return f.StrategyFn(id)
	}
	return StrategyView{}, nil
}

func (f *fakeConsole) UserActivity(_ context.Context, userID string, limit int) ([]AccountView, []AwardView, error) {
	f.users.Add(1)
	return []AccountView{{ActivityID: 100301, TotalCount: 10, TotalCountSurplus: 9}},
		[]AwardView{{ActivityID: 100301, OrderID: "o1", AwardID: 101, AwardTitle: "随机积分", AwardTime: 1_800_000_000_000, State: "completed"}}, nil
}

func (f *fakeConsole) RedPackets(_ context.Context, limit int) ([]RedPacketView, error) {
	out := []RedPacketView{{PacketID: "0012345678901234567890", Kind: "campaign", Total: 1_00, Count: 3, Grabbed: 1, Left: 70, Status: "open"}}
	for len(out) < limit && len(out) < 2 {
		out = append(out, RedPacketView{PacketID: fmt.Sprint(len(out)), Sender: "u1", Kind: "user"})
	}
	return out[:min(limit, len(out))], nil
}

func (f *fakeConsole) Reconcile(_ context.Context, since time.Time) ([]ReconcileCheck, error) {
	if f.ReconcileFn != nil {
		return f.ReconcileFn(since)
	}
	return []ReconcileCheck{{Name: "ledger", OK: true, Discrepancies: []string{}, Skipped: []string{}}}, nil
}

const consoleToken = "Bearer console-admin-token"

func newConsoleServer(f *fakeConsole, now time.Time) *Server {
	return New(Options{Strategies: newFake(), Console: f, Rains: &fakeRains{}, AdminToken: "console-admin-token",
		Now: func() time.Time { return now }})
}

func TestConsoleNeedsAdminToken(t *testing.T) {
	t.Parallel()
	f := &fakeConsole{}
	h := newConsoleServer(f, time.Now())
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/admin/strategy/100006"}, {"GET", "/api/v1/admin/user/xiaofuge"},
		{"GET", "/api/v1/admin/redpacket/packets"}, {"POST", "/api/v1/admin/reconcile"}, {"GET", "/api/v1/admin/rain/sessions"},
	} {
		for _, auth := range []string{"", "Bearer wrong"} {
			r := doAdmin(t, h, c.method, c.path, auth, "")
			if r.status != 401 || r.Code != "0003" {
				t.Errorf("%s %s with %q: HTTP %d %s, want 401 0003", c.method, c.path, auth, r.status, r.Code)
			}
		}
	}
	if f.users.Load() != 0 {
		t.Errorf("the user view was read without the token")
	}
}

func TestConsoleStrategy(t *testing.T) {
	t.Parallel()
	left := int64(7)
	f := &fakeConsole{StrategyFn: func(id int64) (StrategyView, error) {
		if id != 100006 {
			return StrategyView{}, fmt.Errorf("load strategy %d: %w", id, strategy.ErrStrategyNotFound)
		}
		return StrategyView{StrategyID: id, Description: "d", Armed: true,
			Awards: []StrategyAwardView{{AwardID: 101, Rate: "0.8", StockTotal: 10, StockSurplus: 8, StockLeft: &left}},
			Rules:  []StrategyRuleView{{RuleModel: "rule_blacklist", RuleValue: "100:user001"}}}, nil
	}}
	h := newConsoleServer(f, time.Now())
	r := doAdmin(t, h, "GET", "/api/v1/admin/strategy/100006", consoleToken, "")
	want := `{"strategyId":100006,"description":"d","armed":true,"awards":[{"awardId":101,"awardTitle":"","awardSubtitle":"","sort":0,"rate":"0.8","ruleModels":"","stockTotal":10,"stockSurplus":8,"stockLeft":7}],"rules":[{"ruleModel":"rule_blacklist","ruleValue":"100:user001"}]}`
	if r.Code != "0000" || string(r.Data) != want {
		t.Fatalf("strategy: %s %s\nwant %s", r.Code, r.Data, want)
	}
	for _, path := range []string{"/api/v1/admin/strategy/424242", "/api/v1/admin/strategy/abc", "/api/v1/admin/strategy/0", "/api/v1/admin/strategy/-1"} {
		if r := doAdmin(t, h, "GET", path, consoleToken, ""); r.status != 200 || r.Code != "0002" {
			t.Errorf("%s: HTTP %d %s, want 200 0002", path, r.status, r.Code)
		}
	}
}

func TestConsoleUser(t *testing.T) {
	t.Parallel()
	f := &fakeConsole{}
	h := newConsoleServer(f, time.Now())
	r := doAdmin(t, h, "GET", "/api/v1/admin/user/xiaofuge", consoleToken, "")
	want := `{"userId":"xiaofuge","credit":null,"accounts":[{"activityId":100301,"totalCount":10,"totalCountSurplus":9,"dayCount":0,"dayCountSurplus":0,"monthCount":0,"monthCountSurplus":0}],` +
		`"awards":[{"activityId":100301,"orderId":"o1","awardId":101,"awardTitle":"随机积分","awardTime":1800000000000,"state":"completed"}],"blacklisted":false,"blacklistedUntil":null}`
	if r.Code != "0000" || string(r.Data) != want {
		t.Fatalf("user: %s %s\nwant %s", r.Code, r.Data, want)
	}
	before := f.users.Load()
	for _, path := range []string{"/api/v1/admin/user/" + strings.Repeat("u", 33), "/api/v1/admin/user/%20u", "/api/v1/admin/user/u%00"} {
		if r := doAdmin(t, h, "GET", path, consoleToken, ""); r.status != 200 || r.Code != "0002" {
			t.Errorf("%s: HTTP %d %s, want 200 0002", path, r.status, r.Code)
		}
	}
	if f.users.Load() != before {
		t.Errorf("a bad user id was looked up")
	}
}

func TestConsoleRedPackets(t *testing.T) {
	t.Parallel()
	h := newConsoleServer(&fakeConsole{}, time.Now())
	r := doAdmin(t, h, "GET", "/api/v1/admin/redpacket/packets?limit=1", consoleToken, "")
	want := `[{"packetId":"0012345678901234567890","sender":"","kind":"campaign","totalAmount":1.00,"count":3,"grabbed":1,"left":0.70,"status":"open","createTime":0,"expireTime":0}]`
	if r.Code != "0000" || string(r.Data) != want {
		t.Fatalf("packets: %s %s\nwant %s", r.Code, r.Data, want)
	}
	if r := doAdmin(t, h, "GET", "/api/v1/admin/redpacket/packets", consoleToken, ""); r.Code != "0000" {
		t.Errorf("default limit: %s %s", r.Code, r.Info)
	}
	for _, q := range []string{"0", "-1", "abc", "501", "1.5"} {
		if r := doAdmin(t, h, "GET", "/api/v1/admin/redpacket/packets?limit="+q, consoleToken, ""); r.Code != "0002" {
			t.Errorf("limit=%s: %s, want 0002", q, r.Code)
		}
	}
}

func TestConsoleRainSessions(t *testing.T) {
	t.Parallel()
	h := newConsoleServer(&fakeConsole{}, time.Now())
	r := doAdmin(t, h, "GET", "/api/v1/admin/rain/sessions", consoleToken, "")
	want := `[{"id":42,"name":"t","state":"armed","start":1800000000000,"end":1800000010000,"total":10,"issued":1,"released":2,"seqNo":2,"nodes":{"a":2}}]`
	if r.Code != "0000" || string(r.Data) != want {
		t.Fatalf("rain sessions: %s %s\nwant %s", r.Code, r.Data, want)
	}
}

func TestConsoleReconcile(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	var got time.Time
	release := make(chan struct{})
	running := make(chan struct{}, 1)
	f := &fakeConsole{ReconcileFn: func(since time.Time) ([]ReconcileCheck, error) {
		got = since
		if since.Equal(now.Add(-2 * time.Hour)) { // the run held open to test the one-at-a-time rule
			running <- struct{}{}
			<-release
		}
		return []ReconcileCheck{{Name: "ledger", OK: true, Discrepancies: []string{}, Skipped: []string{}},
			{Name: "draws", OK: false, Found: 1, Discrepancies: []string{"x"}, Skipped: []string{}}}, nil
	}}
	h := newConsoleServer(f, now)
	for _, c := range []struct {
		body string
		want time.Time
	}{
		{``, now.Add(-time.Hour)},
		{`{}`, now.Add(-time.Hour)},
		{`{"since":"2026-12-02T09:30:00Z"}`, now.Add(-30 * time.Minute)},
		{fmt.Sprintf(`{"since":%d}`, now.Add(-time.Minute).UnixMilli()), now.Add(-time.Minute)},
		{fmt.Sprintf(`{"since":"%d"}`, now.Add(-7*24*time.Hour).UnixMilli()), now.Add(-7 * 24 * time.Hour)},
	} {
		r := doAdmin(t, h, "POST", "/api/v1/admin/reconcile", consoleToken, c.body)
		var out reconcileResponse
		if err := json.Unmarshal(r.Data, &out); err != nil || r.Code != "0000" {
			t.Fatalf("%q: %s %s", c.body, r.Code, r.Data)
		}
		if !got.Equal(c.want) || out.Since != c.want.UnixMilli() || out.OK || len(out.Checks) != 2 {
			t.Errorf("%q: since %s, answer %s; want since %s and ok false", c.body, got, r.Data, c.want)
		}
	}
	got = time.Time{}
	for _, body := range []string{`{"since":"yesterday"}`, `{"since":true}`, `{"since":1.5}`, `{"since":"2026-11-24T09:59:59Z"}`,
		`{"since":"2026-12-02T10:00:01Z"}`, `{"since":-5}`, `{"since":`, `[]`} {
		if r := doAdmin(t, h, "POST", "/api/v1/admin/reconcile", consoleToken, body); r.Code != "0002" {
			t.Errorf("%s: %s %s, want 0002", body, r.Code, r.Info)
		}
	}
	if !got.IsZero() {
		t.Errorf("a bad since ran a reconcile (since %s)", got)
	}
	// One run at a time: a second call while one runs is 0009 with Retry-After.
	done := make(chan reply, 1)
	go func() {
		done <- doAdmin(t, h, "POST", "/api/v1/admin/reconcile", consoleToken, `{"since":"2026-12-02T08:00:00Z"}`)
	}()
	<-running
	r := doAdmin(t, h, "POST", "/api/v1/admin/reconcile", consoleToken, ``)
	if r.Code != "0009" || r.header.Get("Retry-After") == "" {
		t.Errorf("concurrent reconcile: HTTP %d %s Retry-After %q, want 0009 with Retry-After", r.status, r.Code, r.header.Get("Retry-After"))
	}
	close(release)
	if r := <-done; r.Code != "0000" {
		t.Errorf("held reconcile: %s", r.Code)
	}
	if r := doAdmin(t, h, "POST", "/api/v1/admin/reconcile", consoleToken, ``); r.Code != "0000" {
		t.Errorf("reconcile after the held one: %s, want 0000", r.Code)
	}
}

func TestConsoleSettings(t *testing.T) {
	t.Parallel()
	h, _, _ := guardedServer(t, nil)
	const admin = "Bearer admin-token-for-tests"
	if r := doAdmin(t, h, "GET", "/api/v1/admin/settings", "", ""); r.status != 401 || r.Code != "0003" {
		t.Fatalf("settings without the token: HTTP %d %s", r.status, r.Code)
	}
	read := func() map[string]settingView {
		t.Helper()
		r := doAdmin(t, h, "GET", "/api/v1/admin/settings", admin, "")
		var list []settingView
		if err := json.Unmarshal(r.Data, &list); err != nil || r.Code != "0000" || len(list) != len(guard.Keys) {
			t.Fatalf("settings: %s %s", r.Code, r.Data)
		}
		m := map[string]settingView{}
		for _, s := range list {
			m[s.Key] = s
		}
		return m
	}
	if s := read()[guard.KeyBurst]; s.Value != "2" || s.Default != "2" || s.Overridden {
		t.Fatalf("burst before an update: %+v", s)
	}
	if r := doAdmin(t, h, "GET", "/api/v1/raffle/dcc/update_config?key=rateLimiterBurst&value=7", admin, ""); r.Code != "0000" {
		t.Fatalf("update_config: %s %s", r.Code, r.Info)
	}
	if s := read()[guard.KeyBurst]; s.Value != "7" || s.Default != "2" || !s.Overridden {
		t.Fatalf("burst after an update: %+v", s)
	}
	if s := read()[guard.KeyDegradeSwitch]; s.Value != "close" || s.Overridden {
		t.Fatalf("degrade switch: %+v", s)
	}
}
