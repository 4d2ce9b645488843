package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
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
		"BIGMARKET_REDIS_ADDRS=127.0.0.1:17001,127.0.0.1:17002,127.0.0.1:17003",
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
	defaults := scriptPortDefaults(t, readDeployFile(t, "cluster"))
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

// The Compose file and the Kubernetes manifests (deploy/compose/, deploy/k8s/) are the
// script's topology as files a user deploys; nothing here runs them (no Docker or
// Kubernetes in go test). These tests read them and hold them to Config and to the
// script: the variables, the ports, the images, and the settings the script gives its
// nodes and servers.

// scriptPortDefaults are deploy/cluster's BM_*_PORT defaults by variable.
func scriptPortDefaults(t *testing.T, script string) map[string]int {
	t.Helper()
	defaults := map[string]int{}
	for _, m := range regexp.MustCompile(`: "\$\{(BM_[A-Z_]*PORT):=(\d+)\}"`).FindAllStringSubmatch(script, -1) {
		n, _ := strconv.Atoi(m[2])
		defaults[m[1]] = n
	}
	if len(defaults) == 0 {
		t.Fatal("no BM_*_PORT defaults found in deploy/cluster")
	}
	return defaults
}

// scriptFunc is the body of the shell function name in the script.
func scriptFunc(t *testing.T, script, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?ms)^` + name + `\(\) \{.*?^\}`).FindString(script)
	if m == "" {
		t.Fatalf("deploy/cluster has no function %s", name)
	}
	return m
}

// scriptNodeEnv is what deploy/cluster gives a serve node (client_env and serve_env: the
// BIGMARKET_ names they echo), and migrate (client_env only): name → the literal value,
// or "" when the script computes it.
func scriptNodeEnv(t *testing.T, script string) (serve, client map[string]string) {
	t.Helper()
	echo := regexp.MustCompile(`echo "(BIGMARKET_[A-Z0-9_]+)=([^"]*)"`)
	collect := func(body string, into map[string]string) {
		for _, m := range echo.FindAllStringSubmatch(body, -1) {
			into[m[1]] = m[2]
			if strings.Contains(m[2], "$") {
				into[m[1]] = ""
			}
		}
	}
	client = map[string]string{}
	collect(scriptFunc(t, script, "client_env"), client)
	serve = maps.Clone(client)
	collect(scriptFunc(t, script, "serve_env"), serve)
	if len(client) < 8 || len(serve) <= len(client) {
		t.Fatalf("deploy/cluster's client_env %v and serve_env %v: the pattern is wrong", client, serve)
	}
	return serve, client
}

// goModVersion is the version go.mod requires of module.
func goModVersion(t *testing.T, module string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(module) + `\s+(v\S+)`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("go.mod requires no %s", module)
	}
	return m[1]
}

// checkImage: a pinned tag (not latest, and with a version number but for bigmarket's
// own image, whose tag is the user's); nats-server's is go.mod's version, the one the
// binary embeds and deploy/cluster builds.
func checkImage(t *testing.T, where, image, natsVersion string) {
	t.Helper()
	name, tag, ok := strings.Cut(image[strings.LastIndex(image, "/")+1:], ":")
	switch {
	case image == "":
		t.Errorf("%s: no image", where)
	case !ok || tag == "" || tag == "latest":
		t.Errorf("%s: image %q is not pinned to a tag", where, image)
	case name != "bigmarket" && !regexp.MustCompile(`^\d+(\.\d+)*`).MatchString(tag):
		t.Errorf("%s: image %q: want a version tag", where, image)
	case name == "nats" && strings.TrimSuffix(tag, "-alpine") != strings.TrimPrefix(natsVersion, "v"):
		t.Errorf("%s: image %q, but go.mod's nats-server is %s", where, image, natsVersion)
	}
}

// portOf is the port of host:port, a DSN's tcp(host:port) or a URL.
func portOf(t *testing.T, where, addr string) int {
	t.Helper()
	if m := regexp.MustCompile(`@tcp\(([^)]*)\)`).FindStringSubmatch(addr); m != nil {
		addr = m[1]
	}
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		addr = u.Host
	}
	_, p, err := net.SplitHostPort(addr)
	n, err2 := strconv.Atoi(p)
	if err != nil || err2 != nil {
		t.Errorf("%s: %q has no port", where, addr)
	}
	return n
}

