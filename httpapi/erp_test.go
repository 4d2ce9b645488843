package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
)

func (f *fakeActivities) Stages(context.Context) ([]activity.Stage, error) {
	f.calls.Add(1)
	return []activity.Stage{{ID: 1, Channel: "c01", Source: "s01", ActivityID: 100401, State: "active"}}, nil
}

func (f *fakeActivities) RecentOrders(_ context.Context, userID string, limit int) ([]activity.RaffleOrder, error) {
	f.calls.Add(1)
	at := time.UnixMilli(1700000000123)
	o := activity.RaffleOrder{UserID: "xiaofuge", ActivityID: 100301, ActivityName: "测试活动", StrategyID: 100006,
		OrderID: "o1", OrderTime: at, State: activity.OrderUsed, Created: at, Updated: at.Add(time.Second)}
	if userID != "" && userID != o.UserID {
		return nil, nil
	}
	return []activity.RaffleOrder{o}[:min(limit, 1)], nil
}

func (f *fakeRaffles) ActivateStage(_ context.Context, id int64) error {
	f.calls.Add(1)
	if id != 1 {
		return fmt.Errorf("stage %d: %w", id, activity.ErrStageNotFound)
	}
	return nil
}

func TestERP(t *testing.T) {
	t.Parallel()
	acts, raffles := newFakeActivities(), newFakeRaffles()
	h := New(Options{Strategies: newFake(), Activities: acts, Raffles: raffles, AdminToken: "tok"})
	send := func(method, path, body string, token bool) reply {
		req := httptest.NewRequest(method, path, bytes.NewReader([]byte(body)))
		req.Header.Set("Content-Type", "application/json")
		if token {
			req.Header.Set("Authorization", "Bearer tok")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var r reply
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatalf("%s %s: %q", method, path, rec.Body.String())
		}
		r.status = rec.Code
		return r
	}
	const erp = "/api/v1/raffle/erp/"
	if r := send("GET", erp+"query_raffle_activity_stage_list", "", true); r.Code != "0000" ||
		string(r.Data) != `[{"id":1,"channel":"c01","source":"s01","activityId":100401,"state":"active"}]` {
		t.Errorf("stage list: %s %s", r.Code, r.Data)
	}
	want := `[{"userId":"xiaofuge","activityId":100301,"activityName":"测试活动","strategyId":100006,"orderId":"o1",` +
		`"orderTime":1700000000123,"orderState":"used","createTime":1700000000123,"updateTime":1700000001123}]`
	if r := send("GET", erp+"query_user_raffle_order?userId=xiaofuge&limit=5", "", true); r.Code != "0000" || string(r.Data) != want {
		t.Errorf("orders: %s %s", r.Code, r.Data)
	}
	if r := send("POST", erp+"update_stage_activity_2_active", `{"id":1}`, true); r.Code != "0000" || string(r.Data) != "true" {
		t.Errorf("activate: %s %s", r.Code, r.Data)
	}
	if r := send("POST", erp+"update_stage_activity_2_active", `{"id":9}`, true); r.Code != "0002" {
		t.Errorf("activate unknown stage: %s", r.Code)
	}
	before := acts.calls.Load() + raffles.calls.Load()
	for _, tc := range []struct{ method, path, body string }{
		{"GET", erp + "query_raffle_activity_stage_list", ""},
		{"GET", erp + "query_user_raffle_order", ""},
		{"POST", erp + "update_stage_activity_2_active", `{"id":1}`},
	} {
		if r := send(tc.method, tc.path, tc.body, false); r.status != 401 || r.Code != "0003" {
			t.Errorf("%s without token: HTTP %d %s", tc.path, r.status, r.Code)
		}
	}
	for _, q := range []string{"?limit=0", "?limit=501", "?limit=x", "?userId=" + string(bytes.Repeat([]byte("u"), 40))} {
		if r := send("GET", erp+"query_user_raffle_order"+q, "", true); r.Code != "0002" {
			t.Errorf("orders %s: %s", q, r.Code)
		}
	}
	if r := send("POST", erp+"update_stage_activity_2_active", `{"id":0}`, true); r.Code != "0002" {
		t.Errorf("activate id 0: %s", r.Code)
	}
	if after := acts.calls.Load() + raffles.calls.Load(); after != before {
		t.Errorf("refused requests reached the services %d times", after-before)
	}
}
