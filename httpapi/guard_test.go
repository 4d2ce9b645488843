package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/raffle"
	"github.com/bigmarket/bigmarket/redpacket"
)

// fakeDCC records the settings written through dcc/update_config and, like the shared
// bucket's watch, applies them to the guard.
type fakeDCC struct {
	mu    sync.Mutex
	g     *guard.Guard
	puts  []string
	PutFn func(key, value string) error
}

func (f *fakeDCC) DeleteSetting(_ context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.puts = append(f.puts, key+" reset")
	f.g.Override(key, "")
	return nil
}

func (f *fakeDCC) RemoveBlacklist(_ context.Context, userID string) error {
	f.g.Blacklist(userID, time.Time{})
	return nil
}

func (f *fakeDCC) RemoveIPBlacklist(_ context.Context, key netip.Addr) error {
	f.g.BlacklistIP(key, time.Time{})
	return nil
}

func (f *fakeDCC) PutSetting(_ context.Context, key, value string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.PutFn != nil {
		if err := f.PutFn(key, value); err != nil {
			return err
		}
	}
	f.puts = append(f.puts, key+"="+value)
	f.g.Override(key, value)
	return nil
}

// guardedServer serves every user endpoint from the token fakes behind a guard with a
// burst of 2, blacklisting after 2 rejections, guarding the draw and the sign-in.
func guardedServer(t *testing.T, seen *[]string) (http.Handler, *guard.Guard, *fakeDCC) {
	t.Helper()
	s := guard.DefaultSettings()
	s.PermitsPerSecond, s.Burst, s.BlacklistCount, s.DrawTimeout = 0.001, 2, 2, 50*time.Millisecond
	g := guard.New(guard.Options{Defaults: s, IsFailure: IsSystemFailure, Logger: slog.New(slog.DiscardHandler)})
	dcc := &fakeDCC{g: g}
	opts := tokenOptions(seen)
	opts.PlainUserEndpoints, opts.AdminToken = true, "admin-token-for-tests"
	opts.Guard, opts.DCC = g, dcc
	opts.GuardedRoutes = []string{"activity/draw", "activity/calendar_sign_rebate"}
	return New(opts), g, dcc
}

