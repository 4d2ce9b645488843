package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/guard"
)

// TestLatencyBuckets checks the histogram's buckets: they grow with the latency, and a
// bucket's middle is within 1/32 of every latency it counts.
func TestLatencyBuckets(t *testing.T) {
	t.Parallel()
	last := -1
	for us := int64(0); us < 1<<31; us = us + 1 + us/7 {
		d := time.Duration(us) * time.Microsecond
		b := latencyBucket(d)
		if b < last || b >= latencyBuckets {
			t.Fatalf("%v: bucket %d after %d (of %d)", d, b, last, latencyBuckets)
		}
		last = b
		mid := latencyMiddle(b) * 1000 // µs
		if us >= latencySub && math.Abs(mid-float64(us))/float64(us) > 1.0/32 {
			t.Errorf("%v: bucket %d's middle %.1fµs is more than 1/32 off", d, b, mid)
		}
		if us < latencySub && mid != float64(us)+0.5 {
			t.Errorf("%v: bucket %d's middle %.1fµs", d, b, mid)
		}
	}
	if b := latencyBucket(time.Hour); b != latencyBuckets-1 {
		t.Errorf("an hour in bucket %d, want the last (%d)", b, latencyBuckets-1)
	}
	if b := latencyBucket(-time.Second); b != 0 {
		t.Errorf("a negative latency in bucket %d, want 0", b)
	}
	if len(statCodes)+1 > statCodeSlots {
		t.Errorf("%d codes do not fit %d code slots", len(statCodes), statCodeSlots)
	}
}

// TestLiveStatsWindow records answers at chosen times and reads the window: every one of
// the last 60 whole seconds present, oldest first, counts by kind and code, quantiles
// within the buckets' error, and slots reused as seconds roll.
func TestLiveStatsWindow(t *testing.T) {
	t.Parallel()
	var l liveStats
	base := time.Unix(1_764_670_000, 0)
	at := func(sec int64, ms int) time.Time {
		return base.Add(time.Duration(sec)*time.Second + time.Duration(ms)*time.Millisecond)
	}

	for i := range 3 {
		l.record(kindDraw, CodeSuccess, at(-3, 100*i), time.Millisecond)
	}
	l.record(kindDraw, CodeDayQuotaExhausted, at(-3, 900), time.Millisecond)
	l.record(kindGrab, CodeRedPacketEmpty, at(-3, 10), 2*time.Millisecond)
	l.record(kindRainTap, CodeSuccess, at(-2, 10), 100*time.Microsecond)
	l.record(kindRainTap, CodeSuccess, at(-2, 20), 100*time.Microsecond)
	l.record(kindUncounted, CodeSuccess, at(-2, 30), time.Millisecond)
	for i := 1; i <= 100; i++ {
		l.record(kindRequest, "NOT_A_CODE", at(-1, i), time.Duration(i)*time.Millisecond)
	}
	l.record(kindDraw, CodeSuccess, at(0, 1), time.Millisecond) // the current second: not shown yet

	seconds, codes := l.window(at(0, 500))
	if len(seconds) != statsWindow {
		t.Fatalf("%d seconds, want %d", len(seconds), statsWindow)
	}
	for i, s := range seconds {
		if want := (base.Unix() - statsWindow + int64(i)) * 1000; s.T != want {
			t.Fatalf("second %d starts at %d, want %d", i, s.T, want)
		}
	}
	byT := func(sec int64) secondView { return seconds[statsWindow+int(sec)] }
	if s := byT(-3); s.Draws != 4 || s.Grabs != 1 || s.RainTaps != 0 || s.Requests != 5 || s.P50Ms < 0.97 || s.P50Ms > 1.03 {
		t.Errorf("second -3: %+v", s)
	}
	if s := byT(-2); s.RainTaps != 2 || s.Requests != 2 || s.Draws != 0 || math.Abs(s.P99Ms-0.1) > 0.004 {
		t.Errorf("second -2: %+v (the uncounted answer counted?)", s)
	}
	s := byT(-1)
	if s.Requests != 100 || s.Draws != 0 || math.Abs(s.P50Ms-50)/50 > 1.0/32 || math.Abs(s.P99Ms-99)/99 > 1.0/32 {
		t.Errorf("second -1 (latencies 1..100 ms): %+v, want p50 ≈ 50 and p99 ≈ 99", s)
	}
	var draws int64
	for _, s := range seconds[:statsWindow-3] {
		draws += s.Draws + s.Requests
		if s.P50Ms != 0 || s.P99Ms != 0 {
			t.Errorf("idle second %+v", s)
		}
	}
	if draws != 0 {
		t.Errorf("idle seconds count %d answers", draws)
	}
	if want := map[string]int64{"0000": 5, "ERR_BIZ_008": 1, "ERR_RP_001": 1, "other": 100}; !equalCounts(codes, want) {
		t.Errorf("codes %v, want %v", codes, want)
	}

	// A ring later the slots of -3 and -2 count again, from zero; the draw of second 0
	// has rolled out of the window. A late answer of a second whose slot moved on is
	// dropped, not counted in the later second.
	l.record(kindGrab, CodeSuccess, at(statsSlots-3, 0), time.Millisecond)
	l.record(kindDraw, CodeSuccess, at(-3, 0), time.Millisecond)
	seconds, codes = l.window(at(statsSlots-2, 0))
	var total, grabs int64
	for _, s := range seconds {
		total += s.Requests
		grabs += s.Grabs
	}
	if total != 1 || grabs != 1 || seconds[statsWindow-1].Grabs != 1 || !equalCounts(codes, map[string]int64{"0000": 1}) {
		t.Errorf("a ring later: %d requests, %d grabs, codes %v; want the one grab", total, grabs, codes)
	}
}

