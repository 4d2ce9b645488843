package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/bigmarket/bigmarket/app"
	"github.com/bigmarket/bigmarket/nats"
	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/redis"
	"github.com/bigmarket/bigmarket/sqlstore"
)

func verifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := commonFlags(fs)
	since := fs.Duration("since", 24*time.Hour, "check award records, tasks, rebates and red packets created within this long before now")
	grace := fs.Duration("grace", time.Minute, "rows younger than this are not yet expected to be settled")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("verify: unexpected arguments %q", fs.Args())
	}
	if *since <= 0 || *grace < 0 {
		return fmt.Errorf("verify: -since must be positive and -grace not negative (since %s, grace %s)", *since, *grace)
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if cfg.ConfigDSN == "" {
		// openSQL would create and migrate empty files; a mistyped -data must not verify clean.
		path := filepath.Join(cfg.DataDir, "big_market.db")
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("verify: no embedded config database: %w", err)
		}
	}
	b := &app.Backends{}
	defer b.Close()
	if err := app.OpenSQL(ctx, cfg, b, false, false); err != nil {
		return err
	}
	now := time.Now().UTC()
	w := reconcile.Window{Since: now.Add(-*since), Settled: now.Add(-*grace)}
	rep, err := verify(ctx, b.ConfigDB, b.UserDBs, cfg.TBCount, w)
	if err != nil {
		return err
	}
	dv, err := openDrawVerifier(ctx, cfg, b)
	if err != nil {
		return err
	}
	draws, err := dv.run(ctx, w.Since)
	if err != nil {
		return fmt.Errorf("verify: draws: %w", err)
	}
	rep.Add(draws.Discrepancies...)
	reconcile.Sort(rep.Discrepancies)
	for _, d := range rep.Discrepancies {
		fmt.Fprintln(stdout, d)
	}
	printSkipped(stdout, draws.Skipped)
	scope := fmt.Sprintf("%s, %s; window since %s, grace %s", rep.Checked, draws, w.Since.Format(time.RFC3339), *grace)
	if len(draws.Skipped) > 0 {
		scope += fmt.Sprintf("; %d checks skipped", len(draws.Skipped))
	}
	if n := len(rep.Discrepancies); n > 0 {
		fmt.Fprintf(stdout, "verify: %d discrepancies (%s)\n", n, scope)
		return fmt.Errorf("verify: %d discrepancies", n)
	}
	fmt.Fprintf(stdout, "verify: clean (%s)\n", scope)
	return nil
}

// verify runs reconcile.Verify on the config database and the user databases, which
// have tables sharded tables each.
func verify(ctx context.Context, configDB *sqlstore.DB, userDBs []*sqlstore.DB, tables int, w reconcile.Window) (reconcile.Report, error) {
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

// openDrawVerifier returns the draw checks on the deployment's databases b, with the
// draws stream and the hot quotas when cfg names an external broker and Redis (an
// embedded one lives in the serve process, out of reach). It opens them into b.
func openDrawVerifier(ctx context.Context, cfg app.Config, b *app.Backends) (*drawVerifier, error) {
	router, err := sqlstore.NewRouter(len(b.UserDBs), cfg.TBCount)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	v := newDrawVerifier(b.ConfigDB, b.UserDBs, router, cfg.Location())
	if len(cfg.NATSURLs) == 0 {
		if cfg.DrawPath == app.DrawPathFlash {
			v.unreachable = "the broker is embedded in the serve process"
		}
		return v, nil
	}
	log := app.NewLogger(cfg, io.Discard)
	if err := app.OpenNATS(cfg, b, log); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	var hot *redis.DrawQuota
	if len(cfg.RedisAddrs) > 0 {
		if err := app.OpenRedis(ctx, cfg, b, log); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		hot = redis.NewDrawQuota(b.Redis, cfg.RedisPrefix)
	} else {
		v.unreachable = "Redis is embedded in the serve process"
	}
	v.withFlash(b.JS, nats.EventOptions{Prefix: cfg.NATSPrefix}, hot)
	return v, nil
}
