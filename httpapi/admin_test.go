package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bigmarket/bigmarket/activity"
)

const rechargePath = "/api/v1/admin/activity/recharge"

// doAdmin is do with an Authorization header; empty auth sends none.
func doAdmin(t *testing.T, h http.Handler, method, target, auth, body string) reply {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var r reply
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatalf("%s %s: body is not an envelope: %q", method, target, rec.Body.String())
	}
	r.status, r.header = rec.Code, rec.Header()
	return r
}

func TestRecharge(t *testing.T) {
	t.Parallel()
	f := newFakeActivities()
	var got activity.RechargeRequest
	next := f.RechargeFn
	f.RechargeFn = func(req activity.RechargeRequest) (activity.RechargeOrder, error) {
		got = req
		return next(req)
	}
	h := New(Options{Strategies: newFake(), Activities: f, AdminToken: "s3cret"})
	for _, auth := range []string{"Bearer s3cret", "bearer s3cret"} {
		r := doAdmin(t, h, "POST", rechargePath, auth, `{"userId":"xiaofuge","sku":"9011","outBusinessNo":"700091009111"}`)
		if r.status != 200 || r.Code != "0000" || string(r.Data) != "true" || r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%q: HTTP %d %s %s, want 200 0000 true without CORS (an operator route)", auth, r.status, r.Code, r.Data)
		}
	}
	if want := (activity.RechargeRequest{UserID: "xiaofuge", SKU: 9011, OutBusinessNo: "700091009111"}); got != want {
		t.Errorf("recharge request %+v, want %+v", got, want)
	}
	if r := doAdmin(t, h, "POST", rechargePath, "Bearer s3cret", `{"userId":"xiaofuge","sku":424242,"outBusinessNo":"1"}`); r.status != 200 || r.Code != "0002" {
		t.Errorf("unknown sku: HTTP %d %s, want 200 0002", r.status, r.Code)
	}
}

func TestRechargeBadInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		body   string
		status int
	}{
		{"malformed", `{"userId":"xiaofuge","sku":`, 400},
		{"empty body", ``, 400},
		{"non-numeric sku", `{"userId":"xiaofuge","sku":"abc","outBusinessNo":"1"}`, 400},
		{"missing userId", `{"sku":9011,"outBusinessNo":"1"}`, 200},
		{"40-char userId", `{"userId":"` + strings.Repeat("u", 40) + `","sku":9011,"outBusinessNo":"1"}`, 200},
		{"missing sku", `{"userId":"xiaofuge","outBusinessNo":"1"}`, 200},
		{"zero sku", `{"userId":"xiaofuge","sku":0,"outBusinessNo":"1"}`, 200},
		{"missing outBusinessNo", `{"userId":"xiaofuge","sku":9011}`, 200},
	} {
		f := newFakeActivities()
		h := New(Options{Strategies: newFake(), Activities: f, AdminToken: "s3cret"})
		r := doAdmin(t, h, "POST", rechargePath, "Bearer s3cret", tc.body)
		if r.status != tc.status || r.Code != "0002" || string(r.Data) != "null" {
			t.Errorf("%s: HTTP %d %s %s, want HTTP %d 0002", tc.name, r.status, r.Code, r.Data, tc.status)
		}
		if f.calls.Load() != 0 {
			t.Errorf("%s: %d service calls, want 0", tc.name, f.calls.Load())
		}
	}
}

// TestAdminToken refuses every request without the configured bearer token, before the
// body is read or a service called.
func TestAdminToken(t *testing.T) {
	t.Parallel()
	const body = `{"userId":"xiaofuge","sku":9011,"outBusinessNo":"1"}`
	for _, tc := range []struct {
		name, token, auth string
	}{
		{"no header", "s3cret", ""},
		{"wrong token", "s3cret", "Bearer s3cret2"},
		{"prefix of the token", "s3cret", "Bearer s3cre"},
		{"Bearer prefix missing", "s3cret", "s3cret"},
		{"other scheme", "s3cret", "Basic s3cret"},
		{"empty bearer", "s3cret", "Bearer "},
		{"empty configured token", "", "Bearer "},
		{"empty configured token, some bearer", "", "Bearer s3cret"},
	} {
		f := newFakeActivities()
		h := New(Options{Strategies: newFake(), Activities: f, AdminToken: tc.token})
		for _, target := range []struct{ method, path string }{
			{"POST", rechargePath},
			{"GET", rechargePath},
			{"POST", "/api/v1/admin/nope"},
			{"GET", "/api/v1/admin/"},
		} {
			r := doAdmin(t, h, target.method, target.path, tc.auth, body)
			if r.status != 401 || r.Code != "0003" || string(r.Data) != "null" || r.Info == "" {
				t.Errorf("%s %s %s: HTTP %d %s %q %s, want 401 0003", tc.name, target.method, target.path, r.status, r.Code, r.Info, r.Data)
			}
			if r.header.Get("Access-Control-Allow-Origin") != "" || r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s: headers %v, want WWW-Authenticate and no CORS", tc.name, target.path, r.header)
			}
		}
		if f.calls.Load() != 0 {
			t.Errorf("%s: %d service calls, want 0", tc.name, f.calls.Load())
		}
	}

	h := New(Options{Strategies: newFake(), Activities: newFakeActivities(), AdminToken: "s3cret"})
	for _, target := range []struct{ method, path string }{{"POST", "/api/v1/admin/nope"}, {"GET", rechargePath}} {
		if r := doAdmin(t, h, target.method, target.path, "Bearer s3cret", body); r.status != 404 || r.Code != "0002" {
			t.Errorf("%s %s with the token: HTTP %d %s, want 404 0002", target.method, target.path, r.status, r.Code)
		}
	}
	// Preflights carry no token; the same-origin console needs none, and no other origin
	// is invited: the answer carries no CORS header.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("OPTIONS", rechargePath, bytes.NewReader(nil)))
	if rec.Code != 204 || rec.Header().Get("Access-Control-Allow-Headers") != "" || rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("admin preflight: %d %v", rec.Code, rec.Header())
	}
}

