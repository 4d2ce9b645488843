package main

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/sqlstore/sqltest"
)

// e2eMySQLMaxConns caps each MySQL pool of a serve process a test starts on MariaDB.
const e2eMySQLMaxConns = 6

// deployment is a bigmarket deployment on the real backends private to one test: its
// own MySQL databases, Redis and NATS prefix and admin token, migrated and seeded, to which
// the test adds serve processes.
type deployment struct {
	bin        string
	env        []string
	prefix     string
	adminToken string
	db         *sqlstore.DB
	redis      *goredis.Client
	users      *sqlstore.UserStore
	userDBs    []*sqlstore.DB // the user databases, for counting across them
	hook       *receiver      // the webhook receiver of the external awards
	natsURL    string         // set by a test that runs its own broker, for the test's own reads
}

// newDeployment creates the deployment on the shared MariaDB and NATS and on redisAddr
// (empty: the shared Redis; a test that breaks Redis passes a private one).
func newDeployment(t *testing.T, redisAddr string) *deployment {
	t.Helper()
	mysqlDSN, natsURL := testenv.MySQLDSN(t), testenv.NATSURL(t)
	if redisAddr == "" {
		redisAddr = testenv.RedisAddr(t)
	}
	configDSN := sqltest.NewMySQL(t, mysqlDSN)
	userDSNs := []string{sqltest.NewMySQL(t, mysqlDSN), sqltest.NewMySQL(t, mysqlDSN)}
	d := &deployment{prefix: testenv.Unique("bmf"), adminToken: testenv.Unique("admin-"), hook: startReceiver(t)}
	d.env = []string{
		"BIGMARKET_ADMIN_TOKEN=" + d.adminToken,
		"BIGMARKET_CONFIG_DSN=" + configDSN,
		"BIGMARKET_USER_DSNS=" + strings.Join(userDSNs, ","),
		"BIGMARKET_REDIS_ADDRS=" + redisAddr,
		"BIGMARKET_REDIS_PREFIX=" + d.prefix,
		"BIGMARKET_NATS_URLS=" + natsURL,
		"BIGMARKET_NATS_PREFIX=" + d.prefix,
		"BIGMARKET_DATA_DIR=" + t.TempDir(),
		"BIGMARKET_STOCK_RECONCILE_EVERY=1s",
		"BIGMARKET_APP_TOKENS=" + e2eAppID + ":" + e2eAppToken,
		"BIGMARKET_WEBHOOK_URL=" + d.hook.url,
		"BIGMARKET_WEBHOOK_SECRET=" + e2eWebhookSecret,
		// Tests that are not about the front line draw as fast as they like, under -race;
		// those that are set their own limits after these.
		"BIGMARKET_RATE_LIMITER_SWITCH=close",
		"BIGMARKET_DRAW_TIMEOUT=1m",
		// Ports each serve binds itself and logs (start reads them): never the default
		// 127.0.0.1:9091 that parallel tests would share, nor a port probed for and handed
		// over, which another test could take in between.
		"BIGMARKET_ADDR=127.0.0.1:0",
		"BIGMARKET_OPS_ADDR=127.0.0.1:0",
		// Two serve processes and the test's own pools fit within a stock MariaDB's
		// max_connections (151) next to another package's tests: each process opens
		// 2 pools per database (3 databases) of at most this many.
		"BIGMARKET_MYSQL_MAX_CONNS=" + strconv.Itoa(e2eMySQLMaxConns),
	}
	d.redis = goredis.NewClient(&goredis.Options{Addr: redisAddr})
	t.Cleanup(func() { d.redis.Close() })
	// Registered after the client's Close, so it runs before it.
	t.Cleanup(func() { cleanupBackends(t, d.redis, natsURL, d.prefix) })

	d.bin = buildBinary(t)
	migrate := exec.Command(d.bin, "migrate", "--seed")
	migrate.Env = append(os.Environ(), d.env...)
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("migrate --seed: %v\n%s", err, out)
	}
	var err error
	if d.db, err = sqlstore.OpenMySQL(configDSN); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.db.Close() })
	// The serve processes' pools may hold most of the server's connections; the test's
	// own reads need few.
	d.db.LimitConns(sqltest.MaxConns)
	d.users = openUserStore(t, func(i int) (*sqlstore.DB, error) {
		db, err := sqlstore.OpenMySQL(userDSNs[i])
		if err == nil {
			db.LimitConns(sqltest.MaxConns)
			d.userDBs = append(d.userDBs, db)
		}
		return db, err
	})
	return d
}

// start runs a serve process with the deployment's environment plus extra, and returns it
// with its base URL once it is ready (opsURL finds its operator listener). Each serve
// binds ports of its own; a test that restarts one where it was passes
// "BIGMARKET_ADDR="+host:port of the first in extra.
func (d *deployment) start(t *testing.T, extra ...string) (*process, string) {
	t.Helper()
	p := startProcess(t, d.bin, append(slices.Clone(d.env), extra...), "serve")
	base, _ := awaitServing(t, loggedAddrs(p.log), p.exited)
	return p, base
}

func (d *deployment) stack(bases ...string) stack {
	return stack{bases: bases, db: d.db.SQL, redis: d.redis, prefix: d.prefix, adminToken: d.adminToken, users: d.users}
}
