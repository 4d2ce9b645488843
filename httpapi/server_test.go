package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bigmarket/bigmarket/strategy"
)

// fakeStrategies records calls; its Fn fields decide the answers.
type fakeStrategies struct {
	calls    atomic.Int64
	ArmoryFn func(id int64) error
	DrawFn   func(in strategy.Input) (strategy.Result, error)
}

func (f *fakeStrategies) Armory(_ context.Context, id int64) (*strategy.Assembled, error) {
	f.calls.Add(1)
	return nil, f.ArmoryFn(id)
}

func (f *fakeStrategies) Draw(_ context.Context, in strategy.Input) (strategy.Result, error) {
	f.calls.Add(1)
	return f.DrawFn(in)
}

func newFake() *fakeStrategies {
	known := func(id int64) error {
		if id != 100006 {
			return fmt.Errorf("load strategy %d: %w", id, strategy.ErrStrategyNotFound)
		}
		return nil
	}
	return &fakeStrategies{
		ArmoryFn: known,
		DrawFn: func(in strategy.Input) (strategy.Result, error) {
			if err := known(in.StrategyID); err != nil {
				return strategy.Result{}, err
			}
			if in.UserID != "system" {
				return strategy.Result{}, errors.New("random_raffle must draw as system")
			}
			return strategy.Result{AwardID: 103, Sort: 3}, nil
		},
	}
}

type reply struct {
	status int
	header http.Header
	Code   string          `json:"code"`
	Info   string          `json:"info"`
	Data   json.RawMessage `json:"data"`
}

func do(t *testing.T, h http.Handler, method, target, contentType string, body []byte) reply {
	t.Helper()
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var r reply
	if rec.Body.Len() > 0 {
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatalf("%s %s: body is not an envelope: %q", method, target, rec.Body.String())
		}
	}
	r.status, r.header = rec.Code, rec.Header()
	return r
}

func TestRandomRaffle(t *testing.T) {
	t.Parallel()
	f := newFake()
	h := New(Options{Strategies: f, Registry: prometheus.NewRegistry()})
	for _, ct := range []string{"application/json", "application/json;charset=utf-8"} {
		for _, body := range []string{`{"strategyId":100006}`, `{"strategyId":"100006"}`} {
			r := do(t, h, "POST", "/api/v1/raffle/strategy/random_raffle", ct, []byte(body))
			if r.status != 200 || r.Code != "0000" || string(r.Data) != `{"awardId":103,"awardIndex":3}` {
				t.Errorf("%s %s: %d %s %s", ct, body, r.status, r.Code, r.Data)
			}
			if r.header.Get("Access-Control-Allow-Origin") != "*" {
				t.Error("no CORS header on an API response")
			}
		}
	}
}

func TestStrategyArmory(t *testing.T) {
	t.Parallel()
	h := New(Options{Strategies: newFake()})
	if r := do(t, h, "GET", "/api/v1/raffle/strategy/strategy_armory?strategyId=100006", "", nil); r.Code != "0000" || string(r.Data) != "true" {
		t.Errorf("armory: %s %s", r.Code, r.Data)
	}
	for _, q := range []string{"", "?strategyId=", "?strategyId=abc", "?strategyId=-1", "?strategyId=999"} {
		if r := do(t, h, "GET", "/api/v1/raffle/strategy/strategy_armory"+q, "", nil); r.Code != "0002" || string(r.Data) != "null" {
			t.Errorf("armory %q: %s %s, want 0002", q, r.Code, r.Data)
		}
	}
}

