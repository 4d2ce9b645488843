package httpapi

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
)

// fakeActivities records calls; Products and StageActivity know a fixed catalogue, the Fn
// fields decide the rest.
type fakeActivities struct {
	calls      atomic.Int64
	AccountFn  func(userID string, activityID int64) (activity.View, error)
	RechargeFn func(req activity.RechargeRequest) (activity.RechargeOrder, error)
	// Provisions records the provisioning requests that reached the service.
	Provisions []activity.ProvisionRequest
}

func (f *fakeActivities) Provision(_ context.Context, req activity.ProvisionRequest) (activity.Provisioned, error) {
	f.calls.Add(1)
	f.Provisions = append(f.Provisions, req)
	return activity.Provisioned{Provisioned: len(req.Users)}, nil
}

func (f *fakeActivities) Products(_ context.Context, id int64) ([]activity.SKU, error) {
	f.calls.Add(1)
	switch id {
	case 100301:
		return []activity.SKU{{SKU: 9011, ActivityID: 100301, CountID: 11101, Stock: 100000, StockSurplus: 99999, Price: 20000,
			Count: activity.Count{ID: 11101, Total: 150, Day: 150, Month: 150}}}, nil
	case 100302:
		return nil, nil
	}
	return nil, fmt.Errorf("activity %d: %w", id, activity.ErrActivityNotFound)
}

func (f *fakeActivities) StageActivity(_ context.Context, channel, source string) (int64, error) {
	f.calls.Add(1)
	if channel == "c01" && source == "s01" {
		return 100401, nil
	}
	return 0, activity.ErrNoStageActivity
}

func (f *fakeActivities) Account(_ context.Context, userID string, activityID int64) (activity.View, error) {
	f.calls.Add(1)
	return f.AccountFn(userID, activityID)
}

func (f *fakeActivities) Recharge(_ context.Context, req activity.RechargeRequest) (activity.RechargeOrder, error) {
	f.calls.Add(1)
	return f.RechargeFn(req)
}

// newFakeActivities knows user "xiaofuge" in activity 100301 and SKU 9011.
func newFakeActivities() *fakeActivities {
	return &fakeActivities{
		AccountFn: func(userID string, activityID int64) (activity.View, error) {
			if activityID != 100301 {
				return activity.View{}, fmt.Errorf("activity %d: %w", activityID, activity.ErrActivityNotFound)
			}
			if userID != "xiaofuge" {
				return activity.View{}, nil
			}
			return activity.View{Total: 150, TotalSurplus: 140, Day: 10, DaySurplus: 3, Month: 100, MonthSurplus: 90}, nil
		},
		RechargeFn: func(req activity.RechargeRequest) (activity.RechargeOrder, error) {
			if req.SKU != 9011 {
				return activity.RechargeOrder{}, fmt.Errorf("sku %d: %w", req.SKU, activity.ErrSKUNotFound)
			}
			return activity.RechargeOrder{UserID: req.UserID, SKU: req.SKU, OutBusinessNo: req.OutBusinessNo, OrderID: "1"}, nil
		},
	}
}

func TestActivityQueries(t *testing.T) {
	t.Parallel()
	f := newFakeActivities()
	h := New(Options{Strategies: newFake(), Activities: f})
	const list = "/api/v1/raffle/activity/query_sku_product_list_by_activity_id"
	want := `[{"sku":9011,"activityId":100301,"activityCountId":11101,"stockCount":100000,"stockCountSurplus":99999,` +
		`"productAmount":200.00,"activityCount":{"totalCount":150,"dayCount":150,"monthCount":150}}]`
	if r := do(t, h, "POST", list+"?activityId=100301", "", nil); r.Code != "0000" || string(r.Data) != want {
		t.Errorf("query form: %s %s", r.Code, r.Data)
	}
	req := httptest.NewRequest("POST", list, strings.NewReader("activityId=100301"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), `"sku":9011`) {
		t.Errorf("urlencoded body: %s", rec.Body.String())
	}
	if r := do(t, h, "POST", list+"?activityId=100302", "", nil); r.Code != "0000" || string(r.Data) != "[]" {
		t.Errorf("activity without skus: %s %s, want an empty list", r.Code, r.Data)
	}
	for _, q := range []string{"", "?activityId=", "?activityId=x", "?activityId=-4", "?activityId=42"} {
		if r := do(t, h, "POST", list+q, "", nil); r.Code != "0002" {
			t.Errorf("list %q: %s, want 0002", q, r.Code)
		}
	}
	const stage = "/api/v1/raffle/activity/query_stage_activity_id"
	if r := do(t, h, "GET", stage+"?channel=c01&source=s01", "", nil); r.Code != "0000" || string(r.Data) != "100401" {
		t.Errorf("stage: %s %s", r.Code, r.Data)
	}
	for _, q := range []string{"", "?channel=c01", "?channel=c01&source=zz"} {
		if r := do(t, h, "GET", stage+q, "", nil); r.Code != "0002" {
			t.Errorf("stage %q: %s, want 0002", q, r.Code)
		}
	}
}

