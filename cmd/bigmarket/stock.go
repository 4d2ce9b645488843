package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
)

// stockCmd runs "bigmarket stock add": it tops up an award's or a SKU's stock through the
// server's POST /api/v1/admin/stock/add, with the configured admin token.
func stockCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "add" {
		fmt.Fprintln(stderr, `usage: bigmarket stock add (-strategy S -award A | -sku K) -units N [-url U]`)
		return errors.New(`stock: the only subcommand is "add"`)
	}
	fs := flag.NewFlagSet("stock add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := adminFlags(fs, "stock add")
	strategyID := fs.Int64("strategy", 0, "strategy id of the award to top up")
	awardID := fs.Int64("award", 0, "award id to top up (with -strategy)")
	sku := fs.Int64("sku", 0, "SKU to top up (instead of -strategy and -award)")
	units := fs.Int64("units", 0, "units to add (positive)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("stock add: unexpected arguments %q", fs.Args())
	}
	body := map[string]int64{"units": *units}
	switch {
	case *units <= 0:
		return errors.New("stock add: -units must be positive")
	case *sku != 0 && (*strategyID != 0 || *awardID != 0):
		return errors.New("stock add: name either -strategy and -award, or -sku")
	case *sku > 0:
		body["sku"] = *sku
	case *strategyID > 0 && *awardID > 0:
		body["strategyId"], body["awardId"] = *strategyID, *awardID
	default:
		return errors.New("stock add: -strategy and -award, or -sku, are required (positive)")
	}
	client, err := load()
	if err != nil {
		return err
	}
	raw, _ := json.Marshal(body)
	var data struct {
		AwardCount *int64 `json:"awardCount"`
		StockCount *int64 `json:"stockCount"`
	}
	if err := client.call(ctx, http.MethodPost, "/api/v1/admin/stock/add", raw, &data); err != nil {
		return fmt.Errorf("stock add: %w", err)
	}
	switch {
	case data.AwardCount != nil:
		fmt.Fprintf(stdout, "award %d of strategy %d: added %d units, award_count is now %d\n", *awardID, *strategyID, *units, *data.AwardCount)
	case data.StockCount != nil:
		fmt.Fprintf(stdout, "sku %d: added %d units, stock_count is now %d\n", *sku, *units, *data.StockCount)
	default:
		fmt.Fprintf(stdout, "added %d units\n", *units)
	}
	return nil
}