// TestBadInput sends malformed, incomplete, unknown and oversized requests: each gets
// 0002 in the envelope and none reaches the engine.
func TestBadInput(t *testing.T) {
	t.Parallel()
	huge := append([]byte(`{"strategyId":100006,"pad":"`), bytes.Repeat([]byte("x"), 10<<20)...)
	huge = append(huge, `"}`...)
	for _, tc := range []struct {
		name   string
		body   []byte
		status int
		calls  int64
	}{
		{"malformed", []byte(`{"strategyId":`), 400, 0},
		{"not json", []byte(`strategyId=100006`), 400, 0},
		{"empty", nil, 400, 0},
		{"two values", []byte(`{"strategyId":100006}{}`), 400, 0},
		{"missing strategyId", []byte(`{}`), 200, 0},
		{"zero strategyId", []byte(`{"strategyId":0}`), 200, 0},
		{"float strategyId", []byte(`{"strategyId":1.5}`), 400, 0},
		{"unknown strategyId", []byte(`{"strategyId":424242}`), 200, 1},
		{"10 MB body", huge, 413, 0},
	} {
		f := newFake()
		h := New(Options{Strategies: f})
		r := do(t, h, "POST", "/api/v1/raffle/strategy/random_raffle", "application/json", tc.body)
		if r.Code != "0002" || r.status != tc.status || string(r.Data) != "null" || r.Info == "" {
			t.Errorf("%s: HTTP %d code %s info %q data %s; want HTTP %d 0002", tc.name, r.status, r.Code, r.Info, r.Data, tc.status)
		}
		if f.calls.Load() != tc.calls {
			t.Errorf("%s: engine called %d times, want %d", tc.name, f.calls.Load(), tc.calls)
		}
	}
}

func TestErrorCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("x: %w", strategy.ErrRuleWeightMissing), 200, "ERR_BIZ_001"},
		{fmt.Errorf("x: %w", strategy.ErrInvalidTree), 200, "ERR_BIZ_002"},
		{errors.New("dial tcp 10.0.0.1:3306: secret detail"), 500, "0001"},
	} {
		f := newFake()
		f.DrawFn = func(strategy.Input) (strategy.Result, error) { return strategy.Result{}, tc.err }
		r := do(t, New(Options{Strategies: f}), "POST", "/api/v1/raffle/strategy/random_raffle", "application/json", []byte(`{"strategyId":1}`))
		if r.status != tc.status || r.Code != tc.code {
			t.Errorf("%v: HTTP %d %s, want %d %s", tc.err, r.status, r.Code, tc.status, tc.code)
		}
		if strings.Contains(r.Info, "secret") {
			t.Errorf("internal detail leaked: %q", r.Info)
		}
	}
	f := newFake()
	f.DrawFn = func(strategy.Input) (strategy.Result, error) { panic("boom") }
	if r := do(t, New(Options{Strategies: f}), "POST", "/api/v1/raffle/strategy/random_raffle", "", []byte(`{"strategyId":1}`)); r.status != 500 || r.Code != "0001" {
		t.Errorf("panic: HTTP %d %s, want 500 0001", r.status, r.Code)
	}
}

func TestCORSPreflightAndHealth(t *testing.T) {
	t.Parallel()
	ready := errors.New("redis down")
	h := New(Options{Strategies: newFake(), Ready: func(context.Context) error { return ready }, Registry: prometheus.NewRegistry()})
	req := httptest.NewRequest("OPTIONS", "/api/v1/raffle/activity/draw", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 204 || rec.Header().Get("Access-Control-Allow-Origin") != "*" ||
		rec.Header().Get("Access-Control-Allow-Methods") != "GET, POST, OPTIONS" ||
		rec.Header().Get("Access-Control-Allow-Headers") != "Content-Type, Authorization" {
		t.Errorf("preflight: %d %v", rec.Code, rec.Header())
	}
	if r := do(t, h, "GET", "/healthz", "", nil); r.status != 200 {
		t.Errorf("healthz %d", r.status)
	}
	if r := do(t, h, "GET", "/readyz", "", nil); r.status != 503 {
		t.Errorf("readyz with a backend down: %d, want 503", r.status)
	}
	ready = nil
	if r := do(t, h, "GET", "/readyz", "", nil); r.status != 200 {
		t.Errorf("readyz: %d", r.status)
	}
	if r := do(t, h, "GET", "/api/v1/raffle/nope", "", nil); r.status != 404 || r.Code != "0002" {
		t.Errorf("unknown endpoint: %d %s", r.status, r.Code)
	}
	do(t, h, "POST", "/api/v1/raffle/strategy/random_raffle", "application/json", []byte(`{"strategyId":100006}`))
	rec = httptest.NewRecorder()
	h.Operator().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `bigmarket_http_requests_total{code="0000",route="POST /api/v1/raffle/strategy/random_raffle"} 1`) {
		t.Errorf("metrics lack the request counter:\n%s", rec.Body.String())
	}
}

