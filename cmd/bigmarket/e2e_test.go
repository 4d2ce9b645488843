package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/app"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/nats"
	"github.com/bigmarket/bigmarket/redis"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// testStrategy is inserted by the tests: one award (102) with stock 100 and rate 1, behind
// tree_luck_award, so every draw picks it until it runs out and then gets award 101.
const testStrategy = 900001

func insertTestStrategy(t *testing.T, db *sql.DB) {
	t.Helper()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `INSERT INTO strategy (strategy_id, strategy_desc, rule_models) VALUES (?, ?, ?)`,
		testStrategy, "no-oversell test", ""); err != nil {
		t.Fatalf("insert strategy: %v", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO strategy_award (strategy_id, award_id, award_title, award_subtitle,
		award_count, award_count_surplus, award_rate, rule_models, sort) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		testStrategy, 102, "stocked award", "", 100, 100, "1.0000", "tree_luck_award", 1); err != nil {
		t.Fatalf("insert strategy_award: %v", err)
	}
}

func surplus(t *testing.T, db *sql.DB, strategyID int64, awardID int) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(`SELECT award_count_surplus FROM strategy_award WHERE strategy_id = ? AND award_id = ?`,
		strategyID, awardID).Scan(&n); err != nil {
		t.Fatalf("read surplus: %v", err)
	}
	return n
}

// envelope is a serve's answer to one request: the API envelope, with the HTTP status and
// headers it came with.
type envelope struct {
	Code string          `json:"code"`
	Info string          `json:"info"`
	Data json.RawMessage `json:"data"`

	Status int         `json:"-"` // 0 when the request failed
	Header http.Header `json:"-"`
}

func (e envelope) String() string {
	return fmt.Sprintf("HTTP %d %s %q %s", e.Status, e.Code, e.Info, e.Data)
}

var httpClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// call sends method url to a serve and decodes the envelope of the answer; the e2e tests
// talk to the API through it. body goes as JSON: nil sends none, []byte and string go as
// they are, anything else is marshalled. headers are "Name: value" (see bearer); one whose
// value is empty is not sent, so an optional Authorization may be passed as it is. call
// may run on any goroutine: a failed request or an answer that is not an envelope is
// reported with t.Errorf, and leaves Status 0 or Code "".
func call(t testing.TB, method, url string, body any, headers ...string) envelope {
	t.Helper()
	resp, raw, err := do(method, url, body, append([]string{"Content-Type: application/json"}, headers...)...)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return envelope{}
	}
	e := envelope{Status: resp.StatusCode, Header: resp.Header}
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Errorf("%s %s: HTTP %d, not an envelope: %.300q", method, url, resp.StatusCode, raw)
	}
	return e
}

// bearer is the Authorization header carrying token, for call.
func bearer(token string) string { return "Authorization: Bearer " + token }

// dataOf decodes the data of e as a T.
func dataOf[T any](e envelope) (T, error) {
	var v T
	err := json.Unmarshal(e.Data, &v)
	return v, err
}

// do sends one request as call does and reads the whole answer, reporting nothing itself:
// for the few requests whose answer is not an envelope (metrics, profiles, preflights) or
// that are meant to fail.
func do(method, url string, body any, headers ...string) (*http.Response, []byte, error) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	case string:
		r = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return nil, nil, err
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		return nil, nil, err
	}
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		if value = strings.TrimPrefix(value, " "); value != "" {
			req.Header.Set(name, value)
		}
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp, raw, err
}

// awaitServing waits until serve has told the addresses it bound (it is started on
// 127.0.0.1:0 for both listeners, so no other test can take its port between choosing and
// binding it) and answers /readyz; it fails at once if serve exits first. bound returns
// the addresses told so far (see loggedAddrs, addrCatcher). It returns the base URLs of
// the API and of the operator listener.
func awaitServing(t *testing.T, bound func() (api, ops string), exited <-chan struct{}) (base, ops string) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, "serve tells its addresses and is ready", func() (bool, string) {
		select {
		case <-exited:
			t.Fatalf("serve exited before it was ready")
		default:
		}
		if base == "" {
			api, op := bound()
			if api == "" || op == "" {
				return false, "listening addresses not told yet"
			}
			base, ops = "http://"+api, "http://"+op
		}
		resp, _, err := do("GET", base+"/readyz", nil)
		if err != nil {
			return false, err.Error()
		}
		return resp.StatusCode == 200, fmt.Sprintf("%s/readyz: HTTP %d", base, resp.StatusCode)
	})
	opsURLs.Store(base, ops)
	return base, ops
}

