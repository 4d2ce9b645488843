package main

import (
	"net/http"
	"strings"
	"sync"
	"testing"
)

// opsURLs maps the API base URL of every serve a test started to the base URL of its
// operator listener (metrics, pprof, health). Each serve gets a free loopback port of its
// own for it, as for its API, so that parallel tests never collide on 9091.
var opsURLs sync.Map

// opsURL returns the base URL of the operator listener of the serve whose API is at base.
func opsURL(t *testing.T, base string) string {
	t.Helper()
	u, ok := opsURLs.Load(base)
	if !ok {
		t.Fatalf("no operator listener known for the serve at %s", base)
	}
	return u.(string)
}

// rawRequest sends method url with auth (none when empty), and for a preflight the headers
// of a cross-origin browser, and returns the response with its body: for the answers that
// are not an envelope (metrics, profiles, preflights).
func rawRequest(t *testing.T, method, url, auth string) (*http.Response, string) {
	t.Helper()
	headers := []string{"Authorization: " + auth}
	if method == http.MethodOptions {
		headers = append(headers, "Origin: https://elsewhere.example", "Access-Control-Request-Method: POST")
	}
	resp, body, err := do(method, url, nil, headers...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp, string(body)
}

// corsHeaders returns the Access-Control-* headers of h.
func corsHeaders(h http.Header) []string {
	var out []string
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			out = append(out, k)
		}
	}
	return out
}

// checkOperatorSurface checks what a live serve shows on its two listeners: the API port
// answers /metrics with the envelope's 404 and carries no CORS headers on the operator
// routes (admin, dcc, erp; their preflights included) while the user routes keep them;
// the operator listener serves /metrics, pprof and the health checks.
func checkOperatorSurface(t *testing.T, s stack) {
	for _, base := range s.bases {
		resp, body := rawRequest(t, "GET", base+"/metrics", "")
		if resp.StatusCode != 404 || !strings.Contains(body, `"code":"0002"`) {
			t.Errorf("API port GET /metrics: HTTP %d %.200q, want 404 with the 0002 envelope", resp.StatusCode, body)
		}
		if resp, _ := rawRequest(t, "GET", base+"/debug/pprof/", ""); resp.StatusCode != 404 {
			t.Errorf("API port /debug/pprof/: HTTP %d, want 404", resp.StatusCode)
		}
		admin := "Bearer " + s.adminToken
		for _, c := range []struct{ method, path, auth string }{
			{"POST", "/api/v1/admin/activity/recharge", ""},
			{"POST", "/api/v1/admin/activity/recharge", admin},
			{"OPTIONS", "/api/v1/admin/activity/recharge", ""},
			{"POST", "/api/v1/admin/nope", admin},
			{"GET", "/api/v1/raffle/dcc/query_config", admin},
			{"GET", "/api/v1/raffle/dcc/query_config", ""},
			{"OPTIONS", "/api/v1/raffle/dcc/update_config", ""},
			{"GET", "/api/v1/raffle/erp/query_raffle_activity_stage_list", admin},
			{"OPTIONS", "/api/v1/raffle/erp/query_user_raffle_order", ""},
		} {
			resp, body := rawRequest(t, c.method, base+c.path, c.auth)
			if h := corsHeaders(resp.Header); len(h) != 0 {
				t.Errorf("%s %s (token %v): HTTP %d with CORS headers %v; operator routes carry none", c.method, c.path, c.auth != "", resp.StatusCode, h)
			}
			if c.method != "OPTIONS" && !strings.Contains(body, `"code":`) {
				t.Errorf("%s %s: HTTP %d %.200q, not an envelope", c.method, c.path, resp.StatusCode, body)
			}
		}
		resp, _ = rawRequest(t, "OPTIONS", base+"/api/v1/raffle/activity/draw", "")
		if h := resp.Header; resp.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != "*" ||
			h.Get("Access-Control-Allow-Methods") != "GET, POST, OPTIONS" || h.Get("Access-Control-Allow-Headers") != "Content-Type, Authorization" {
			t.Errorf("user route preflight: HTTP %d %v", resp.StatusCode, h)
		}
		u := call(t, "POST", base+"/api/v1/raffle/strategy/query_raffle_award_list", `{"userId":"cors","activityId":100301}`)
		if u.Status != 200 || u.Code != "0000" || u.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("user route: %v %v, want 0000 with Access-Control-Allow-Origin *", u, u.Header)
		}

		ops := opsURL(t, base)
		for _, path := range []string{"/healthz", "/readyz"} {
			if resp, body := rawRequest(t, "GET", base+path, ""); resp.StatusCode != 200 {
				t.Errorf("API port %s: HTTP %d %s", path, resp.StatusCode, body)
			}
			if resp, body := rawRequest(t, "GET", ops+path, ""); resp.StatusCode != 200 || !strings.Contains(body, `"code":"0000"`) {
				t.Errorf("operator listener %s: HTTP %d %s", path, resp.StatusCode, body)
			}
		}
		resp, body = rawRequest(t, "GET", ops+"/metrics", "")
		if resp.StatusCode != 200 || !strings.Contains(body, "bigmarket_http_requests_total") || !strings.Contains(body, "go_goroutines") {
			t.Errorf("operator listener /metrics: HTTP %d, %d bytes without the API's and Go's series", resp.StatusCode, len(body))
		}
		if h := corsHeaders(resp.Header); len(h) != 0 {
			t.Errorf("operator listener /metrics carries CORS headers %v", h)
		}
		if resp, body := rawRequest(t, "GET", ops+"/debug/pprof/", ""); resp.StatusCode != 200 || !strings.Contains(body, "goroutine") {
			t.Errorf("operator listener /debug/pprof/: HTTP %d %.200q", resp.StatusCode, body)
		}
		if resp, _ := rawRequest(t, "GET", ops+"/debug/pprof/goroutine?debug=1", ""); resp.StatusCode != 200 {
			t.Errorf("operator listener goroutine profile: HTTP %d", resp.StatusCode)
		}
	}
}