// TestOperatorListener checks what moved off the API port: /metrics and the profiler are
// served only by the operator handler (the API answers them with the envelope's 404, as
// any unknown path), and both serve the health checks.
func TestOperatorListener(t *testing.T) {
	t.Parallel()
	h := New(Options{Strategies: newFake(), Registry: prometheus.NewRegistry()})
	ops := h.Operator()
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/goroutine", "/nope"} {
		if r := do(t, h, "GET", path, "", nil); r.status != 404 || r.Code != "0002" {
			t.Errorf("API %s: HTTP %d %s, want 404 0002", path, r.status, r.Code)
		}
	}
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/healthz", "/readyz"} {
		rec := httptest.NewRecorder()
		ops.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 200 || rec.Body.Len() == 0 {
			t.Errorf("operator %s: HTTP %d, %d bytes", path, rec.Code, rec.Body.Len())
		}
		if rec.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("operator %s carries CORS headers", path)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if r := do(t, h, "GET", path, "", nil); r.status != 200 || r.Code != "0000" {
			t.Errorf("API %s: HTTP %d %s", path, r.status, r.Code)
		}
	}
	rec := httptest.NewRecorder()
	ops.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/raffle/strategy/strategy_armory?strategyId=100006", nil))
	if rec.Code != 404 {
		t.Errorf("operator handler serves the API: HTTP %d", rec.Code)
	}
}

// TestNoCORSOnOperatorRoutes checks API.md's CORS paragraph: every API answer carries
// Access-Control-Allow-Origin and preflights are answered, except on the operator routes
// (admin, dcc, erp), whose answers and preflights carry no CORS header at all.
func TestNoCORSOnOperatorRoutes(t *testing.T) {
	t.Parallel()
	var seen []string
	h, _, _ := guardedServer(t, &seen)
	for _, c := range []struct{ method, path, auth string }{
		{"POST", rechargePath, "Bearer admin-token-for-tests"},
		{"POST", rechargePath, ""},
		{"OPTIONS", rechargePath, ""},
		{"GET", "/api/v1/admin/nope", "Bearer admin-token-for-tests"},
		{"GET", "/api/v1/raffle/dcc/query_config", "Bearer admin-token-for-tests"},
		{"GET", "/api/v1/raffle/dcc/update_config?key=degradeSwitch&value=open", ""},
		{"OPTIONS", "/api/v1/raffle/dcc/update_config", ""},
		{"GET", "/api/v1/raffle/erp/query_raffle_activity_stage_list", "Bearer admin-token-for-tests"},
		{"POST", "/api/v1/raffle/erp/update_stage_activity_2_active", ""},
		{"OPTIONS", "/api/v1/raffle/erp/query_user_raffle_order", ""},
		{"GET", "/api/v1/raffle/strategy/../erp/query_raffle_activity_stage_list", ""},
		{"GET", "/api/v1//admin/activity/recharge", ""},
	} {
		req := httptest.NewRequest(c.method, c.path, strings.NewReader(`{}`))
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		for k := range rec.Header() {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("%s %s: HTTP %d carries %s", c.method, c.path, rec.Code, k)
			}
		}
	}
	for _, c := range []struct{ method, path string }{
		{"POST", "/api/v1/raffle/activity/draw"},
		{"POST", "/api/v1/raffle/strategy/query_raffle_award_list"},
		{"GET", "/api/v1/raffle/strategy/strategy_armory?strategyId=100006"},
		{"POST", "/api/v1/raffle/nope"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, strings.NewReader(`{"userId":"xiaofuge","activityId":100301}`)))
		if rec.Header().Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s %s: HTTP %d without Access-Control-Allow-Origin", c.method, c.path, rec.Code)
		}
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("OPTIONS", c.path, nil))
		if rec.Code != 204 || rec.Header().Get("Access-Control-Allow-Origin") != "*" || rec.Header().Get("Access-Control-Allow-Headers") != "Content-Type, Authorization" {
			t.Errorf("preflight of %s: HTTP %d %v", c.path, rec.Code, rec.Header())
		}
	}
}