func TestDegradeSwitchThroughDCC(t *testing.T) {
	t.Parallel()
	var seen []string
	h, _, dcc := guardedServer(t, &seen)
	const admin = "Bearer admin-token-for-tests"
	set := func(auth, key, value string) reply {
		return doAdmin(t, h, "GET", "/api/v1/raffle/dcc/update_config?key="+key+"&value="+value, auth, "")
	}
	if r := set("", "degradeSwitch", "open"); r.status != http.StatusUnauthorized || r.Code != "0003" {
		t.Fatalf("update_config without the admin token: %d %s", r.status, r.Code)
	}
	for _, bad := range [][2]string{{"noSuchKey", "open"}, {"degradeSwitch", "on"}, {"drawTimeout", "1ms"}, {"rateLimiterBurst", ""}} {
		if r := set(admin, bad[0], bad[1]); r.Code != "0002" || !strings.Contains(r.Info, bad[0]) && bad[1] != "" {
			t.Fatalf("update_config %s=%s: %s %s, want 0002 naming the key", bad[0], bad[1], r.Code, r.Info)
		}
	}
	if len(dcc.puts) != 0 {
		t.Fatalf("refused updates were written: %v", dcc.puts)
	}
	if r := set(admin, "degradeSwitch", "open"); r.Code != "0000" || string(r.Data) != "true" {
		t.Fatalf("update_config: %s %s", r.Code, r.Info)
	}
	draw := `{"userId":"xiaofuge","activityId":100301}`
	if r := do(t, h, "POST", "/api/v1/raffle/activity/draw", "application/json", []byte(draw)); r.Code != "0004" {
		t.Fatalf("draw while degraded: %s %s", r.Code, r.Info)
	}
	tok := SignToken(testSecret, "xiaofuge", testNow.Add(time.Hour))
	if r := doToken(t, h, "/api/v1/raffle/activity/draw_by_token", []string{tok}, `{"activityId":100301}`); r.Code != "0004" {
		t.Fatalf("draw_by_token while degraded: %s %s", r.Code, r.Info)
	}
	if len(seen) != 0 {
		t.Fatalf("a degraded draw reached the service: %v", seen)
	}
	if r := doAdmin(t, h, "GET", "/api/v1/raffle/dcc/query_config", admin, ""); r.Code != "0000" || !strings.Contains(string(r.Data), `"degradeSwitch":"open"`) {
		t.Fatalf("query_config: %s %s", r.Code, r.Data)
	}
	if r := doAdmin(t, h, "GET", "/api/v1/raffle/dcc/reset_config?key=degradeSwitch", admin, ""); r.Code != "0000" {
		t.Fatalf("reset_config: %s %s", r.Code, r.Info)
	}
	// A reset changes state, so it is a POST too (the GET stays for big-market's clients).
	if r := set(admin, "degradeSwitch", "open"); r.Code != "0000" {
		t.Fatalf("update_config: %s %s", r.Code, r.Info)
	}
	if r := doAdmin(t, h, "POST", "/api/v1/raffle/dcc/reset_config?key=degradeSwitch", admin, ""); r.Code != "0000" {
		t.Fatalf("POST reset_config: %d %s %s", r.status, r.Code, r.Info)
	}
	if r := do(t, h, "POST", "/api/v1/raffle/activity/draw", "application/json", []byte(draw)); r.Code != "0000" {
		t.Fatalf("draw after reset to the default: %s %s", r.Code, r.Info)
	}
	if r := doAdmin(t, h, "GET", "/api/v1/raffle/dcc/reset_config?key=bogus", admin, ""); r.Code != "0002" {
		t.Fatalf("reset of an unknown key: %s", r.Code)
	}
}

func TestRateLimitAndBlacklistPerRoute(t *testing.T) {
	t.Parallel()
	var seen []string
	h, g, _ := guardedServer(t, &seen)
	draw := func(ct, body string) reply {
		return do(t, h, "POST", "/api/v1/raffle/activity/draw", ct, []byte(body))
	}
	body := `{"userId":"xiaofuge","activityId":100301}`
	// A JSON body sent as a form (curl -d) is still read as the draw's JSON.
	for i, ct := range []string{"application/json", "application/x-www-form-urlencoded"} {
		if r := draw(ct, body); r.Code != "0000" {
			t.Fatalf("draw %d within burst: %s %s", i, r.Code, r.Info)
		}
	}
	for i, want := range []string{"0005", "0005", "0005", "0005"} {
		if r := draw("application/json", body); r.Code != want {
			t.Fatalf("draw %d over the limit: %s %s", i, r.Code, r.Info)
		}
	}
	if _, ok := g.BlacklistedUntil("xiaofuge"); !ok {
		t.Fatal("not blacklisted after repeated rejections")
	}
	if len(seen) != 2 {
		t.Fatalf("service calls %v, want the 2 admitted draws", seen)
	}
	if r := doAdmin(t, h, "POST", "/api/v1/admin/guard/unblacklist", "", `{"userId":"xiaofuge"}`); r.status != http.StatusUnauthorized {
		t.Fatalf("unblacklist without the admin token: %d", r.status)
	}
	if r := doAdmin(t, h, "POST", "/api/v1/admin/guard/unblacklist", "Bearer admin-token-for-tests", `{"userId":"xiaofuge"}`); r.Code != "0000" {
		t.Fatalf("unblacklist: %s %s", r.Code, r.Info)
	}
	if _, ok := g.BlacklistedUntil("xiaofuge"); ok {
		t.Fatal("still blacklisted after unblacklist")
	}
	// The token variant is limited as the token's user, not as the body's.
	tok := SignToken(testSecret, "xiaofuge", testNow.Add(time.Hour))
	if r := doToken(t, h, "/api/v1/raffle/activity/draw_by_token", []string{tok}, `{"userId":"mallory","activityId":100301}`); r.Code != "0005" {
		t.Fatalf("token draw of a blacklisted user: %s", r.Code)
	}
	// The form endpoint is guarded by the form's user and still reads it.
	for i, want := range []string{"0000", "0000", "0005"} {
		r := do(t, h, "POST", "/api/v1/raffle/activity/calendar_sign_rebate", "application/x-www-form-urlencoded", []byte("userId=signer"))
		if r.Code != want {
			t.Fatalf("sign-in %d: %s %s, want %s", i, r.Code, r.Info, want)
		}
	}
	// An unguarded route is not limited.
	for range 5 {
		if r := do(t, h, "POST", "/api/v1/raffle/activity/is_calendar_sign_rebate", "application/x-www-form-urlencoded", []byte("userId=xiaofuge")); r.Code != "0000" {
			t.Fatalf("unguarded route: %s", r.Code)
		}
	}
	// Bad input is refused by the handler without costing the user a permit.
	if r := draw("application/json", `{"userId":"","activityId":1}`); r.Code != "0002" {
		t.Fatalf("draw without user: %s", r.Code)
	}
}

