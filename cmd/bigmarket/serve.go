package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/bigmarket/bigmarket/app"
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
	cfg.Print(stderr)
	return app.Serve(ctx, cfg, app.NewLogger(cfg, stderr))
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
	b := &app.Backends{}
	defer b.Close()
	if err := app.OpenSQL(ctx, cfg, b, true, *seed); err != nil {
		return err
	}
	configDB := "(embedded SQLite in " + cfg.DataDir + ")"
	if cfg.ConfigDSN != "" {
		configDB = app.MaskDSN(cfg.ConfigDSN)
	}
	fmt.Fprintf(stderr, "migrated config database %s and %d user databases (%d tables each)",
		configDB, len(b.UserDBs), cfg.TBCount)
	if *seed {
		fmt.Fprint(stderr, "; demo data seeded")
	}
	fmt.Fprintln(stderr)
	return nil
}
