package audit

import (
	"context"
	"fmt"
	"io"

	"github.com/bigmarket/bigmarket/app"
	"github.com/bigmarket/bigmarket/bench"
	"github.com/bigmarket/bigmarket/nats"
	"github.com/bigmarket/bigmarket/rain"
	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/redis"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// Open returns the draw checks on the deployment's SQL databases in b, with the draws
// stream and the hot quotas when cfg names an external broker and Redis (an embedded one
// lives in the serve process, out of reach; the checks that need it are then reported
// skipped). It opens the broker and Redis into b.
func Open(ctx context.Context, cfg app.Config, b *app.Backends) (*Draws, error) {
	router, err := sqlstore.NewRouter(len(b.UserDBs), cfg.TBCount)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	v := NewDraws(b.ConfigDB, b.UserDBs, router, cfg.Location())
	if len(cfg.NATSURLs) == 0 {
		v.unreachable = "the broker is embedded in the serve process"
		return v, nil
	}
	log := app.NewLogger(cfg, io.Discard)
	if err := app.OpenNATS(cfg, b, log); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var hot *redis.DrawQuota
	if len(cfg.RedisAddrs) > 0 {
		if err := app.OpenRedis(ctx, cfg, b, log); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		hot = redis.NewDrawQuota(b.Redis, cfg.RedisPrefix)
	} else {
		v.unreachable = "Redis is embedded in the serve process"
	}
	v.WithFlash(b.JS, nats.EventOptions{Prefix: cfg.NATSPrefix}, hot)
	return v, nil
}

// ForBenchDraw sets what bench draw's verification of a deployment needs in o: it
// waits for the records written behind the answers (AwaitRecords), for the draw writer
// when the broker is external (Drain), and runs the draw checks when Redis is external
// too (DrawChecks). It opens the broker and Redis into b, which the caller closes.
// Without verification it sets nothing.
func ForBenchDraw(ctx context.Context, cfg app.Config, b *app.Backends, db bench.Stores, o *bench.DrawOptions) error {
	if !o.Verify {
		return nil
	}
	o.AwaitRecords = true
	if len(cfg.NATSURLs) == 0 {
		return nil // an embedded broker lives in the server's process, out of reach
	}
	log := app.NewLogger(cfg, io.Discard)
	if err := app.OpenNATS(cfg, b, log); err != nil {
		return err
	}
	events := nats.EventOptions{Prefix: cfg.NATSPrefix}
	o.Drain = nats.NewEventDrain(b.JS, nats.DrawEventOptions(events), nats.TopicDraw).WaitApplied
	if len(cfg.RedisAddrs) == 0 {
		return nil
	}
	if err := app.OpenRedis(ctx, cfg, b, log); err != nil {
		return err
	}
	v := NewDraws(db.Config, db.Users, db.Router, cfg.Location())
	v.WithFlash(b.JS, events, redis.NewDrawQuota(b.Redis, cfg.RedisPrefix))
	o.DrawChecks = v.Checks
	return nil
}

// ForBenchRain completes the rain bench's verification with a deployment's stores: src
// reads the sessions' rows and, when cfg names an external broker, the bench first waits
// until the win consumer applied every win published (an embedded broker lives in the
// serve process, out of reach: the bench then only polls the recorded wins).
func ForBenchRain(cfg app.Config, b *app.Backends, src reconcile.RainSource, o *bench.RainOptions) error {
	if !o.Verify {
		return nil
	}
	o.Source = src
	if len(cfg.NATSURLs) == 0 {
		return nil
	}
	if err := app.OpenNATS(cfg, b, app.NewLogger(cfg, io.Discard)); err != nil {
		return err
	}
	o.Drain = nats.NewEventDrain(b.JS, nats.EventOptions{Prefix: cfg.NATSPrefix}, rain.TopicWin).WaitApplied
	return nil
}

// Ledger runs reconcile.Verify on the config database and the user databases, which
// have tables sharded tables each.
func Ledger(ctx context.Context, configDB *sqlstore.DB, userDBs []*sqlstore.DB, tables int, w reconcile.Window) (reconcile.Report, error) {
	router, err := sqlstore.NewRouter(len(userDBs), tables)
	if err != nil {
		return reconcile.Report{}, fmt.Errorf("verify: %w", err)
	}
	rep, err := reconcile.Verify(ctx, sqlstore.Ledger{Config: configDB, Users: userDBs, Router: router}, w)
	if err != nil {
		return reconcile.Report{}, fmt.Errorf("verify: %w", err)
	}
	return rep, nil
}