// Messages of the records that carry, in addr, the address a listener of serve bound.
const (
	apiServingMsg = "bigmarket serving"
	opsServingMsg = "operator listener serving"
)

// loggedAddrs reads the addresses a serve process bound from its log (slog's text or JSON
// format, at log level info or below).
func loggedAddrs(log *testenv.SyncBuffer) func() (api, ops string) {
	return func() (api, ops string) {
		text := log.String()
		return loggedAddr(text, apiServingMsg), loggedAddr(text, opsServingMsg)
	}
}

// loggedAddr returns the addr of the first log record with message msg, or "" when there
// is none yet.
func loggedAddr(log, msg string) string {
	for _, line := range strings.Split(log, "\n") {
		if strings.HasPrefix(line, "{") {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == msg {
				return rec.Addr
			}
			continue
		}
		if _, rest, ok := strings.Cut(line, ` msg="`+msg+`" addr=`); ok {
			addr, _, _ := strings.Cut(rest, " ")
			return addr
		}
	}
	return ""
}

// addrCatcher is the log handler of a serve run in-process: it passes to next the records
// next's level lets through, and keeps the addr of the serving records whatever the level,
// so a test that logs at warn still learns the ports serve bound.
type addrCatcher struct {
	next  slog.Handler
	addrs *sync.Map // message → addr
}

func newAddrCatcher(next slog.Handler) addrCatcher { return addrCatcher{next, &sync.Map{}} }

func (h addrCatcher) Enabled(context.Context, slog.Level) bool { return true }

func (h addrCatcher) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == apiServingMsg || r.Message == opsServingMsg {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "addr" {
				h.addrs.Store(r.Message, a.Value.String())
			}
			return true
		})
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h addrCatcher) WithAttrs(as []slog.Attr) slog.Handler {
	return addrCatcher{h.next.WithAttrs(as), h.addrs}
}

func (h addrCatcher) WithGroup(name string) slog.Handler {
	return addrCatcher{h.next.WithGroup(name), h.addrs}
}

// bound returns the addresses caught so far.
func (h addrCatcher) bound() (api, ops string) {
	get := func(msg string) string {
		v, _ := h.addrs.Load(msg)
		s, _ := v.(string)
		return s
	}
	return get(apiServingMsg), get(opsServingMsg)
}

// stack is a running deployment under test: API base URLs, the config database and the
// Redis holding its stock.
type stack struct {
	bases      []string
	db         *sql.DB
	redis      goredis.UniversalClient
	prefix     string
	adminToken string
	users      *sqlstore.UserStore
}

// openUserStore opens the user databases a stack writes, routed like the server.
func openUserStore(t *testing.T, open func(i int) (*sqlstore.DB, error)) *sqlstore.UserStore {
	t.Helper()
	var dbs []*sqlstore.DB
	for i := range 2 {
		db, err := open(i)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs = append(dbs, db)
	}
	router, err := sqlstore.NewRouter(2, 4)
	if err != nil {
		t.Fatal(err)
	}
	return sqlstore.NewUserStore(dbs, router)
}

