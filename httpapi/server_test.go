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
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `bigmarket_http_requests_total{code="0000",route="POST /api/v1/raffle/strategy/random_raffle"} 1`) {
		t.Errorf("metrics lack the request counter:\n%s", rec.Body.String())
	}
}