// checkNodeEnv holds one bigmarket process's environment (a serve node's, or migrate's
// when client) to the script's: the same BIGMARKET_ keys, the script's literal values
// (production, 2x4 shards, Redis Cluster, NATS replicas …), the script's ports, and a
// config that validates. secrets fills the values the file leaves to the user.
func checkNodeEnv(t *testing.T, where string, env, want map[string]string, ports map[string]int, secrets *strings.Replacer) {
	t.Helper()
	for name, value := range want {
		got, ok := env[name]
		switch {
		case !ok:
			t.Errorf("%s does not set %s, which deploy/cluster gives its nodes", where, name)
		case name == "BIGMARKET_TRUSTED_PROXIES":
			// The script's nginx is on loopback; here it has an address of its own.
			if got == "" || strings.HasPrefix(got, "127.") {
				t.Errorf("%s: %s=%q: want nginx's network", where, name, got)
			}
		case value != "" && got != value:
			t.Errorf("%s: %s=%q, deploy/cluster %q", where, name, got, value)
		}
	}
	keys := configKeys()
	var environ []string
	for name, value := range env {
		if !strings.HasPrefix(name, "BIGMARKET_") {
			continue
		}
		if !keys[strings.ToLower(strings.TrimPrefix(name, "BIGMARKET_"))] {
			t.Errorf("%s sets %s, which is no setting of Config", where, name)
		}
		environ = append(environ, name+"="+secrets.Replace(value))
	}
	checkPorts := func(name string, count int, port string) {
		list := strings.Split(env[name], ",")
		if env[name] == "" || count > 0 && len(list) != count {
			t.Errorf("%s: %s=%q: want %d addresses", where, name, env[name], count)
		}
		for _, a := range list {
			if got := portOf(t, where+" "+name, a); got != ports[port] {
				t.Errorf("%s: %s has %q: want port %d (deploy/cluster's %s)", where, name, a, ports[port], port)
			}
		}
	}
	checkPorts("BIGMARKET_CONFIG_DSN", 1, "BM_MYSQL_PORT")
	checkPorts("BIGMARKET_USER_DSNS", 2, "BM_MYSQL_PORT")
	checkPorts("BIGMARKET_REDIS_ADDRS", 6, "BM_REDIS_PORT")
	checkPorts("BIGMARKET_NATS_URLS", 3, "BM_NATS_PORT")
	if _, ok := want["BIGMARKET_ADDR"]; ok {
		checkPorts("BIGMARKET_ADDR", 1, "BM_API_PORT")
		checkPorts("BIGMARKET_OPS_ADDR", 1, "BM_OPS_PORT")
	}
	environ = append(environ, "BIGMARKET_DATA_DIR="+t.TempDir())
	cfg, err := LoadConfig("", environ)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("%s: the settings do not validate: %v", where, err)
	}
}

// directives are the lines of a config file without comments, trimmed, blank ones left out.
func directives(text string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.Join(strings.Fields(line), " "); line != "" {
			out = append(out, line)
		}
	}
	return out
}

// checkSameDirectives: every line of template that starts with one of names is in text too.
func checkSameDirectives(t *testing.T, where, template, text string, names ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, d := range directives(text) {
		have[d] = true
	}
	n := 0
	for _, d := range directives(template) {
		if slices.Contains(names, strings.Fields(d)[0]) {
			n++
			if !have[d] {
				t.Errorf("%s lacks %q, which the script's template has", where, d)
			}
		}
	}
	if n < len(names) {
		t.Errorf("%s: found %d of the %d directives %v in the template", where, n, len(names), names)
	}
}

