// Package app is the bigmarket process: its configuration (Config, read from defaults,
// a YAML file and BIGMARKET_* variables), its backends, and the App that serve runs:
// built from them in dependency order, started by Run and stopped by Close.
package app

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/httpapi"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/redis"
)

// Config is everything the binary can be told, loaded once here and passed down as values:
// defaults, then the optional YAML file, then BIGMARKET_* environment variables, then flags.
type Config struct {
	Addr         string   `koanf:"addr"`
	DataDir      string   `koanf:"data_dir"`
	ConfigFile   string   `koanf:"config"`
	ConfigDSN    string   `koanf:"config_dsn" dump:"dsn"`
	UserDSNs     []string `koanf:"user_dsns" dump:"dsn"`
	RedisAddrs   []string `koanf:"redis_addrs"`
	RedisCluster bool     `koanf:"redis_cluster"`
	RedisPass    string   `koanf:"redis_password" dump:"secret"`
	// RedisPrefix starts every key bigmarket writes, so deployments (and tests) can share
	// one Redis.
	RedisPrefix string `koanf:"redis_prefix"`
	// RedisTimeout bounds each read and write of a Redis reply and the wait for a pooled
	// connection (BIGMARKET_REDIS_TIMEOUT; unset: 1s to read or write and 2s for a
	// connection, or 10s for the embedded server, which shares this process's CPU, so that
	// a crowd under load is slowness rather than outcomes made unknown). A command that
	// times out is never sent again (its script may have run); requests are bounded by
	// their own budgets besides.
	RedisTimeout time.Duration `koanf:"redis_timeout"`
	// RedisFence fences the hot scripts by replication id (BIGMARKET_REDIS_FENCE, default
	// true), so that a Redis failover or restart that lost writes is rebuilt from the
	// durable records instead of granting twice; false runs without, on a Redis-compatible
	// server that cannot read INFO replication inside a script. The embedded server has
	// no replication and is never fenced.
	RedisFence bool `koanf:"redis_fence"`
	// RedisWaitReplicas is how many replicas must acknowledge each hot write — a red
	// packet grab, an award or SKU stock deduction, a rain tap, a flash draw's quota take —
	// before its result is published or answered (BIGMARKET_REDIS_WAIT_REPLICAS, default
	// 0: off). Each such script is sent
	// with WAIT behind it on the same connection; a write fewer replicas acknowledged within
	// RedisWaitTimeout answers retry, so that a master cut off from the cluster (split
	// brain) grants nothing the promoted replica lacks. A master with fewer healthy
	// replicas refuses those writes. Needs an external Redis.
	RedisWaitReplicas int `koanf:"redis_wait_replicas"`
	// RedisWaitTimeout bounds each hot write's wait for its replicas
	// (BIGMARKET_REDIS_WAIT_TIMEOUT, default 50ms; 1ms to under the Redis read timeout).
	RedisWaitTimeout time.Duration `koanf:"redis_wait_timeout"`
	Shards           string        `koanf:"shards"`
	NATSURLs         []string      `koanf:"nats_urls" dump:"url"`
	// NATSPrefix starts bigmarket's stream, subject and consumer names.
	NATSPrefix          string        `koanf:"nats_prefix"`
	NATSReplicas        int           `koanf:"nats_replicas"`
	AdminToken          string        `koanf:"admin_token" dump:"secret"`
	JWTSecret           string        `koanf:"jwt_secret" dump:"secret"`
	Timezone            string        `koanf:"timezone"`
	Mode                string        `koanf:"mode"`
	PlainUserEndpoints  string        `koanf:"plain_user_endpoints"`
	AppTokens           string        `koanf:"app_tokens" dump:"secret"`
	WebhookURL          string        `koanf:"webhook_url" dump:"url"`
	WebhookSecret       string        `koanf:"webhook_secret" dump:"secret"`
	LogFormat           string        `koanf:"log_format"`
	LogLevel            string        `koanf:"log_level"`
	StockSyncInterval   time.Duration `koanf:"stock_sync_interval"`
	StockReconcileEvery time.Duration `koanf:"stock_reconcile_every"`
	// StrategyRefreshEvery is how often each node compares the strategies it assembled
	// with their stored config and re-assembles the changed ones: the bound for a node
	// that missed an armory announcement.
	StrategyRefreshEvery time.Duration `koanf:"strategy_refresh_every"`
	DefaultStockTTL      time.Duration `koanf:"default_stock_ttl"`
	// RecoveryGrace is how long a rebuild of lost stock waits for draws in flight.
	RecoveryGrace     time.Duration `koanf:"recovery_grace"`
	ImplicitLuckAward string        `koanf:"implicit_luck_award"`
	ShutdownTimeout   time.Duration `koanf:"shutdown_timeout"`
	MaxBodyBytes      int64         `koanf:"max_body_bytes"`
	// ImplicitLuckAwardByStrategy overrides implicit_luck_award per strategy,
	// "strategyId=value" pairs separated by semicolons; the value "none" gives that
	// strategy's tree-less awards no fallback (draws answer ERR_BIZ_010 once they are gone).
	ImplicitLuckAwardByStrategy string `koanf:"implicit_luck_award_by_strategy"`
	// DrawPathSecret is the HMAC key of the signed draw paths, the same on every node;
	// empty derives one from jwt_secret.
	DrawPathSecret string `koanf:"draw_path_secret" dump:"secret"`
	// MySQLMaxConns caps each MySQL pool (one per database); a process opens 1 + user DBs.
	MySQLMaxConns int `koanf:"mysql_max_conns"`
	// OutboxGrace is how long a task may wait in create before the compensation job
	// re-sends it; OutboxEvery is how often that job runs.
	OutboxGrace time.Duration `koanf:"outbox_grace"`
	OutboxEvery time.Duration `koanf:"outbox_every"`
	// EventMaxDeliver is how many deliveries a failing event gets before it is
	// dead-lettered; EventBackoff the delays between them (comma list, last repeats).
	EventMaxDeliver int    `koanf:"event_max_deliver"`
	EventBackoff    string `koanf:"event_backoff"`
	// EventAckWait is how long the broker waits for a consumer's ack (or a handler's
	// in-progress mark, sent every third of it) before it redelivers a message to another
	// node: a consumer that died mid-batch, or a delivery lost with a NATS server.
	EventAckWait time.Duration `koanf:"event_ack_wait"`
	// The front line: startup values of the dynamic settings (dcc/update_config changes
	// them on every node at run time), the endpoints behind it and its breaker.
	DegradeSwitch      string        `koanf:"degrade_switch"`
	RateLimiterSwitch  string        `koanf:"rate_limiter_switch"`
	RateLimitPerSecond float64       `koanf:"rate_limit_per_second"`
	RateLimitBurst     int           `koanf:"rate_limit_burst"`
	BlacklistCount     int           `koanf:"blacklist_count"`
	BlacklistDuration  time.Duration `koanf:"blacklist_duration"`
	DrawTimeout        time.Duration `koanf:"draw_timeout"`
	// IPRateLimitPerSecond and IPRateLimitBurst start the per-IP limit of the spending
	// endpoints (dynamic: ipRateLimitPerSecond, ipRateLimitBurst); 0 is off.
	IPRateLimitPerSecond float64 `koanf:"ip_rate_limit_per_second"`
	IPRateLimitBurst     int     `koanf:"ip_rate_limit_burst"`
	// TrustedProxies are the IPs and CIDRs of the proxies in front (nginx) whose
	// X-Forwarded-For names the client; empty: none, the connection's peer is the client.
	TrustedProxies []string `koanf:"trusted_proxies"`
	// DrawCommitTimeout bounds how long a guarded call past its commit point (a draw
	// that has taken stock) is waited for before it is answered 0009, outcome unknown.
	// A draw's claim on its raffle order lasts what is left of its draw timeout plus
	// this plus a second (raffle.claimTTL), so it never expires under a draw still
	// waited for; a crashed draw's order is reusable after that long.
	DrawCommitTimeout time.Duration `koanf:"draw_commit_timeout"`
	GuardedEndpoints  []string      `koanf:"guarded_endpoints"`
	// LimiterMaxUsers bounds the per-user limiter state each node keeps in memory.
	LimiterMaxUsers     int           `koanf:"limiter_max_users"`
	BreakerMinRequests  int           `koanf:"breaker_min_requests"`
	BreakerFailureRatio float64       `koanf:"breaker_failure_ratio"`
	BreakerWindow       time.Duration `koanf:"breaker_window"`
	BreakerOpenFor      time.Duration `koanf:"breaker_open_for"`
	BreakerProbes       int           `koanf:"breaker_probes"`
	// Red packets: how often expired packets are refunded, and what one send may ask for.
	RedPacketSweepEvery time.Duration `koanf:"red_packet_sweep_every"`
	RedPacketMaxCount   int           `koanf:"red_packet_max_count"`
	RedPacketMaxAmount  string        `koanf:"red_packet_max_amount"`
	// RedPacketPublishTimeout is how long a grab waits for the broker to store its event;
	// RedPacketRecoverGrace how long the rebuild of a packet Redis lost waits for the grabs
	// in flight, so at least a second more.
	RedPacketPublishTimeout time.Duration `koanf:"red_packet_publish_timeout"`
	RedPacketRecoverGrace   time.Duration `koanf:"red_packet_recover_grace"`
	// NodeID names this node to the others (the rain quota SeqNo each node has in force);
	// empty means host:port of addr, the host being the machine's name.
	NodeID string `koanf:"node_id"`
	// WebEmbedOrigins are the origins (scheme://host[:port]) allowed to frame the pages,
	// the CSP frame-ancestors besides the pages' own origin; empty: only that.
	WebEmbedOrigins []string `koanf:"web_embed_origins"`
	// Rain: how long a winning tap waits for the broker to store its win; how long the
	// rebuild of a session Redis lost waits for the taps in flight (at least a second
	// more); how often sessions past their end are closed and their ledger written; how
	// often the live sessions' quota versions are re-read from SQL (the bound on how long a
	// node can miss a version whose broadcast it lost).
	RainPublishTimeout time.Duration `koanf:"rain_publish_timeout"`
	RainRecoverGrace   time.Duration `koanf:"rain_recover_grace"`
	RainSweepEvery     time.Duration `koanf:"rain_sweep_every"`
	RainRefreshEvery   time.Duration `koanf:"rain_refresh_every"`
	// DrawPath is the setting that chose between the synchronous SQL draw and the flash
	// draw; the flash draw is now the only one (issue 14). validate refuses sql, naming
	// the removal, rather than let an operator who asked for the SQL draw silently get
	// another one; flash, the one draw there is, is accepted for the deployments that set it.
	DrawPath string `koanf:"draw_path"`
	// DrawPublishTimeout is how long a flash draw waits for the broker to store its
	// event before it answers 0009 (its next draw answers the same outcome).
	DrawPublishTimeout time.Duration `koanf:"draw_publish_timeout"`
	// DrawRecoverGrace is how long a restore of the hot quotas after a Redis loss waits
	// for the draws in flight before it waits for the draw writer: at least
	// draw_publish_timeout + 4s (a draw's lease, publish timeout + 3s, and a second).
	DrawRecoverGrace time.Duration `koanf:"draw_recover_grace"`
	// DrawSweepEvery is how often pending flash draws nobody came back for are published.
	DrawSweepEvery time.Duration `koanf:"draw_sweep_every"`
	// OpsAddr is the operator listener: /metrics, /debug/pprof/ and the health checks,
	// away from the public API port (keep it on loopback or an internal network); empty
	// turns it off.
	OpsAddr string `koanf:"ops_addr"`
	// PprofAddr is the setting OpsAddr replaced; validate refuses it, naming the new one,
	// rather than let a profiler its operator asked for silently not start.
	PprofAddr string `koanf:"pprof_addr"`

	// Derived by validate.
	DBCount   int `koanf:"-"`
	TBCount   int `koanf:"-"`
	location  *time.Location
	appTokens map[string]string
	guard     guard.Settings
	proxies   guard.Proxies
	// implicitLuckAwardFor is ImplicitLuckAwardByStrategy parsed; drawPathSecret the key
	// of the signed draw paths.
	implicitLuckAwardFor map[int64]string
	drawPathSecret       []byte
	// redPacketMaxAmount is RedPacketMaxAmount parsed.
	redPacketMaxAmount money.Cents
	eventBackoff       []time.Duration
	// adminTokenPath is the file under the data directory that keeps the demo's own
	// admin token (when none is configured); generatedAdminToken is set while the token
	// was made up and not yet saved there (SaveAdminToken).
	adminTokenPath      string
	generatedAdminToken bool
	// faultSettings are the fault_* keys set (fault.go); faults the pauses they ask for,
	// which only a faultinject build accepts.
	faultSettings faultSettings
	faults        faultDelays
}