// TestLiveStatsConcurrent records from several goroutines across second boundaries (the
// slots' clearing races with the adds) and checks that every answer is counted once.
func TestLiveStatsConcurrent(t *testing.T) {
	t.Parallel()
	var l liveStats
	base := time.Unix(1_764_670_000, 0)
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				// Each worker walks through 10 seconds, two rings after the first.
				sec := int64(2*statsSlots) + int64(i*10/each)
				l.record(kindDraw, CodeSuccess, base.Add(time.Duration(sec)*time.Second+time.Duration(w)), time.Millisecond)
			}
		})
	}
	wg.Wait()
	seconds, codes := l.window(base.Add(time.Duration(2*statsSlots+10) * time.Second))
	var draws int64
	for _, s := range seconds {
		draws += s.Draws
	}
	if draws != workers*each || codes["0000"] != workers*each {
		t.Errorf("%d draws and %d 0000 counted, want %d", draws, codes["0000"], workers*each)
	}
}

func equalCounts(got, want map[string]int64) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// fakeGauges counts its reads.
type fakeGauges struct {
	reads atomic.Int64
	g     Gauges
}

func (f *fakeGauges) Gauges(context.Context) Gauges {
	f.reads.Add(1)
	return f.g
}

// statsData is admin/stats's data as a client reads it.
type statsData struct {
	Node       string `json:"node"`
	ServerTime int64  `json:"serverTime"`
	Seconds    []struct {
		T                                int64
		Draws, Grabs, RainTaps, Requests int64
		P50Ms, P99Ms                     float64
	} `json:"seconds"`
	Codes      map[string]int64 `json:"codes"`
	AwardStock []AwardStockLeft `json:"awardStock"`
	SKUStock   []SKUStockLeft   `json:"skuStock"`
	Backlogs   map[string]*int64
	DeadLetter *int64  `json:"deadLetters"`
	Breaker    *string `json:"breaker"`
	Degrade    string  `json:"degrade"`
}

