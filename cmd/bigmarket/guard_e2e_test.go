package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/app"
	"github.com/bigmarket/bigmarket/bench"
	"github.com/bigmarket/bigmarket/httpapi"
	"github.com/bigmarket/bigmarket/internal/testenv"
)

const e2eJWTSecret = "guard-e2e-jwt-secret-0123456789"

// metric reads the value of one sample (name with its labels, as exposed) from the
// /metrics of the serve whose API is at base, on its operator listener; a missing sample
// is 0.
func metric(t *testing.T, base, sample string) float64 {
	t.Helper()
	_, body, err := do("GET", opsURL(t, base)+"/metrics", nil)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if ok && name == sample {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", sample, err)
			}
			return v
		}
	}
	return 0
}

// TestFrontLineTwoProcesses runs two serve processes with the front line on: a degrade
// switch flipped through one reaches the other within a second, a user flooding one is
// blacklisted on both, and the token variants and operator endpoints refuse what they must.
func TestFrontLineTwoProcesses(t *testing.T) {
	d := newDeployment(t, "")
	env := []string{
		"BIGMARKET_RATE_LIMITER_SWITCH=open", "BIGMARKET_RATE_LIMIT_PER_SECOND=1", "BIGMARKET_RATE_LIMIT_BURST=2",
		"BIGMARKET_BLACKLIST_COUNT=3", "BIGMARKET_JWT_SECRET=" + e2eJWTSecret,
	}
	_, a := d.start(t, env...)
	_, b := d.start(t, env...)
	d.armory(t, a, b)
	admin := "Bearer " + d.adminToken
	draw := func(base, user string) envelope {
		return call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{user, faultActivity})
	}

	t.Run("degrade switch reaches the other node within a second", func(t *testing.T) {
		for _, step := range []struct {
			value    string
			degraded bool
		}{{"open", true}, {"close", false}} {
			if r := call(t, "GET", a+"/api/v1/raffle/dcc/update_config?key=degradeSwitch&value="+step.value, nil, "Authorization: "+admin); r.Code != "0000" {
				t.Fatalf("update_config degradeSwitch=%s: %+v", step.value, r)
			}
			start := time.Now()
			// Fresh users each time, so the limiter never answers instead of the switch.
			testenv.Eventually(t, time.Second, "degradeSwitch="+step.value+" on node b", func() bool {
				return (draw(b, testenv.Unique("dg")).Code == "0004") == step.degraded
			})
			t.Logf("degradeSwitch=%s reached node b after %s", step.value, time.Since(start).Round(time.Millisecond))
		}
		if r := call(t, "GET", a+"/api/v1/raffle/dcc/update_config?key=degradeSwitch&value=half", nil, "Authorization: "+admin); r.Code != "0002" {
			t.Fatalf("bad value: %+v, want 0002", r)
		}
		if r := call(t, "GET", b+"/api/v1/raffle/dcc/update_config?key=noSuchSwitch&value=open", nil, "Authorization: "+admin); r.Code != "0002" {
			t.Fatalf("unknown key: %+v, want 0002", r)
		}
	})

	t.Run("a flooding user is blacklisted on both nodes", func(t *testing.T) {
		user := testenv.Unique("flood")
		var (
			mu      sync.Mutex
			limited int
			codes   []string
		)
		fanOut(8, 8, func(int) { // at once: the buckets cannot refill in between
			c := draw(a, user).Code
			mu.Lock()
			defer mu.Unlock()
			codes = append(codes, c)
			if c == "0005" {
				limited++
			}
		})
		if limited != 6 {
			t.Fatalf("codes of 8 draws at once with burst 2: %v, want 6 refused", codes)
		}
		testenv.Eventually(t, time.Second, "blacklisting on node b", func() bool {
			return metric(t, b, "bigmarket_guard_blacklist_size") >= 1
		})
		// Long after the buckets refilled, b still refuses the user: the blacklist, not
		// the rate, answers.
		time.Sleep(2500 * time.Millisecond)
		before := metric(t, b, `bigmarket_guard_rejected_total{reason="blacklisted"}`)
		if r := draw(b, user); r.Code != "0005" {
			t.Fatalf("blacklisted user on node b: %+v, want 0005", r)
		}
		if after := metric(t, b, `bigmarket_guard_rejected_total{reason="blacklisted"}`); after != before+1 {
			t.Fatalf("node b's blacklist counter %v → %v, want one more", before, after)
		}
		if r := draw(b, testenv.Unique("calm")); r.Code == "0005" {
			t.Fatalf("another user is refused: %+v", r)
		}
	})

	t.Run("tokens and operator endpoints", func(t *testing.T) {
		user := testenv.Unique("tk")
		if c := d.recharge(t, a, user, 9011, user+"-r").Code; c != "0000" {
			t.Fatalf("recharge: %s", c)
		}
		body := fmt.Sprintf(`{"activityId":%d,"userId":"someone-else"}`, faultActivity)
		valid := httpapi.SignToken([]byte(e2eJWTSecret), user, time.Now().Add(time.Hour))
		if r := call(t, "POST", b+"/api/v1/raffle/activity/draw_by_token", body, "Authorization: "+valid); r.Status != 200 || r.Code != "0000" {
			t.Fatalf("draw_by_token with a valid token: %+v", r)
		}
		if got := totalSurplus(t, a, user); got != 149 {
			t.Fatalf("surplus after one token draw: %d, want 149 (the draw was the token's user's)", got)
		}
		for name, auth := range map[string]string{
			"forged":  httpapi.SignToken([]byte("another-secret-of-enough-length"), user, time.Now().Add(time.Hour)),
			"expired": httpapi.SignToken([]byte(e2eJWTSecret), user, time.Now().Add(-time.Minute)),
			"missing": "",
		} {
			if r := call(t, "POST", b+"/api/v1/raffle/activity/draw_by_token", body, "Authorization: "+auth); r.Status != http.StatusUnauthorized || r.Code != "0003" {
				t.Fatalf("%s token: %+v, want 401 0003", name, r)
			}
		}
		if got := totalSurplus(t, a, user); got != 149 {
			t.Fatalf("surplus after refused tokens: %d, want 149", got)
		}
		for _, path := range []string{
			"/api/v1/raffle/dcc/update_config?key=degradeSwitch&value=open",
			"/api/v1/raffle/dcc/query_config",
			"/api/v1/raffle/erp/query_raffle_activity_stage_list",
		} {
			for _, auth := range []string{"", "Bearer wrong-token", valid} {
				if r := call(t, "GET", a+path, nil, "Authorization: "+auth); r.Status != http.StatusUnauthorized || r.Code != "0003" {
					t.Fatalf("%s with %q: %+v, want 401 0003", path, auth, r)
				}
			}
		}
		if r := call(t, "GET", b+"/api/v1/raffle/dcc/query_config", nil, "Authorization: "+admin); r.Code != "0000" || !strings.Contains(string(r.Data), `"degradeSwitch":"close"`) {
			t.Fatalf("query_config: %+v", r)
		}
	})
}