// checkNoOversell sends 500 concurrent draws spread over every base URL against an award
// with stock 100 and expects exactly 100 grants (the counter's issued units; every grant
// answered, or answered 0009 — outcome unknown — on a loaded machine, when its stock log
// write outlasts the commit timeout); then it sets the Redis counter back up, as a stale
// preheat would, and expects no further grant; finally the SQL surplus must be synced to 0
// through the broker.
func checkNoOversell(t *testing.T, s stack) {
	insertTestStrategy(t, s.db)
	body := []byte(fmt.Sprintf(`{"strategyId":%d}`, testStrategy))
	counter := fmt.Sprintf("%s:award_stock:{%d_102}", s.prefix, testStrategy)
	draw := func(n int) map[int]int {
		var mu sync.Mutex
		got := map[int]int{}
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				r := call(t, "POST", s.bases[i%len(s.bases)]+"/api/v1/raffle/strategy/random_raffle", body)
				if r.Status == 200 && r.Code == "0009" {
					mu.Lock()
					got[-1]++ // unknown
					mu.Unlock()
					return
				}
				if r.Status != 200 || r.Code != "0000" {
					t.Errorf("draw: HTTP %d %s %s", r.Status, r.Code, r.Info)
					return
				}
				d, err := dataOf[struct{ AwardID int }](r)
				if err != nil {
					t.Errorf("draw data %s: %v", r.Data, err)
				}
				mu.Lock()
				got[d.AwardID]++
				mu.Unlock()
			})
		}
		wg.Wait()
		return got
	}
	issued := func() int {
		n, err := s.redis.Get(context.Background(), counter+":issued").Int()
		if err != nil {
			t.Fatalf("read %s:issued: %v", counter, err)
		}
		return n
	}
	got := draw(500)
	if got[102] > 100 || got[102]+got[101]+got[-1] != 500 || got[102]+got[-1] < 100 || issued() != 100 {
		t.Fatalf("500 draws on stock 100 answered %v (-1: 0009) and issued %d units; want 100 issued, "+
			"at most 100 answers of award 102, the rest luck awards or unknown", got, issued())
	}
	if got[-1] > 0 {
		t.Logf("%d draws answered 0009 (outcome unknown) on a loaded machine", got[-1])
	}
	if err := s.redis.Set(context.Background(), counter, 100, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if again := draw(120); again[102] != 0 || issued() != 100 {
		t.Fatalf("after a stale preheat, draws granted %d more units of award 102 (issued %d); want 0", again[102], issued())
	}
	testenv.Eventually(t, 30*time.Second, "SQL surplus of award 102 is 0 after sync", func() (bool, string) {
		n := surplus(t, s.db, testStrategy, 102)
		return n == 0, fmt.Sprintf("surplus %d", n)
	})
}

// checkBadInput sends bad requests to a live server: each gets 0002 and changes nothing.
func checkBadInput(t *testing.T, s stack) {
	base := s.bases[0]
	before := surplus(t, s.db, 100006, 102)
	for _, tc := range []struct {
		name, method, path string
		body               []byte
	}{
		{"malformed json", "POST", "/api/v1/raffle/strategy/random_raffle", []byte(`{"strategyId":`)},
		{"missing strategyId", "POST", "/api/v1/raffle/strategy/random_raffle", []byte(`{}`)},
		{"unknown strategyId", "POST", "/api/v1/raffle/strategy/random_raffle", []byte(`{"strategyId":123456789}`)},
		{"10 MB body", "POST", "/api/v1/raffle/strategy/random_raffle", append([]byte(`{"strategyId":100006,"x":"`), bytes.Repeat([]byte("a"), 10<<20)...)},
		{"armory without id", "GET", "/api/v1/raffle/strategy/strategy_armory", nil},
		{"armory unknown id", "GET", "/api/v1/raffle/strategy/strategy_armory?strategyId=123456789", nil},
	} {
		r := call(t, tc.method, base+tc.path, tc.body)
		if r.Code != "0002" {
			t.Errorf("%s: code %s %q, want 0002", tc.name, r.Code, r.Info)
		}
	}
	var n int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM strategy WHERE strategy_id = 123456789`).Scan(&n); err != nil || n != 0 {
		t.Errorf("unknown strategy left rows: %d %v", n, err)
	}
	if keys, _ := s.redis.Keys(context.Background(), s.prefix+":award_stock:{123456789_*").Result(); len(keys) != 0 {
		t.Errorf("unknown strategy left Redis keys %v", keys)
	}
	if after := surplus(t, s.db, 100006, 102); after != before {
		t.Errorf("bad input changed surplus of 100006/102 from %d to %d", before, after)
	}
}

// checkArmoryReload adds an award to the test strategy in SQL, runs the armory on the
// first node only, and expects the last node to start drawing the new award.
func checkArmoryReload(t *testing.T, s stack) {
	if _, err := s.db.Exec(`INSERT INTO strategy_award (strategy_id, award_id, award_title, award_subtitle,
		award_count, award_count_surplus, award_rate, rule_models, sort) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		testStrategy, 103, "new award", "", 1000, 1000, "1.0000", "tree_luck_award", 2); err != nil {
		t.Fatal(err)
	}
	if r := call(t, "GET", fmt.Sprintf("%s/api/v1/raffle/strategy/strategy_armory?strategyId=%d", s.bases[0], testStrategy), nil); r.Code != "0000" {
		t.Fatalf("armory: %+v", r)
	}
	other := s.bases[len(s.bases)-1]
	testenv.Eventually(t, 30*time.Second, "node "+other+" draws the award added before another node's armory", func() bool {
		r := call(t, "POST", other+"/api/v1/raffle/strategy/random_raffle", []byte(fmt.Sprintf(`{"strategyId":%d}`, testStrategy)))
		return strings.Contains(string(r.Data), `"awardId":103`)
	})
}

