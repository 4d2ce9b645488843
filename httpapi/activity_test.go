package httpapi

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bigmarket/bigmarket/activity"
)

type fakeActivities struct{ calls int }

func (f *fakeActivities) Products(_ context.Context, id int64) ([]activity.SKU, error) {
	f.calls++
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
	f.calls++
	if channel == "c01" && source == "s01" {
		return 100401, nil
	}
	return 0, activity.ErrNoStageActivity
}

func TestActivityQueries(t *testing.T) {
	t.Parallel()
	f := &fakeActivities{}
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