// TestRedisPausedDuringDraws pauses a private Redis under a serve process: draws answer
// within their budget plus the commit timeout — 0006 when they had not reached their
// commit point, 0009 when they had (the take script is the commit point: the outcome is
// unknown) — the breaker opens and answers at once, and the units taken during the pause
// are no more than the draws answered 0009 (each a pending draw the user's next draw
// settles). Once Redis is back draws succeed again, the user spends every unit of quota,
// each unit ends as one award record and every draw answered 0000 has its record.
func TestRedisPausedDuringDraws(t *testing.T) {
	t.Parallel()
	addr := startPrivateRedis(t)
	d := newDeployment(t, addr)
	const budget, commitTimeout = 300 * time.Millisecond, 500 * time.Millisecond
	_, base := d.start(t, "BIGMARKET_DRAW_TIMEOUT="+budget.String(), "BIGMARKET_DRAW_COMMIT_TIMEOUT="+commitTimeout.String(),
		"BIGMARKET_BREAKER_MIN_REQUESTS=4", "BIGMARKET_BREAKER_FAILURE_RATIO=0.5", "BIGMARKET_BREAKER_OPEN_FOR=1s", "BIGMARKET_BREAKER_PROBES=1")
	d.armory(t, base)
	user := testenv.Unique("pz")
	if c := d.recharge(t, base, user, 9011, user+"-r").Code; c != "0000" {
		t.Fatalf("recharge: %s", c)
	}
	var ledger drawLedger
	draw := func() (envelope, time.Duration) {
		start := time.Now()
		r := call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{user, faultActivity})
		ledger.note(t, r)
		return r, time.Since(start)
	}
	if r, _ := draw(); r.Code != "0000" {
		t.Fatalf("draw before the pause: %+v", r)
	}
	before := totalSurplus(t, base, user)

	pauser := goredis.NewClient(&goredis.Options{Addr: addr})
	defer pauser.Close()
	ctx := context.Background()
	if err := pauser.Do(ctx, "CLIENT", "PAUSE", "5000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	var slowest time.Duration
	codes := map[string]int{}
	for i := range 12 {
		r, took := draw()
		codes[r.Code]++
		switch {
		case r.Code == "0006":
		case r.Code == "0009":
		default:
			t.Fatalf("draw %d during the pause: %+v, want 0006 (or 0009 past the commit point)", i, r)
		}
		slowest = max(slowest, took)
		// The budget and commit timeout plus room for HTTP and a loaded, race-instrumented
		// machine.
		if took > budget+commitTimeout+time.Second {
			t.Fatalf("draw %d during the pause took %s, budget %s, commit timeout %s", i, took, budget, commitTimeout)
		}
	}
	if open := metric(t, base, `bigmarket_guard_rejected_total{reason="breaker_open"}`); open < 1 {
		t.Fatalf("the breaker never opened: %v refusals", open)
	}
	t.Logf("12 draws during the pause: %v, slowest %s; breaker refusals %v", codes, slowest, metric(t, base, `bigmarket_guard_rejected_total{reason="breaker_open"}`))
	if time.Since(paused) > 4*time.Second {
		t.Fatal("the pause ended before the draws: the test proves nothing")
	}
	if err := pauser.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	// 0006 took nothing: a unit taken during the pause is a draw answered 0009, pending
	// until a later draw settles it.
	if taken := before - totalSurplus(t, base, user); taken > int64(codes["0009"]) {
		t.Errorf("%d units taken during the pause by draws answered %v", taken, codes)
	}
	testenv.Eventually(t, 30*time.Second, "a draw succeeds after Redis resumes", func() bool {
		r, _ := draw()
		return r.Code == "0000"
	})
	// No quota was lost: every unit of the 150 ends as an award. Draws run until the
	// quota is refused (a pending draw is settled by the user's next draw first).
	testenv.Eventually(t, 90*time.Second, "all 150 units drawn", func() bool {
		r, _ := draw()
		return r.Code == "ERR_BIZ_006" && totalSurplus(t, base, user) == 0
	})
	d.drainDraws(t)
	if n, taken := d.checkLedger(t, user, ledger); n != 150 || taken != 150 {
		t.Fatalf("%d award records, %d units taken; want 150 each", n, taken)
	}
	t.Logf("150 units ended as awards; %d of them answered 0000", len(ledger.answered))
	if r, _ := draw(); r.Code == "0000" {
		t.Fatal("a 151st draw succeeded")
	}
	d.checkStock(t)
}