func TestQueryUserActivityAccount(t *testing.T) {
	t.Parallel()
	h := New(Options{Strategies: newFake(), Activities: newFakeActivities(), PlainUserEndpoints: true})
	const path = "/api/v1/raffle/activity/query_user_activity_account"
	for _, tc := range []struct{ body, data string }{
		{`{"userId":"xiaofuge","activityId":100301}`,
			`{"totalCount":150,"totalCountSurplus":140,"dayCount":10,"dayCountSurplus":3,"monthCount":100,"monthCountSurplus":90}`},
		{`{"userId":"xiaofuge","activityId":"100301"}`,
			`{"totalCount":150,"totalCountSurplus":140,"dayCount":10,"dayCountSurplus":3,"monthCount":100,"monthCountSurplus":90}`},
		{`{"userId":"nobody","activityId":100301}`,
			`{"totalCount":0,"totalCountSurplus":0,"dayCount":0,"dayCountSurplus":0,"monthCount":0,"monthCountSurplus":0}`},
	} {
		r := do(t, h, "POST", path, "application/json;charset=utf-8", []byte(tc.body))
		if r.status != 200 || r.Code != "0000" || string(r.Data) != tc.data {
			t.Errorf("%s: HTTP %d %s %s, want %s", tc.body, r.status, r.Code, r.Data, tc.data)
		}
		if r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: no CORS header", tc.body)
		}
	}
	if r := do(t, h, "POST", path, "application/json", []byte(`{"userId":"xiaofuge","activityId":42}`)); r.status != 200 || r.Code != "0002" {
		t.Errorf("unknown activity: HTTP %d %s, want 200 0002", r.status, r.Code)
	}
}

func (f *fakeActivities) Activity(_ context.Context, id int64) (activity.Activity, error) {
	if id != 100301 {
		return activity.Activity{}, fmt.Errorf("activity %d: %w", id, activity.ErrActivityNotFound)
	}
	return activity.Activity{ID: id}, nil
}

// fakeAwardRecords holds award records of users, newest first.
type fakeAwardRecords map[string][]award.Record

func (f fakeAwardRecords) RecentAwardRecords(_ context.Context, userID string, activityID int64, limit int) ([]award.Record, error) {
	var out []award.Record
	for _, r := range f[userID] {
		if (activityID == 0 || r.ActivityID == activityID) && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func TestQueryUserAwardRecord(t *testing.T) {
	t.Parallel()
	at := time.UnixMilli(1764670000123)
	recs := fakeAwardRecords{"xiaofuge": {
		{UserID: "xiaofuge", ActivityID: 100301, AwardID: 103, AwardTitle: "6等奖", AwardTime: at, State: "completed"},
		{UserID: "xiaofuge", ActivityID: 100301, AwardID: 101, AwardTitle: "随机积分", AwardTime: at.Add(-time.Second), State: "create"},
	}}
	h := New(Options{Strategies: newFake(), Activities: newFakeActivities(), AwardRecords: recs,
		PlainUserEndpoints: true, JWTSecret: testSecret, Now: func() time.Time { return testNow }})
	const plain = "/api/v1/raffle/activity/query_user_award_record"
	want := `[{"awardId":103,"awardTitle":"6等奖","awardTime":1764670000123,"state":"completed"},` +
		`{"awardId":101,"awardTitle":"随机积分","awardTime":1764669999123,"state":"create"}]`
	if r := do(t, h, "POST", plain, "application/json", []byte(`{"userId":"xiaofuge","activityId":100301}`)); r.Code != "0000" || string(r.Data) != want {
		t.Errorf("plain: %s %s", r.Code, r.Data)
	}
	tok := SignToken(testSecret, "xiaofuge", testNow.Add(time.Hour))
	if r := doToken(t, h, plain+"_by_token", []string{tok}, `{"activityId":100301}`); r.Code != "0000" || string(r.Data) != want {
		t.Errorf("by token: %s %s", r.Code, r.Data)
	}
	// A user with no records gets an empty list, never null.
	if r := do(t, h, "POST", plain, "application/json", []byte(`{"userId":"nobody","activityId":100301}`)); r.Code != "0000" || string(r.Data) != `[]` {
		t.Errorf("no records: %s %s", r.Code, r.Data)
	}
	for _, body := range []string{`{"userId":"xiaofuge","activityId":999}`, `{"userId":"xiaofuge"}`, `{"activityId":100301}`, `{`} {
		if r := do(t, h, "POST", plain, "application/json", []byte(body)); r.Code != "0002" {
			t.Errorf("%s: %s, want 0002", body, r.Code)
		}
	}
	if r := doToken(t, h, plain+"_by_token", nil, `{"activityId":100301}`); r.Code != "0003" || r.status != 401 {
		t.Errorf("no token: %d %s", r.status, r.Code)
	}
}
