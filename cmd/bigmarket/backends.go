package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/nats"
	"github.com/bigmarket/bigmarket/redis"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// backends holds every connection the process opened, embedded or external, and closes
// them in reverse order.
type backends struct {
	configDB *sqlstore.DB
	userDBs  []*sqlstore.DB
	redis    goredis.UniversalClient
	nc       *natsgo.Conn
	js       jetstream.JetStream
	closers  []func()
}

func (b *backends) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
	b.closers = nil
}

// openSQL opens the config and user databases: SQLite files under the data directory by
// default, MySQL when DSNs are configured. Embedded files are migrated (and the demo
// seeded when seed is set); MySQL is migrated by "bigmarket migrate" only unless migrate.
func openSQL(ctx context.Context, cfg Config, b *backends, migrate, seed bool) error {
	embedded := cfg.ConfigDSN == ""
	var err error
	if embedded {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return fmt.Errorf("create data directory: %w", err)
		}
		b.configDB, err = sqlstore.OpenSQLite(filepath.Join(cfg.DataDir, "big_market.db"))
	} else {
		if b.configDB, err = sqlstore.OpenMySQL(cfg.ConfigDSN); err == nil {
			b.configDB.LimitConns(cfg.MySQLMaxConns)
		}
	}
	if err != nil {
		return fmt.Errorf("open config database: %w", err)
	}
	b.closers = append(b.closers, func() { b.configDB.Close() })
	for i := range cfg.DBCount {
		var db *sqlstore.DB
		if embedded {
			db, err = sqlstore.OpenSQLite(filepath.Join(cfg.DataDir, fmt.Sprintf("big_market_%02d.db", i+1)))
		} else {
			if db, err = sqlstore.OpenMySQL(cfg.UserDSNs[i]); err == nil {
				db.LimitConns(cfg.MySQLMaxConns)
			}
		}
		if err != nil {
			return fmt.Errorf("open user database %02d: %w", i+1, err)
		}
		b.userDBs = append(b.userDBs, db)
		b.closers = append(b.closers, func() { db.Close() })
	}
	if !(embedded || migrate) {
		return nil
	}
	if err := sqlstore.MigrateConfig(ctx, b.configDB); err != nil {
		return fmt.Errorf("migrate config database: %w", err)
	}
	for i, db := range b.userDBs {
		if err := sqlstore.MigrateUser(ctx, db, cfg.TBCount); err != nil {
			return fmt.Errorf("migrate user database %02d: %w", i+1, err)
		}
	}
	if seed {
		if err := sqlstore.SeedDemo(ctx, b.configDB); err != nil {
			return fmt.Errorf("seed demo data: %w", err)
		}
	}
	return nil
}

// openRedis connects to the configured Redis, or starts the embedded one.
func openRedis(ctx context.Context, cfg Config, b *backends, log *slog.Logger) error {
	addrs := cfg.RedisAddrs
	if len(addrs) == 0 {
		emb, err := redis.StartEmbedded()
		if err != nil {
			return fmt.Errorf("start embedded redis: %w", err)
		}
		b.closers = append(b.closers, emb.Close)
		addrs = []string{emb.Addr()}
		log.Info("embedded redis started", "addr", emb.Addr())
	}
	client, err := redis.Open(ctx, redis.Options{Addrs: addrs, Cluster: cfg.RedisCluster, Password: cfg.RedisPass})
	if err != nil {
		return err
	}
	b.redis = client
	b.closers = append(b.closers, func() { client.Close() })
	return nil
}

// openNATS connects to the configured NATS cluster, or starts the embedded server with
// its file store under the data directory.
func openNATS(cfg Config, b *backends, log *slog.Logger) error {
	var err error
	if len(cfg.NATSURLs) == 0 {
		emb, err := nats.StartEmbedded(filepath.Join(cfg.DataDir, "nats"), nats.WithLogger(log))
		if err != nil {
			return fmt.Errorf("start embedded nats: %w", err)
		}
		b.closers = append(b.closers, emb.Shutdown)
		if b.nc, err = emb.Connect(); err != nil {
			return fmt.Errorf("connect embedded nats: %w", err)
		}
		log.Info("embedded nats started", "store", filepath.Join(cfg.DataDir, "nats"))
	} else if b.nc, err = nats.Connect(cfg.NATSURLs, "bigmarket"); err != nil {
		return err
	}
	nc := b.nc
	b.closers = append(b.closers, func() { nc.Drain() })
	if b.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}

// ready reports whether every backend answers.
func (b *backends) ready(ctx context.Context) error {
	var errs []error
	if err := b.configDB.SQL.PingContext(ctx); err != nil {
		errs = append(errs, fmt.Errorf("config database: %w", err))
	}
	for i, db := range b.userDBs {
		if err := db.SQL.PingContext(ctx); err != nil {
			errs = append(errs, fmt.Errorf("user database %02d: %w", i+1, err))
		}
	}
	if err := b.redis.Ping(ctx).Err(); err != nil {
		errs = append(errs, fmt.Errorf("redis: %w", err))
	}
	if err := nats.Ping(ctx, b.nc); err != nil {
		errs = append(errs, fmt.Errorf("nats: %w", err))
	}
	return errors.Join(errs...)
}
