package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/app"
	"github.com/bigmarket/bigmarket/bench"
	"github.com/bigmarket/bigmarket/httpapi"
)

// TestBenchTokenMode runs "bigmarket bench draw -token" and "bigmarket bench grab -token"
// against a production server, which serves no plain user endpoint: every draw and grab
// goes to its _by_token twin with the user's token, signed with the JWT secret of the
// bench's config, and the runs pass the same checks as the plain ones. Without -token
// every draw is refused as an unknown endpoint, and tokens signed with another secret
// are refused as bad tokens, changing nothing.
func TestBenchTokenMode(t *testing.T) {
	const admin = "bench-token-admin-token-0123456789"
	cfg, base, _ := startEmbedded(t, func(c *app.Config) {
		c.LogLevel, c.Mode, c.JWTSecret, c.AdminToken = "warn", "production", e2eJWTSecret, admin
	})
	if cfg.PlainUserEndpoints != "off" {
		t.Fatalf("production server with plain user endpoints %q", cfg.PlainUserEndpoints)
	}
	// The bench's own config carries the server's secret, as deploy/cluster env's does.
	t.Setenv("BIGMARKET_JWT_SECRET", e2eJWTSecret)

	t.Run("draw", func(t *testing.T) {
		_, raw := runBenchCommand(t, cfg, "draw", "-token", "-url", base, "-admin-token", admin, "-users", "20",
			"-prefix", "tk1", "-c", "8", "-n", "100", "-warmup", "0s", "-provision-c", "4", "-q")
		var rep bench.DrawReport
		if err := json.Unmarshal(raw, &rep); err != nil {
			t.Fatalf("summary %s: %v", raw, err)
		}
		if !rep.ByToken || !strings.HasSuffix(rep.Summary.URL, "/api/v1/raffle/activity/draw_by_token") {
			t.Errorf("report by token %t, URL %q; want draw_by_token", rep.ByToken, rep.Summary.URL)
		}
		checkDrawReport(t, rep, 20, 100)
	})

	t.Run("draws per user", func(t *testing.T) {
		var out bytes.Buffer
		rep, err := bench.RunDraw(context.Background(), bench.DrawOptions{
			Base: base, AdminToken: admin, ActivityID: 100301, SKU: 9011, Users: 10, Prefix: "tk2",
			ProvisionConcurrency: 2, Concurrency: 4, DrawsPerUser: 3, Verify: true, AwaitRecords: true,
			Token: userTokens(cfg),
		}, benchTestStores(t, cfg), &out)
		if err != nil {
			t.Fatalf("draw bench: %v\n%s", err, out.String())
		}
		if rep.Summary.Requests != 30 || rep.Summary.Codes["0000"] != 30 || rep.Verification == nil || !rep.Verification.Pass {
			t.Errorf("30 draws by token: codes %v, verification %+v\n%s", rep.Summary.Codes, rep.Verification, out.String())
		}
	})

	t.Run("grab", func(t *testing.T) {
		_, raw := runBenchCommand(t, cfg, "grab", "-token", "-url", base, "-admin-token", admin, "-packets", "2",
			"-items", "50", "-amount", "100.00", "-prefix", "tk3", "-c", "8", "-n", "300", "-q")
		var rep bench.GrabReport
		if err := json.Unmarshal(raw, &rep); err != nil {
			t.Fatalf("summary %s: %v", raw, err)
		}
		if !rep.ByToken || !strings.HasSuffix(rep.Summary.URL, "/api/v1/redpacket/grab_by_token") {
			t.Errorf("report by token %t, URL %q; want grab_by_token", rep.ByToken, rep.Summary.URL)
		}
		checkGrabReport(t, rep, 100_00, 300)
	})

	// The plain endpoint does not exist in production, and a token of another secret is
	// refused: no draw is answered 0000 and no award record is written.
	for _, c := range []struct {
		name   string
		token  func(string) string
		status int
		code   string
	}{
		{"plain endpoint", nil, http.StatusNotFound, "0002"},
		{"another secret", func(u string) string {
			return httpapi.SignToken([]byte("another-secret-0123456789abcdef"), u, time.Now().Add(time.Hour))
		}, http.StatusUnauthorized, "0003"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			rep, err := bench.RunDraw(context.Background(), bench.DrawOptions{
				Base: base, AdminToken: admin, ActivityID: 100301, SKU: 9011, Users: 5, Prefix: "tk4" + c.code,
				ProvisionConcurrency: 1, Concurrency: 2, Requests: 20, Duration: time.Minute, Verify: true,
				Token: c.token,
			}, benchTestStores(t, cfg), &out)
			if err != nil {
				t.Fatalf("draw bench: %v\n%s", err, out.String())
			}
			s := rep.Summary
			if s.Requests != 20 || s.Codes[c.code] != 20 || s.StatusCounts[c.status] != 20 {
				t.Errorf("20 draws: codes %v, statuses %v; want all %s with HTTP %d", s.Codes, s.StatusCounts, c.code, c.status)
			}
			if v := rep.Verification; v == nil || !v.Pass || v.After.Records != v.Before.Records {
				t.Errorf("verification %+v; want a pass with no new record", v)
			}
		})
	}
}