// checkActivityQueries reads the seeded activity configuration through the API.
func checkActivityQueries(t *testing.T, s stack) {
	base := s.bases[0] + "/api/v1/raffle/activity/"
	r := call(t, "POST", base+"query_sku_product_list_by_activity_id?activityId=100301", nil)
	if r.Code != "0000" || !strings.HasPrefix(string(r.Data), `[{"sku":9011,"activityId":100301,"activityCountId":11101,`+
		`"stockCount":100000,"stockCountSurplus":100000,"productAmount":200.00,"activityCount":{"totalCount":150,"dayCount":150,"monthCount":150}}`) ||
		strings.Count(string(r.Data), `"sku":`) != 4 {
		t.Errorf("sku list of 100301: %s %s", r.Code, r.Data)
	}
	if r := call(t, "POST", base+"query_sku_product_list_by_activity_id?activityId=999999", nil); r.Code != "0002" {
		t.Errorf("sku list of an unknown activity: %s", r.Code)
	}
	if r := call(t, "GET", base+"query_stage_activity_id?channel=c01&source=s01", nil); r.Code != "0000" || string(r.Data) != "100401" {
		t.Errorf("stage c01/s01: %s %s", r.Code, r.Data)
	}
}

// startEmbedded runs serve in-process on its embedded defaults (SQLite, in-process NATS)
// with an embedded Redis the test can reach too; adjust may change the config first. It
// stops serve when the test ends, checking that it shuts down cleanly.
func startEmbedded(t *testing.T, adjust func(*app.Config)) (app.Config, string, *redis.Embedded) {
	t.Helper()
	emb, err := redis.StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	cfg := app.DefaultConfig()
	cfg.DataDir = t.TempDir()
	// Ports of its own, bound by serve itself: never the default 9091 that parallel tests
	// would share.
	cfg.Addr, cfg.OpsAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.RedisAddrs, cfg.RedisTimeout = []string{emb.Addr()}, redis.EmbeddedTimeout
	// The embedded server has no replication to fence by (no INFO replication).
	cfg.RedisFence = false
	// Tests that are not about the front line draw as fast as they like, under -race.
	cfg.RateLimiterSwitch, cfg.DrawTimeout = "close", time.Minute
	if adjust != nil {
		adjust(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var serveErr error
	var logs testenv.SyncBuffer
	catcher := newAddrCatcher(app.NewLogger(cfg, &logs).Handler())
	go func() {
		defer close(done)
		serveErr = app.Serve(ctx, cfg, slog.New(catcher))
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop within 30s of cancel")
		}
		if serveErr != nil {
			t.Errorf("serve returned %v", serveErr)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
		emb.Close()
	})
	base, ops := awaitServing(t, catcher.bound, done)
	cfg.Addr, cfg.OpsAddr = strings.TrimPrefix(base, "http://"), strings.TrimPrefix(ops, "http://")
	return cfg, base, emb
}

// TestEmbeddedStack runs serve on the embedded stack, seeds, and checks the API end to end.
func TestEmbeddedStack(t *testing.T) {
	hook := startReceiver(t)
	cfg, base, emb := startEmbedded(t, func(c *app.Config) {
		c.StockReconcileEvery = time.Second
		c.AppTokens = e2eAppID + ":" + e2eAppToken
		c.WebhookURL, c.WebhookSecret = hook.url, e2eWebhookSecret
	})
	db, err := sqlstore.OpenSQLite(filepath.Join(cfg.DataDir, "big_market.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rdb := goredis.NewClient(&goredis.Options{Addr: emb.Addr()})
	defer rdb.Close()
	users := openUserStore(t, func(i int) (*sqlstore.DB, error) {
		return sqlstore.OpenSQLite(filepath.Join(cfg.DataDir, fmt.Sprintf("big_market_%02d.db", i+1)))
	})
	s := stack{bases: []string{base}, db: db.SQL, redis: rdb, prefix: cfg.RedisPrefix, adminToken: cfg.AdminToken, users: users}

	if r := call(t, "GET", base+"/api/v1/raffle/strategy/strategy_armory?strategyId=100006", nil); r.Code != "0000" || string(r.Data) != "true" {
		t.Fatalf("armory: %+v", r)
	}
	for range 20 {
		r := call(t, "POST", base+"/api/v1/raffle/strategy/random_raffle", []byte(`{"strategyId":100006}`))
		d, err := dataOf[struct{ AwardID, AwardIndex int }](r)
		if err != nil || r.Code != "0000" || d.AwardID < 101 || d.AwardID > 108 || d.AwardIndex != d.AwardID-100 {
			t.Fatalf("random_raffle: %+v", r)
		}
	}
	t.Run("no oversell", func(t *testing.T) { checkNoOversell(t, s) })
	t.Run("bad input", func(t *testing.T) { checkBadInput(t, s) })
	t.Run("armory reloads", func(t *testing.T) { checkArmoryReload(t, s) })
	t.Run("activity queries", func(t *testing.T) { checkActivityQueries(t, s) })
	t.Run("activity draw", func(t *testing.T) { checkActivityDraw(t, s) })
	t.Run("draw refusals", func(t *testing.T) { checkDrawRefusals(t, s) })
	t.Run("erp", func(t *testing.T) { checkERP(t, s) })
	t.Run("sign-in and exchange", func(t *testing.T) { checkSignInAndExchange(t, s) })
	t.Run("award distribution", func(t *testing.T) { checkAwardDistribution(t, s) })
	t.Run("behaviour rebate", func(t *testing.T) { checkBehaviorRebate(t, s) })
	t.Run("operator listener and CORS", func(t *testing.T) { checkOperatorSurface(t, s) })
	t.Run("metrics", func(t *testing.T) {
		_, body, err := do("GET", opsURL(t, base)+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		// Every series below must be present with a positive value after the runs above.
		for _, want := range []string{`bigmarket_draws_total{outcome="stocked"}`, `bigmarket_draws_total{outcome="luck"}`,
			`bigmarket_award_stock_out_total`, `bigmarket_stock_sync_published_total`,
			`bigmarket_http_requests_total{code="0000",route="POST /api/v1/raffle/strategy/random_raffle"}`} {
			var v float64
			for _, line := range strings.Split(string(body), "\n") {
				if rest, ok := strings.CutPrefix(line, want+" "); ok {
					fmt.Sscan(rest, &v)
				}
			}
			if v <= 0 {
				t.Errorf("metric %s is %v, want > 0", want, v)
			}
		}
	})

}

// TestEmbeddedSKUStockZero runs the embedded stack with the reconcile job all but off,
// gives SKU 9011 a stock of 2 and recharges it until it runs out: the
// activity_sku_stock_zero event alone clears the SKU's SQL stock.
func TestEmbeddedSKUStockZero(t *testing.T) {
	cfg, base, emb := startEmbedded(t, func(c *app.Config) { c.StockReconcileEvery = time.Hour })
	db, err := sqlstore.OpenSQLite(filepath.Join(cfg.DataDir, "big_market.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.SQL.Exec(`UPDATE raffle_activity_sku SET stock_count = 2, stock_count_surplus = 2 WHERE sku = 9011`); err != nil {
		t.Fatal(err)
	}
	// serve armed the seeded stock at start; without its counter the armory loads the 2.
	rdb := goredis.NewClient(&goredis.Options{Addr: emb.Addr()})
	defer rdb.Close()
	if err := rdb.Del(t.Context(), cfg.RedisPrefix+":sku_stock:{9011}").Err(); err != nil {
		t.Fatal(err)
	}
	if r := call(t, "GET", base+"/api/v1/raffle/activity/armory?activityId=100301", nil); r.Code != "0000" {
		t.Fatalf("activity armory: %+v", r)
	}
	s := stack{bases: []string{base}, adminToken: cfg.AdminToken}
	for i, want := range []string{"0000", "0000", "ERR_BIZ_005"} {
		r := call(t, "POST", s.bases[0]+"/api/v1/admin/activity/recharge", map[string]any{"userId": "zero", "sku": 9011, "outBusinessNo": fmt.Sprint("zero-", i)}, bearer(s.adminToken))
		if r.Code != want {
			t.Fatalf("recharge %d of sku 9011 with stock 2: %s %q, want %s", i, r.Code, r.Info, want)
		}
	}
	stockLeft := func() int64 {
		var n int64
		if err := db.SQL.QueryRow(`SELECT stock_count_surplus FROM raffle_activity_sku WHERE sku = 9011`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	testenv.Eventually(t, 30*time.Second, "SQL stock of sku 9011 is 0 after the stock zero event", func() (bool, string) {
		n := stockLeft()
		return n == 0, fmt.Sprintf("stock %d", n)
	})
}

// binary is the bigmarket executable the process tests run, built once per test run.
var binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// buildBinary compiles bigmarket on first use and returns its path.
func buildBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		if binary.dir, binary.err = os.MkdirTemp("", "bigmarket-test-"); binary.err != nil {
			return
		}
		binary.path = filepath.Join(binary.dir, "bigmarket")
		// The fault tests pause it at fault points, which only this tag compiles in.
		cmd := exec.Command("go", "build", "-tags", "faultinject", "-o", binary.path, ".")
		cmd.Stderr = os.Stderr
		binary.err = cmd.Run()
	})
	if binary.err != nil {
		t.Fatalf("build bigmarket: %v", binary.err)
	}
	return binary.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}

// process is a bigmarket child process.
type process struct {
	cmd    *exec.Cmd
	log    *testenv.SyncBuffer
	exited chan struct{}
}

func startProcess(t *testing.T, bin string, env []string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), log: &testenv.SyncBuffer{}, exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("%s %v log:\n%s", bin, args, p.log.String())
		}
	})
	return p
}

