package app

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The deploy/cluster script and its templates are checked here, statically: the cluster
// itself never starts inside go test.

func readDeployFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "deploy", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// configKeys are the koanf keys of Config, each a BIGMARKET_ variable in upper case.
func configKeys() map[string]bool {
	keys := map[string]bool{}
	typ := reflect.TypeOf(Config{})
	for i := range typ.NumField() {
		if k := typ.Field(i).Tag.Get("koanf"); k != "" && k != "-" {
			keys[k] = true
		}
	}
	return keys
}

// TestDeployScriptVariablesAreConfig: every BIGMARKET_ variable the script sets is a
// setting of Config (a misspelt one would be ignored without a word), and the literal
// values it gives are accepted.
func TestDeployScriptVariablesAreConfig(t *testing.T) {
	t.Parallel()
	script := readDeployFile(t, "cluster")
	keys := configKeys()
	names := regexp.MustCompile(`BIGMARKET_[A-Z0-9_]+`).FindAllString(script, -1)
	if len(names) < 10 {
		t.Fatalf("found %d BIGMARKET_ names in deploy/cluster: the pattern is wrong", len(names))
	}
	seen := map[string]bool{}
	for _, name := range names {
		key := strings.ToLower(strings.TrimPrefix(name, "BIGMARKET_"))
		if seen[key] {
			continue
		}
		seen[key] = true
		if !keys[key] {
			t.Errorf("deploy/cluster sets %s, which is no setting of Config", name)
		}
	}
	for _, must := range []string{"mode", "admin_token", "jwt_secret", "config_dsn", "user_dsns", "redis_addrs",
		"nats_urls", "nats_replicas", "node_id", "addr", "ops_addr", "data_dir", "trusted_proxies"} {
		if !seen[must] {
			t.Errorf("deploy/cluster does not set BIGMARKET_%s", strings.ToUpper(must))
		}
	}

	// The literal values (echo "BIGMARKET_X=value" without shell expansion), with
	// stand-ins for the computed ones, make a config that validates.
	env := []string{
		"BIGMARKET_ADMIN_TOKEN=0123456789abcdef0123",
		"BIGMARKET_JWT_SECRET=0123456789abcdef0123456789",
		"BIGMARKET_CONFIG_DSN=root@tcp(127.0.0.1:13306)/big_market",
		"BIGMARKET_USER_DSNS=root@tcp(127.0.0.1:13306)/big_market_01,root@tcp(127.0.0.1:13307)/big_market_02",
		"BIGMARKET_DATA_DIR=" + t.TempDir(),
	}
	literal := regexp.MustCompile(`echo "(BIGMARKET_[A-Z0-9_]+)=([^"$]+)"`)
	values := map[string]string{}
	for _, m := range literal.FindAllStringSubmatch(script, -1) {
		env = append(env, m[1]+"="+m[2])
		values[m[1]] = m[2]
	}
	if values["BIGMARKET_MODE"] != "production" || values["BIGMARKET_NATS_REPLICAS"] != "3" {
		t.Errorf("deploy/cluster's literal settings %v: want production mode and NATS replicas 3", values)
	}
	cfg, err := LoadConfig("", env)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the script's settings do not validate: %v", err)
	}
	if cfg.NATSReplicas != 3 || !cfg.RedisCluster || cfg.DBCount != 2 {
		t.Errorf("config from the script: replicas %d, redis cluster %v, user DBs %d", cfg.NATSReplicas, cfg.RedisCluster, cfg.DBCount)
	}
}

