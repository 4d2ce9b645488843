package httpapi

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bigmarket/bigmarket/activity"
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
