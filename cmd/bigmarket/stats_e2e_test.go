package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/redis"
	"github.com/bigmarket/bigmarket/strategy"
)

// adminStats is the data of GET /api/v1/admin/stats.
type adminStats struct {
	Node       string `json:"node"`
	ServerTime int64  `json:"serverTime"`
	Seconds    []struct {
		T, Draws, Grabs, RainTaps, Requests int64
		P50Ms, P99Ms                        float64
	} `json:"seconds"`
	Codes      map[string]int64 `json:"codes"`
	AwardStock []struct {
		StrategyID int64  `json:"strategyId"`
		AwardID    int    `json:"awardId"`
		AwardTitle string `json:"awardTitle"`
		Total      int64  `json:"total"`
		Left       *int64 `json:"left"`
	} `json:"awardStock"`
	SKUStock []struct {
		SKU        int64  `json:"sku"`
		ActivityID int64  `json:"activityId"`
		Total      int64  `json:"total"`
		Left       *int64 `json:"left"`
	} `json:"skuStock"`
	Backlogs    map[string]*int64 `json:"backlogs"`
	DeadLetters *int64            `json:"deadLetters"`
	Breaker     *string           `json:"breaker"`
	Degrade     string            `json:"degrade"`
}

// TestAdminStatsOnRealBackends runs serve on MariaDB, Redis and NATS, draws N times and
// reads the console's numbers: the draws of the last seconds sum to N, the award stock
// left is Redis's, the SKUs of the open activities are listed with Redis's stock, and the
// backlogs and dead letters are numbers that settle to zero.
func TestAdminStatsOnRealBackends(t *testing.T) {
	d := newDeployment(t, "")
	_, base := d.start(t, "BIGMARKET_NODE_ID=stats-node-1")
	const raffle = "/api/v1/raffle/"
	statsURL := base + "/api/v1/admin/stats"

	resp, body, err := do("GET", statsURL, nil)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("stats without the admin token: %v %s %v, want 401", resp.Status, body, err)
	}

	user := testenv.Unique("stats")
	if r := call(t, "GET", base+raffle+"activity/armory?activityId=100301", nil); r.Code != "0000" {
		t.Fatalf("activity armory: %+v", r)
	}
	if r := call(t, "POST", base+"/api/v1/admin/activity/recharge", map[string]any{"userId": user, "sku": 9011, "outBusinessNo": user}, bearer(d.adminToken)); r.Code != "0000" {
		t.Fatalf("recharge: %+v", r)
	}
	const n = 12
	for i := range n {
		if r := call(t, "POST", base+raffle+"activity/draw", drawReq{user, 100301}); r.Code != "0000" {
			t.Fatalf("draw %d: %+v", i, r)
		}
	}

	read := func() adminStats {
		t.Helper()
		r := call(t, "GET", statsURL, nil, bearer(d.adminToken))
		st, err := dataOf[adminStats](r)
		if err != nil || r.Code != "0000" {
			t.Fatalf("stats: %+v %v", r, err)
		}
		return st
	}
	var st adminStats
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("the %d draws shown once their seconds are whole", n), func() (bool, string) {
		st = read()
		var draws int64
		for _, s := range st.Seconds {
			draws += s.Draws
		}
		return draws == n, fmt.Sprintf("%d draws in %d seconds", draws, len(st.Seconds))
	})
	if len(st.Seconds) != 60 || st.Node != "stats-node-1" || st.Codes["0000"] < n+2 || st.Degrade != "close" ||
		st.Breaker == nil || *st.Breaker != "closed" {
		t.Errorf("stats: %d seconds, node %q, codes %v, degrade %q, breaker %v", len(st.Seconds), st.Node, st.Codes, st.Degrade, st.Breaker)
	}
	var p99 float64
	for _, s := range st.Seconds {
		if s.Draws > 0 && (s.P50Ms <= 0 || s.P99Ms < s.P50Ms) {
			t.Errorf("second %d: %d draws, p50 %v ms, p99 %v ms", s.T, s.Draws, s.P50Ms, s.P99Ms)
		}
		p99 = max(p99, s.P99Ms)
	}
	t.Logf("p99 of the worst second: %.3f ms", p99)

	stock, skuStock := redis.NewStock(d.redis, d.prefix), redis.NewSKUStock(d.redis, d.prefix)
	testenv.Eventually(t, 30*time.Second, "award and sku stock left as Redis has it", func() (bool, string) {
		st = read()
		awards := 0
		for _, a := range st.AwardStock {
			if a.StrategyID != 100006 {
				continue
			}
			awards++
			l, err := stock.Remaining(t.Context(), strategy.AwardRef{StrategyID: a.StrategyID, AwardID: a.AwardID})
			if err != nil {
				t.Fatal(err)
			}
			if a.Left == nil || *a.Left != l.Counter || a.Total != l.Total || a.AwardTitle == "" {
				return false, fmt.Sprintf("award %d: %+v, Redis %+v", a.AwardID, a, l)
			}
		}
		if awards != 8 {
			return false, fmt.Sprintf("%d awards of strategy 100006 in %+v", awards, st.AwardStock)
		}
		found := false
		for _, k := range st.SKUStock {
			l, err := skuStock.Remaining(t.Context(), k.SKU)
			if err != nil {
				t.Fatal(err)
			}
			if k.Left == nil || *k.Left != l.Counter {
				return false, fmt.Sprintf("sku %d: %+v, Redis %+v", k.SKU, k, l)
			}
			if k.SKU == 9011 {
				found = k.ActivityID == 100301 && k.Total == 100000 && *k.Left == 99999
			}
		}
		return found, fmt.Sprintf("sku stock %+v", st.SKUStock)
	})
	testenv.Eventually(t, 60*time.Second, "backlogs and dead letters read, and settled", func() (bool, string) {
		st = read()
		settled, shown := true, ""
		for _, k := range []string{"outbox", "writer", "consumer"} {
			v := st.Backlogs[k]
			if v == nil {
				settled, shown = false, shown+" "+k+"=null"
				continue
			}
			settled, shown = settled && *v == 0, shown+fmt.Sprintf(" %s=%d", k, *v)
		}
		if !settled {
			return false, "backlogs" + shown
		}
		return st.DeadLetters != nil && *st.DeadLetters == 0, fmt.Sprintf("dead letters %v", st.DeadLetters)
	})
}