// TestAdminStats serves admin/stats: 401 without the admin token; the answers of the API
// counted by kind and code (its own polling not); the gauges read once per second however
// often it is called, nulls kept; the breaker and the degrade switch in force.
func TestAdminStats(t *testing.T) {
	t.Parallel()
	left := int64(37)
	gauges := &fakeGauges{g: Gauges{
		AwardStock: []AwardStockLeft{{StrategyID: 100006, AwardID: 101, AwardTitle: "随机积分", Total: 100, Left: &left}},
		Outbox:     new(int64),
	}}
	g := guard.New(guard.Options{Defaults: guard.DefaultSettings(), IsFailure: IsSystemFailure, Logger: slog.New(slog.DiscardHandler)})
	clock := time.Unix(1_800_000_000, 0) // fixed: the gauges stay fresh
	h := New(Options{Strategies: newFake(), Rains: &fakeRains{}, PlainUserEndpoints: true, AdminToken: "s3cret",
		NodeID: "node-a:8091", Gauges: gauges, Guard: g, Now: func() time.Time { return clock }})

	for _, auth := range []string{"", "Bearer wrong"} {
		if r := doAdmin(t, h, "GET", "/api/v1/admin/stats", auth, ""); r.status != 401 || r.Code != "0003" || string(r.Data) != "null" {
			t.Errorf("stats with auth %q: HTTP %d %s %s, want 401 0003", auth, r.status, r.Code, r.Data)
		}
	}
	for range 3 {
		if r := do(t, h, "POST", "/api/v1/raffle/strategy/random_raffle", "application/json", []byte(`{"strategyId":100006}`)); r.Code != "0000" {
			t.Fatalf("random_raffle: %s", r.Code)
		}
	}
	for range 2 {
		if r := do(t, h, "POST", "/api/v1/rain/grab", "application/json", []byte(`{"userId":"u1","sessionId":42}`)); r.Code != "0000" {
			t.Fatalf("rain/grab: %s %s", r.Code, r.Info)
		}
	}
	if r := do(t, h, "POST", "/api/v1/raffle/strategy/random_raffle", "application/json", []byte(`{"strategyId":0}`)); r.Code != "0002" {
		t.Fatalf("random_raffle of strategy 0: %s", r.Code)
	}

	read := func() statsData {
		t.Helper()
		r := doAdmin(t, h, "GET", "/api/v1/admin/stats", "Bearer s3cret", "")
		if r.status != 200 || r.Code != "0000" || r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("stats: HTTP %d %s %s (CORS %q)", r.status, r.Code, r.Info, r.header.Get("Access-Control-Allow-Origin"))
		}
		var d statsData
		if err := json.Unmarshal(r.Data, &d); err != nil {
			t.Fatalf("stats data %s: %v", r.Data, err)
		}
		return d
	}
	// The answers above are shown once their second is whole: poll for them.
	var d statsData
	var draws, taps, requests int64
	deadline := time.Now().Add(10 * time.Second)
	for {
		d = read()
		draws, taps, requests = 0, 0, 0
		for _, s := range d.Seconds {
			draws, taps, requests = draws+s.Draws, taps+s.RainTaps, requests+s.Requests
		}
		if requests >= 6 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if draws != 4 || taps != 2 || requests != 6 {
		t.Errorf("draws %d, rain taps %d, requests %d; want 4, 2, 6 (the stats calls uncounted)", draws, taps, requests)
	}
	if !equalCounts(d.Codes, map[string]int64{"0000": 5, "0002": 1}) {
		t.Errorf("codes %v, want 5 × 0000 and 1 × 0002", d.Codes)
	}
	if len(d.Seconds) != statsWindow || d.Seconds[statsWindow-1].T > d.ServerTime || d.ServerTime-d.Seconds[statsWindow-1].T > 2000 {
		t.Errorf("%d seconds, the last at %d, server time %d", len(d.Seconds), d.Seconds[statsWindow-1].T, d.ServerTime)
	}
	if d.Node != "node-a:8091" || d.Breaker == nil || *d.Breaker != "closed" || d.Degrade != "close" {
		t.Errorf("node %q breaker %v degrade %q", d.Node, d.Breaker, d.Degrade)
	}
	if len(d.AwardStock) != 1 || d.AwardStock[0].Left == nil || *d.AwardStock[0].Left != 37 || d.AwardStock[0].AwardTitle != "随机积分" ||
		d.SKUStock == nil || len(d.SKUStock) != 0 {
		t.Errorf("award stock %+v, sku stock %+v", d.AwardStock, d.SKUStock)
	}
	if o, w, c := d.Backlogs["outbox"], d.Backlogs["writer"], d.Backlogs["consumer"]; o == nil || *o != 0 || w != nil || c != nil || d.DeadLetter != nil {
		t.Errorf("backlogs %v, dead letters %v; want outbox 0 and the rest null", d.Backlogs, d.DeadLetter)
	}
	if n := gauges.reads.Load(); n != 1 {
		t.Errorf("gauges read %d times within a second, want once", n)
	}
	g.Override(guard.KeyDegradeSwitch, guard.Open)
	if d := read(); d.Degrade != "open" {
		t.Errorf("degrade %q after the switch opened, want open", d.Degrade)
	}
	clock = clock.Add(gaugeTTL)
	read()
	if n := gauges.reads.Load(); n != 2 {
		t.Errorf("gauges read %d times, want a second read once a second passed", n)
	}
}

