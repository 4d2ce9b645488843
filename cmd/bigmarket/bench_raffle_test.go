package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/bigmarket/bigmarket/app"
	"github.com/bigmarket/bigmarket/bench"
)

// TestBenchRaffleTakesTheConfigsToken runs "bigmarket bench" (random_raffle) against a
// production server, which serves the armory and random_raffle to the operator only, with
// the admin token in the config file rather than in BIGMARKET_ADMIN_TOKEN: the bench takes
// it from the loaded config, so every draw is served.
func TestBenchRaffleTakesTheConfigsToken(t *testing.T) {
	const token = "bench-raffle-admin-token-0123456789"
	_, base, _ := startEmbedded(t, func(c *app.Config) {
		c.LogLevel, c.Mode, c.JWTSecret, c.AdminToken = "warn", "production", e2eJWTSecret, token
	})
	dir := t.TempDir()
	conf := filepath.Join(dir, "bigmarket.yaml")
	if err := os.WriteFile(conf, []byte("admin_token: "+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"BIGMARKET_CONFIG", "BIGMARKET_ADMIN_TOKEN"} {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)  // an empty variable would override the file
	}
	file := filepath.Join(dir, "raffle.json")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"bench", "-config", conf, "-data", dir, "-url", base,
		"-c", "2", "-n", "10", "-warmup", "0s", "-q", "-out", file}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench random_raffle: %v\n%s", err, stderr.String())
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var sum bench.Summary
	if err := json.Unmarshal(raw, &sum); err != nil {
		t.Fatalf("summary %s: %v", raw, err)
	}
	if sum.Requests != 10 || sum.Codes["0000"] != 10 {
		t.Fatalf("random_raffle summary %s: want 10 draws served with the config's admin token", raw)
	}
}