// TestTwoProcessesOnRealBackends runs migrate --seed and then two serve processes sharing
// MariaDB, Redis and NATS, and proves no oversell across them.
func TestTwoProcessesOnRealBackends(t *testing.T) {
	d := newDeployment(t, "")
	var procs []*process
	var bases []string
	for range 2 {
		p, base := d.start(t)
		procs = append(procs, p)
		bases = append(bases, base)
	}
	s := d.stack(bases...)
	t.Run("no oversell", func(t *testing.T) { checkNoOversell(t, s) })
	t.Run("bad input", func(t *testing.T) { checkBadInput(t, s) })
	t.Run("armory reaches the other node", func(t *testing.T) { checkArmoryReload(t, s) })
	t.Run("activity queries", func(t *testing.T) { checkActivityQueries(t, s) })
	t.Run("activity draw", func(t *testing.T) { checkActivityDraw(t, s) })
	t.Run("draw refusals", func(t *testing.T) { checkDrawRefusals(t, s) })
	t.Run("erp", func(t *testing.T) { checkERP(t, s) })
	t.Run("sign-in and exchange", func(t *testing.T) { checkSignInAndExchange(t, s) })
	t.Run("award distribution", func(t *testing.T) { checkAwardDistribution(t, s) })
	t.Run("behaviour rebate", func(t *testing.T) { checkBehaviorRebate(t, s) })
	t.Run("operator listener and CORS", func(t *testing.T) { checkOperatorSurface(t, s) })
	for i, p := range procs {
		// The address is logged as bound, for operators who start serve on port 0.
		if line := `msg="operator listener serving" addr=` + strings.TrimPrefix(opsURL(t, bases[i]), "http://"); !strings.Contains(p.log.String(), line) {
			t.Errorf("serve did not log %s", line)
		}
	}

	for _, p := range procs {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range procs {
		select {
		case <-p.exited:
			if code := p.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("serve exited with %d after SIGTERM", code)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("serve did not stop within 30s of SIGTERM")
		}
	}
}

// cleanupBackends removes what a test left on the shared Redis and NATS.
func cleanupBackends(t *testing.T, rdb goredis.UniversalClient, natsURL, prefix string) {
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
	for iter.Next(ctx) {
		rdb.Del(ctx, iter.Val())
	}
	nc, err := nats.Connect([]string{natsURL}, "bigmarket-test-cleanup")
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	for _, bucket := range nats.KVBuckets(prefix) {
		if err := js.DeleteKeyValue(ctx, bucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			t.Logf("cleanup: delete bucket %s: %v", bucket, err)
		}
	}
	events := nats.EventOptions{Prefix: prefix}
	if err := js.DeleteStream(ctx, nats.DrawEventOptions(events).Stream()); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Logf("cleanup: delete draw stream: %v", err)
	}
	for _, stream := range []string{nats.StockOptions{Prefix: prefix}.Stream(), events.Stream(), events.DLQStream()} {
		if err := js.DeleteStream(ctx, stream); err != nil {
			t.Logf("cleanup: delete stream %s: %v", stream, err)
		}
	}
}