// Modes of BIGMARKET_MODE.
const (
	ModeDemo       = "demo"
	ModeProduction = "production"
)

// demoJWTSecret is the HS256 secret the demo uses when none is configured.
const demoJWTSecret = "bigmarket-demo-jwt-secret"

func DefaultConfig() Config {
	defaults, breaker := guard.DefaultSettings(), guard.DefaultBreaker()
	return Config{
		Addr:                    ":8091",
		OpsAddr:                 "127.0.0.1:9091",
		DataDir:                 "./data",
		RedisPrefix:             "bigmarket",
		RedisFence:              true,
		RedisWaitTimeout:        50 * time.Millisecond,
		Shards:                  "2x4",
		NATSPrefix:              "",
		NATSReplicas:            1,
		Timezone:                "Asia/Shanghai",
		Mode:                    ModeDemo,
		LogFormat:               "",
		LogLevel:                "info",
		StockSyncInterval:       100 * time.Millisecond,
		StockReconcileEvery:     30 * time.Second,
		StrategyRefreshEvery:    30 * time.Second,
		DefaultStockTTL:         30 * 24 * time.Hour,
		RecoveryGrace:           3 * time.Second,
		ImplicitLuckAward:       "101:1,100",
		ShutdownTimeout:         15 * time.Second,
		MaxBodyBytes:            64 << 10,
		MySQLMaxConns:           32,
		OutboxGrace:             10 * time.Second,
		OutboxEvery:             5 * time.Second,
		EventMaxDeliver:         20,
		EventBackoff:            "1s,2s,5s,10s,30s,60s",
		EventAckWait:            5 * time.Second,
		DegradeSwitch:           guard.Close,
		RateLimiterSwitch:       guard.Open,
		RateLimitPerSecond:      defaults.PermitsPerSecond,
		RateLimitBurst:          defaults.Burst,
		BlacklistCount:          defaults.BlacklistCount,
		BlacklistDuration:       defaults.BlacklistDuration,
		DrawTimeout:             defaults.DrawTimeout,
		DrawCommitTimeout:       guard.DefaultCommitTimeout,
		GuardedEndpoints:        httpapi.DefaultGuardedRoutes,
		LimiterMaxUsers:         100_000,
		BreakerMinRequests:      int(breaker.MinRequests),
		BreakerFailureRatio:     breaker.FailureRatio,
		BreakerWindow:           breaker.Window,
		BreakerOpenFor:          breaker.OpenFor,
		BreakerProbes:           int(breaker.Probes),
		RedPacketSweepEvery:     10 * time.Second,
		RedPacketMaxCount:       1000,
		RedPacketMaxAmount:      "20000.00",
		RedPacketPublishTimeout: 2 * time.Second,
		RedPacketRecoverGrace:   3 * time.Second,
		RainPublishTimeout:      2 * time.Second,
		RainRecoverGrace:        3 * time.Second,
		RainSweepEvery:          5 * time.Second,
		RainRefreshEvery:        5 * time.Second,
		DrawPublishTimeout:      2 * time.Second,
		DrawRecoverGrace:        6 * time.Second,
		DrawSweepEvery:          10 * time.Second,
	}
}