// TestDecodeMessages checks that each kind of malformed body gets a 0002 whose info names
// the problem in JSON's words: the byte, the field, the limit; never Go's wording.
func TestDecodeMessages(t *testing.T) {
	t.Parallel()
	const (
		random = "/api/v1/raffle/strategy/random_raffle"
		draw   = "/api/v1/raffle/activity/draw"
		rebate = "/api/v1/rebate/behavior"
	)
	big := `{"strategyId":100006,"pad":"` + strings.Repeat("x", 70<<10) + `"}`
	for _, tc := range []struct {
		path, body string
		status     int
		info       string
	}{
		{random, ``, 400, "request body is empty"},
		{random, " \n\t", 400, "request body is empty"},
		{random, big, 413, "request body exceeds 65536 bytes"},
		{random, `{"strategyId":x}`, 400, "malformed JSON at byte 15"},
		{random, `{"strategyId" 1}`, 400, "malformed JSON at byte 15"},
		{random, `{"strategyId":`, 400, "malformed JSON: unexpected end of body"},
		{random, `{"strategyId":1}{}`, 400, "request body holds more than one JSON value"},
		{random, `{"strategyId":1} 2`, 400, "request body holds more than one JSON value"},
		{random, `{"strategyId":1} x`, 400, "malformed JSON at byte 18"},
		{random, `{"strategyId":1}]`, 400, "malformed JSON at byte 17"},
		{random, `{"strategyId":1}{"a":`, 400, "malformed JSON: unexpected end of body"},
		{random, `[]`, 400, "request body must be a JSON object, not an array"},
		{random, `"x"`, 400, "request body must be a JSON object, not a string"},
		{random, `null`, 400, "request body must be a JSON object, not null"},
		{random, ` 100006 `, 400, "request body must be a JSON object, not a number"},
		{random, `true`, 400, "request body must be a JSON object, not a boolean"},
		{random, `{"strategyId":1.5}`, 400, "field strategyId must be an integer, not a number with a decimal point"},
		{random, `{"strategyId":"100006.0"}`, 400, "field strategyId must be an integer, not a number with a decimal point"},
		{random, `{"strategyId":1e5}`, 400, "field strategyId must be an integer, not a number with an exponent"},
		{random, `{"strategyId":"+100006"}`, 400, "field strategyId must be an integer, not a number with a '+' sign"},
		{random, `{"strategyId":" 100006"}`, 400, "field strategyId must be an integer, not a string padded with blanks"},
		{random, `{"strategyId":"0x186A6"}`, 400, "field strategyId must be an integer, not a hexadecimal number"},
		{random, `{"strategyId":"abc"}`, 400, "field strategyId must be an integer, not a non-numeric string"},
		{random, `{"strategyId":9223372036854775808}`, 400, "field strategyId must be an integer, not an out-of-range number"},
		{random, `{"strategyId":true}`, 400, "field strategyId must be an integer, not a boolean"},
		{random, `{"strategyId":{}}`, 400, "field strategyId must be an integer, not an object"},
		{random, `{"strategyId":[1]}`, 400, "field strategyId must be an integer, not an array"},
		{random, `{"strategyId":null}`, 200, "strategyId is required"},
		{random, `{"strategyId":""}`, 200, "strategyId is required"},
		{draw, `{"userId":42,"activityId":100301}`, 400, "field userId must be a string, not a number"},
		{draw, `{"userId":["x"],"activityId":100301}`, 400, "field userId must be a string, not an array"},
		{rebate, `{"appId":"a","data":"x"}`, 400, "field data must be an object, not a string"},
		{rebate, `{"appId":"a","data":{"userId":true}}`, 400, "field data.userId must be a string, not a boolean"},
	} {
		h := New(Options{Strategies: newFake(), Raffles: newFakeRaffles(), Rebates: &fakeRebates{}, PlainUserEndpoints: true})
		r := do(t, h, "POST", tc.path, "application/json", []byte(tc.body))
		name := tc.body
		if len(name) > 40 {
			name = name[:40] + "…"
		}
		if r.status != tc.status || r.Code != "0002" || r.Info != infos[CodeIllegalParam]+": "+tc.info || string(r.Data) != "null" {
			t.Errorf("%s %s: HTTP %d %s %q %s; want HTTP %d 0002 %q", tc.path, name, r.status, r.Code, r.Info, r.Data, tc.status, tc.info)
		}
		for _, leak := range []string{"json:", "Go ", "int64", "httpapi", "struct", "unmarshal"} {
			if strings.Contains(r.Info, leak) {
				t.Errorf("%s %s: info %q leaks %q", tc.path, name, r.Info, leak)
			}
		}
	}
	// Unknown fields are ignored: big-market's front end sends some.
	h := New(Options{Strategies: newFake()})
	if r := do(t, h, "POST", random, "application/json", []byte(`{"strategyId":100006,"userId":{"x":[1]},"extra":true}`)); r.Code != "0000" {
		t.Errorf("unknown fields: %s %q, want 0000", r.Code, r.Info)
	}
	// The recharge body embeds userSKURequest: the field is named as the client sent it.
	h = New(Options{Strategies: newFake(), Activities: newFakeActivities(), AdminToken: "s3cret"})
	want := infos[CodeIllegalParam] + ": field sku must be an integer, not a boolean"
	if r := doAdmin(t, h, "POST", rechargePath, "Bearer s3cret", `{"userId":"x","sku":true,"outBusinessNo":"1"}`); r.Code != "0002" || r.Info != want {
		t.Errorf("recharge with a boolean sku: %s %q, want 0002 %q", r.Code, r.Info, want)
	}
}

