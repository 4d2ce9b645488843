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
	"github.com/bigmarket/bigmarket/audit"
	"github.com/bigmarket/bigmarket/reconcile"
)

func verifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := commonFlags(fs)
	since := fs.Duration("since", 24*time.Hour, "check award records, tasks, rebates and red packets created within this long before now")
	grace := fs.Duration("grace", time.Minute, "rows younger than this are not yet expected to be settled")
	skew := fs.Duration("rain-skew", 100*time.Millisecond, "clock-skew tolerance of the rain pacing check: wins are stamped by each node's clock (nodes on other machines need their clocks' difference)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("verify: unexpected arguments %q", fs.Args())
	}
	if *since <= 0 || *grace < 0 || *skew < 0 {
		return fmt.Errorf("verify: -since must be positive, -grace and -rain-skew not negative (since %s, grace %s, rain-skew %s)", *since, *grace, *skew)
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
	d, err := app.OpenAudit(ctx, cfg, b)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	w := reconcile.Window{Since: now.Add(-*since), Settled: now.Add(-*grace)}
	res, err := audit.Run(ctx, d, w, *skew)
	if err != nil {
		return err
	}
	rep, draws, rains := res.Ledger, res.Draws, res.Rain
	rep.Discrepancies = res.Discrepancies()
	for _, d := range rep.Discrepancies {
		fmt.Fprintln(stdout, d)
	}
	printSkipped(stdout, draws.Skipped)
	scope := fmt.Sprintf("%s, %s, %s; window since %s, grace %s", rep.Checked, draws, rains, w.Since.Format(time.RFC3339), *grace)
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

// printSkipped prints the checks not made; the discrepancies go with verify's others.
func printSkipped(w io.Writer, skipped []string) {
	for _, s := range skipped {
		fmt.Fprintf(w, "verify: skipped %s\n", s)
	}
}