// listKeys are comma-separated lists in the environment.
var listKeys = map[string]bool{"user_dsns": true, "redis_addrs": true, "nats_urls": true, "guarded_endpoints": true, "web_embed_origins": true, "trusted_proxies": true}

// loadConfig builds the Config from defaults, the YAML file named by file (or by
// BIGMARKET_CONFIG), and the environment given as KEY=VALUE pairs.
func LoadConfig(path string, environ []string) (Config, error) {
	cfg := DefaultConfig()
	k := koanf.New(".")
	envProvider := env.Provider(".", env.Opt{
		Prefix:      "BIGMARKET_",
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(key, value string) (string, any) {
			key = strings.ToLower(strings.TrimPrefix(key, "BIGMARKET_"))
			if strings.HasPrefix(key, "test_") {
				return "", nil // test-only variables are not config
			}
			if listKeys[key] {
				var list []string
				for _, s := range strings.Split(value, ",") {
					if s = strings.TrimSpace(s); s != "" {
						list = append(list, s)
					}
				}
				return key, list
			}
			return key, value
		},
	})
	envOnly := koanf.New(".")
	if err := envOnly.Load(envProvider, nil); err != nil {
		return Config{}, fmt.Errorf("read environment: %w", err)
	}
	if path == "" {
		path = envOnly.String("config")
	}
	if path != "" {
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			return Config{}, fmt.Errorf("read config file %s: %w", path, err)
		}
	}
	if err := k.Merge(envOnly); err != nil {
		return Config{}, err
	}
	if err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		return Config{}, fmt.Errorf("decode config: %w", err)
	}
	cfg.ConfigFile = path
	for key, value := range k.All() {
		if strings.HasPrefix(key, faultPrefix) {
			if cfg.faultSettings == nil {
				cfg.faultSettings = faultSettings{}
			}
			cfg.faultSettings[key] = fmt.Sprint(value)
		}
	}
	return cfg, nil
}

