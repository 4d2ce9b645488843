package app

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestConfigPrecedence(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "bigmarket.yaml")
	yaml := "addr: \":9000\"\nshards: 4x8\nredis_addrs: [\"a:1\", \"b:2\"]\ntimezone: UTC\nstock_sync_interval: 250ms\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// Defaults only.
	cfg, err := LoadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != ":8091" || cfg.DataDir != "./data" || cfg.Shards != "2x4" || cfg.Timezone != "Asia/Shanghai" || cfg.Mode != ModeDemo {
		t.Errorf("defaults: %+v", cfg)
	}
	// The file over defaults, named by BIGMARKET_CONFIG; the environment over the file.
	cfg, err = LoadConfig("", []string{
		"BIGMARKET_CONFIG=" + file,
		"BIGMARKET_SHARDS=2x2",
		"BIGMARKET_NATS_URLS=nats://x:4222, nats://y:4222",
		"BIGMARKET_TEST_MYSQL_DSN=ignored",
		"PATH=/bin",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != ":9000" || cfg.Shards != "2x2" || cfg.DBCount != 2 || cfg.TBCount != 2 || cfg.Timezone != "UTC" ||
		cfg.StockSyncInterval != 250*time.Millisecond || cfg.DataDir != "./data" {
		t.Errorf("layered config: %+v", cfg)
	}
	if strings.Join(cfg.RedisAddrs, "|") != "a:1|b:2" || strings.Join(cfg.NATSURLs, "|") != "nats://x:4222|nats://y:4222" {
		t.Errorf("lists: redis %q nats %q", cfg.RedisAddrs, cfg.NATSURLs)
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.yaml"), nil); err == nil {
		t.Error("a missing config file was accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		env  []string
		want string
	}{
		"bad mode":               {[]string{"BIGMARKET_MODE=chaos"}, "BIGMARKET_MODE"},
		"shards not power of 2":  {[]string{"BIGMARKET_SHARDS=3x4"}, "BIGMARKET_SHARDS"},
		"shards malformed":       {[]string{"BIGMARKET_SHARDS=eight"}, "BIGMARKET_SHARDS"},
		"dsn count mismatch":     {[]string{"BIGMARKET_CONFIG_DSN=root@tcp(h)/c", "BIGMARKET_USER_DSNS=root@tcp(h)/u1"}, "BIGMARKET_USER_DSNS"},
		"user dsns alone":        {[]string{"BIGMARKET_USER_DSNS=a,b"}, "without BIGMARKET_CONFIG_DSN"},
		"bad timezone":           {[]string{"BIGMARKET_TIMEZONE=Mars/Olympus"}, "BIGMARKET_TIMEZONE"},
		"plain endpoints":        {[]string{"BIGMARKET_PLAIN_USER_ENDPOINTS=maybe"}, "BIGMARKET_PLAIN_USER_ENDPOINTS"},
		"production secrets":     {[]string{"BIGMARKET_MODE=production"}, "BIGMARKET_ADMIN_TOKEN"},
		"commit timeout":         {[]string{"BIGMARKET_DRAW_COMMIT_TIMEOUT=10ms"}, "draw commit timeout"},
		"embed origin path":      {[]string{"BIGMARKET_WEB_EMBED_ORIGINS=https://a.example/x"}, "BIGMARKET_WEB_EMBED_ORIGINS"},
		"embed origin csp":       {[]string{"BIGMARKET_WEB_EMBED_ORIGINS=https://a.example;script-src *"}, "BIGMARKET_WEB_EMBED_ORIGINS"},
		"embed origin wildcard":  {[]string{"BIGMARKET_WEB_EMBED_ORIGINS=*"}, "BIGMARKET_WEB_EMBED_ORIGINS"},
		"trusted proxy name":     {[]string{"BIGMARKET_TRUSTED_PROXIES=127.0.0.1,nginx.internal"}, `BIGMARKET_TRUSTED_PROXIES (IPs and CIDRs, comma separated): "nginx.internal"`},
		"trusted proxy cidr":     {[]string{"BIGMARKET_TRUSTED_PROXIES=10.1.0.0/8"}, "did you mean 10.0.0.0/8"},
		"ip rate negative":       {[]string{"BIGMARKET_IP_RATE_LIMIT_PER_SECOND=-1"}, "ipRateLimitPerSecond"},
		"ip burst negative":      {[]string{"BIGMARKET_IP_RATE_LIMIT_BURST=-2"}, "ipRateLimitBurst"},
		"wait replicas negative": {[]string{"BIGMARKET_REDIS_ADDRS=r:6379", "BIGMARKET_REDIS_WAIT_REPLICAS=-1"}, "BIGMARKET_REDIS_WAIT_REPLICAS"},
		"wait embedded":          {[]string{"BIGMARKET_REDIS_WAIT_REPLICAS=1"}, "needs an external Redis"},
		"wait timeout":           {[]string{"BIGMARKET_REDIS_ADDRS=r:6379", "BIGMARKET_REDIS_WAIT_REPLICAS=1", "BIGMARKET_REDIS_WAIT_TIMEOUT=2s"}, "BIGMARKET_REDIS_WAIT_TIMEOUT"},
		"production demo jwt":    {[]string{"BIGMARKET_MODE=production", "BIGMARKET_ADMIN_TOKEN=0123456789abcdef", "BIGMARKET_JWT_SECRET=" + demoJWTSecret}, "BIGMARKET_JWT_SECRET"},
	} {
		cfg, err := LoadConfig("", tc.env)
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one naming %s", name, err, tc.want)
		}
	}
	cfg, _ := LoadConfig("", []string{"BIGMARKET_MODE=production", "BIGMARKET_ADMIN_TOKEN=0123456789abcdef", "BIGMARKET_JWT_SECRET=fedcba9876543210x"})
	if err := cfg.Validate(); err != nil {
		t.Fatalf("valid production config refused: %v", err)
	}
	if cfg.PlainUserEndpoints != "off" || cfg.LogFormat != "json" {
		t.Errorf("production defaults: plain %q log %q", cfg.PlainUserEndpoints, cfg.LogFormat)
	}
	embed, _ := LoadConfig("", []string{"BIGMARKET_WEB_EMBED_ORIGINS=https://a.example, http://b.example:8080"})
	if err := embed.Validate(); err != nil || strings.Join(embed.WebEmbedOrigins, "|") != "https://a.example|http://b.example:8080" {
		t.Errorf("embed origins %q: %v", embed.WebEmbedOrigins, err)
	}
	ips, _ := LoadConfig("", []string{"BIGMARKET_TRUSTED_PROXIES=127.0.0.1, 10.0.0.0/8,::1", "BIGMARKET_IP_RATE_LIMIT_PER_SECOND=20", "BIGMARKET_IP_RATE_LIMIT_BURST=40"})
	if err := ips.Validate(); err != nil || ips.proxies.String() != "127.0.0.1/32,10.0.0.0/8,::1/128" ||
		ips.guard.IPPermitsPerSecond != 20 || ips.guard.IPBurst != 40 {
		t.Errorf("trusted proxies %s, ip limit %v/%d: %v", ips.proxies, ips.guard.IPPermitsPerSecond, ips.guard.IPBurst, err)
	}
	demo, _ := LoadConfig("", nil)
	if err := demo.Validate(); err != nil || demo.proxies.String() != "" || demo.guard.IPLimits() {
		t.Errorf("defaults: proxies %q, ip limits on %t: %v", demo.proxies, demo.guard.IPLimits(), err)
	}
	if demo.RedisWaitReplicas != 0 || demo.RedisWaitTimeout != 50*time.Millisecond {
		t.Errorf("redis wait by default: %d replicas, %s; want off, 50ms", demo.RedisWaitReplicas, demo.RedisWaitTimeout)
	}
	if c, _ := LoadConfig("", []string{"BIGMARKET_REDIS_ADDRS=r:6379", "BIGMARKET_REDIS_WAIT_REPLICAS=1", "BIGMARKET_REDIS_WAIT_TIMEOUT=200ms"}); c.Validate() != nil ||
		c.RedisWaitReplicas != 1 || c.RedisWaitTimeout != 200*time.Millisecond {
		t.Errorf("BIGMARKET_REDIS_WAIT_REPLICAS=1, _TIMEOUT=200ms: %d, %s, %v", c.RedisWaitReplicas, c.RedisWaitTimeout, c.Validate())
	}
	if demo.DrawCommitTimeout != 5*time.Second {
		t.Errorf("draw commit timeout %s, want 5s by default", demo.DrawCommitTimeout)
	}
	if c, _ := LoadConfig("", []string{"BIGMARKET_DRAW_COMMIT_TIMEOUT=8s"}); c.DrawCommitTimeout != 8*time.Second {
		t.Errorf("BIGMARKET_DRAW_COMMIT_TIMEOUT=8s: %s", c.DrawCommitTimeout)
	}
	if err := demo.Validate(); err != nil || len(demo.AdminToken) != 32 || !demo.generatedAdminToken || demo.PlainUserEndpoints != "on" {
		t.Errorf("demo: token %q plain %q err %v", demo.AdminToken, demo.PlainUserEndpoints, err)
	}
	set, _ := LoadConfig("", []string{"BIGMARKET_ADMIN_TOKEN=chosen-token"})
	if err := set.Validate(); err != nil || set.AdminToken != "chosen-token" || set.generatedAdminToken {
		t.Errorf("demo with a configured token: %q generated=%v err %v", set.AdminToken, set.generatedAdminToken, err)
	}
}

func TestConfigPrintMasksSecrets(t *testing.T) {
	t.Parallel()
	cfg, _ := LoadConfig("", []string{
		"BIGMARKET_ADMIN_TOKEN=admin-secret-123456", "BIGMARKET_JWT_SECRET=jwt-secret-123456",
		"BIGMARKET_CONFIG_DSN=bm:dbpass@tcp(db:3306)/big_market",
		"BIGMARKET_USER_DSNS=bm:dbpass@tcp(db:3306)/u1,bm:dbpass@tcp(db:3306)/u2",
		"BIGMARKET_REDIS_PASSWORD=redispass", "BIGMARKET_APP_TOKENS=app:apptoken", "BIGMARKET_WEBHOOK_SECRET=hooksecret",
	})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cfg.Print(&out)
	for _, secret := range []string{"admin-secret", "jwt-secret", "dbpass", "redispass", "apptoken", "hooksecret"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("printed config shows %q:\n%s", secret, out.String())
		}
	}
	if !strings.Contains(out.String(), "bm:****@tcp(db:3306)/big_market") {
		t.Errorf("DSN not shown masked:\n%s", out.String())
	}
}

