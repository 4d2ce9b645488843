package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/app"
)

func TestConfigFlagsOverride(t *testing.T) {
	t.Setenv("BIGMARKET_ADDR", ":7000")
	t.Setenv("BIGMARKET_DATA_DIR", "/env/data")
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	load := commonFlags(fs)
	if err := fs.Parse([]string{"-addr", "127.0.0.1:7001"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:7001" || cfg.DataDir != "/env/data" {
		t.Errorf("flags over env: addr %q data %q", cfg.Addr, cfg.DataDir)
	}
}

// TestTokenCommand signs with the configured secret an HS256 token for the user that
// expires after -ttl, and refuses a missing user.
func TestTokenCommand(t *testing.T) {
	const secret = "token-command-secret-0123456789"
	t.Setenv("BIGMARKET_JWT_SECRET", secret)
	t.Setenv("BIGMARKET_CONFIG", "")
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"token", "-user", "xiaofuge", "-ttl", "10m"}, &out, &errOut); err != nil {
		t.Fatalf("token: %v\n%s", err, errOut.String())
	}
	parts := strings.Split(strings.TrimSpace(out.String()), ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWT", out.String())
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if got := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)); got != parts[2] {
		t.Fatal("token not signed with the configured secret")
	}
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct {
		OpenID string `json:"openId"`
		Exp    int64  `json:"exp"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil || claims.OpenID != "xiaofuge" {
		t.Fatalf("claims %s: %v", raw, err)
	}
	if left := time.Until(time.Unix(claims.Exp, 0)); left < 9*time.Minute || left > 11*time.Minute {
		t.Fatalf("token expires in %s, want about 10m", left)
	}
	if err := run(context.Background(), []string{"token"}, &out, &errOut); err == nil {
		t.Fatal("a token without -user was printed")
	}
}

// TestConfigDumpOnlyForServe: the dump says what an unset draw_path means (the flash draw,
// the only one), and migrate and verify do not print it: migrate says in one line what it
// did, verify prints its report alone.
func TestConfigDumpOnlyForServe(t *testing.T) {
	for _, k := range []string{"BIGMARKET_CONFIG", "BIGMARKET_CONFIG_DSN", "BIGMARKET_USER_DSNS", "BIGMARKET_DATA_DIR", "BIGMARKET_ADMIN_TOKEN", "BIGMARKET_DRAW_PATH"} {
		t.Setenv(k, "")
	}
	t.Setenv("BIGMARKET_MODE", app.ModeDemo)
	cfg, _ := app.LoadConfig("", nil)
	cfg.DataDir = t.TempDir()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var dump bytes.Buffer
	cfg.Print(&dump)
	if !regexp.MustCompile(`(?m)^  draw_path +\(flash: the only draw\)$`).MatchString(dump.String()) {
		t.Errorf("config dump does not say an unset draw_path is the flash draw:\n%s", dump.String())
	}

	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"migrate", "-data", dir, "-seed"}, &stdout, &stderr); err != nil {
		t.Fatalf("migrate: %v\n%s", err, stderr.String())
	}
	if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "migrated ") {
		t.Errorf("migrate printed %d lines, want its one-line summary:\n%s", len(lines), stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	if err := run(context.Background(), []string{"verify", "-data", dir}, &stdout, &stderr); err != nil {
		t.Fatalf("verify: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	if strings.Contains(stderr.String(), "bigmarket config:") || !strings.Contains(stdout.String(), "verify: clean") {
		t.Errorf("verify: stdout\n%s\nstderr (want no config dump)\n%s", stdout.String(), stderr.String())
	}
}
