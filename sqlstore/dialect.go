package sqlstore

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// mysqlDuplicateEntry is MySQL's ER_DUP_ENTRY.
const mysqlDuplicateEntry = 1062

// InsertIgnore returns an INSERT of rows rows (at least one) of columns into table that
// silently skips rows violating a unique key: INSERT IGNORE on MySQL, INSERT OR IGNORE on
// SQLite. table and columns must be constants or router suffixes, never user input.
func (d Dialect) InsertIgnore(table string, rows int, columns ...string) string {
	verb := "INSERT IGNORE INTO "
	if d == SQLite {
		verb = "INSERT OR IGNORE INTO "
	}
	return verb + table + " (" + strings.Join(columns, ", ") + ") VALUES " + Placeholders(rows, len(columns))
}

// Placeholders returns rows comma-separated groups of n question marks, "(?, ?), (?, ?)",
// for multi-row VALUES and IN lists.
func Placeholders(rows, n int) string {
	if rows < 1 {
		rows = 1
	}
	group := "(" + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")"
	return strings.TrimSuffix(strings.Repeat(group+", ", rows), ", ")
}

// ForUpdate returns the row-locking suffix of a SELECT inside a transaction: " FOR UPDATE"
// on MySQL and nothing on SQLite, where BEGIN IMMEDIATE already holds the database's write
// lock.
func (d Dialect) ForUpdate() string {
	if d == SQLite {
		return ""
	}
	return " FOR UPDATE"
}

// ForUpdateSkipLocked is ForUpdate that skips rows other transactions hold (MySQL 8,
// MariaDB 10.6+), for workers that claim rows such as outbox tasks.
func (d Dialect) ForUpdateSkipLocked() string {
	if d == SQLite {
		return ""
	}
	return " FOR UPDATE SKIP LOCKED"
}

// IsDuplicate reports whether err is a unique or primary key violation on either dialect
// (MySQL 1062; SQLite SQLITE_CONSTRAINT_UNIQUE 2067 or SQLITE_CONSTRAINT_PRIMARYKEY 1555),
// which idempotent writes treat as "already done".
func IsDuplicate(err error) bool {
	if err == nil {
		return false
	}
	if me, ok := errors.AsType[*mysql.MySQLError](err); ok {
		return me.Number == mysqlDuplicateEntry
	}
	if se, ok := errors.AsType[*sqlite.Error](err); ok {
		code := se.Code()
		return code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// TableSuffix returns the suffix of sharded table i: "_000", "_001", ….
func TableSuffix(i int) string { return fmt.Sprintf("_%03d", i) }