// validate checks the config and fills the derived fields; in demo mode it generates the
// admin token when none is set.
func (c *Config) Validate() error {
	var errs []error
	switch c.Mode {
	case ModeDemo:
		if c.AdminToken == "" {
			if err := c.demoAdminToken(); err != nil {
				errs = append(errs, err)
			}
		}
		if c.JWTSecret == "" {
			c.JWTSecret = demoJWTSecret
		}
	case ModeProduction:
		if len(c.AdminToken) < 16 {
			errs = append(errs, errors.New("BIGMARKET_ADMIN_TOKEN must be set to at least 16 characters in production"))
		}
		if len(c.JWTSecret) < 16 || c.JWTSecret == demoJWTSecret {
			errs = append(errs, errors.New("BIGMARKET_JWT_SECRET must be set to a real secret of at least 16 characters in production"))
		}
	default:
		errs = append(errs, fmt.Errorf("BIGMARKET_MODE %q: want demo or production", c.Mode))
	}
	switch c.PlainUserEndpoints {
	case "":
		c.PlainUserEndpoints = "on"
		if c.Mode == ModeProduction {
			c.PlainUserEndpoints = "off"
		}
	case "on", "off":
	default:
		errs = append(errs, fmt.Errorf("BIGMARKET_PLAIN_USER_ENDPOINTS %q: want on or off", c.PlainUserEndpoints))
	}
	db, tb, ok := strings.Cut(strings.ToLower(c.Shards), "x")
	c.DBCount, _ = strconv.Atoi(db)
	c.TBCount, _ = strconv.Atoi(tb)
	if !ok || !powerOfTwo(c.DBCount) || !powerOfTwo(c.TBCount) {
		errs = append(errs, fmt.Errorf("BIGMARKET_SHARDS %q: want DBxTB with powers of two, e.g. 2x4", c.Shards))
	}
	if c.ConfigDSN != "" && len(c.UserDSNs) != c.DBCount {
		errs = append(errs, fmt.Errorf("BIGMARKET_USER_DSNS has %d DSNs but BIGMARKET_SHARDS asks for %d user databases", len(c.UserDSNs), c.DBCount))
	}
	if c.ConfigDSN == "" && len(c.UserDSNs) > 0 {
		errs = append(errs, errors.New("BIGMARKET_USER_DSNS is set without BIGMARKET_CONFIG_DSN"))
	}
	loc, err := time.LoadLocation(c.Timezone)
	if err != nil {
		errs = append(errs, fmt.Errorf("BIGMARKET_TIMEZONE %q: %w", c.Timezone, err))
	}
	c.location = loc
	if c.LogFormat == "" {
		c.LogFormat = "text"
		if c.Mode == ModeProduction {
			c.LogFormat = "json"
		}
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log format %q: want text or json", c.LogFormat))
	}
	if c.MySQLMaxConns < 1 || c.MySQLMaxConns > 1024 {
		errs = append(errs, fmt.Errorf("mysql max conns %d: want 1 to 1024", c.MySQLMaxConns))
	}
	if c.NATSReplicas < 1 || c.NATSReplicas > 5 {
		errs = append(errs, fmt.Errorf("nats replicas %d: want 1 to 5", c.NATSReplicas))
	}
	if c.StockSyncInterval <= 0 || c.StockReconcileEvery <= 0 || c.StrategyRefreshEvery <= 0 || c.DefaultStockTTL <= 0 || c.ShutdownTimeout <= 0 || c.RecoveryGrace <= 0 {
		errs = append(errs, errors.New("intervals, TTLs and timeouts must be positive"))
	}
	if c.RedisTimeout < 0 || c.RedisTimeout > 0 && c.RedisTimeout < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("BIGMARKET_REDIS_TIMEOUT %s: want at least 10ms (or unset)", c.RedisTimeout))
	}
	if c.RedisWaitReplicas < 0 || c.RedisWaitReplicas > 16 {
		errs = append(errs, fmt.Errorf("BIGMARKET_REDIS_WAIT_REPLICAS %d: want 0 (off) to 16", c.RedisWaitReplicas))
	}
	if c.RedisWaitReplicas > 0 {
		read := c.RedisTimeout
		if read == 0 {
			read = redis.DefaultReadTimeout
		}
		if c.RedisWaitTimeout < time.Millisecond || c.RedisWaitTimeout >= read {
			errs = append(errs, fmt.Errorf("BIGMARKET_REDIS_WAIT_TIMEOUT %s: want 1ms to under the Redis read timeout %s", c.RedisWaitTimeout, read))
		}
		if len(c.RedisAddrs) == 0 {
			errs = append(errs, errors.New("BIGMARKET_REDIS_WAIT_REPLICAS needs an external Redis (BIGMARKET_REDIS_ADDRS): the embedded server has no replicas"))
		}
	}
	if c.OutboxGrace <= 0 || c.OutboxEvery <= 0 {
		errs = append(errs, errors.New("outbox grace and interval must be positive"))
	}
	if c.EventAckWait < 2*time.Second {
		errs = append(errs, fmt.Errorf("event ack wait %s: want at least 2s", c.EventAckWait))
	}
	if c.EventMaxDeliver < 1 {
		errs = append(errs, fmt.Errorf("event max deliver %d: want at least 1", c.EventMaxDeliver))
	}
	c.eventBackoff = nil
	for _, f := range strings.Split(c.EventBackoff, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("event backoff %q: want positive durations separated by commas", c.EventBackoff))
			break
		}
		c.eventBackoff = append(c.eventBackoff, d)
	}
	c.implicitLuckAwardFor = map[int64]string{}
	for _, pair := range strings.Split(c.ImplicitLuckAwardByStrategy, ";") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		id, value, _ := strings.Cut(pair, "=")
		n, err := strconv.ParseInt(strings.TrimSpace(id), 10, 64)
		if err != nil || n <= 0 || strings.TrimSpace(value) == "" {
			errs = append(errs, errors.New("BIGMARKET_IMPLICIT_LUCK_AWARD_BY_STRATEGY: want strategyId=value pairs separated by semicolons, value none or awardId[:value]"))
			break
		}
		c.implicitLuckAwardFor[n] = strings.TrimSpace(value)
	}
	c.drawPathSecret = []byte(c.DrawPathSecret)
	if c.DrawPathSecret == "" {
		m := hmac.New(sha256.New, []byte(c.JWTSecret))
		m.Write([]byte("bigmarket draw path secret"))
		c.drawPathSecret = m.Sum(nil)
	} else if c.Mode == ModeProduction && len(c.DrawPathSecret) < 16 {
		errs = append(errs, errors.New("BIGMARKET_DRAW_PATH_SECRET must be at least 16 characters in production (or unset, to derive it from the JWT secret)"))
	}
	c.appTokens = map[string]string{}
	for _, pair := range strings.Split(c.AppTokens, ",") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		id, token, ok := strings.Cut(pair, ":")
		if !ok || id == "" || token == "" {
			errs = append(errs, errors.New("BIGMARKET_APP_TOKENS: want appId:token pairs separated by commas"))
			break
		}
		c.appTokens[id] = token
	}
	if c.WebhookURL != "" {
		if u, err := url.Parse(c.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("BIGMARKET_WEBHOOK_URL %q: want an http(s) URL", c.WebhookURL))
		}
		if len(c.WebhookSecret) < 16 {
			errs = append(errs, errors.New("BIGMARKET_WEBHOOK_SECRET must be at least 16 characters when BIGMARKET_WEBHOOK_URL is set"))
		}
	}
	if c.PprofAddr != "" {
		errs = append(errs, errors.New("pprof_addr (BIGMARKET_PPROF_ADDR) is gone: the profiler is served under /debug/pprof/ on the operator listener, ops_addr (BIGMARKET_OPS_ADDR, default 127.0.0.1:9091)"))
	}
	if c.OpsAddr != "" {
		if _, port, err := net.SplitHostPort(c.OpsAddr); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("BIGMARKET_OPS_ADDR %q: want host:port, e.g. 127.0.0.1:9091, or empty to turn the operator listener off", c.OpsAddr))
		}
	}
	faults, err := loadFaults(c.faultSettings)
	if err != nil {
		errs = append(errs, err)
	}
	c.faults = faults
	errs = append(errs, c.validateGuard()...)
	if c.RedPacketPublishTimeout <= 0 || c.RedPacketRecoverGrace < c.RedPacketPublishTimeout+time.Second {
		errs = append(errs, fmt.Errorf("red packet publish timeout %s and recover grace %s: want a positive timeout and a grace at least a second longer",
			c.RedPacketPublishTimeout, c.RedPacketRecoverGrace))
	}
	switch c.DrawPath {
	case "", "flash":
	case "sql":
		errs = append(errs, errors.New("draw_path (BIGMARKET_DRAW_PATH) sql: the synchronous SQL draw was removed; the flash draw is the only draw (unset BIGMARKET_DRAW_PATH)"))
	default:
		errs = append(errs, fmt.Errorf("draw_path (BIGMARKET_DRAW_PATH) %q: the setting is gone, the flash draw is the only draw (unset BIGMARKET_DRAW_PATH)", c.DrawPath))
	}
	if c.DrawPublishTimeout <= 0 || c.DrawRecoverGrace < c.DrawPublishTimeout+4*time.Second || c.DrawSweepEvery <= 0 {
		errs = append(errs, fmt.Errorf("draw publish timeout %s, recover grace %s, sweep interval %s: want positive durations and a grace at least the timeout + 4s",
			c.DrawPublishTimeout, c.DrawRecoverGrace, c.DrawSweepEvery))
	}
	if c.RainPublishTimeout <= 0 || c.RainRecoverGrace < c.RainPublishTimeout+time.Second {
		errs = append(errs, fmt.Errorf("rain publish timeout %s and recover grace %s: want a positive timeout and a grace at least a second longer",
			c.RainPublishTimeout, c.RainRecoverGrace))
	}
	if c.RainSweepEvery <= 0 || c.RainRefreshEvery <= 0 {
		errs = append(errs, fmt.Errorf("rain sweep %s and refresh %s intervals: want positive durations", c.RainSweepEvery, c.RainRefreshEvery))
	}
	if c.NodeID == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "localhost"
		}
		_, port, _ := net.SplitHostPort(c.Addr)
		if port == "" || port == "0" {
			// A port chosen at listen time is not known here: the process id keeps two
			// such nodes on one machine apart.
			port = "pid" + strconv.Itoa(os.Getpid())
		}
		c.NodeID = host + ":" + port
	}
	if len(c.NodeID) > 128 {
		errs = append(errs, fmt.Errorf("BIGMARKET_NODE_ID: at most 128 bytes"))
	}
	for _, o := range c.WebEmbedOrigins {
		// An origin goes into the CSP header as it is: only a bare origin, so that no
		// value can add a directive or a wildcard.
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(o, " ;,'\"*") {
			errs = append(errs, fmt.Errorf("BIGMARKET_WEB_EMBED_ORIGINS %q: want origins such as https://app.example.com", o))
		}
	}
	if c.RedPacketSweepEvery <= 0 {
		errs = append(errs, fmt.Errorf("red packet sweep interval %s: want a positive duration", c.RedPacketSweepEvery))
	}
	if c.RedPacketMaxCount < 1 || c.RedPacketMaxCount > 100_000 {
		errs = append(errs, fmt.Errorf("red packet max count %d: want 1 to 100000", c.RedPacketMaxCount))
	}
	if amt, err := money.Parse(c.RedPacketMaxAmount); err != nil || amt <= 0 {
		errs = append(errs, fmt.Errorf("red packet max amount %q: want a positive amount with at most two decimals", c.RedPacketMaxAmount))
	} else {
		c.redPacketMaxAmount = amt
	}
	return errors.Join(errs...)
}