// checkNginxConf: deploy/conf/nginx.conf.tmpl's proxy, retry, keep-alive, timeout and
// cache settings, the script's passive health check parameters on every upstream server
// (each on deploy/cluster's API port), and its listen port.
func checkNginxConf(t *testing.T, where, text, script string, ports map[string]int, servers int) {
	t.Helper()
	tmpl := readDeployFile(t, "conf/nginx.conf.tmpl")
	checkSameDirectives(t, where, tmpl, text, "worker_connections", "client_max_body_size", "keepalive", "keepalive_timeout",
		"keepalive_requests", "proxy_http_version", "proxy_set_header", "proxy_connect_timeout", "proxy_send_timeout",
		"proxy_read_timeout", "proxy_next_upstream", "proxy_next_upstream_tries", "proxy_next_upstream_timeout",
		"location", "proxy_pass", "proxy_cache", "proxy_cache_valid", "proxy_cache_revalidate", "proxy_cache_lock",
		"proxy_cache_use_stale", "add_header", "stub_status")
	cachePath := regexp.MustCompile(`proxy_cache_path \S+ (.*);`)
	if want, got := cachePath.FindStringSubmatch(tmpl), cachePath.FindStringSubmatch(text); want == nil || got == nil || got[1] != want[1] {
		t.Errorf("%s: proxy_cache_path %v, template %v", where, got, want)
	}
	params := regexp.MustCompile(`server 127\.0\.0\.1:\$\(api_port "\$i"\) ([^;]*);`).FindStringSubmatch(script)
	if params == nil {
		t.Fatal("deploy/cluster's start_nginx: no upstream server line found")
	}
	n := 0
	for _, d := range directives(text) {
		f := strings.Fields(strings.TrimSuffix(d, ";"))
		switch {
		case f[0] == "server" && len(f) > 1 && f[1] != "{":
			n++
			if portOf(t, where, f[1]) != ports["BM_API_PORT"] || !strings.HasSuffix(d, " "+params[1]+";") {
				t.Errorf("%s: %q: want the port %d and %q, as deploy/cluster's", where, d, ports["BM_API_PORT"], params[1])
			}
			if len(f) > 2 && f[2] == "resolve" && !strings.Contains(text, "zone bigmarket ") {
				t.Errorf("%s: a server with resolve needs a zone in its upstream", where)
			}
		case f[0] == "listen" && strconv.Itoa(ports["BM_NGINX_PORT"]) != strings.TrimPrefix(f[1], "0.0.0.0:"):
			t.Errorf("%s: %q: want port %d (BM_NGINX_PORT)", where, d, ports["BM_NGINX_PORT"])
		case strings.Contains(d, "non_idempotent"):
			t.Errorf("%s: %q retries POSTs", where, d)
		}
	}
	if n != servers {
		t.Errorf("%s: %d upstream servers, want %d", where, n, servers)
	}
}

// checkNATSConf: JetStream and the cluster as deploy/conf/nats.conf.tmpl has them, on the
// script's client, route and monitoring ports, with a route to each of the three.
func checkNATSConf(t *testing.T, where, text string, ports map[string]int) {
	t.Helper()
	tmpl := readDeployFile(t, "conf/nats.conf.tmpl")
	checkSameDirectives(t, where, tmpl, text, "jetstream", "max_memory_store:", "max_file_store:", "cluster", "name:")
	for _, c := range []struct{ re, port string }{
		{`(?m)^listen: \S+:(\d+)$`, "BM_NATS_PORT"},
		{`(?m)^http: \S+:(\d+)$`, "BM_NATS_HTTP_PORT"},
		{`(?m)^\s+listen: \S+:(\d+)$`, "BM_NATS_CLUSTER_PORT"},
	} {
		m := regexp.MustCompile(c.re).FindStringSubmatch(text)
		if m == nil || m[1] != strconv.Itoa(ports[c.port]) {
			t.Errorf("%s: %s %v: want port %d (%s)", where, c.re, m, ports[c.port], c.port)
		}
	}
	routes := regexp.MustCompile(`nats-route://[^:\s]+:(\d+)`).FindAllStringSubmatch(text, -1)
	if len(routes) != 3 {
		t.Errorf("%s: %d routes, want 3", where, len(routes))
	}
	for _, r := range routes {
		if r[1] != strconv.Itoa(ports["BM_NATS_CLUSTER_PORT"]) {
			t.Errorf("%s: route %s: want port %d", where, r[0], ports["BM_NATS_CLUSTER_PORT"])
		}
	}
	if !strings.Contains(text, "server_name: $NATS_SERVER_NAME") {
		t.Errorf("%s: the server name is not NATS_SERVER_NAME's", where)
	}
}

