package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/bigmarket/bigmarket/reconcile"
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
	b := &backends{}
	defer b.close()
	if err := openSQL(ctx, cfg, b, false, false); err != nil {
		return err
	}
	now := time.Now().UTC()
	w := reconcile.Window{Since: now.Add(-*since), Settled: now.Add(-*grace)}
	rep, err := verify(ctx, b.configDB, b.userDBs, cfg.TBCount, w)
	if err != nil {
		return err
	}
	for _, d := range rep.Discrepancies {
		fmt.Fprintln(stdout, d)
	}
	scope := fmt.Sprintf("%s; window since %s, grace %s", rep.Checked, w.Since.Format(time.RFC3339), *grace)
	if n := len(rep.Discrepancies); n > 0 {
		fmt.Fprintf(stdout, "verify: %d discrepancies (%s)\n", n, scope)
		return fmt.Errorf("verify: %d discrepancies", n)
	}
	fmt.Fprintf(stdout, "verify: clean (%s)\n", scope)
	return nil
}

// verify reconciles the user databases against each other and the config database's
// awards: award records with their tasks and credit orders, undelivered tasks, credit
// balances with their orders, paid SKU exchanges with their payments, rebates with what
// they granted, and red packets with their items, debits, grabs' credits and refunds.
// tables is the sharded tables per user database. Balances and paid exchanges are
// checked over all rows; the rest over rows created in w. The discrepancies come back
// sorted by kind, user and key.
func verify(ctx context.Context, configDB *sqlstore.DB, userDBs []*sqlstore.DB, tables int, w reconcile.Window) (reconcile.Report, error) {
	w.Since = w.Since.UTC().Truncate(time.Second)
	w.Settled = w.Settled.UTC()
	awards, err := configDB.ReconcileAwards(ctx)
	if err != nil {
		return reconcile.Report{}, fmt.Errorf("verify: load awards: %w", err)
	}
	router, err := sqlstore.NewRouter(len(userDBs), tables)
	if err != nil {
		return reconcile.Report{}, fmt.Errorf("verify: %w", err)
	}
	var rep reconcile.Report
	for i, db := range userDBs {
		if err := verifyDB(ctx, db, tables, w, awards, &rep); err != nil {
			return reconcile.Report{}, fmt.Errorf("verify user database %02d: %w", i+1, err)
		}
	}
	if err := verifyRedPackets(ctx, userDBs, router, w, nil, &rep); err != nil {
		return reconcile.Report{}, fmt.Errorf("verify red packets: %w", err)
	}
	reconcile.Sort(rep.Discrepancies)
	return rep, nil
}

// verifyDB reads one user database's rows and runs every check but the red packets' on them.
func verifyDB(ctx context.Context, db *sqlstore.DB, tables int, w reconcile.Window, awards map[int64]reconcile.Award, rep *reconcile.Report) error {
	sums := map[string]reconcile.Sums{}
	for t := range tables {
		records, err := db.ReconcileAwardRecords(ctx, t, w.Since)
		if err != nil {
			return err
		}
		rep.Checked.AwardRecords += len(records)
		rep.Add(reconcile.AwardRecords(w, awards, records)...)
		credits, err := db.ReconcilePrizeCredits(ctx, t, w.Since)
		if err != nil {
			return err
		}
		rep.Checked.PrizeCredits += len(credits)
		rep.Add(reconcile.PrizeCredits(credits)...)
		exchanges, err := db.ReconcileExchanges(ctx, t)
		if err != nil {
			return err
		}
		rep.Checked.PaidExchanges += len(exchanges)
		rep.Add(reconcile.Exchanges(w, exchanges)...)
		rebates, err := db.ReconcileRebates(ctx, t, w.Since, w.Settled)
		if err != nil {
			return err
		}
		rep.Checked.Rebates += len(rebates)
		rep.Add(reconcile.Rebates(rebates)...)
		orders, err := db.ReconcileCreditOrders(ctx, 0, t)
		if err != nil {
			return err
		}
		reconcile.AddCredits(sums, orders)
	}
	tasks, err := db.ReconcileTasks(ctx, w.Since)
	if err != nil {
		return err
	}
	rep.Checked.Tasks += len(tasks)
	rep.Add(reconcile.Tasks(w, tasks)...)
	accounts, err := db.ReconcileAccounts(ctx)
	if err != nil {
		return err
	}
	ds, n := reconcile.Balances(accounts, sums)
	rep.Checked.CreditAccounts += n
	rep.Add(ds...)
	return nil
}

// verifyRedPackets checks the window's red packets in every user database (only these
// ids when only is not nil): their items against their totals, every grabbed item against
// its grabber's credit, a user's packet against its sender's debit and refund. It reads
// the packets before the credit orders (see reconcile.RedPackets); a credit order in the
// window that names a packet created before it is explained by that packet.
func verifyRedPackets(ctx context.Context, dbs []*sqlstore.DB, router sqlstore.Router, w reconcile.Window, only map[string]bool, rep *reconcile.Report) error {
	check := reconcile.NewRedPackets(w, func(userID string) (int, string) {
		r := router.Route(userID)
		return r.DB, r.Suffix
	}, only)
	for i, db := range dbs {
		ps, err := db.ReconcilePacketsSince(ctx, i, w.Since)
		if err != nil {
			return fmt.Errorf("user database %02d: %w", i+1, err)
		}
		check.AddWindow(ps)
	}
	for i, db := range dbs {
		for t := range router.Tables {
			orders, err := db.ReconcileCreditOrders(ctx, i, t)
			if err != nil {
				return fmt.Errorf("user database %02d: %w", i+1, err)
			}
			check.AddOrders(orders)
		}
	}
	for _, id := range check.Named() {
		for i, db := range dbs {
			ps, err := db.ReconcilePacket(ctx, i, id)
			if err != nil {
				return fmt.Errorf("user database %02d: %w", i+1, err)
			}
			check.AddNamed(ps)
		}
	}
	ds, packets, items := check.Check()
	rep.Add(ds...)
	rep.Checked.RedPackets += packets
	rep.Checked.RedPacketItems += items
	return nil
}