// TestConfigOpsAddr checks the operator listener's setting: loopback 9091 by default, set
// or turned off (empty) by BIGMARKET_OPS_ADDR or the file, validated, and pprof_addr,
// which it replaced, refused with a message that names it.
func TestConfigOpsAddr(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "bigmarket.yaml")
	if err := os.WriteFile(file, []byte("ops_addr: \"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		env  []string
		want string
	}{
		{"", nil, "127.0.0.1:9091"},
		{"", []string{"BIGMARKET_OPS_ADDR=10.0.0.5:9100"}, "10.0.0.5:9100"},
		{"", []string{"BIGMARKET_OPS_ADDR=127.0.0.1:0"}, "127.0.0.1:0"},
		{"", []string{"BIGMARKET_OPS_ADDR="}, ""},
		{file, nil, ""},
	} {
		cfg, err := LoadConfig(tc.path, tc.env)
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil || cfg.OpsAddr != tc.want {
			t.Errorf("%s %v: ops_addr %q err %v, want %q", tc.path, tc.env, cfg.OpsAddr, err, tc.want)
		}
		var out bytes.Buffer
		cfg.Print(&out)
		if shown := or(tc.want, "(off)"); !regexp.MustCompile(`(?m)^  ops_addr +` + regexp.QuoteMeta(shown) + `$`).MatchString(out.String()) {
			t.Errorf("%v: printed config does not show ops_addr %s:\n%s", tc.env, shown, out.String())
		}
	}
	for env, want := range map[string]string{
		"BIGMARKET_OPS_ADDR=9091":             "BIGMARKET_OPS_ADDR",
		"BIGMARKET_OPS_ADDR=localhost":        "BIGMARKET_OPS_ADDR",
		"BIGMARKET_PPROF_ADDR=127.0.0.1:6060": "BIGMARKET_OPS_ADDR",
	} {
		cfg, err := LoadConfig("", []string{env})
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want one naming %s", env, err, want)
		}
	}
}

