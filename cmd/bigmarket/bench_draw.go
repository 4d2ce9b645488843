package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/app"
	"github.com/bigmarket/bigmarket/bench"
	"github.com/bigmarket/bigmarket/httpapi"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// benchDrawCmd is "bigmarket bench draw": it loads the config like serve does, so that
// it can verify on the same SQL databases the server writes.
func benchDrawCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench draw", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := commonFlags(fs)
	target := fs.String("url", "", "base URL of the server under test (default: http:// and the config's addr); with -draws-per-user, a comma-separated list of the deployment's servers, the first also taking the admin calls")
	perUser := fs.Int("draws-per-user", 0, "instead of a timed run, every user draws exactly this many times, alternating between the -url servers, and each user is checked against its answers")
	concurrency := fs.Int("c", 64, "concurrent draws in flight")
	duration := fs.Duration("d", 30*time.Second, "how long to measure")
	requests := fs.Int64("n", 0, "stop after this many measured draws (0: no limit)")
	warmup := fs.Duration("warmup", 2*time.Second, "draws sent before measuring (verified, not measured)")
	out := fs.String("out", "", "write the JSON summary to this file")
	quiet := fs.Bool("q", false, "no progress lines")
	users := fs.Int("users", 10000, "distinct users to provision and draw with")
	activityID := fs.Int64("activity", 100301, "activity to draw in")
	sku := fs.Int64("sku", 9011, "SKU recharged to every user (9011: 150 draws a day)")
	adminToken := fs.String("admin-token", "", "operator token for the recharge (default: BIGMARKET_ADMIN_TOKEN of the config)")
	prefix := fs.String("prefix", "", "user id prefix (default: random, so that runs do not collide)")
	provisionC := fs.Int("provision-c", 4, "concurrent provisioning requests (of up to 1,000 users each)")
	verify := fs.Bool("verify", true, "check the invariants on the SQL databases after the run")
	byToken := fs.Bool("token", false, "draw with draw_by_token and each user's token (signed with the config's JWT secret) instead of naming the user: what a production server serves")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: bigmarket bench draw [flags]

Tops the SKU's stock up by -users units (admin/stock/add) and provisions -users users with
one recharge of it each through bulk provisioning (admin/activity/provision, 1,000 users a
request, -provision-c requests at a time), draws in the activity at
-c concurrency for -d (or -n draws), then checks on the server's SQL databases (opened
from the same config as serve: -config, BIGMARKET_*) that no award was granted beyond its
stock, no surplus is negative, and every successful draw left exactly one award record,
one task and one used raffle order. Exits non-zero when a check fails.

With -draws-per-user N every user instead draws exactly N times (-d, -n and -warmup do
not apply), round after round over all users, a user's draws alternating between the
servers of -url (e.g. -url http://127.0.0.1:8091,http://127.0.0.1:8092); after the
writer drained, each user's SQL quota must have lost exactly its draws answered 0000
(recharged − answered, plus at most its draws answered 0009 or not at all) on account,
month and day, have one award record per unit taken, and a record of each award it was
answered.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench draw: unexpected argument %q", fs.Arg(0))
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	o := bench.DrawOptions{
		AdminToken: *adminToken, ActivityID: *activityID, SKU: *sku,
		Users: *users, Prefix: *prefix, ProvisionConcurrency: *provisionC, Concurrency: *concurrency,
		DrawsPerUser: *perUser, Duration: *duration, Requests: *requests, Warmup: *warmup, Verify: *verify,
	}
	if *target != "" {
		for u := range strings.SplitSeq(*target, ",") {
			o.Bases = append(o.Bases, strings.TrimRight(strings.TrimSpace(u), "/"))
		}
		o.Base = o.Bases[0]
	}
	if err := benchTarget(cfg, "draw", &o.Base, &o.AdminToken, &o.Prefix, "b"); err != nil {
		return err
	}
	if len(o.Bases) == 0 {
		o.Bases = []string{o.Base}
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
	if err := app.ForBenchDraw(ctx, cfg, b, db, &o); err != nil {
		return err
	}
	rep, err := bench.RunDraw(ctx, o, db, stdout)
	if *out != "" && rep.Scenario != "" {
		if werr := bench.WriteReport(*out, rep); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// benchStores opens the server's SQL databases, as serve names them in cfg, for a bench
// to verify on; with open unset it opens nothing. The returned func closes them.
func benchStores(ctx context.Context, cfg app.Config, open bool) (bench.Stores, func(), error) {
	if !open {
		return bench.Stores{}, func() {}, nil
	}
	b := &app.Backends{}
	if err := app.OpenSQL(ctx, cfg, b, false, false); err != nil {
		b.Close()
		return bench.Stores{}, nil, err
	}
	router, err := sqlstore.NewRouter(cfg.DBCount, cfg.TBCount)
	if err != nil {
		b.Close()
		return bench.Stores{}, nil, err
	}
	return bench.Stores{Config: b.ConfigDB, Users: b.UserDBs, Router: router, Location: cfg.Location()}, b.Close, nil
}

// benchTarget fills what a bench command's flags left empty from the config: the
// server's URL, the admin token (unless the demo made one up, which the bench cannot
// know), and a random user id prefix starting with letter, so that runs do not collide.
func benchTarget(cfg app.Config, command string, base, adminToken, prefix *string, letter string) error {
	if *base == "" {
		*base = baseURL(cfg.Addr)
	}
	if *adminToken == "" {
		if cfg.GeneratedAdminToken() {
			return fmt.Errorf("bench %s: no admin token: set BIGMARKET_ADMIN_TOKEN as for the server, or -admin-token", command)
		}
		*adminToken = cfg.AdminToken
	}
	if *prefix == "" {
		b := make([]byte, 3)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		*prefix = letter + hex.EncodeToString(b)
	}
	return nil
}

// userTokens signs the benches' user tokens with the config's JWT secret (the server's,
// when the bench runs with its config), valid for a day: longer than any run.
func userTokens(cfg app.Config) func(user string) string {
	secret := []byte(cfg.JWTSecret)
	exp := time.Now().Add(24 * time.Hour)
	return func(user string) string { return httpapi.SignToken(secret, user, exp) }
}

// baseURL turns a listen address into the URL a local client reaches it at.
func baseURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://127.0.0.1:8091"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