// checkRedisConf: deploy/conf/redis.conf.tmpl's cluster and durability settings (its node
// timeout, AOF, no eviction) on the script's Redis and bus ports.
func checkRedisConf(t *testing.T, where, text string, ports map[string]int) {
	t.Helper()
	checkSameDirectives(t, where, readDeployFile(t, "conf/redis.conf.tmpl"), text, "cluster-enabled",
		"cluster-config-file", "cluster-node-timeout", "cluster-require-full-coverage", "appendonly", "appendfsync",
		"save", "maxmemory-policy")
	d := directives(text)
	for _, want := range []string{fmt.Sprintf("port %d", ports["BM_REDIS_PORT"]), fmt.Sprintf("cluster-port %d", ports["BM_REDIS_BUS_PORT"])} {
		if !slices.Contains(d, want) {
			t.Errorf("%s lacks %q (deploy/cluster's ports)", where, want)
		}
	}
}

// checkMariaDBArgs: the server flags deploy/cluster starts mariadbd with, on its port.
func checkMariaDBArgs(t *testing.T, where string, args []string, script string, ports map[string]int) {
	t.Helper()
	want := regexp.MustCompile(`--(?:max-connections|character-set-server|collation-server|innodb-buffer-pool-size)=[^\s\\]+`).FindAllString(script, -1)
	if len(want) != 4 {
		t.Fatalf("deploy/cluster's mariadbd flags %v: the pattern is wrong", want)
	}
	want = append(want, fmt.Sprintf("--port=%d", ports["BM_MYSQL_PORT"]))
	for _, w := range want {
		if !slices.Contains(args, w) {
			t.Errorf("%s: %v lacks %s", where, args, w)
		}
	}
}

// checkBigmarketNames: every BIGMARKET_ name in a deploy file is a setting of Config.
func checkBigmarketNames(t *testing.T, where, text string) {
	t.Helper()
	keys := configKeys()
	for _, name := range regexp.MustCompile(`BIGMARKET_[A-Z0-9_]+`).FindAllString(text, -1) {
		if !keys[strings.ToLower(strings.TrimPrefix(name, "BIGMARKET_"))] {
			t.Errorf("%s names %s, which is no setting of Config", where, name)
		}
	}
}

// secretStandIns replace the values a deploy file leaves to the user with valid ones.
var secretStandIns = strings.NewReplacer(
	"${BIGMARKET_ADMIN_TOKEN:?set BIGMARKET_ADMIN_TOKEN in .env (see env.example)}", "0123456789abcdef0123",
	"${BIGMARKET_JWT_SECRET:?set BIGMARKET_JWT_SECRET in .env (see env.example)}", "0123456789abcdef0123456789",
	"${MARIADB_PASSWORD:?set MARIADB_PASSWORD in .env}", "pw", "${MARIADB_PASSWORD}", "pw", "$(MARIADB_PASSWORD)", "pw",
	"<secret>", "0123456789abcdef0123456789")