func TestDrawOverBudgetAnswers0006(t *testing.T) {
	t.Parallel()
	var seen []string
	opts := tokenOptions(&seen)
	rf := newFakeRaffles()
	release := make(chan struct{})
	rf.DrawFn = func(string, int64) (raffle.Result, error) {
		<-release
		return raffle.Result{}, errors.New("store gone")
	}
	s := guard.DefaultSettings()
	s.RateLimit, s.DrawTimeout = false, 20*time.Millisecond
	g := guard.New(guard.Options{Defaults: s, IsFailure: IsSystemFailure, Logger: slog.New(slog.DiscardHandler)})
	opts.Raffles, opts.Guard, opts.PlainUserEndpoints = rf, g, true
	h := New(opts)
	r := do(t, h, "POST", "/api/v1/raffle/activity/draw", "application/json", []byte(`{"userId":"xiaofuge","activityId":100301}`))
	close(release)
	if r.Code != "0006" || r.status != http.StatusOK {
		t.Fatalf("draw over budget: %d %s %s", r.status, r.Code, r.Info)
	}
	if IsSystemFailure(guard.ErrRateLimited) || !IsSystemFailure(errors.New("boom")) || IsSystemFailure(nil) {
		t.Fatal("IsSystemFailure misclassifies")
	}
}

// TestSystemAnswersAreSystemFailures checks which answers the guard counts against the
// system (the breaker) rather than the user (the blacklist): every system answer — 0001,
// 0006, 0009 whether a committed call's outcome or a SKU's stock is unknown, and the red
// packet's ERR_RP_004 retry — and no business answer.
func TestSystemAnswersAreSystemFailures(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err    error
		code   Code
		system bool
	}{
		{errors.New("mysql down"), CodeUnknown, true},
		{guard.ErrTimeout, CodeTimeout, true},
		{guard.ErrOutcomeUnknown, CodeBusy, true},
		{fmt.Errorf("sku 9011 being rebuilt: %w", activity.ErrStockUnknown), CodeBusy, true},
		{fmt.Errorf("grab taken but not yet durable: %w", redpacket.ErrUnavailable), CodeRedPacketRetry, true},
		{guard.ErrRateLimited, CodeRateLimited, false},
		{activity.ErrSKUStockExhausted, CodeSKUStockExhausted, false},
		{redpacket.ErrEmpty, CodeRedPacketEmpty, false},
		{credit.ErrInsufficient, CodeCreditInsufficient, false},
		{nil, CodeSuccess, false},
	} {
		if c.err != nil && classify(c.err).code != c.code {
			t.Errorf("%v answers %s, want %s", c.err, classify(c.err).code, c.code)
		}
		if got := IsSystemFailure(c.err); got != c.system {
			t.Errorf("IsSystemFailure(%v) (%s) = %v, want %v", c.err, c.code, got, c.system)
		}
	}
}

