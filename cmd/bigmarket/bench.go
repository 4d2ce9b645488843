package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/bench"
)

// benchCmd load-tests a running server: by default strategy/random_raffle; "bench draw"
// runs the activity/draw scenario (bench_draw.go), "bench grab" the red packet grab
// (bench_grab.go), "bench rain" a red packet rain session (bench_rain.go); -scenario flood sends every draw as one user, to measure what the front
// line costs when it refuses a flood.
func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "draw":
			return benchDrawCmd(ctx, args[1:], stdout, stderr)
		case "grab":
			return benchGrabCmd(ctx, args[1:], stdout, stderr)
		case "rain":
			return benchRainCmd(ctx, args[1:], stdout, stderr)
		case "random_raffle":
			args = args[1:]
		}
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := commonFlags(fs)
	target := fs.String("url", "http://127.0.0.1:8091", "base URL of the server under test")
	scenario := fs.String("scenario", "random_raffle", `what to load: random_raffle, or flood (activity/draw as one user); "bigmarket bench draw -h", "bigmarket bench grab -h" and "bigmarket bench rain -h" for the draw, grab and rain scenarios`)
	strategyID := fs.Int64("strategy", 100006, "strategy id for random_raffle")
	activityID := fs.Int64("activity", 100301, "activity id for flood")
	user := fs.String("user", "flooder", "the one user of flood")
	concurrency := fs.Int("c", 64, "concurrent requests in flight")
	duration := fs.Duration("d", 30*time.Second, "how long to run")
	requests := fs.Int64("n", 0, "stop after this many requests (0: no limit)")
	warmup := fs.Duration("warmup", 2*time.Second, "unrecorded warm-up before measuring")
	armory := fs.Bool("armory", true, "call strategy_armory first")
	out := fs.String("out", "", "write the JSON summary to this file")
	quiet := fs.Bool("q", false, "no progress lines")
	adminToken := fs.String("admin-token", "", "operator token for random_raffle (default: BIGMARKET_ADMIN_TOKEN of the config, or the demo's stored one)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	token := *adminToken
	if token == "" && !cfg.GeneratedAdminToken() {
		token = cfg.AdminToken
	}
	base := strings.TrimRight(*target, "/")
	run := bench.Options{Concurrency: *concurrency, Duration: *duration, Requests: *requests, Warmup: *warmup}
	if !*quiet {
		run.Progress = stderr
	}
	var sum bench.Summary
	switch *scenario {
	case "random_raffle":
		sum, err = bench.Raffle(ctx, base, *strategyID, *armory, token, run)
	case "flood":
		sum, err = bench.Flood(ctx, base, *user, *activityID, run)
	case "draw", "grab", "rain":
		return fmt.Errorf(`the %s scenario has flags of its own: run "bigmarket bench %[1]s [flags]"`, *scenario)
	default:
		return fmt.Errorf("unknown scenario %q (have: random_raffle, flood, draw, grab, rain)", *scenario)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	fmt.Fprintln(stdout, sum.String()) // also the partial summary of an interrupted run
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := sum.WriteJSON(f); err != nil {
			return fmt.Errorf("write summary: %w", err)
		}
	}
	return nil
}
