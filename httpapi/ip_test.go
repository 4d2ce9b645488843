package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bigmarket/bigmarket/guard"
)

// ipServer serves the token fakes behind a guard whose per-IP limit is off until the
// test turns it on through dcc/update_config; 127.0.0.1 is the trusted proxy.
func ipServer(t *testing.T, seen *[]string) (http.Handler, *guard.Guard) {
	t.Helper()
	s := guard.DefaultSettings()
	s.PermitsPerSecond, s.Burst, s.BlacklistCount = 1000, 1000, 2
	g := guard.New(guard.Options{Defaults: s, IsFailure: IsSystemFailure, Logger: slog.New(slog.DiscardHandler)})
	proxies, err := guard.ParseProxies([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	opts := tokenOptions(seen)
	opts.PlainUserEndpoints, opts.AdminToken = true, "admin-token-for-tests"
	opts.Guard, opts.DCC, opts.TrustedProxies = g, &fakeDCC{g: g}, proxies
	return New(opts), g
}

// from sends a request as a client behind peer (host:port) with the given
// X-Forwarded-For headers.
func from(t *testing.T, h http.Handler, peer, target, body string, xff ...string) reply {
	t.Helper()
	req := httptest.NewRequest("POST", target, strings.NewReader(body))
	req.RemoteAddr = peer
	req.Header.Set("Content-Type", "application/json")
	for _, v := range xff {
		req.Header.Add("X-Forwarded-For", v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var r reply
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatalf("POST %s: not an envelope: %q", target, rec.Body.String())
	}
	r.status, r.header = rec.Code, rec.Header()
	return r
}

// TestIPLimitThroughTheAPI: the keys go through dcc/update_config and show in
// query_config and admin/settings; a client behind the trusted proxy is limited by its
// X-Forwarded-For address before its request reaches anything (the token check
// included), with a Retry-After; another client is served; an untrusted peer is counted
// as itself whatever it claims; blacklisting follows, unblacklist_ip lifts it; reads
// are not limited.
func TestIPLimitThroughTheAPI(t *testing.T) {
	t.Parallel()
	var seen []string
	h, g := ipServer(t, &seen)
	const admin = "Bearer admin-token-for-tests"
	draw := func(peer, _ string, xff ...string) reply { // the fakes know one user; its limits are wide
		return from(t, h, peer, "/api/v1/raffle/activity/draw", `{"userId":"xiaofuge","activityId":100301}`, xff...)
	}
	// Off by default: one address draws as much as it likes.
	for i := range 20 {
		if r := draw("127.0.0.1:4000", fmt.Sprint("u", i), "198.51.100.1"); r.Code != "0000" {
			t.Fatalf("draw %d with the limit off: %s %s", i, r.Code, r.Info)
		}
	}
	for _, bad := range [][2]string{{"ipRateLimitPerSecond", "-1"}, {"ipRateLimitBurst", "x"}} {
		if r := doAdmin(t, h, "GET", "/api/v1/raffle/dcc/update_config?key="+bad[0]+"&value="+bad[1], admin, ""); r.Code != "0002" {
			t.Fatalf("update_config %s=%s: %s, want 0002", bad[0], bad[1], r.Code)
		}
	}
	for _, kv := range [][2]string{{"ipRateLimitPerSecond", "0.001"}, {"ipRateLimitBurst", "2"}} {
		if r := doAdmin(t, h, "GET", "/api/v1/raffle/dcc/update_config?key="+kv[0]+"&value="+kv[1], admin, ""); r.Code != "0000" {
			t.Fatalf("update_config %s=%s: %s %s", kv[0], kv[1], r.Code, r.Info)
		}
	}
	if r := doAdmin(t, h, "GET", "/api/v1/raffle/dcc/query_config", admin, ""); !strings.Contains(string(r.Data), `"ipRateLimitPerSecond":"0.001"`) || !strings.Contains(string(r.Data), `"ipRateLimitBurst":"2"`) {
		t.Fatalf("query_config: %s", r.Data)
	}
	if r := doAdmin(t, h, "GET", "/api/v1/admin/settings", admin, ""); !strings.Contains(string(r.Data), `{"key":"ipRateLimitPerSecond","value":"0.001","default":"0","overridden":true}`) {
		t.Fatalf("admin/settings: %s", r.Data)
	}

	seen = nil
	for i := range 2 {
		if r := draw("127.0.0.1:4000", fmt.Sprint("a", i), "6.6.6.6, 198.51.100.1"); r.Code != "0000" {
			t.Fatalf("client a, draw %d within the burst: %s %s", i, r.Code, r.Info)
		}
	}
	r := draw("127.0.0.1:4000", "a2", "9.9.9.9, 198.51.100.1")
	if r.status != http.StatusOK || r.Code != "0005" {
		t.Fatalf("client a over its burst: %d %s, want 200 0005", r.status, r.Code)
	}
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 900 || ra > 1000 {
		t.Fatalf("Retry-After %q, want about 1000 s (one permit at 0.001/s)", r.header.Get("Retry-After"))
	}
	// Refused before the token is checked: no 401 for a bad token, just 0005.
	if r := from(t, h, "127.0.0.1:4000", "/api/v1/raffle/activity/draw_by_token", `{"activityId":100301}`, "198.51.100.1"); r.Code != "0005" {
		t.Fatalf("client a, draw_by_token without a token: %d %s, want 0005 first", r.status, r.Code)
	}
	if len(seen) != 2 {
		t.Fatalf("the service saw %v, want only the two admitted draws", seen)
	}
	for _, peer := range []string{"127.0.0.1:4001", "[::1]:4000"} { // ::1 is not trusted: itself
		if r := draw(peer, "b", "198.51.100.2"); r.Code != "0000" {
			t.Fatalf("another client via %s: %s %s", peer, r.Code, r.Info)
		}
	}
	// An untrusted peer cannot rotate its X-Forwarded-For to escape.
	for i := range 4 {
		r := draw("203.0.113.5:4000", fmt.Sprint("s", i), fmt.Sprintf("198.51.100.%d", 100+i))
		if want := map[bool]string{true: "0000", false: "0005"}[i < 2]; r.Code != want {
			t.Fatalf("spoofing peer, draw %d: %s, want %s", i, r.Code, want)
		}
	}
	// Client a: refusals 2 and 3 (after the one above) pass the count of 2: blacklisted.
	draw("127.0.0.1:4000", "a3", "198.51.100.1")
	draw("127.0.0.1:4000", "a4", "198.51.100.1")
	a := netip.MustParseAddr("198.51.100.1")
	if _, ok := g.IPBlacklistedUntil(a); !ok {
		t.Fatalf("client a not blacklisted: %+v", g.Stats())
	}
	r = draw("127.0.0.1:4000", "a5", "198.51.100.1")
	if ra, _ := strconv.Atoi(r.header.Get("Retry-After")); r.Code != "0005" || ra < 86000 {
		t.Fatalf("blacklisted client: %s, Retry-After %q; want 0005 for about a day", r.Code, r.header.Get("Retry-After"))
	}
	// Reads are not behind the per-IP limit.
	if r := from(t, h, "127.0.0.1:4000", "/api/v1/raffle/activity/query_user_activity_account", `{"userId":"xiaofuge","activityId":100301}`, "198.51.100.1"); r.Code != "0000" {
		t.Fatalf("a read from the blacklisted client: %s %s", r.Code, r.Info)
	}

	lift := func(auth, body string) reply {
		return doAdmin(t, h, "POST", "/api/v1/admin/guard/unblacklist_ip", auth, body)
	}
	if r := lift("", `{"ip":"198.51.100.1"}`); r.status != http.StatusUnauthorized || r.Code != "0003" {
		t.Fatalf("unblacklist_ip without the admin token: %d %s", r.status, r.Code)
	}
	for _, bad := range []string{`{"ip":""}`, `{}`, `{"ip":"198.51.100"}`, `{"ip":"10.0.0.0/8"}`, `{"ip":42}`, `nope`} {
		if r := lift(admin, bad); r.Code != "0002" {
			t.Fatalf("unblacklist_ip %s: %s, want 0002", bad, r.Code)
		}
	}
	if _, ok := g.IPBlacklistedUntil(a); !ok {
		t.Fatal("a refused unblacklist_ip lifted the blacklisting")
	}
	if r := lift(admin, `{"ip":"198.51.100.1"}`); r.Code != "0000" {
		t.Fatalf("unblacklist_ip: %s %s", r.Code, r.Info)
	}
	if _, ok := g.IPBlacklistedUntil(a); ok {
		t.Fatal("still blacklisted after unblacklist_ip")
	}
	before := g.Stats().IPBlacklisted
	draw("127.0.0.1:4000", "a7", "198.51.100.1") // still over its rate, no longer blacklisted
	if st := g.Stats(); st.IPBlacklisted != before {
		t.Fatalf("after the lift the blacklist still answers: %+v", st)
	}
	// Turned off again, everyone is served.
	if r := doAdmin(t, h, "POST", "/api/v1/raffle/dcc/reset_config?key=ipRateLimitPerSecond", admin, ""); r.Code != "0000" {
		t.Fatalf("reset_config: %s", r.Code)
	}
	if r := draw("127.0.0.1:4000", "a8", "198.51.100.1"); r.Code != "0000" {
		t.Fatalf("limit reset to off: %s %s", r.Code, r.Info)
	}
}

// TestIPLimitedRoutes: every spending route is behind the per-IP limit in each of its
// variants, and the reads are not.
func TestIPLimitedRoutes(t *testing.T) {
	t.Parallel()
	var seen []string
	h, g := ipServer(t, &seen)
	g.Override(guard.KeyIPPermitsPerSecond, "0.001")
	g.Override(guard.KeyIPBurst, "1")
	routes := map[string]bool{ // path → limited
		"/api/v1/raffle/activity/draw": true, "/api/v1/raffle/activity/draw_by_token": true,
		"/api/v1/raffle/activity/credit_pay_exchange_sku": true, "/api/v1/raffle/activity/calendar_sign_rebate": true,
		"/api/v1/raffle/activity/calendar_sign_rebate_by_token": true,
		"/api/v1/raffle/activity/query_user_activity_account":   false, "/api/v1/raffle/strategy/query_raffle_award_list": false,
		"/api/v1/raffle/activity/query_user_credit_account": false, "/api/v1/raffle/activity/is_calendar_sign_rebate": false,
	}
	i := 0
	for path, limited := range routes {
		i++
		ip := fmt.Sprintf("198.51.100.%d", i) // one client per route
		from(t, h, "127.0.0.1:1", path, `{}`, ip)
		r := from(t, h, "127.0.0.1:1", path, `{}`, ip)
		if (r.Code == "0005") != limited {
			t.Errorf("%s, second call at once: %s; limited %t", path, r.Code, limited)
		}
	}
}

// BenchmarkRainGrabMissGuarded is BenchmarkRainGrabMiss behind a real guard with the
// per-IP limit off, as production serves it: its allocations must be those of the
// unguarded tap.
func BenchmarkRainGrabMissGuarded(b *testing.B) {
	g := guard.New(guard.Options{Defaults: guard.DefaultSettings(), Logger: slog.New(slog.DiscardHandler)})
	h := New(Options{Strategies: newFake(), Rains: &fakeRains{}, PlainUserEndpoints: true, Registry: prometheus.NewRegistry(), Guard: g})
	benchTap(b, h)
}

// BenchmarkRainGrabMissIPLimited is the tap with the per-IP limit on, behind a trusted
// proxy: what turning it on costs.
func BenchmarkRainGrabMissIPLimited(b *testing.B) {
	s := guard.DefaultSettings()
	s.IPPermitsPerSecond = guard.MaxPermitsPerSecond
	g := guard.New(guard.Options{Defaults: s, Logger: slog.New(slog.DiscardHandler)})
	proxies, _ := guard.ParseProxies([]string{"127.0.0.1"})
	h := New(Options{Strategies: newFake(), Rains: &fakeRains{}, PlainUserEndpoints: true, Registry: prometheus.NewRegistry(), Guard: g, TrustedProxies: proxies})
	benchTap(b, h)
}

func benchTap(b *testing.B, h http.Handler) {
	body := []byte(`{"userId":"unlucky","sessionId":42}`)
	req, err := http.NewRequest(http.MethodPost, "http://x/api/v1/rain/grab", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.RemoteAddr = "127.0.0.1:4000"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", "198.51.100.1")
	req.ContentLength = int64(len(body))
	rd := bytes.NewReader(body)
	w := &discardWriter{}
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		w.h, w.status, w.n = http.Header{}, 0, 0
		h.ServeHTTP(w, req)
	}
	if w.status != http.StatusOK || w.n == 0 {
		b.Fatalf("status %d, %d bytes", w.status, w.n)
	}
}

// TestIPLimitOffAllocatesNothing: a tap behind a guard whose per-IP limit is off
// allocates what the unguarded tap does, and turning the limit on adds no allocation
// either once the client's bucket exists (the hot path of BenchmarkRainGrabMiss).
func TestIPLimitOffAllocatesNothing(t *testing.T) {
	tap := func(h http.Handler) float64 {
		body := []byte(`{"userId":"unlucky","sessionId":42}`)
		req, _ := http.NewRequest(http.MethodPost, "http://x/api/v1/rain/grab", nil)
		req.RemoteAddr = "127.0.0.1:4000"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", "198.51.100.1")
		req.ContentLength = int64(len(body))
		rd := bytes.NewReader(body)
		w := &discardWriter{}
		serve := func() {
			rd.Reset(body)
			req.Body = io.NopCloser(rd)
			w.h, w.status, w.n = http.Header{}, 0, 0
			h.ServeHTTP(w, req)
		}
		serve() // warm: the route's first call, the client's bucket
		if w.status != http.StatusOK {
			t.Fatalf("tap: status %d", w.status)
		}
		return testing.AllocsPerRun(200, serve)
	}
	newAPI := func(g *guard.Guard) http.Handler {
		proxies, _ := guard.ParseProxies([]string{"127.0.0.1"})
		opts := Options{Strategies: newFake(), Rains: &fakeRains{}, PlainUserEndpoints: true, Registry: prometheus.NewRegistry(), TrustedProxies: proxies}
		if g != nil {
			opts.Guard = g
		}
		return New(opts)
	}
	bare := tap(newAPI(nil))
	off := tap(newAPI(guard.New(guard.Options{Defaults: guard.DefaultSettings(), Logger: slog.New(slog.DiscardHandler)})))
	s := guard.DefaultSettings()
	s.IPPermitsPerSecond = guard.MaxPermitsPerSecond
	on := tap(newAPI(guard.New(guard.Options{Defaults: s, Logger: slog.New(slog.DiscardHandler)})))
	if off != bare || on != bare {
		t.Fatalf("allocations a tap: %v unguarded, %v with the IP limit off, %v on; want the same", bare, off, on)
	}
	t.Logf("allocations a tap: %v (unguarded, IP limit off, IP limit on)", bare)
}