// TestAdminStatsBare serves admin/stats with nothing to read gauges from: empty lists,
// null backlogs and breaker, the degrade switch closed.
func TestAdminStatsBare(t *testing.T) {
	t.Parallel()
	h := New(Options{Strategies: newFake(), AdminToken: "s3cret"})
	r := doAdmin(t, h, "GET", "/api/v1/admin/stats", "Bearer s3cret", "")
	var d map[string]json.RawMessage
	if err := json.Unmarshal(r.Data, &d); err != nil || r.Code != "0000" {
		t.Fatalf("stats: %s %s %v", r.Code, r.Data, err)
	}
	for k, want := range map[string]string{"awardStock": "[]", "skuStock": "[]", "codes": "{}", "deadLetters": "null", "breaker": "null",
		"degrade": `"close"`, "backlogs": `{"outbox":null,"writer":null,"consumer":null}`, "node": `""`} {
		if got := string(d[k]); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
}

// TestStatKindOf checks which routes count as draws, grabs and rain taps.
func TestStatKindOf(t *testing.T) {
	t.Parallel()
	for pattern, want := range map[string]statKind{
		"POST /api/v1/raffle/activity/draw":                 kindDraw,
		"POST /api/v1/raffle/activity/draw_by_token":        kindDraw,
		"POST /api/v1/raffle/activity/draw/{signature}":     kindDraw,
		"POST /api/v1/raffle/strategy/random_raffle":        kindDraw,
		"POST /api/v1/redpacket/grab":                       kindGrab,
		"POST /api/v1/redpacket/grab_by_token":              kindGrab,
		"POST /api/v1/rain/grab":                            kindRainTap,
		"POST /api/v1/rain/grab_by_token":                   kindRainTap,
		"GET /api/v1/admin/stats":                           kindUncounted,
		"GET /api/v1/raffle/activity/draw_path_by_token":    kindRequest,
		"POST /api/v1/raffle/activity/calendar_sign_rebate": kindRequest,
		"/api/":                       kindRequest,
		"POST /api/v1/redpacket/send": kindRequest,
		"POST /api/v1/raffle/strategy/query_raffle_award_list": kindRequest,
	} {
		if got := statKindOf(pattern); got != want {
			t.Errorf("%s counts as %d, want %d", pattern, got, want)
		}
	}
}

// BenchmarkLiveStatsRecord is the cost admin/stats adds to every answer, from all CPUs at
// once (the slots' counters are shared). The clock is read once per 1024 answers here: the
// handler reads it for its metrics anyway.
func BenchmarkLiveStatsRecord(b *testing.B) {
	var l liveStats
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		now := time.Now()
		for i := 0; pb.Next(); i++ {
			if i&1023 == 0 {
				now = time.Now()
			}
			l.record(kindRainTap, CodeSuccess, now, 150*time.Microsecond)
		}
	})
}