// adminTokenFile is the file under the data directory that keeps the demo's admin token.
const adminTokenFile = "admin-token"

// demoAdminToken reads the demo's admin token from the data directory, or makes one up
// for SaveAdminToken to keep there, so that the token outlives a restart and
// `bigmarket admin-token` can print it. Reading writes nothing: commands that only read
// the config leave no data directory behind.
func (c *Config) demoAdminToken() error {
	c.adminTokenPath = filepath.Join(c.DataDir, adminTokenFile)
	raw, err := os.ReadFile(c.adminTokenPath)
	switch {
	case err == nil:
		token := strings.TrimSpace(string(raw))
		if len(token) < 16 {
			return fmt.Errorf("admin token file %s: want at least 16 characters (delete it to make a new one)", c.adminTokenPath)
		}
		c.AdminToken, c.generatedAdminToken = token, false
		return nil
	case errors.Is(err, fs.ErrNotExist):
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		c.AdminToken, c.generatedAdminToken = hex.EncodeToString(b), true
		return nil
	default:
		return fmt.Errorf("read admin token: %w", err)
	}
}

// SaveAdminToken keeps a made-up demo admin token in the data directory (mode 0600),
// once: the file appears whole (written aside, then linked, which fails if it exists),
// and when another process saved one first, that one is taken instead.
func (c *Config) SaveAdminToken() error {
	if !c.generatedAdminToken {
		return nil
	}
	if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
		return fmt.Errorf("save admin token: %w", err)
	}
	tmp, err := os.CreateTemp(c.DataDir, adminTokenFile+".*")
	if err != nil {
		return fmt.Errorf("save admin token: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(c.AdminToken + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp.Name(), c.adminTokenPath)
	}
	switch {
	case err == nil:
		c.generatedAdminToken = false
		return nil
	case errors.Is(err, fs.ErrExist):
		return c.demoAdminToken()
	default:
		return fmt.Errorf("save admin token: %w", err)
	}
}

