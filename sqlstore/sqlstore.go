// Package sqlstore is the SQL adapter for MySQL/MariaDB and SQLite: connections, migrations, seed data and stores.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "modernc.org/sqlite" // Registers the "sqlite" driver.
)

// Dialect names the SQL dialect of a database, for the few statements that differ.
type Dialect string

// Supported dialects.
const (
	SQLite Dialect = "sqlite"
	MySQL  Dialect = "mysql"
)

// Pool sizes. SQLite serializes writers on one file lock (busy_timeout makes them wait) while
// WAL lets readers run beside the writer, so a small pool is enough; MySQL gets a pool sized
// for a busy application server.
const (
	sqliteMaxConns    = 8
	mysqlMaxConns     = 32
	mysqlMaxIdleTime  = 30 * time.Second
	mysqlConnLifetime = 3 * time.Minute
	openPingTimeout   = 10 * time.Second
)

// DB is a database handle together with its dialect, so stores can pick the right SQL.
type DB struct {
	// SQL is the connection pool.
	SQL *sql.DB
	// Dialect is the pool's SQL dialect.
	Dialect Dialect
	// multi is a second MySQL pool whose connections take several statements per query,
	// for the user store's grouped transactions; nil on SQLite. It opens connections only
	// as grouped transactions need them (one per lane).
	multi *sql.DB
}

// OpenSQLite opens (creating if needed) the SQLite file at path in WAL mode with a 10s
// busy timeout, synchronous=NORMAL and BEGIN IMMEDIATE transactions, so a transaction that
// will write takes the write lock up front instead of failing with SQLITE_BUSY on upgrade.
// Datetimes are written as "YYYY-MM-DD HH:MM:SS" in UTC, the form CURRENT_TIMESTAMP uses.
func OpenSQLite(path string) (*DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	q.Set("_time_format", "datetime")
	q.Set("_timezone", "UTC")
	sqlDB, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	sqlDB.SetMaxOpenConns(sqliteMaxConns)
	sqlDB.SetMaxIdleConns(sqliteMaxConns)
	db := &DB{SQL: sqlDB, Dialect: SQLite}
	if err := db.ping(); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return db, nil
}

// OpenMySQL opens a MySQL or MariaDB database. It forces parseTime so DATETIME columns scan
// into time.Time in the DSN's loc (UTC unless the DSN says otherwise); with UTC it also sets
// the session time_zone to UTC so that CURRENT_TIMESTAMP defaults agree with Go's times.
//
// Sessions run READ COMMITTED unless the DSN chooses an isolation: every transaction that
// creates rows (a user's first month or day row, a new account) locks the user's account
// row first, so REPEATABLE READ's gap locks add nothing but deadlocks between different
// users inserting into the same index gap.
func OpenMySQL(dsn string) (*DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse mysql dsn: %w", err)
	}
	cfg.ParseTime = true
	// Client-side interpolation sends each statement once instead of prepare + execute,
	// halving the round trips of the draw's transactions; the driver escapes the values.
	cfg.InterpolateParams = true
	if cfg.Loc == nil {
		cfg.Loc = time.UTC
	}
	if cfg.Loc == time.UTC {
		if cfg.Params == nil {
			cfg.Params = map[string]string{}
		}
		if _, ok := cfg.Params["time_zone"]; !ok {
			cfg.Params["time_zone"] = "'+00:00'"
		}
	}
	if err := setReadCommitted(cfg); err != nil {
		return nil, fmt.Errorf("open mysql %s@%s/%s: %w", cfg.User, cfg.Addr, cfg.DBName, err)
	}
	sqlDB, err := mysqlPool(cfg)
	if err != nil {
		return nil, err
	}
	// Values are interpolated by the driver, which escapes them, never by our code; the
	// statements of a grouped transaction are our constants and router suffixes.
	multiCfg := cfg.Clone()
	multiCfg.MultiStatements = true
	multi, err := mysqlPool(multiCfg)
	if err != nil {
		sqlDB.Close()
		return nil, err
	}
	db := &DB{SQL: sqlDB, Dialect: MySQL, multi: multi}
	if err := db.ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open mysql %s@%s/%s: %w", cfg.User, cfg.Addr, cfg.DBName, err)
	}
	return db, nil
}

func mysqlPool(cfg *mysql.Config) (*sql.DB, error) {
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("open mysql: %w", err)
	}
	pool := sql.OpenDB(connector)
	pool.SetMaxOpenConns(mysqlMaxConns)
	pool.SetMaxIdleConns(mysqlMaxConns)
	pool.SetConnMaxLifetime(mysqlConnLifetime)
	pool.SetConnMaxIdleTime(mysqlMaxIdleTime)
	return pool, nil
}

// setReadCommitted adds the session isolation to cfg's connect-time parameters, under the
// name the server knows: MariaDB has tx_isolation, MySQL 8 only transaction_isolation.
func setReadCommitted(cfg *mysql.Config) error {
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	if cfg.Params["tx_isolation"] != "" || cfg.Params["transaction_isolation"] != "" {
		return nil
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	probe := sql.OpenDB(connector)
	defer probe.Close()
	ctx, cancel := context.WithTimeout(context.Background(), openPingTimeout)
	defer cancel()
	var version string
	if err := probe.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return err
	}
	name := "transaction_isolation"
	if strings.Contains(strings.ToLower(version), "mariadb") {
		name = "tx_isolation"
	}
	cfg.Params[name] = "'READ-COMMITTED'"
	return nil
}

// LimitConns caps the pool at n open connections (and as many idle ones, which close
// after a short idle time), so that several pools per process, and several processes, fit
// within the server's max_connections.
func (db *DB) LimitConns(n int) {
	if n <= 0 {
		return
	}
	for _, pool := range db.pools() {
		pool.SetMaxOpenConns(n)
		pool.SetMaxIdleConns(n)
	}
}

func (db *DB) pools() []*sql.DB {
	if db.multi != nil {
		return []*sql.DB{db.SQL, db.multi}
	}
	return []*sql.DB{db.SQL}
}

// ping checks the connection once at open time, so a bad address or file fails fast.
func (db *DB) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), openPingTimeout)
	defer cancel()
	return db.SQL.PingContext(ctx)
}

// Close closes the connection pools.
func (db *DB) Close() error {
	var errs []error
	for _, pool := range db.pools() {
		if err := pool.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s database: %w", db.Dialect, err))
		}
	}
	return errors.Join(errs...)
}
