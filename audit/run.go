package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/nats"
	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/redis"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// Deployment is what every check reads: the SQL databases (Tables tables in each user
// database), and the draws stream (JS, Events) and the hot quotas (Hot) when they are in
// reach; when they are not, Unreachable says why and the checks that need them are
// reported skipped. verify opens one from its configuration (app.OpenAudit); a serving
// process names its own backends (admin/reconcile).
type Deployment struct {
	ConfigDB    *sqlstore.DB
	UserDBs     []*sqlstore.DB
	Tables      int
	Location    *time.Location
	JS          jetstream.JetStream
	Events      nats.EventOptions
	Hot         *redis.DrawQuota
	Unreachable string
}

// Draws returns the draw checks on d.
func (d Deployment) Draws() (*Draws, error) {
	router, err := sqlstore.NewRouter(len(d.UserDBs), d.Tables)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	v := NewDraws(d.ConfigDB, d.UserDBs, router, d.Location)
	v.unreachable = d.Unreachable
	if d.JS != nil {
		v.WithFlash(d.JS, d.Events, d.Hot)
	}
	return v, nil
}

// Result is what Run found, by family of checks.
type Result struct {
	// Ledger is reconcile.Verify's: award records, tasks, credit, exchanges, rebates and
	// red packets.
	Ledger reconcile.Report
	Draws  DrawReport
	Rain   reconcile.RainReport
}

// Discrepancies returns every discrepancy found, sorted.
func (r Result) Discrepancies() []reconcile.Discrepancy {
	all := append(append(append([]reconcile.Discrepancy{}, r.Ledger.Discrepancies...), r.Draws.Discrepancies...), r.Rain.Discrepancies...)
	reconcile.Sort(all)
	return all
}

// Run makes every check verify makes on d over the rows of w: the ledger, the draws and
// red packet rain (skew is the rain pacing check's clock-skew tolerance).
func Run(ctx context.Context, d Deployment, w reconcile.Window, skew time.Duration) (Result, error) {
	var res Result
	var err error
	if res.Ledger, err = Ledger(ctx, d.ConfigDB, d.UserDBs, d.Tables, w); err != nil {
		return res, err
	}
	dv, err := d.Draws()
	if err != nil {
		return res, err
	}
	if res.Draws, err = dv.Run(ctx, w.Since); err != nil {
		return res, fmt.Errorf("verify: draws: %w", err)
	}
	if res.Rain, err = Rain(ctx, d.ConfigDB, d.UserDBs, d.Tables, w, skew); err != nil {
		return res, fmt.Errorf("verify: rain: %w", err)
	}
	return res, nil
}

// Rain runs the rain checks on every session ending in w, on the SQL databases.
func Rain(ctx context.Context, configDB *sqlstore.DB, userDBs []*sqlstore.DB, tables int, w reconcile.Window, skew time.Duration) (reconcile.RainReport, error) {
	router, err := sqlstore.NewRouter(len(userDBs), tables)
	if err != nil {
		return reconcile.RainReport{}, err
	}
	// The rain store lists the sessions and reads their prizes and wins; the user store
	// looks up what each win granted in its winner's tables.
	users := sqlstore.NewUserStore(userDBs, router)
	src := struct {
		*sqlstore.RainStore
		*sqlstore.UserStore
	}{sqlstore.NewRainStore(configDB, users), users}
	return reconcile.VerifyRain(ctx, src, w, skew)
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
