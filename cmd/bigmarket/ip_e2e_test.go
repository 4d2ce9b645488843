package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
)

// TestClientIPLimitsTwoProcesses runs two serve processes: a behind a trusted proxy
// (BIGMARKET_TRUSTED_PROXIES=127.0.0.1, so X-Forwarded-For names the client), b trusting
// none of the test's addresses (the client is the peer, whatever it claims). The per-IP
// keys set through a reach b; one X-Forwarded-For client hammering a is refused with
// 0005 and a Retry-After, then blacklisted on both nodes, while another client is served;
// b ignores the spoofable header; unblacklist_ip lifts the blacklisting everywhere.
func TestClientIPLimitsTwoProcesses(t *testing.T) {
	d := newDeployment(t, "")
	_, a := d.start(t, "BIGMARKET_TRUSTED_PROXIES=127.0.0.1", "BIGMARKET_BLACKLIST_COUNT=3")
	_, b := d.start(t, "BIGMARKET_TRUSTED_PROXIES=10.0.0.0/8", "BIGMARKET_BLACKLIST_COUNT=3")
	admin := "Authorization: Bearer " + d.adminToken
	// The draw of an activity that does not exist: a business answer (0002), no state.
	draw := func(base, xff string) envelope {
		return call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{testenv.Unique("ip"), 1}, "X-Forwarded-For: "+xff)
	}
	served := func(r envelope) bool { return r.Code != "" && r.Code != "0005" }
	const hammer, calm = "198.51.100.7", "198.51.100.8"

	// Off by default: a burst from one address is served.
	for i := range 10 {
		if r := draw(a, hammer); !served(r) {
			t.Fatalf("draw %d with the limit off: %+v", i, r)
		}
	}
	// A permit every 100 s, 3 at once: what the test sends is never refilled in time.
	for _, kv := range []string{"key=ipRateLimitPerSecond&value=0.01", "key=ipRateLimitBurst&value=3"} {
		if r := call(t, "GET", a+"/api/v1/raffle/dcc/update_config?"+kv, nil, admin); r.Code != "0000" {
			t.Fatalf("update_config %s: %+v", kv, r)
		}
	}
	testenv.Eventually(t, 5*time.Second, "the per-IP keys on node b", func() bool {
		r := call(t, "GET", b+"/api/v1/raffle/dcc/query_config", nil, admin)
		return strings.Contains(string(r.Data), `"ipRateLimitPerSecond":"0.01"`) && strings.Contains(string(r.Data), `"ipRateLimitBurst":"3"`)
	})

	for i := range 3 {
		if r := draw(a, "6.6.6.6, "+hammer); !served(r) {
			t.Fatalf("client %s, draw %d within the burst: %+v", hammer, i, r)
		}
	}
	r := draw(a, hammer)
	if r.Status != 200 || r.Code != "0005" {
		t.Fatalf("client %s over its burst: %+v, want 200 0005", hammer, r)
	}
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 90 || ra > 100 {
		t.Fatalf("Retry-After %q, want about 100 s", r.Header.Get("Retry-After"))
	}
	if r := draw(a, calm); !served(r) {
		t.Fatalf("another client: %+v", r)
	}
	// Three more refusals pass the count of 3: blacklisted, on both nodes.
	for range 3 {
		draw(a, hammer)
	}
	for _, base := range []string{a, b} {
		testenv.Eventually(t, 5*time.Second, "the IP blacklisting on "+base, func() bool {
			return metric(t, base, "bigmarket_guard_ip_blacklist_size") == 1
		})
	}
	before := metric(t, a, `bigmarket_guard_rejected_total{reason="ip_blacklisted"}`)
	r = draw(a, hammer)
	if ra, _ := strconv.Atoi(r.Header.Get("Retry-After")); r.Code != "0005" || ra < 86000 {
		t.Fatalf("blacklisted client: %+v, Retry-After %q; want 0005 for about a day", r, r.Header.Get("Retry-After"))
	}
	if after := metric(t, a, `bigmarket_guard_rejected_total{reason="ip_blacklisted"}`); after != before+1 {
		t.Fatalf("ip_blacklisted refusals %v → %v, want one more", before, after)
	}
	if r := draw(a, calm); !served(r) {
		t.Fatalf("another client while %s is blacklisted: %+v", hammer, r)
	}

	// Node b does not trust the test's address: the blacklisted X-Forwarded-For means
	// nothing there, and rotating it does not escape the peer's own bucket.
	for i := range 4 {
		r := draw(b, "198.51.100."+strconv.Itoa(7+i))
		if served(r) != (i < 3) {
			t.Fatalf("untrusted peer, draw %d: %+v; want the peer's burst of 3 served, then 0005", i, r)
		}
	}

	for _, bad := range []string{`{"ip":"198.51.100"}`, `{"ip":""}`, `{"ip":"10.0.0.0/8"}`} {
		if r := call(t, "POST", b+"/api/v1/admin/guard/unblacklist_ip", bad, admin); r.Code != "0002" {
			t.Fatalf("unblacklist_ip %s: %+v, want 0002", bad, r)
		}
	}
	if r := call(t, "POST", b+"/api/v1/admin/guard/unblacklist_ip", `{"ip":"`+hammer+`"}`, "Authorization: Bearer wrong"); r.Status != 401 {
		t.Fatalf("unblacklist_ip with a wrong token: %+v", r)
	}
	if r := call(t, "POST", b+"/api/v1/admin/guard/unblacklist_ip", `{"ip":"`+hammer+`"}`, admin); r.Code != "0000" {
		t.Fatalf("unblacklist_ip: %+v", r)
	}
	for _, base := range []string{a, b} {
		testenv.Eventually(t, 5*time.Second, "the lift on "+base, func() bool {
			return metric(t, base, "bigmarket_guard_ip_blacklist_size") == 0
		})
	}
	// Lifted, the client is back to its (empty) bucket: limited, not blacklisted; new
	// limits give every client a fresh bucket.
	before = metric(t, a, `bigmarket_guard_rejected_total{reason="ip_blacklisted"}`)
	if r := draw(a, hammer); r.Code != "0005" || metric(t, a, `bigmarket_guard_rejected_total{reason="ip_blacklisted"}`) != before {
		t.Fatalf("after the lift: %+v; want refused by the bucket, not the blacklist", r)
	}
	if r := call(t, "GET", a+"/api/v1/raffle/dcc/update_config?key=ipRateLimitBurst&value=4", nil, admin); r.Code != "0000" {
		t.Fatalf("update_config: %+v", r)
	}
	if r := draw(a, hammer); !served(r) {
		t.Fatalf("after the lift with fresh buckets: %+v", r)
	}
}
