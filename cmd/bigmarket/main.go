// Command bigmarket is the marketing platform: serve (default), migrate, bench, verify,
// admin-token, token, stock, dlq.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/bigmarket/bigmarket/app"
)

const usage = `usage: bigmarket [command] [flags]

commands:
  serve          serve the API (default)
  migrate        create or update the schemas; --seed inserts the demo data
  bench          load-test strategy/random_raffle on a running server
  bench draw     provision users through the operator recharge, load-test activity/draw,
                 then verify stock, surpluses and one award record + task per draw
  bench grab     send operator red packets, load-test redpacket/grab, wait for every grab
                 to be credited, then verify the packets' items, grabs and credits
  verify         reconcile the databases: award records, tasks, credits, exchanges, rebates,
                 red packets
  admin-token    print the demo's admin token (kept in the data directory) for the admin
                 and dcc endpoints
  token          print a user token (HS256 JWT) for the _by_token endpoints
  stock add      top up an award's or a SKU's stock on a running server
                 (-strategy S -award A | -sku K) -units N
  dlq list       list the events their consumers gave up on (-stream S, -since 24h)
  dlq replay     publish dead letters again once the cause is fixed (<seq> | -all)

Run "bigmarket <command> -h" for a command's flags.`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "bigmarket:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serveCmd(ctx, args, stderr)
	case "migrate":
		return migrateCmd(ctx, args, stderr)
	case "bench":
		return benchCmd(ctx, args, stdout, stderr)
	case "verify":
		return verifyCmd(ctx, args, stdout, stderr)
	case "admin-token":
		return adminTokenCmd(args, stdout, stderr)
	case "token":
		return tokenCmd(ctx, args, stdout, stderr)
	case "stock":
		return stockCmd(ctx, args, stdout, stderr)
	case "dlq":
		return dlqCmd(ctx, args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// commonFlags registers the flags shared by serve and migrate and returns a loader that
// applies them over defaults, the YAML file and the environment.
func commonFlags(fs *flag.FlagSet) func() (app.Config, error) {
	addr := fs.String("addr", "", "listen address (BIGMARKET_ADDR, default :8091)")
	data := fs.String("data", "", "embedded data directory (BIGMARKET_DATA_DIR, default ./data)")
	file := fs.String("config", "", "optional YAML config file (BIGMARKET_CONFIG)")
	return func() (app.Config, error) {
		cfg, err := app.LoadConfig(*file, os.Environ())
		if err != nil {
			return app.Config{}, err
		}
		if *addr != "" {
			cfg.Addr = *addr
		}
		if *data != "" {
			cfg.DataDir = *data
		}
		if err := cfg.Validate(); err != nil {
			return app.Config{}, err
		}
		return cfg, nil
	}
}