// TestDeployScriptPorts: every port default is below the ephemeral range (so no outgoing
// connection takes it first), the ranges the processes use do not overlap, and none is
// a port of the machine's own services, which the tests use.
func TestDeployScriptPorts(t *testing.T) {
	t.Parallel()
	script := readDeployFile(t, "cluster")
	defaults := map[string]int{}
	for _, m := range regexp.MustCompile(`: "\$\{(BM_[A-Z_]*PORT):=(\d+)\}"`).FindAllStringSubmatch(script, -1) {
		n, _ := strconv.Atoi(m[2])
		defaults[m[1]] = n
	}
	// How many consecutive ports each variable starts (serve nodes: BM_SERVE_NODES, at
	// most 9).
	widths := map[string]int{
		"BM_NGINX_PORT": 1, "BM_API_PORT": 9, "BM_OPS_PORT": 9,
		"BM_NATS_PORT": 3, "BM_NATS_CLUSTER_PORT": 3, "BM_NATS_HTTP_PORT": 3,
		"BM_REDIS_PORT": 6, "BM_REDIS_BUS_PORT": 6, "BM_MYSQL_PORT": 2,
	}
	if len(defaults) != len(widths) {
		t.Fatalf("port variables in deploy/cluster %v, want exactly %d: %v", defaults, len(widths), widths)
	}
	ephemeralLow := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				ephemeralLow = n
			}
		}
	}
	type span struct {
		name     string
		from, to int
	}
	var spans []span
	for name, from := range defaults {
		w, ok := widths[name]
		if !ok {
			t.Errorf("%s: a port variable this test does not know", name)
			continue
		}
		spans = append(spans, span{name, from, from + w - 1})
		if from+w-1 >= ephemeralLow {
			t.Errorf("%s=%d..%d reaches the ephemeral range (from %d)", name, from, from+w-1, ephemeralLow)
		}
		for _, taken := range []int{3306, 6379, 4222, 8091, 9091} {
			if from <= taken && taken <= from+w-1 {
				t.Errorf("%s=%d..%d includes %d, a port of the machine's own services or the binary's default", name, from, from+w-1, taken)
			}
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].from < spans[j].from })
	for i := 1; i < len(spans); i++ {
		if spans[i].from <= spans[i-1].to {
			t.Errorf("%s (%d..%d) overlaps %s (%d..%d)", spans[i].name, spans[i].from, spans[i].to,
				spans[i-1].name, spans[i-1].from, spans[i-1].to)
		}
	}
}

// TestDeployTemplates: the templates keep what the README promises: Redis with an
// explicit bus port, a 2 s node timeout, AOF and no eviction; NATS with JetStream and a
// cluster; nginx without retrying non-idempotent requests, with every path it writes
// given (under the state directory), and every placeholder filled by the script.
func TestDeployTemplates(t *testing.T) {
	t.Parallel()
	script := readDeployFile(t, "cluster")
	for _, c := range []struct {
		file string
		want []string
		not  []string
	}{
		{"conf/redis.conf.tmpl", []string{"cluster-enabled yes", "cluster-port @BUS@", "cluster-node-timeout 2000",
			"appendonly yes", "maxmemory-policy noeviction", "bind 127.0.0.1", "dir @DATA@"}, nil},
		{"conf/nats.conf.tmpl", []string{"jetstream {", "store_dir: \"@DATA@\"", "cluster {", "routes: [",
			"server_name: bm-nats-@N@", "listen: 127.0.0.1:@PORT@"}, nil},
		{"conf/nginx.conf.tmpl", []string{"proxy_next_upstream error timeout;", "max_fails", "keepalive 64;",
			"X-Forwarded-For $remote_addr", "proxy_read_timeout", "proxy_cache bm_static",
			"client_body_temp_path @RUN@/", "proxy_temp_path       @RUN@/", "pid @RUN@/", "listen 127.0.0.1:@PORT@"},
			[]string{"non_idempotent", "/var/", "/etc/"}},
	} {
		text := readDeployFile(t, c.file)
		for _, w := range c.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s lacks %q", c.file, w)
			}
		}
		var directives strings.Builder // the text without its comments
		for _, line := range strings.Split(text, "\n") {
			line, _, _ = strings.Cut(line, "#")
			directives.WriteString(line + "\n")
		}
		for _, n := range c.not {
			if strings.Contains(directives.String(), n) {
				t.Errorf("%s has %q", c.file, n)
			}
		}
		for _, ph := range regexp.MustCompile(`@([A-Z]+)@`).FindAllStringSubmatch(text, -1) {
			if !regexp.MustCompile(`\b` + ph[1] + `=`).MatchString(script) {
				t.Errorf("%s: placeholder %s is never given by deploy/cluster's render", c.file, ph[0])
			}
		}
	}
}

// TestNATSReplicasSetting: BIGMARKET_NATS_REPLICAS reaches Config (1 by default, 3 for a
// cluster) and a count the broker cannot have is refused.
func TestNATSReplicasSetting(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig("", nil)
	if err != nil || cfg.NATSReplicas != 1 {
		t.Fatalf("default replicas %d (%v), want 1", cfg.NATSReplicas, err)
	}
	for _, c := range []struct {
		value string
		ok    bool
	}{{"3", true}, {"5", true}, {"0", false}, {"6", false}} {
		cfg, err := LoadConfig("", []string{"BIGMARKET_NATS_REPLICAS=" + c.value, "BIGMARKET_DATA_DIR=" + t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if strconv.Itoa(cfg.NATSReplicas) != c.value {
			t.Errorf("BIGMARKET_NATS_REPLICAS=%s: replicas %d", c.value, cfg.NATSReplicas)
		}
		if err := cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("BIGMARKET_NATS_REPLICAS=%s: validate %v, want ok=%v", c.value, err, c.ok)
		}
	}
}
