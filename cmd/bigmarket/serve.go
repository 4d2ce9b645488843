package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/strategy"
)

func serveCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := commonFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	cfg.print(stderr)
	log := newLogger(cfg, stderr)
	return serve(ctx, cfg, log)
}

// serve runs a node until ctx ends, then shuts it down in order: stop accepting, finish
// requests, flush the stock sync, stop the jobs and consumers, close the backends.
func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	n, err := newNode(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer n.Close()
	return n.Run(ctx)
}

// armOpenActivities preheats the SKU stock of every open activity, as the activity
// armory does; counters already in Redis (another node's, or this one's before a restart)
// are kept.
func armOpenActivities(ctx context.Context, store *sqlstore.ActivityStore, activities *activity.Service, log *slog.Logger) error {
	ids, err := store.OpenActivityIDs(ctx)
	if err != nil {
		return fmt.Errorf("arm sku stock at start: %w", err)
	}
	armed, err := activities.ArmOpen(ctx, ids)
	if err != nil {
		return fmt.Errorf("arm sku stock at start: %w", err)
	}
	log.Info("sku stock armed", "activities", armed)
	return nil
}

// stockAdders tops up award stock through the strategy service and SKU stock through the
// activity service (admin/stock/add).
type stockAdders struct {
	awards *strategy.Service
	skus   *activity.Service
}

func (a stockAdders) AddStock(ctx context.Context, ref strategy.AwardRef, units int64) (int64, error) {
	return a.awards.AddStock(ctx, ref, units)
}

func (a stockAdders) AddSKUStock(ctx context.Context, sku, units int64) (int64, error) {
	return a.skus.AddSKUStock(ctx, sku, units)
}

// serveOps serves the operator handler (metrics, profiler, health) on its own listener,
// away from the public API, and logs the address it bound, which tests and tools that
// start serve on port 0 read.
func serveOps(addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen ops_addr %s: %w", addr, err)
	}
	// No write timeout: a CPU profile or trace streams for as long as it was asked to run.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go srv.Serve(ln)
	log.Info("operator listener serving", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}

func migrateCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := commonFlags(fs)
	seed := fs.Bool("seed", false, "insert the demo data (idempotent)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	b := &backends{}
	defer b.close()
	if err := openSQL(ctx, cfg, b, true, *seed); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "migrated config database %s and %d user databases (%d tables each)",
		or(maskDSN(cfg.ConfigDSN), "(embedded SQLite in "+cfg.DataDir+")"), len(b.userDBs), cfg.TBCount)
	if *seed {
		fmt.Fprint(stderr, "; demo data seeded")
	}
	fmt.Fprintln(stderr)
	return nil
}
