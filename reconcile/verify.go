package reconcile

import (
	"context"
	"fmt"
	"time"
)

// Source reads the rows the checks need: the config database's awards and, by user
// database (from 0) and table (from 0), the user databases' rows. sqlstore.Ledger is the
// one over SQL; the checks themselves take rows, so tests feed them directly.
type Source interface {
	// Shape returns the number of user databases and of tables in each.
	Shape() (dbs, tables int)
	// Route returns the user database and table suffix holding userID's rows.
	Route(userID string) (db int, table string)
	Awards(ctx context.Context) (map[int64]Award, error)
	AwardRecords(ctx context.Context, db, table int, since time.Time) ([]AwardRecord, error)
	PrizeCredits(ctx context.Context, db, table int, since time.Time) ([]PrizeCredit, error)
	Exchanges(ctx context.Context, db, table int) ([]Exchange, error)
	Rebates(ctx context.Context, db, table int, since time.Time) ([]Rebate, error)
	CreditOrders(ctx context.Context, db, table int) ([]CreditOrder, error)
	Tasks(ctx context.Context, db int, since time.Time) ([]TaskRow, error)
	Accounts(ctx context.Context, db int) ([]Account, error)
	PacketsSince(ctx context.Context, db int, since time.Time) ([]Packet, error)
	Packet(ctx context.Context, db int, id string) ([]Packet, error)
}

// normalize puts w in UTC, Since on a whole second as the databases store it.
func (w Window) normalize() Window {
	return Window{Since: w.Since.UTC().Truncate(time.Second), Settled: w.Settled.UTC()}
}

// Verify reconciles the user databases against each other and the config database's
// awards: award records with their tasks and credit orders, undelivered tasks, credit
// balances with their orders, paid SKU exchanges with their payments, rebates with what
// they granted, and red packets with their items, debits, grabs' credits and refunds.
// Balances and paid exchanges are checked over all rows; the rest over rows created in
// w. The discrepancies come back sorted by kind, user and key.
func Verify(ctx context.Context, src Source, w Window) (Report, error) {
	w = w.normalize()
	awards, err := src.Awards(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("load awards: %w", err)
	}
	var rep Report
	dbs, _ := src.Shape()
	for db := range dbs {
		if err := verifyDB(ctx, src, db, w, awards, &rep); err != nil {
			return Report{}, fmt.Errorf("user database %02d: %w", db+1, err)
		}
	}
	if err := redPackets(ctx, src, w, nil, &rep); err != nil {
		return Report{}, fmt.Errorf("red packets: %w", err)
	}
	Sort(rep.Discrepancies)
	return rep, nil
}

// VerifyRedPackets runs the red packet checks alone, on the packets created in w whose
// ids are in only (a bench run's), ignoring credit orders that name other packets.
func VerifyRedPackets(ctx context.Context, src Source, w Window, only map[string]bool) (Report, error) {
	var rep Report
	if err := redPackets(ctx, src, w.normalize(), only, &rep); err != nil {
		return Report{}, fmt.Errorf("red packets: %w", err)
	}
	Sort(rep.Discrepancies)
	return rep, nil
}

// verifyDB reads one user database's rows and runs every check but the red packets' on them.
func verifyDB(ctx context.Context, src Source, db int, w Window, awards map[int64]Award, rep *Report) error {
	sums := map[string]Sums{}
	_, tables := src.Shape()
	for t := range tables {
		records, err := src.AwardRecords(ctx, db, t, w.Since)
		if err != nil {
			return err
		}
		rep.Checked.AwardRecords += len(records)
		rep.Add(AwardRecords(w, awards, records)...)
		credits, err := src.PrizeCredits(ctx, db, t, w.Since)
		if err != nil {
			return err
		}
		rep.Checked.PrizeCredits += len(credits)
		rep.Add(PrizeCredits(credits)...)
		exchanges, err := src.Exchanges(ctx, db, t)
		if err != nil {
			return err
		}
		rep.Checked.PaidExchanges += len(exchanges)
		rep.Add(Exchanges(w, exchanges)...)
		rebates, err := src.Rebates(ctx, db, t, w.Since)
		if err != nil {
			return err
		}
		rep.Checked.Rebates += len(rebates)
		rep.Add(Rebates(w, rebates)...)
		orders, err := src.CreditOrders(ctx, db, t)
		if err != nil {
			return err
		}
		AddCredits(sums, orders)
	}
	tasks, err := src.Tasks(ctx, db, w.Since)
	if err != nil {
		return err
	}
	rep.Checked.Tasks += len(tasks)
	rep.Add(Tasks(w, tasks)...)
	accounts, err := src.Accounts(ctx, db)
	if err != nil {
		return err
	}
	ds, n := Balances(accounts, sums)
	rep.Checked.CreditAccounts += n
	rep.Add(ds...)
	return nil
}

// redPackets feeds RedPackets in the order its doc states: the window's packets, then
// every credit order, then the older packets the window's orders name.
func redPackets(ctx context.Context, src Source, w Window, only map[string]bool, rep *Report) error {
	check := NewRedPackets(w, src.Route, only)
	dbs, tables := src.Shape()
	for db := range dbs {
		ps, err := src.PacketsSince(ctx, db, w.Since)
		if err != nil {
			return fmt.Errorf("user database %02d: %w", db+1, err)
		}
		check.AddWindow(ps)
	}
	for db := range dbs {
		for t := range tables {
			orders, err := src.CreditOrders(ctx, db, t)
			if err != nil {
				return fmt.Errorf("user database %02d: %w", db+1, err)
			}
			check.AddOrders(orders)
		}
	}
	for _, id := range check.Named() {
		for db := range dbs {
			ps, err := src.Packet(ctx, db, id)
			if err != nil {
				return fmt.Errorf("user database %02d: %w", db+1, err)
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
