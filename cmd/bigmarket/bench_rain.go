package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/bigmarket/bigmarket/sqlstore"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/app"
	"github.com/bigmarket/bigmarket/bench"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/reconcile"
)

// benchRainCmd is "bigmarket bench rain": it loads the config like serve does, so that it
// can sign the users' tokens with the server's secret and verify on the same databases
// the server writes.
func benchRainCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench rain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := commonFlags(fs)
	target := fs.String("url", "", "base URL of the server under test (default: http:// and the config's addr)")
	concurrency := fs.Int("c", 64, "concurrent taps in flight")
	duration := fs.Duration("d", 30*time.Second, "the session's length (the taps run until a second past its end)")
	lead := fs.Duration("lead", time.Second, "time from setup to the session's start")
	out := fs.String("out", "", "write the JSON summary to this file")
	quiet := fs.Bool("q", false, "no progress lines")
	adminToken := fs.String("admin-token", "", "operator token for creating the session (default: BIGMARKET_ADMIN_TOKEN of the config)")
	users := fs.Int("users", 100000, "distinct tappers, taken round-robin")
	prefix := fs.String("prefix", "", "user id prefix (default: random, so that runs do not collide)")
	byToken := fs.Bool("token", false, "tap grab_by_token with each user's token (signed with the config's JWT secret) instead of naming the user")
	prizes := fs.Int("prizes", 10000, "prizes of the session; cash unless -sku-prizes or -award-prizes take some")
	amount := fs.String("amount", "1.00", "yuan of each cash prize, or the least of a range with -max")
	maxAmount := fs.String("max", "", "yuan: cash prizes uniform in [-amount, -max]")
	sku := fs.Int64("sku", 0, "SKU whose draws -sku-prizes give (its stock is topped up by them first)")
	skuPrizes := fs.Int("sku-prizes", 0, "prizes of one -sku draw each")
	awardID := fs.Int("award", 0, "award id -award-prizes give")
	awardPrizes := fs.Int("award-prizes", 0, "prizes of one -award record each")
	userCap := fs.Int("user-cap", 1, "wins a user may take in the session")
	burst := fs.Int("burst", -1, "prizes the plan releases at the start (-1: the default, 1% of -prizes)")
	weights := fs.String("weights", "", "comma-separated slice weights of the plan (default: linear)")
	budget := fs.String("budget", "", "yuan the session's cash may not exceed (default: none)")
	verify := fs.Bool("verify", true, "wait for every win to be recorded, then check the session on the SQL databases")
	winWait := fs.Duration("win-wait", 2*time.Minute, "how long -verify waits for the answered wins to be recorded")
	cpuProfile := fs.String("cpuprofile", "", "write this process's CPU profile of the taps to this file (the generator's own costs: it shares the machine with the server)")
	skew := fs.Duration("skew", 100*time.Millisecond, "clock-skew tolerance of the pacing checks: wins are stamped by each node's clock (nodes on other machines need their clocks' difference), answers are placed on the server's clock from one round trip")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: bigmarket bench rain [flags]

Creates a rain session of -prizes prizes starting -lead from now and lasting -d, then taps
it from -c workers until a second past its end, each tap the next of -users users
(grab, or grab_by_token with -token). It prints the load summary (taps/s, p50/p99), what
the taps were answered (won, missed, ERR_RAIN_001/002/003, 0009), the wins of the
session's last tenth, and per second the plan's allowed(t) against the server's report
and the wins answered. With -verify it waits for the win consumer and for the answered
wins to be recorded, then checks on the server's SQL databases (opened from the same
config as serve: -config, BIGMARKET_*) that no prize was won twice, each win is its
armed prize, caps, total and budget hold, every win was granted once, and the wins kept
to the plan. Exits non-zero when a check fails.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench rain: unexpected argument %q", fs.Arg(0))
	}
	o := bench.RainOptions{
		Base: strings.TrimRight(*target, "/"), AdminToken: *adminToken, Users: *users, Prefix: *prefix,
		Concurrency: *concurrency, Duration: *duration, Lead: *lead, Prizes: *prizes, SKU: *sku, SKUPrizes: *skuPrizes,
		AwardID: *awardID, AwardPrizes: *awardPrizes, UserCap: *userCap, Burst: *burst,
		Verify: *verify, WinWait: *winWait, Skew: *skew,
	}
	var err error
	if o.Amount, err = money.Parse(*amount); err != nil {
		return fmt.Errorf("bench rain: -amount: %w", err)
	}
	if *maxAmount != "" {
		if o.Max, err = money.Parse(*maxAmount); err != nil {
			return fmt.Errorf("bench rain: -max: %w", err)
		}
	}
	if *budget != "" {
		if o.Budget, err = money.Parse(*budget); err != nil {
			return fmt.Errorf("bench rain: -budget: %w", err)
		}
	}
	if o.Weights, err = parseWeights(*weights); err != nil {
		return fmt.Errorf("bench rain: -weights: %w", err)
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if err := benchTarget(cfg, "rain", &o.Base, &o.AdminToken, &o.Prefix, "r"); err != nil {
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
	b := &app.Backends{}
	defer b.Close()
	if o.Verify {
		src, err := rainRows(db)
		if err != nil {
			return err
		}
		if err := app.ForBenchRain(cfg, b, src, &o); err != nil {
			return err
		}
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	rep, err := bench.RunRain(ctx, o, stdout)
	if *out != "" && rep.Scenario != "" {
		if werr := bench.WriteReport(*out, rep); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// rainRows returns the reader of the rain sessions' rows on the server's databases.
func rainRows(db bench.Stores) (reconcile.RainSource, error) {
	// The rain store reads the sessions, prizes and wins; the user store looks up what each
	// win granted in its winner's tables.
	users := sqlstore.NewUserStore(db.Users, db.Router)
	return struct {
		*sqlstore.RainStore
		*sqlstore.UserStore
	}{sqlstore.NewRainStore(db.Config, users), users}, nil
}

// parseWeights reads comma-separated slice weights; empty is none.
func parseWeights(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var ws []int
	for f := range strings.SplitSeq(s, ",") {
		w, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || w < 0 {
			return nil, fmt.Errorf("weight %q: want a whole number, 0 or more", f)
		}
		ws = append(ws, w)
	}
	return ws, nil
}

// startCPUProfile starts the CPU profile into path; stop ends it and closes the file.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