// validateGuard checks the front line's settings with the rules dcc/update_config applies
// and fills c.guard.
func (c *Config) validateGuard() []error {
	var errs []error
	s := guard.Settings{
		PermitsPerSecond: c.RateLimitPerSecond, Burst: c.RateLimitBurst, BlacklistCount: c.BlacklistCount,
		BlacklistDuration: c.BlacklistDuration, DrawTimeout: c.DrawTimeout,
		IPPermitsPerSecond: c.IPRateLimitPerSecond, IPBurst: c.IPRateLimitBurst,
	}
	for _, sw := range []struct {
		key, value string
		on         *bool
	}{{guard.KeyDegradeSwitch, c.DegradeSwitch, &s.Degrade}, {guard.KeyRateLimiterSwitch, c.RateLimiterSwitch, &s.RateLimit}} {
		if sw.value != guard.Open && sw.value != guard.Close {
			errs = append(errs, fmt.Errorf("%s %q: want open or close", sw.key, sw.value))
		}
		*sw.on = sw.value == guard.Open
	}
	if err := s.Validate(); err != nil {
		errs = append(errs, err)
	}
	c.guard = s
	proxies, err := guard.ParseProxies(c.TrustedProxies)
	if err != nil {
		errs = append(errs, fmt.Errorf("BIGMARKET_TRUSTED_PROXIES (IPs and CIDRs, comma separated): %w", err))
	}
	c.proxies = proxies
	for _, name := range c.GuardedEndpoints {
		if !slices.Contains(httpapi.GuardableRoutes, name) {
			errs = append(errs, fmt.Errorf("guarded endpoint %q: want one of %s", name, strings.Join(httpapi.GuardableRoutes, ", ")))
		}
	}
	// It runs from the commit point, not from the start of the call, so it need not
	// exceed the draw timeout; it should, by far, to be worth its name.
	if c.DrawCommitTimeout < 100*time.Millisecond || c.DrawCommitTimeout > 5*time.Minute {
		errs = append(errs, fmt.Errorf("draw commit timeout %s: want 100ms to 5m", c.DrawCommitTimeout))
	}
	if c.LimiterMaxUsers < 1 {
		errs = append(errs, fmt.Errorf("limiter max users %d: want at least 1", c.LimiterMaxUsers))
	}
	if c.BreakerMinRequests < 1 || c.BreakerProbes < 1 || !(c.BreakerFailureRatio > 0 && c.BreakerFailureRatio <= 1) ||
		c.BreakerWindow <= 0 || c.BreakerOpenFor <= 0 {
		errs = append(errs, errors.New("breaker: want min requests and probes ≥ 1, a failure ratio in (0, 1], a positive window and open time"))
	}
	return errs
}