func TestArmoryNeedsAdminInProduction(t *testing.T) {
	t.Parallel()
	f := newFake()
	h := New(Options{Strategies: f, AdminToken: "s3cret-token", ArmoryNeedsAdmin: true})
	r := do(t, h, "GET", "/api/v1/raffle/strategy/strategy_armory?strategyId=100006", "", nil)
	if r.status != 401 || r.Code != "0003" || f.calls.Load() != 0 {
		t.Errorf("armory without token in production: HTTP %d %s, %d calls", r.status, r.Code, f.calls.Load())
	}
	req := httptest.NewRequest("GET", "/api/v1/raffle/strategy/strategy_armory?strategyId=100006", nil)
	req.Header.Set("Authorization", "Bearer s3cret-token")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"code":"0000"`) {
		t.Errorf("armory with token: %d %s", rec.Code, rec.Body.String())
	}
}

const provisionPath = "/api/v1/admin/activity/provision"

// TestProvision passes a well-formed provisioning to the service as it was sent and
// answers its counts; a bad one is 0002 before the service is called.
func TestProvision(t *testing.T) {
	t.Parallel()
	f := newFakeActivities()
	h := New(Options{Strategies: newFake(), Activities: f, AdminToken: "s3cret"})
	r := doAdmin(t, h, "POST", provisionPath, "Bearer s3cret", `{"activityId":100301,"sku":"9011","outBusinessNo":"b1","users":["u1","u2"]}`)
	if r.status != 200 || r.Code != "0000" || string(r.Data) != `{"provisioned":2,"repeated":0}` {
		t.Errorf("provision: HTTP %d %s %s", r.status, r.Code, r.Data)
	}
	want := activity.ProvisionRequest{ActivityID: 100301, SKU: 9011, BatchNo: "b1", Users: []string{"u1", "u2"}}
	if len(f.Provisions) != 1 || fmt.Sprint(f.Provisions[0]) != fmt.Sprint(want) {
		t.Errorf("provision requests %+v, want %+v", f.Provisions, want)
	}
	if r := doAdmin(t, h, "POST", provisionPath, "", `{"sku":9011,"outBusinessNo":"b1","users":["u1"]}`); r.status != 401 || len(f.Provisions) != 1 {
		t.Errorf("without the admin token: HTTP %d %s, %d calls", r.status, r.Code, len(f.Provisions))
	}

	users := func(n int) string {
		us := make([]string, n)
		for i := range us {
			us[i] = fmt.Sprintf("%q", fmt.Sprint("u", i))
		}
		return "[" + strings.Join(us, ",") + "]"
	}
	for _, tc := range []struct {
		name   string
		body   string
		status int
	}{
		{"malformed", `{"sku":9011,"users":[`, 400},
		{"users not a list", `{"sku":9011,"outBusinessNo":"b1","users":"u1"}`, 400},
		{"missing sku", `{"outBusinessNo":"b1","users":["u1"]}`, 200},
		{"negative activity", `{"activityId":-1,"sku":9011,"outBusinessNo":"b1","users":["u1"]}`, 200},
		{"no users", `{"sku":9011,"outBusinessNo":"b1","users":[]}`, 200},
		{"missing users", `{"sku":9011,"outBusinessNo":"b1"}`, 200},
		{"too many users", `{"sku":9011,"outBusinessNo":"b1","users":` + users(activity.MaxProvisionUsers+1) + `}`, 200},
		{"empty user id", `{"sku":9011,"outBusinessNo":"b1","users":["u1",""]}`, 200},
		{"40-char user id", `{"sku":9011,"outBusinessNo":"b1","users":["` + strings.Repeat("u", 40) + `"]}`, 200},
		{"missing outBusinessNo", `{"sku":9011,"users":["u1"]}`, 200},
		{"outBusinessNo too long for a user's number", `{"sku":9011,"outBusinessNo":"` + strings.Repeat("9", activity.MaxProvisionBatchNo+1) + `","users":["u1"]}`, 200},
	} {
		f := newFakeActivities()
		h := New(Options{Strategies: newFake(), Activities: f, AdminToken: "s3cret"})
		r := doAdmin(t, h, "POST", provisionPath, "Bearer s3cret", tc.body)
		if r.status != tc.status || r.Code != "0002" || string(r.Data) != "null" {
			t.Errorf("%s: HTTP %d %s %s, want HTTP %d 0002", tc.name, r.status, r.Code, r.Data, tc.status)
		}
		if f.calls.Load() != 0 {
			t.Errorf("%s: %d service calls, want 0", tc.name, f.calls.Load())
		}
	}
}