type composeService struct {
	Image       string                       `yaml:"image"`
	Build       any                          `yaml:"build"`
	Command     []string                     `yaml:"command"`
	Entrypoint  []string                     `yaml:"entrypoint"`
	Environment map[string]string            `yaml:"environment"`
	DependsOn   map[string]map[string]string `yaml:"depends_on"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	Volumes  []string `yaml:"volumes"`
	Ports    []string `yaml:"ports"`
	Networks []string `yaml:"networks"`
}

// TestDeployCompose holds deploy/compose/ to Config and deploy/cluster.
func TestDeployCompose(t *testing.T) {
	t.Parallel()
	script := readDeployFile(t, "cluster")
	ports := scriptPortDefaults(t, script)
	serveEnv, clientEnv := scriptNodeEnv(t, script)
	natsVersion := goModVersion(t, "github.com/nats-io/nats-server/v2")
	text := readDeployFile(t, "compose/compose.yaml")
	checkBigmarketNames(t, "compose.yaml", text)
	var file struct {
		Services map[string]composeService `yaml:"services"`
		Volumes  map[string]any            `yaml:"volumes"`
	}
	if err := yaml.Unmarshal([]byte(text), &file); err != nil {
		t.Fatal(err)
	}
	svc := func(name string) composeService {
		t.Helper()
		s, ok := file.Services[name]
		if !ok {
			t.Fatalf("compose.yaml has no service %s", name)
		}
		return s
	}
	dependsOn := func(name, on, condition string) {
		t.Helper()
		if got := svc(name).DependsOn[on]["condition"]; got != condition {
			t.Errorf("compose.yaml: %s depends on %s with condition %q, want %s", name, on, got, condition)
		}
	}
	for name, s := range file.Services {
		checkImage(t, "compose.yaml "+name, s.Image, natsVersion)
		if s.Image == "bigmarket:dev" && s.Build == nil {
			t.Errorf("compose.yaml %s: bigmarket's image without its build", name)
		}
	}

	// The serve nodes: the script's environment, each its own node id, healthy on
	// /readyz, started after migrate.
	ids := map[string]bool{}
	serveCount, _ := strconv.Atoi(regexp.MustCompile(`BM_SERVE_NODES:=(\d+)`).FindStringSubmatch(script)[1])
	for i := 1; i <= serveCount; i++ {
		name := fmt.Sprintf("serve-%d", i)
		s := svc(name)
		checkNodeEnv(t, "compose.yaml "+name, s.Environment, serveEnv, ports, secretStandIns)
		ids[s.Environment["BIGMARKET_NODE_ID"]] = true
		if !slices.Equal(s.Command, []string{"serve"}) {
			t.Errorf("compose.yaml %s: command %v", name, s.Command)
		}
		if want := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports["BM_OPS_PORT"]); !slices.Contains(s.Healthcheck.Test, want) {
			t.Errorf("compose.yaml %s: health check %v, want %s", name, s.Healthcheck.Test, want)
		}
		dependsOn(name, "migrate", "service_completed_successfully")
		dependsOn("nginx", name, "service_healthy")
	}
	if len(ids) != serveCount {
		t.Errorf("compose.yaml: node ids %v, want %d different ones", ids, serveCount)
	}
	if _, ok := file.Services[fmt.Sprintf("serve-%d", serveCount+1)]; ok {
		t.Errorf("compose.yaml has more serve nodes than deploy/cluster's %d", serveCount)
	}

	// migrate: the script's client environment, after the backends.
	m := svc("migrate")
	if !slices.Equal(m.Command, []string{"migrate", "--seed"}) {
		t.Errorf("compose.yaml migrate: command %v", m.Command)
	}
	checkNodeEnv(t, "compose.yaml migrate", m.Environment, clientEnv, ports, secretStandIns)
	dependsOn("migrate", "redis-cluster-create", "service_completed_successfully")
	for _, b := range []string{"mariadb-1", "mariadb-2", "nats-1", "nats-2", "nats-3"} {
		dependsOn("migrate", b, "service_healthy")
	}

	// nginx, published on the script's port, with the script's settings.
	n := svc("nginx")
	if want := fmt.Sprintf("%d:%d", ports["BM_NGINX_PORT"], ports["BM_NGINX_PORT"]); !slices.Equal(n.Ports, []string{want}) {
		t.Errorf("compose.yaml nginx: ports %v, want %s", n.Ports, want)
	}
	if !slices.Contains(n.Volumes, "./nginx.conf:/etc/nginx/nginx.conf:ro") {
		t.Errorf("compose.yaml nginx: volumes %v: nginx.conf not mounted", n.Volumes)
	}
	checkNginxConf(t, "compose/nginx.conf", readDeployFile(t, "compose/nginx.conf"), script, ports, serveCount)

	// NATS ×3, Redis ×6 and the cluster's creation, MariaDB ×2.
	checkNATSConf(t, "compose/nats.conf", readDeployFile(t, "compose/nats.conf"), ports)
	for i := 1; i <= 3; i++ {
		s := svc(fmt.Sprintf("nats-%d", i))
		if s.Environment["NATS_SERVER_NAME"] == "" || !slices.Contains(s.Volumes, "./nats.conf:/etc/nats/nats.conf:ro") {
			t.Errorf("compose.yaml nats-%d: no server name or no nats.conf: %v %v", i, s.Environment, s.Volumes)
		}
	}
	checkRedisConf(t, "compose/redis.conf", readDeployFile(t, "compose/redis.conf"), ports)
	for i := 1; i <= 6; i++ {
		name := fmt.Sprintf("redis-%d", i)
		s := svc(name)
		if !slices.Contains(s.Volumes, "./redis.conf:/usr/local/etc/redis/redis.conf:ro") ||
			!slices.Equal(s.Command, []string{"redis-server", "/usr/local/etc/redis/redis.conf", "--cluster-announce-hostname", name}) {
			t.Errorf("compose.yaml %s: command %v, volumes %v", name, s.Command, s.Volumes)
		}
		dependsOn("redis-cluster-create", name, "service_healthy")
	}
	if got := svc("redis-cluster-create").Environment["REDIS_PORT"]; got != strconv.Itoa(ports["BM_REDIS_PORT"]) {
		t.Errorf("compose.yaml redis-cluster-create: REDIS_PORT %s", got)
	}
	checkClusterCreate(t, script)
	for i := 1; i <= 2; i++ {
		checkMariaDBArgs(t, fmt.Sprintf("compose.yaml mariadb-%d", i), svc(fmt.Sprintf("mariadb-%d", i)).Command, script, ports)
	}
	if got := svc("mariadb-1").Environment["MARIADB_DATABASE"] + " " + svc("mariadb-2").Environment["MARIADB_DATABASE"]; got != "big_market big_market_02" ||
		!strings.Contains(readDeployFile(t, "compose/mariadb-1.sql"), "CREATE DATABASE IF NOT EXISTS `big_market_01`") {
		t.Errorf("compose.yaml: databases %s and mariadb-1.sql: want the script's big_market, big_market_01 | big_market_02", got)
	}
}

// checkClusterCreate: the cluster-create script forms the cluster as deploy/cluster does.
func checkClusterCreate(t *testing.T, script string) {
	t.Helper()
	create := readDeployFile(t, "compose/redis-cluster-create.sh")
	want := regexp.MustCompile(`--cluster-replicas \d+`).FindString(scriptFunc(t, script, "form_redis_cluster"))
	if want == "" || !strings.Contains(create, want+" ") || !strings.Contains(create, "cluster_known_nodes:1") ||
		!strings.Contains(create, "cluster_state:ok") {
		t.Errorf("redis-cluster-create.sh does not create the cluster as deploy/cluster does (%s, only when new, then wait for ok)", want)
	}
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom struct {
			SecretKeyRef *struct{ Name, Key string } `yaml:"secretKeyRef"`
			FieldRef     *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct{ Name string } `yaml:"configMapRef"`
	} `yaml:"envFrom"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	StartupProbe   *k8sProbe `yaml:"startupProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sDoc struct {
	file     string
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Replicas    *int   `yaml:"replicas"`
		ServiceName string `yaml:"serviceName"`
		ClusterIP   string `yaml:"clusterIP"`
		Ports       []struct {
			Port int `yaml:"port"`
		} `yaml:"ports"`
		Template struct {
			Spec struct {
				Containers     []k8sContainer `yaml:"containers"`
				InitContainers []k8sContainer `yaml:"initContainers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// TestDeployKubernetes holds deploy/k8s/ to Config and deploy/cluster (and to
// deploy/compose/, whose files the ConfigMaps carry).
func TestDeployKubernetes(t *testing.T) {
	t.Parallel()
	script := readDeployFile(t, "cluster")
	ports := scriptPortDefaults(t, script)
	serveEnv, clientEnv := scriptNodeEnv(t, script)
	natsVersion := goModVersion(t, "github.com/nats-io/nats-server/v2")
	files, err := filepath.Glob(filepath.Join("..", "deploy", "k8s", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s (%v)", err)
	}
	docs := map[string]k8sDoc{} // by kind/name
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		checkBigmarketNames(t, f, string(b))
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var d k8sDoc
			if err := dec.Decode(&d); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			d.file = filepath.Base(f)
			key := d.Kind + "/" + d.Metadata.Name
			if _, dup := docs[key]; dup || d.Kind == "" || d.Metadata.Name == "" {
				t.Errorf("%s: %q twice or without kind and name", f, key)
			}
			if d.Kind != "Namespace" && d.Metadata.Namespace != "bigmarket" {
				t.Errorf("%s: %s in namespace %q", f, key, d.Metadata.Namespace)
			}
			docs[key] = d
			for _, c := range slices.Concat(d.Spec.Template.Spec.Containers, d.Spec.Template.Spec.InitContainers) {
				checkImage(t, d.file+" "+key, c.Image, natsVersion)
			}
		}
	}
	doc := func(key string) k8sDoc {
		t.Helper()
		d, ok := docs[key]
		if !ok {
			t.Fatalf("deploy/k8s has no %s", key)
		}
		return d
	}
	replicas := func(key string, want int) k8sDoc {
		t.Helper()
		d := doc(key)
		if d.Spec.Replicas == nil || *d.Spec.Replicas != want {
			t.Errorf("%s: replicas %v, want %d", key, d.Spec.Replicas, want)
		}
		return d
	}
	container := func(key string) k8sContainer {
		t.Helper()
		cs := doc(key).Spec.Template.Spec.Containers
		if len(cs) != 1 {
			t.Fatalf("%s: %d containers, want 1", key, len(cs))
		}
		return cs[0]
	}
	// env is a container's environment: its ConfigMaps', then its own (values from a
	// Secret are "<secret>", from a field "<field>").
	env := func(key string) map[string]string {
		t.Helper()
		c := container(key)
		out := map[string]string{}
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef != nil {
				maps.Copy(out, doc("ConfigMap/"+ef.ConfigMapRef.Name).Data)
			}
		}
		for _, e := range c.Env {
			switch v := e.ValueFrom; {
			case v.SecretKeyRef != nil:
				if _, ok := doc("Secret/" + v.SecretKeyRef.Name).StringData[v.SecretKeyRef.Key]; !ok {
					t.Errorf("%s: %s from a Secret key that is not there", key, e.Name)
				}
				out[e.Name] = "<secret>"
			case v.FieldRef != nil:
				out[e.Name] = "<field " + v.FieldRef.FieldPath + ">"
			default:
				out[e.Name] = e.Value
			}
		}
		return out
	}
	containerPorts := func(key string, want ...string) {
		t.Helper()
		var got []int
		for _, p := range container(key).Ports {
			got = append(got, p.ContainerPort)
		}
		for _, w := range want {
			if !slices.Contains(got, ports[w]) {
				t.Errorf("%s: container ports %v lack %d (%s)", key, got, ports[w], w)
			}
		}
	}

	// The serve nodes: the script's environment, the node id from the pod name, probes on
	// the operator port, sizes, a disruption budget.
	replicas("Deployment/serve", 3)
	se := env("Deployment/serve")
	checkNodeEnv(t, "Deployment/serve", se, serveEnv, ports, secretStandIns)
	if se["BIGMARKET_NODE_ID"] != "<field metadata.name>" {
		t.Errorf("Deployment/serve: BIGMARKET_NODE_ID %q, want the pod name", se["BIGMARKET_NODE_ID"])
	}
	containerPorts("Deployment/serve", "BM_API_PORT", "BM_OPS_PORT")
	c := container("Deployment/serve")
	for _, p := range []struct {
		name, path string
		probe      *k8sProbe
	}{{"readiness", "/readyz", c.ReadinessProbe}, {"liveness", "/healthz", c.LivenessProbe}, {"startup", "/healthz", c.StartupProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("Deployment/serve: no %s probe", p.name)
			continue
		}
		if h := p.probe.HTTPGet; h.Path != p.path || fmt.Sprint(h.Port) != "ops" {
			t.Errorf("Deployment/serve: %s probe %+v, want %s on the ops port", p.name, *h, p.path)
		}
	}
	if len(c.Resources.Requests) == 0 || len(c.Resources.Limits) == 0 {
		t.Errorf("Deployment/serve: resources %+v: want requests and limits", c.Resources)
	}
	doc("PodDisruptionBudget/serve")
	if s := doc("Service/serve"); s.Spec.ClusterIP != "None" || len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Port != ports["BM_API_PORT"] {
		t.Errorf("Service/serve: want headless on port %d: %+v", ports["BM_API_PORT"], s.Spec)
	}

	// migrate: a Job with the script's client environment.
	if c := container("Job/migrate"); !slices.Equal(c.Args, []string{"migrate", "--seed"}) {
		t.Errorf("Job/migrate: args %v", c.Args)
	}
	checkNodeEnv(t, "Job/migrate", env("Job/migrate"), clientEnv, ports, secretStandIns)

	// nginx: the script's settings over the serve pods.
	checkNginxConf(t, "ConfigMap/nginx-config", doc("ConfigMap/nginx-config").Data["nginx.conf"], script, ports, 1)
	containerPorts("Deployment/nginx", "BM_NGINX_PORT")
	if s := doc("Service/nginx"); len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Port != ports["BM_NGINX_PORT"] {
		t.Errorf("Service/nginx: ports %+v, want %d", s.Spec.Ports, ports["BM_NGINX_PORT"])
	}

	// NATS ×3, Redis ×6 and the cluster's creation, MariaDB ×2; the files the
	// ConfigMaps carry are deploy/compose/'s.
	replicas("StatefulSet/nats", 3)
	checkNATSConf(t, "ConfigMap/nats-config", doc("ConfigMap/nats-config").Data["nats.conf"], ports)
	if env("StatefulSet/nats")["NATS_SERVER_NAME"] != "<field metadata.name>" {
		t.Errorf("StatefulSet/nats: NATS_SERVER_NAME is not the pod name")
	}
	containerPorts("StatefulSet/nats", "BM_NATS_PORT", "BM_NATS_CLUSTER_PORT", "BM_NATS_HTTP_PORT")
	replicas("StatefulSet/redis", 6)
	containerPorts("StatefulSet/redis", "BM_REDIS_PORT", "BM_REDIS_BUS_PORT")
	for file, key := range map[string]string{"compose/redis.conf": "redis.conf", "compose/redis-cluster-create.sh": "redis-cluster-create.sh"} {
		if doc("ConfigMap/redis-config").Data[key] != readDeployFile(t, file) {
			t.Errorf("ConfigMap/redis-config: %s is not deploy/%s", key, file)
		}
	}
	checkRedisConf(t, "ConfigMap/redis-config", doc("ConfigMap/redis-config").Data["redis.conf"], ports)
	if got := env("Job/redis-cluster-create"); got["REDIS_PORT"] != strconv.Itoa(ports["BM_REDIS_PORT"]) || len(strings.Fields(got["REDIS_NODES"])) != 6 {
		t.Errorf("Job/redis-cluster-create: REDIS_PORT %q, REDIS_NODES %q", got["REDIS_PORT"], got["REDIS_NODES"])
	}
	for i, db := range []string{"big_market", "big_market_02"} {
		key := fmt.Sprintf("StatefulSet/mariadb-%d", i+1)
		replicas(key, 1)
		checkMariaDBArgs(t, key, container(key).Args, script, ports)
		containerPorts(key, "BM_MYSQL_PORT")
		if got := env(key)["MARIADB_DATABASE"]; got != db {
			t.Errorf("%s: MARIADB_DATABASE %q, want %s", key, got, db)
		}
	}
	if doc("ConfigMap/mariadb-1-init").Data["mariadb-1.sql"] != readDeployFile(t, "compose/mariadb-1.sql") {
		t.Errorf("ConfigMap/mariadb-1-init: mariadb-1.sql is not deploy/compose/mariadb-1.sql")
	}
}
