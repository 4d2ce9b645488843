package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/bench"
	"github.com/bigmarket/bigmarket/money"
)

// benchGrabCmd is "bigmarket bench grab": it loads the config like serve does, so that it
// can verify on the same SQL databases the server writes.
func benchGrabCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench grab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := commonFlags(fs)
	target := fs.String("url", "", "base URL of the server under test (default: http:// and the config's addr)")
	concurrency := fs.Int("c", 64, "concurrent grabs in flight")
	duration := fs.Duration("d", 10*time.Second, "how long to measure")
	requests := fs.Int64("n", 0, "stop after this many measured grabs (0: no limit)")
	warmup := fs.Duration("warmup", 0, "grabs sent before measuring (verified, not measured; they take items too)")
	out := fs.String("out", "", "write the JSON summary to this file")
	quiet := fs.Bool("q", false, "no progress lines")
	adminToken := fs.String("admin-token", "", "operator token for sending the packets (default: BIGMARKET_ADMIN_TOKEN of the config)")
	packets := fs.Int("packets", 10, "operator packets to send before grabbing")
	items := fs.Int("items", 1000, "items per packet")
	amount := fs.String("amount", "1000.00", "total yuan per packet")
	users := fs.Int("users", 100000, "distinct grabbers")
	prefix := fs.String("prefix", "", "user id prefix (default: random, so that runs do not collide)")
	verify := fs.Bool("verify", true, "wait for every grab to be credited, then check the red packets on the SQL databases")
	byToken := fs.Bool("token", false, "grab with grab_by_token and each user's token (signed with the config's JWT secret) instead of naming the user: what a production server serves")
	creditWait := fs.Duration("credit-wait", 2*time.Minute, "how long -verify waits for the grabs to be credited")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: bigmarket bench grab [flags]

Sends -packets operator red packets of -items items each, then grabs at -c concurrency for
-d (or -n grabs): the n-th grab is user n mod -users grabbing packet n mod -packets, so
that most grabs are a user's first in that packet. Once the packets are empty the rest
answer ERR_RP_001; the summary gives the rate of all answers and of the granted grabs.
With -verify it waits for the consumer to credit every granted grab, then checks on the
server's SQL databases (opened from the same config as serve: -config, BIGMARKET_*) that
the grabs match the answers and verify's red packet checks find nothing. Exits non-zero
when a check fails.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench grab: unexpected argument %q", fs.Arg(0))
	}
	total, err := money.Parse(*amount)
	if err != nil {
		return fmt.Errorf("bench grab: -amount: %w", err)
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	o := bench.GrabOptions{
		Base: strings.TrimRight(*target, "/"), AdminToken: *adminToken, Packets: *packets, Items: *items, Amount: total,
		Users: *users, Prefix: *prefix, Concurrency: *concurrency, Duration: *duration, Requests: *requests,
		Warmup: *warmup, Verify: *verify, CreditWait: *creditWait,
	}
	if err := benchTarget(cfg, "grab", &o.Base, &o.AdminToken, &o.Prefix, "g"); err != nil {
		return err
	}
	if *byToken {
		o.Token = userTokens(cfg)
	}
	if !*quiet {
		o.Progress = stderr
	}
	db, closeDB, err := benchStores(ctx, cfg, o.Verify)
	if err != nil {
		return err
	}
	defer closeDB()
	rep, err := bench.RunGrab(ctx, o, db, stdout)
	if *out != "" && rep.Scenario != "" {
		if werr := bench.WriteReport(*out, rep); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}