// breaker is the breaker part of the config.
func (c Config) breaker() guard.BreakerSettings {
	return guard.BreakerSettings{
		MinRequests: uint32(c.BreakerMinRequests), FailureRatio: c.BreakerFailureRatio,
		Window: c.BreakerWindow, OpenFor: c.BreakerOpenFor, Probes: uint32(c.BreakerProbes),
	}
}

func powerOfTwo(n int) bool { return n > 0 && n&(n-1) == 0 }

var dsnPassword = regexp.MustCompile(`^([^:@/]*):([^@]*)@`)

// mask hides a secret, keeping its length class visible.
func mask(s string) string {
	if s == "" {
		return ""
	}
	return "****"
}

// MaskDSN hides the password of a user:password@… DSN.
func MaskDSN(dsn string) string { return dsnPassword.ReplaceAllString(dsn, "$1:****@") }

// maskURL hides the password of a scheme://user:password@host/… URL.
func maskURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return mask(raw) // unparsable: it may hold anything
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "****")
	}
	return u.String()
}

// print writes the effective config, one key per line: every field with a koanf key, in
// the struct's order, so a new setting shows without being listed here. A field tagged
// dump:"secret" shows masked, dump:"dsn" with the password of each DSN masked, dump:"url"
// with the password of each URL masked; an empty value shows what it means (emptyMeans).
func (c Config) Print(w io.Writer) {
	type row struct{ key, value string }
	var rows []row
	width := 0
	v := reflect.ValueOf(c)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		key := f.Tag.Get("koanf")
		if key == "" || key == "-" || !f.IsExported() {
			continue
		}
		value := dumpValue(v.Field(i).Interface(), f.Tag.Get("dump"))
		if value == "" {
			value = c.emptyMeans(key)
		}
		rows = append(rows, row{key, value})
		width = max(width, len(key))
	}
	fmt.Fprintln(w, "bigmarket config:")
	for _, r := range rows {
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("  %-*s %s", width, r.key, r.value), " "))
	}
}