// TestConfigDumpShowsEveryKey: the dump at start names every key Config reads (its koanf
// tags), each once, and shows no secret: each field tagged dump:"secret" is set to a value
// of its own, and DSNs and URLs carry passwords, none of which may appear.
func TestConfigDumpShowsEveryKey(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig("", []string{
		"BIGMARKET_CONFIG_DSN=bm:dsnpass-c@tcp(db:3306)/big_market",
		"BIGMARKET_USER_DSNS=bm:dsnpass-u1@tcp(db:3306)/u1,bm:dsnpass-u2@tcp(db:3306)/u2",
		"BIGMARKET_NATS_URLS=nats://bm:natspass@n1:4222",
		"BIGMARKET_WEBHOOK_URL=https://hook:hookpass@example.com/award",
	})
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{"dsnpass-c", "dsnpass-u1", "dsnpass-u2", "natspass", "hookpass"}
	v := reflect.ValueOf(&cfg).Elem()
	var keys []string
	for i := range v.NumField() {
		f := v.Type().Field(i)
		key := f.Tag.Get("koanf")
		if key == "" || key == "-" {
			continue
		}
		keys = append(keys, key)
		if f.Tag.Get("dump") == "secret" {
			secret := "secret-of-" + key
			v.Field(i).SetString(secret)
			secrets = append(secrets, secret)
		}
	}
	if len(keys) < 60 {
		t.Fatalf("found %d koanf keys in Config, want all of them", len(keys))
	}
	var out bytes.Buffer
	cfg.Print(&out)
	dump := out.String()
	for _, key := range keys {
		if n := len(regexp.MustCompile(`(?m)^  `+key+`( |$)`).FindAllString(dump, -1)); n != 1 {
			t.Errorf("key %s is shown %d times in the dump, want once", key, n)
		}
	}
	for _, secret := range secrets {
		if strings.Contains(dump, secret) {
			t.Errorf("the dump shows the secret %q", secret)
		}
	}
	for _, want := range []string{"bm:****@tcp(db:3306)/u2", "@n1:4222", "@example.com/award"} {
		if !strings.Contains(dump, want) {
			t.Errorf("the dump does not show %q", want)
		}
	}
	if t.Failed() {
		t.Logf("dump:\n%s", dump)
	}
}

// TestConfigDrawPathIsGone: the flash draw is the only draw. draw_path unset or flash
// (the one draw there is, which deployments set while it was optional) is valid; sql,
// which asked for the removed synchronous SQL draw, and anything else are refused with a
// message that says the SQL draw was removed, rather than served by another draw than
// the one asked for.
func TestConfigDrawPathIsGone(t *testing.T) {
	t.Parallel()
	for _, env := range [][]string{nil, {"BIGMARKET_DRAW_PATH=flash"}} {
		cfg, err := LoadConfig("", env)
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			t.Errorf("%v: %v, want valid", env, err)
		}
	}
	for env, want := range map[string]string{
		"BIGMARKET_DRAW_PATH=sql":  "the synchronous SQL draw was removed",
		"BIGMARKET_DRAW_PATH=fast": "the flash draw is the only draw",
	} {
		cfg, err := LoadConfig("", []string{env})
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "BIGMARKET_DRAW_PATH") {
			t.Errorf("%s: err %v, want one naming BIGMARKET_DRAW_PATH and saying %q", env, err, want)
		}
	}
}
