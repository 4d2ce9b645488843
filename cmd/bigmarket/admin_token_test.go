package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bigmarket/bigmarket/app"
)

// TestDemoAdminTokenSurvivesRestart starts the demo twice on one data directory: the
// admin token it made up the first time is kept there (mode 0600), taken again by the
// second start, and printed by `bigmarket admin-token`; production refuses to print one.
// The README's degrade switch outlives the restart too (NATS KV), and its POST
// dcc/reset_config turns it back off.
func TestDemoAdminTokenSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	var tokens []string
	for i := range 2 {
		t.Run(fmt.Sprint("start ", i+1), func(t *testing.T) {
			cfg, base, _ := startEmbedded(t, func(c *app.Config) { c.DataDir = dir })
			r := call(t, "GET", base+"/api/v1/raffle/dcc/query_config", nil, bearer(cfg.AdminToken))
			if r.Status != 200 || r.Code != "0000" {
				t.Errorf("admin call with the demo token: %+v", r)
			}
			tokens = append(tokens, cfg.AdminToken)
			auth, dcc := "Bearer "+cfg.AdminToken, base+"/api/v1/raffle/dcc/"
			if i == 0 {
				if r := call(t, "GET", dcc+"update_config?key=degradeSwitch&value=open", nil, "Authorization: "+auth); r.Code != "0000" {
					t.Fatalf("update_config: %+v", r)
				}
				return
			}
			if r := call(t, "GET", dcc+"query_config", nil, "Authorization: "+auth); !strings.Contains(string(r.Data), `"degradeSwitch":"open"`) {
				t.Errorf("degradeSwitch after a restart: %s, want open still", r.Data)
			}
			if r := call(t, "POST", dcc+"reset_config?key=degradeSwitch", nil, "Authorization: "+auth); r.Code != "0000" {
				t.Errorf("POST reset_config: %+v", r)
			}
			if r := call(t, "GET", dcc+"query_config", nil, "Authorization: "+auth); !strings.Contains(string(r.Data), `"degradeSwitch":"close"`) {
				t.Errorf("degradeSwitch after reset_config: %s, want close", r.Data)
			}
		})
	}
	if len(tokens) != 2 || len(tokens[0]) < 16 || tokens[0] != tokens[1] {
		t.Fatalf("demo admin tokens of two starts on one data directory: %q, want one kept", tokens)
	}
	st, err := os.Stat(filepath.Join(dir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("admin-token file mode %v, want 0600", st.Mode().Perm())
	}

	t.Setenv("BIGMARKET_ADMIN_TOKEN", "")
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"admin-token", "-data", dir}, &out, &errOut); err != nil {
		t.Fatalf("admin-token: %v\n%s", err, errOut.String())
	}
	if got := strings.TrimSpace(out.String()); got != tokens[0] {
		t.Errorf("admin-token printed %q, want the server's %q", got, tokens[0])
	}
	if errOut.Len() != 0 {
		t.Errorf("admin-token wrote to stderr: %q", errOut.String())
	}

	t.Setenv("BIGMARKET_MODE", "production")
	t.Setenv("BIGMARKET_ADMIN_TOKEN", "0123456789abcdef-prod")
	t.Setenv("BIGMARKET_JWT_SECRET", "fedcba9876543210-prod")
	out.Reset()
	err = run(context.Background(), []string{"admin-token", "-data", dir}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "production") || out.Len() != 0 {
		t.Errorf("admin-token in production: err %v, printed %q; want a refusal naming production", err, out.String())
	}
}
