package sqlstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/pressly/goose/v3"
)

// migrations holds the versioned goose migrations (config, user) and the templates of the
// sharded user tables (user_table), one folder per dialect.
//
//go:embed migrations
var migrations embed.FS

// Goose version tables, one per schema so that the config and user schemas can share a
// database (a single TiDB, or tests).
const (
	configVersionTable = "goose_config_version"
	userVersionTable   = "goose_user_version"
)

// suffixToken is replaced by a table suffix (_000 …) in the user_table templates.
const suffixToken = "{{suffix}}"

// maxTables is the most sharded tables per database the three-digit suffix allows.
const maxTables = 512

// MigrateConfig creates or upgrades the config database's tables (strategy, awards, rule
// trees, activities, SKUs, rebates). It is safe to run at every start and concurrently
// with itself on other databases.
func MigrateConfig(ctx context.Context, db *DB) error {
	if err := db.gooseUp(ctx, "config", configVersionTable); err != nil {
		return fmt.Errorf("migrate config database: %w", err)
	}
	return nil
}

// MigrateUser creates or upgrades one user database: the per-database tables (quota
// accounts, credit accounts, tasks) through goose, then the sharded tables with suffixes
// _000 … for tables tables, which must be a power of two. The sharded tables are created
// with CREATE TABLE IF NOT EXISTS at every run rather than versioned, because their number
// is configuration: raising it later creates the new tables.
func MigrateUser(ctx context.Context, db *DB, tables int) error {
	if tables < 1 || tables > maxTables || tables&(tables-1) != 0 {
		return fmt.Errorf("migrate user database: table count %d is not a power of two in 1..%d", tables, maxTables)
	}
	if err := db.gooseUp(ctx, "user", userVersionTable); err != nil {
		return fmt.Errorf("migrate user database: %w", err)
	}
	dir := path.Join("migrations", string(db.Dialect), "user_table")
	entries, err := fs.ReadDir(migrations, dir)
	if err != nil {
		return fmt.Errorf("migrate user database: read %s: %w", dir, err)
	}
	for _, e := range entries {
		tmpl, err := fs.ReadFile(migrations, path.Join(dir, e.Name()))
		if err != nil {
			return fmt.Errorf("migrate user database: read %s: %w", e.Name(), err)
		}
		for i := range tables {
			script := strings.ReplaceAll(string(tmpl), suffixToken, TableSuffix(i))
			for stmt := range strings.SplitSeq(script, ";") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if _, err := db.SQL.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("migrate user database: %s%s: %w", strings.TrimSuffix(e.Name(), ".sql"), TableSuffix(i), err)
				}
			}
		}
	}
	return nil
}

// gooseUp applies the pending migrations of migrations/<dialect>/<schema>.
func (db *DB) gooseUp(ctx context.Context, schema, versionTable string) error {
	var dialect goose.Dialect
	switch db.Dialect {
	case MySQL:
		dialect = goose.DialectMySQL
	case SQLite:
		dialect = goose.DialectSQLite3
	default:
		return fmt.Errorf("unknown dialect %q", db.Dialect)
	}
	dir := path.Join("migrations", string(db.Dialect), schema)
	fsys, err := fs.Sub(migrations, dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	p, err := goose.NewProvider(dialect, db.SQL, fsys,
		goose.WithTableName(versionTable),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return fmt.Errorf("goose provider for %s: %w", dir, err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("goose up %s: %w", dir, err)
	}
	return nil
}