// TestBenchFloodIsRefusedInMemory runs "bigmarket bench -scenario flood" against the
// embedded stack with the front line on: after the burst, every request is answered
// 0005 by the blacklist, which never asks Redis.
func TestBenchFloodIsRefusedInMemory(t *testing.T) {
	cfg, base, _ := startEmbedded(t, func(c *app.Config) {
		c.LogLevel, c.RateLimiterSwitch, c.RateLimitBurst, c.BlacklistCount = "warn", "open", 3, 5
	})
	file := filepath.Join(t.TempDir(), "flood.json")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"bench", "-scenario", "flood", "-url", base, "-user", "flooder",
		"-c", "4", "-n", "300", "-warmup", "0s", "-q", "-out", file}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench flood: %v\n%s", err, stderr.String())
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var sum bench.Summary
	if err := json.Unmarshal(raw, &sum); err != nil {
		t.Fatalf("summary %s: %v", raw, err)
	}
	if sum.Requests != 300 || sum.Codes["0005"] != 297 {
		t.Fatalf("flood summary %s: want 300 requests, 297 refused with 0005 after the burst of 3", raw)
	}
	if n := metric(t, base, `bigmarket_guard_rejected_total{reason="limited_cluster"}`); n != 0 {
		t.Fatalf("%v refusals came from Redis; the local bucket and blacklist answer a flood", n)
	}
	if n := metric(t, base, `bigmarket_guard_rejected_total{reason="blacklisted"}`); n != 297-float64(cfg.BlacklistCount+1) {
		t.Fatalf("blacklist refusals %v, want all but the %d that earned it", n, cfg.BlacklistCount+1)
	}
}