// TestRetryingThroughSystemAnswersIsExcused retries a guarded SKU exchange while the SKU's
// stock is unknown (0009) and a guarded grab while the broker does not ack (ERR_RP_004):
// the limiter refuses the retries, but the user is not blacklisted for them; and the
// breaker counts the system answers, so enough of them open it.
func TestRetryingThroughSystemAnswersIsExcused(t *testing.T) {
	t.Parallel()
	var seen []string
	opts := tokenOptions(&seen)
	opts.Credits = &fakeCredits{ExchangeSKUFn: func(string, int64) (activity.RechargeOrder, error) {
		return activity.RechargeOrder{}, fmt.Errorf("sku 9011 being rebuilt: %w", activity.ErrStockUnknown)
	}}
	opts.RedPackets = &fakeRedPackets{GrabFn: func(string, string) (redpacket.Grab, error) {
		return redpacket.Grab{}, fmt.Errorf("grab taken but not yet durable: %w", redpacket.ErrUnavailable)
	}}
	s := guard.DefaultSettings()
	s.PermitsPerSecond, s.Burst, s.BlacklistCount = 0.001, 2, 2
	g := guard.New(guard.Options{Defaults: s, IsFailure: IsSystemFailure, Logger: slog.New(slog.DiscardHandler),
		Breaker: guard.BreakerSettings{MinRequests: 1 << 30, FailureRatio: 1, Window: time.Hour, OpenFor: time.Minute, Probes: 1}})
	opts.PlainUserEndpoints, opts.Guard = true, g
	opts.GuardedRoutes = []string{"activity/credit_pay_exchange_sku", "redpacket/grab"}
	h := New(opts)
	for _, route := range []struct{ path, body, code string }{
		{"/api/v1/raffle/activity/credit_pay_exchange_sku", `{"userId":"rebuilt","sku":9011}`, "0009"},
		{"/api/v1/redpacket/grab", `{"userId":"unacked","packetId":"0012345678901234567890"}`, "ERR_RP_004"},
	} {
		codes := map[string]int{}
		for range 10 {
			codes[do(t, h, "POST", route.path, "application/json", []byte(route.body)).Code]++
		}
		if codes[route.code] != 2 || codes["0005"] != 8 {
			t.Fatalf("%s retried 10 times: %v, want 2 × %s (the burst) and 8 × 0005", route.path, codes, route.code)
		}
	}
	if st := g.Stats(); st.BlacklistSize != 0 || st.Excused != 16 {
		t.Fatalf("stats %+v: want no one blacklisted, 16 refusals excused", st)
	}

	// The breaker counts them: 3 of 3 system answers open it.
	s.RateLimit = false
	g = guard.New(guard.Options{Defaults: s, IsFailure: IsSystemFailure, Logger: slog.New(slog.DiscardHandler),
		Breaker: guard.BreakerSettings{MinRequests: 3, FailureRatio: 1, Window: time.Hour, OpenFor: time.Minute, Probes: 1}})
	opts.Guard = g
	h = New(opts)
	var codes []string
	for _, body := range []string{`{"userId":"a","sku":9011}`, `{"userId":"b","sku":9011}`, `{"userId":"c","sku":9011}`, `{"userId":"d","sku":9011}`} {
		codes = append(codes, do(t, h, "POST", "/api/v1/raffle/activity/credit_pay_exchange_sku", "application/json", []byte(body)).Code)
	}
	if strings.Join(codes, ",") != "0009,0009,0009,0006" || g.Stats().BreakerState != "open" {
		t.Fatalf("4 exchanges while the SKU's stock is unknown: %v, breaker %s; want 3 × 0009 then 0006 from the open breaker",
			codes, g.Stats().BreakerState)
	}
}