// TestDecodeBodyTypes words type errors of the field types that no handler's body has yet.
func TestDecodeBodyTypes(t *testing.T) {
	t.Parallel()
	type body struct {
		N int64    `json:"n"`
		U uint     `json:"u"`
		F float64  `json:"f"`
		L []string `json:"l"`
		P *struct {
			B bool `json:"b"`
		} `json:"p"`
	}
	for in, want := range map[string]string{
		`{"n":1.5}`:       "field n must be an integer",
		`{"n":"7"}`:       "field n must be an integer, not a string",
		`{"u":-1}`:        "field u must be a non-negative integer",
		`{"f":1e400}`:     "field f must be a number",
		`{"l":{}}`:        "field l must be an array, not an object",
		`{"l":[1]}`:       "field l must be a string, not a number",
		`{"p":{"b":"x"}}`: "field p.b must be a boolean, not a string",
		`{"p":7}`:         "field p must be an object, not a number",
	} {
		var v body
		err := decodeBody([]byte(in), &v)
		if ae := classify(err); ae.code != CodeIllegalParam || ae.status != 400 || ae.info != infos[CodeIllegalParam]+": "+want {
			t.Errorf("%s: %d %s %q; want 400 0002 %q", in, ae.status, ae.code, ae.info, want)
		}
	}
	if ae := classify(decodeBody([]byte(`{}`), body{})); ae.code != CodeUnknown {
		t.Errorf("decoding into a non-pointer: %s %q; want 0001, a bug of the handler", ae.code, ae.info)
	}
}
