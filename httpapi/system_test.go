package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/strategy"
)

// TestRandomRaffleIsGuardedAndNeedsTheAdminToken: with ArmoryNeedsAdmin random_raffle
// refuses a call without the admin token before it draws; with a guard it passes the
// degrade switch and the budget, and has no per-user limit.
func TestRandomRaffleIsGuardedAndNeedsTheAdminToken(t *testing.T) {
	t.Parallel()
	f := newFake()
	s := guard.DefaultSettings()
	s.Burst, s.BlacklistCount = 1, 1
	g := guard.New(guard.Options{Defaults: s, IsFailure: IsSystemFailure, Logger: slog.New(slog.DiscardHandler)})
	h := New(Options{Strategies: f, Guard: g, ArmoryNeedsAdmin: true, AdminToken: "admin-token-for-tests"})
	raffle := func(auth string) reply {
		req := httptest.NewRequest("POST", "/api/v1/raffle/strategy/random_raffle", strings.NewReader(`{"strategyId":100006}`))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var r reply
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatalf("not an envelope: %q", rec.Body.String())
		}
		r.status, r.header = rec.Code, rec.Header()
		return r
	}
	for _, auth := range []string{"", "Bearer wrong", "admin-token-for-tests"} {
		if r := raffle(auth); r.status != http.StatusUnauthorized || r.Code != "0003" {
			t.Fatalf("random_raffle with %q: %d %s, want 401 0003", auth, r.status, r.Code)
		}
	}
	if n := f.calls.Load(); n != 0 {
		t.Fatalf("refused calls drew %d times", n)
	}
	for i := range 10 { // no per-user limit: the system user is not a user
		if r := raffle("Bearer admin-token-for-tests"); r.status != 200 || r.Code != "0000" {
			t.Fatalf("random_raffle %d with the admin token: %d %s", i, r.status, r.Code)
		}
	}
	g.Override(guard.KeyDegradeSwitch, guard.Open)
	if r := raffle("Bearer admin-token-for-tests"); r.Code != "0004" || f.calls.Load() != 10 {
		t.Fatalf("degraded random_raffle: %s, %d draws", r.Code, f.calls.Load())
	}
	g.Override(guard.KeyDegradeSwitch, guard.Close)
	// The test draw is past its commit point from the start: a slow one is waited for.
	g.Override(guard.KeyDrawTimeout, "10ms")
	f.DrawFn = func(strategy.Input) (strategy.Result, error) {
		time.Sleep(50 * time.Millisecond)
		return strategy.Result{AwardID: 101, Sort: 1}, nil
	}
	if r := raffle("Bearer admin-token-for-tests"); r.Code != "0000" {
		t.Fatalf("slow random_raffle: %s, want 0000 (waited for past the commit point)", r.Code)
	}
}

// TestOutcomeUnknownAndOpenBreakerAnswers: a committed call over the commit timeout is
// 0009 with Retry-After 1; the open breaker's 0006 says how long it stays open.
func TestOutcomeUnknownAndOpenBreakerAnswers(t *testing.T) {
	t.Parallel()
	if ae := classify(errors.Join(errors.New("draw"), guard.ErrOutcomeUnknown)); ae.code != CodeBusy || ae.retryAfter != time.Second {
		t.Fatalf("ErrOutcomeUnknown: %s retry after %s, want 0009 after 1s", ae.code, ae.retryAfter)
	}
	g := guard.New(guard.Options{
		Defaults: guard.Settings{PermitsPerSecond: 1, Burst: 1, BlacklistDuration: time.Hour, DrawTimeout: time.Second},
		Breaker:  guard.BreakerSettings{MinRequests: 1, FailureRatio: 1, Window: time.Minute, OpenFor: 30 * time.Second, Probes: 1},
		Logger:   slog.New(slog.DiscardHandler),
	})
	_ = g.DoSystem(t.Context(), func(context.Context) error { return errors.New("down") })
	ae := classify(g.DoSystem(t.Context(), func(context.Context) error { return nil }))
	if ae.code != CodeTimeout || ae.retryAfter <= 25*time.Second || retryAfterHeader(ae.retryAfter) != "30" {
		t.Fatalf("open breaker: %s retry after %s, want 0006 after the remaining 30s", ae.code, ae.retryAfter)
	}
}
