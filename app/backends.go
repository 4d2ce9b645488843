package app

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

// Backends holds every connection the process opened, embedded or external, and closes
// them in reverse order.
type Backends struct {
	ConfigDB *sqlstore.DB
	UserDBs  []*sqlstore.DB
	Redis    goredis.UniversalClient
	// RedisFence is whether the hot scripts fence their key groups by replication id:
	// an external Redis that answers the probe, unless Config.RedisFence is off.
	RedisFence bool
	// RedisWait is what the hot writes wait for from replicas (Config.RedisWaitReplicas);
	// zero is off.
	RedisWait redis.ReplicaWait
	NC        *natsgo.Conn
	JS        jetstream.JetStream
	closers   []func()
}

// Close closes every connection, the last opened first.
func (b *Backends) Close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
	b.closers = nil
}

// OpenSQL opens the config and user databases: SQLite files under the data directory by
// default, MySQL when DSNs are configured. Embedded files are migrated (and the demo
// seeded when seed is set); MySQL is migrated by "bigmarket migrate" only unless migrate.
func OpenSQL(ctx context.Context, cfg Config, b *Backends, migrate, seed bool) error {
	embedded := cfg.ConfigDSN == ""
	var err error
	if embedded {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return fmt.Errorf("create data directory: %w", err)
		}
		b.ConfigDB, err = sqlstore.OpenSQLite(filepath.Join(cfg.DataDir, "big_market.db"))
	} else {
		if b.ConfigDB, err = sqlstore.OpenMySQL(cfg.ConfigDSN); err == nil {
			b.ConfigDB.LimitConns(cfg.MySQLMaxConns)
		}
	}
	if err != nil {
		return fmt.Errorf("open config database: %w", err)
	}
	b.closers = append(b.closers, func() { b.ConfigDB.Close() })
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
		b.UserDBs = append(b.UserDBs, db)
		b.closers = append(b.closers, func() { db.Close() })
	}
	if !(embedded || migrate) {
		return nil
	}
	if err := sqlstore.MigrateConfig(ctx, b.ConfigDB); err != nil {
		return fmt.Errorf("migrate config database: %w", err)
	}
	for i, db := range b.UserDBs {
		if err := sqlstore.MigrateUser(ctx, db, cfg.TBCount); err != nil {
			return fmt.Errorf("migrate user database %02d: %w", i+1, err)
		}
	}
	if seed {
		if err := sqlstore.SeedDemo(ctx, b.ConfigDB); err != nil {
			return fmt.Errorf("seed demo data: %w", err)
		}
	}
	return nil
}

// OpenRedis connects to the configured Redis, or starts the embedded one.
func OpenRedis(ctx context.Context, cfg Config, b *Backends, log *slog.Logger) error {
	addrs, timeout := cfg.RedisAddrs, cfg.RedisTimeout
	if len(addrs) == 0 {
		if timeout == 0 {
			timeout = redis.EmbeddedTimeout
		}
		emb, err := redis.StartEmbedded()
		if err != nil {
			return fmt.Errorf("start embedded redis: %w", err)
		}
		b.closers = append(b.closers, emb.Close)
		addrs = []string{emb.Addr()}
		log.Info("embedded redis started", "addr", emb.Addr())
	}
	client, err := redis.Open(ctx, redis.Options{Addrs: addrs, Cluster: cfg.RedisCluster, Password: cfg.RedisPass,
		ReadTimeout: timeout, WriteTimeout: timeout, PoolTimeout: timeout})
	if err != nil {
		return err
	}
	b.Redis = client
	b.closers = append(b.closers, func() { client.Close() })
	if cfg.RedisWaitReplicas > 0 && len(cfg.RedisAddrs) > 0 {
		b.RedisWait = redis.ReplicaWait{Client: client, Replicas: cfg.RedisWaitReplicas, Timeout: cfg.RedisWaitTimeout}
		if err := b.RedisWait.Check(); err != nil {
			return fmt.Errorf("BIGMARKET_REDIS_WAIT_REPLICAS: %w", err)
		}
		log.Info("redis hot writes wait for replicas", "replicas", cfg.RedisWaitReplicas, "timeout", cfg.RedisWaitTimeout.String())
	}
	if len(cfg.RedisAddrs) == 0 || !cfg.RedisFence {
		if len(cfg.RedisAddrs) > 0 {
			log.Warn("redis hot scripts not fenced (BIGMARKET_REDIS_FENCE=false): a failover that loses writes can grant twice")
		}
		return nil
	}
	id, err := redis.ProbeFence(ctx, client)
	if err != nil {
		return fmt.Errorf("%w; set BIGMARKET_REDIS_FENCE=false to run without failover fencing", err)
	}
	b.RedisFence = true
	log.Info("redis hot scripts fenced by replication id", "replid", id)
	return nil
}

// OpenNATS connects to the configured NATS cluster, or starts the embedded server with
// its file store under the data directory.
func OpenNATS(cfg Config, b *Backends, log *slog.Logger) error {
	var err error
	if len(cfg.NATSURLs) == 0 {
		emb, err := nats.StartEmbedded(filepath.Join(cfg.DataDir, "nats"), nats.WithLogger(log))
		if err != nil {
			return fmt.Errorf("start embedded nats: %w", err)
		}
		b.closers = append(b.closers, emb.Shutdown)
		if b.NC, err = emb.Connect(); err != nil {
			return fmt.Errorf("connect embedded nats: %w", err)
		}
		log.Info("embedded nats started", "store", filepath.Join(cfg.DataDir, "nats"))
	} else if b.NC, err = nats.Connect(cfg.NATSURLs, "bigmarket"); err != nil {
		return err
	}
	nc := b.NC
	b.closers = append(b.closers, func() { nc.Drain() })
	if b.JS, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}

// ready reports whether every backend answers.
func (b *Backends) Ready(ctx context.Context) error {
	var errs []error
	if err := b.ConfigDB.SQL.PingContext(ctx); err != nil {
		errs = append(errs, fmt.Errorf("config database: %w", err))
	}
	for i, db := range b.UserDBs {
		if err := db.SQL.PingContext(ctx); err != nil {
			errs = append(errs, fmt.Errorf("user database %02d: %w", i+1, err))
		}
	}
	if err := b.Redis.Ping(ctx).Err(); err != nil {
		errs = append(errs, fmt.Errorf("redis: %w", err))
	}
	if err := nats.Ping(ctx, b.NC); err != nil {
		errs = append(errs, fmt.Errorf("nats: %w", err))
	}
	return errors.Join(errs...)
}