// dumpValue renders one field's value for the dump, masked as its dump tag says.
func dumpValue(value any, how string) string {
	list, isList := value.([]string)
	if !isList {
		switch x := value.(type) {
		case string:
			list = []string{x}
		case float64:
			list = []string{strconv.FormatFloat(x, 'g', -1, 64)}
		default: // bool, ints, time.Duration (its String)
			list = []string{fmt.Sprint(x)}
		}
	}
	shown := make([]string, 0, len(list))
	for _, s := range list {
		switch how {
		case "secret":
			s = mask(s)
		case "dsn":
			s = MaskDSN(s)
		case "url":
			s = maskURL(s)
		}
		shown = append(shown, s)
	}
	return strings.Join(shown, ",")
}

// emptyMeans is what an unset key stands for, where that says more than nothing.
func (c Config) emptyMeans(key string) string {
	switch key {
	case "ops_addr":
		return "(off)"
	case "config_dsn", "user_dsns":
		return "(embedded SQLite)"
	case "redis_addrs", "nats_urls":
		return "(embedded)"
	case "webhook_url":
		return noWebhook[c.Mode]
	case "pprof_addr":
		return "(replaced by ops_addr)"
	case "draw_path":
		return "(flash: the only draw)"
	case "web_embed_origins":
		return "(none: only the pages' own origin frames them)"
	case "trusted_proxies":
		return "(none: X-Forwarded-For is ignored, the peer is the client)"
	}
	return ""
}

// noWebhook is what becomes of external awards without a webhook URL, by mode.
var noWebhook = map[string]string{
	ModeDemo:       "(none: the demo receiver logs and completes external awards)",
	ModeProduction: "(none: external awards are dead-lettered)",
}

func or(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

// environ is the process environment; only main calls it.

// Location is the time zone days and months are counted in (the location key).
func (c Config) Location() *time.Location { return c.location }

// GeneratedAdminToken reports whether the admin token was made up for this run (demo mode
// without a configured or stored one) rather than configured.
func (c Config) GeneratedAdminToken() bool { return c.generatedAdminToken }

// NewLogger returns the logger cfg asks for (log_level, log_format), writing to w.
func NewLogger(cfg Config, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
