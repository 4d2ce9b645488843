package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/bench"
)

// benchCmd load-tests a running server: by default strategy/random_raffle; "bench draw"
// runs the activity/draw scenario (bench_draw.go), "bench grab" the red packet grab
// (bench_grab.go); -scenario flood sends every draw as one user, to measure what the front
// line costs when it refuses a flood.
func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "draw":
			return benchDrawCmd(ctx, args[1:], stdout, stderr)
		case "grab":
			return benchGrabCmd(ctx, args[1:], stdout, stderr)
		case "random_raffle":
			args = args[1:]
		}
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("url", "http://127.0.0.1:8091", "base URL of the server under test")
	scenario := fs.String("scenario", "random_raffle", `what to load: random_raffle, or flood (activity/draw as one user); "bigmarket bench draw -h" and "bigmarket bench grab -h" for the draw and grab scenarios`)
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	base := strings.TrimRight(*target, "/")
	var opts bench.Options
	switch *scenario {
	case "random_raffle":
		if *armory {
			url := fmt.Sprintf("%s/api/v1/raffle/strategy/strategy_armory?strategyId=%d", base, *strategyID)
			if err := bench.Armory(ctx, url, os.Getenv("BIGMARKET_ADMIN_TOKEN")); err != nil {
				return err
			}
		}
		body := []byte(`{"strategyId":` + strconv.FormatInt(*strategyID, 10) + `}`)
		opts = bench.Options{URL: base + "/api/v1/raffle/strategy/random_raffle", Body: func(int, uint64) []byte { return body }}
		// random_raffle spends real stock: production mode serves it to the operator only.
		if token := os.Getenv("BIGMARKET_ADMIN_TOKEN"); token != "" {
			opts.Header = http.Header{"Authorization": {"Bearer " + token}}
		}
	case "flood":
		body, err := json.Marshal(map[string]any{"userId": *user, "activityId": *activityID})
		if err != nil {
			return err
		}
		opts = bench.Options{URL: base + "/api/v1/raffle/activity/draw", Body: func(int, uint64) []byte { return body }}
	case "draw", "grab":
		return fmt.Errorf(`the %s scenario has flags of its own: run "bigmarket bench %[1]s [flags]"`, *scenario)
	default:
		return fmt.Errorf("unknown scenario %q (have: random_raffle, flood, draw, grab)", *scenario)
	}
	opts.Concurrency, opts.Duration, opts.Requests, opts.Warmup = *concurrency, *duration, *requests, *warmup
	if !*quiet {
		opts.Progress = stderr
	}
	sum, err := bench.Run(ctx, opts)
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
