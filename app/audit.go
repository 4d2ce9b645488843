package app

import (
	"context"
	"fmt"
	"io"

	"github.com/bigmarket/bigmarket/audit"
	"github.com/bigmarket/bigmarket/bench"
	"github.com/bigmarket/bigmarket/nats"
	"github.com/bigmarket/bigmarket/rain"
	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/redis"
)

// OpenAudit returns the deployment verify checks: the SQL databases in b, with the
// draws stream and the hot quotas when cfg names an external broker and Redis (an
// embedded one lives in the serve process, out of reach; the checks that need it are then
// reported skipped). It opens the broker and Redis into b.
func OpenAudit(ctx context.Context, cfg Config, b *Backends) (audit.Deployment, error) {
	d := audit.Deployment{ConfigDB: b.ConfigDB, UserDBs: b.UserDBs, Tables: cfg.TBCount, Location: cfg.Location()}
	if len(cfg.NATSURLs) == 0 {
		d.Unreachable = "the broker is embedded in the serve process"
		return d, nil
	}
	log := NewLogger(cfg, io.Discard)
	if err := OpenNATS(cfg, b, log); err != nil {
		return d, fmt.Errorf("audit: %w", err)
	}
	d.JS, d.Events = b.JS, nats.EventOptions{Prefix: cfg.NATSPrefix}
	if len(cfg.RedisAddrs) > 0 {
		if err := OpenRedis(ctx, cfg, b, log); err != nil {
			return d, fmt.Errorf("audit: %w", err)
		}
		d.Hot = redis.NewDrawQuota(b.Redis, cfg.RedisPrefix).Fence(b.RedisFence)
	} else {
		d.Unreachable = "Redis is embedded in the serve process"
	}
	return d, nil
}

// ForBenchDraw sets what bench draw's verification of a deployment needs in o: it
// waits for the records written behind the answers (AwaitRecords), for the draw writer
// when the broker is external (Drain), and runs the draw checks when Redis is external
// too (DrawChecks). It opens the broker and Redis into b, which the caller closes.
// Without verification it sets nothing.
func ForBenchDraw(ctx context.Context, cfg Config, b *Backends, db bench.Stores, o *bench.DrawOptions) error {
	if !o.Verify {
		return nil
	}
	o.AwaitRecords = true
	if len(cfg.NATSURLs) == 0 {
		return nil // an embedded broker lives in the server's process, out of reach
	}
	log := NewLogger(cfg, io.Discard)
	if err := OpenNATS(cfg, b, log); err != nil {
		return err
	}
	events := nats.EventOptions{Prefix: cfg.NATSPrefix}
	o.Drain = nats.NewEventDrain(b.JS, nats.DrawEventOptions(events), nats.TopicDraw).WaitApplied
	if len(cfg.RedisAddrs) == 0 {
		return nil
	}
	if err := OpenRedis(ctx, cfg, b, log); err != nil {
		return err
	}
	v := audit.NewDraws(db.Config, db.Users, db.Router, cfg.Location())
	v.WithFlash(b.JS, events, redis.NewDrawQuota(b.Redis, cfg.RedisPrefix).Fence(b.RedisFence))
	o.DrawChecks = v.Checks
	return nil
}

// ForBenchRain completes the rain bench's verification with a deployment's stores: src
// reads the sessions' rows and, when cfg names an external broker, the bench first waits
// until the win consumer applied every win published (an embedded broker lives in the
// serve process, out of reach: the bench then only polls the recorded wins).
func ForBenchRain(cfg Config, b *Backends, src reconcile.RainSource, o *bench.RainOptions) error {
	if !o.Verify {
		return nil
	}
	o.Source = src
	if len(cfg.NATSURLs) == 0 {
		return nil
	}
	if err := OpenNATS(cfg, b, NewLogger(cfg, io.Discard)); err != nil {
		return err
	}
	o.Drain = nats.NewEventDrain(b.JS, nats.EventOptions{Prefix: cfg.NATSPrefix}, rain.TopicWin).WaitApplied
	return nil
}
