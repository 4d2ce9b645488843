// Package sqltest gives tests fresh, private SQLite and MySQL databases for sqlstore.
package sqltest

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// adminTimeout bounds the CREATE and DROP DATABASE statements.
const adminTimeout = 30 * time.Second

// MaxConns caps each pool of a test's MySQL database (sqlstore.DB.LimitConns), so that
// the suite, whose packages run at once and whose tests run in parallel, fits within a
// stock server's max_connections (151): a test needs a few connections, not the 32 per
// pool a serving process may use.
const MaxConns = 4

// NewMySQL creates a uniquely named database on the server of serverDSN (a DSN such as
// "root@tcp(127.0.0.1:3306)/"), drops it when the test ends, and returns a DSN for it.
func NewMySQL(t testing.TB, serverDSN string) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(serverDSN)
	if err != nil {
		t.Fatalf("parse mysql server dsn: %v", err)
	}
	cfg.DBName = ""
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatalf("open mysql server: %v", err)
	}
	// Held until the test ends for the DROP: no idle connection meanwhile.
	admin.SetMaxIdleConns(0)
	name := testenv.Unique("bmt_")
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	// The name is generated above, never user input, so splicing it is safe.
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		admin.Close()
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}

// OpenMySQL returns a pool on a fresh database of the server named by
// BIGMARKET_TEST_MYSQL_DSN (skipping the test locally when it is unset), closed and
// dropped when the test ends.
func OpenMySQL(t testing.TB) *sqlstore.DB {
	t.Helper()
	dsn := NewMySQL(t, testenv.MySQLDSN(t))
	db, err := sqlstore.OpenMySQL(dsn)
	if err != nil {
		t.Fatalf("open mysql test database: %v", err)
	}
	db.LimitConns(MaxConns)
	t.Cleanup(func() { db.Close() })
	return db
}

// OpenSQLite returns a pool on a fresh SQLite file in the test's temporary directory,
// closed when the test ends.
func OpenSQLite(t testing.TB) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.OpenSQLite(filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatalf("open sqlite test database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Run runs fn as parallel subtests "sqlite" and "mysql", each on a fresh empty database,
// so a contract suite covers both dialects; the mysql case skips locally without
// BIGMARKET_TEST_MYSQL_DSN.
func Run(t *testing.T, fn func(t *testing.T, db *sqlstore.DB)) {
	t.Helper()
	backends := []struct {
		name string
		open func(testing.TB) *sqlstore.DB
	}{{"sqlite", OpenSQLite}, {"mysql", OpenMySQL}}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b.open(t))
		})
	}
}
