package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/app"
	"github.com/bigmarket/bigmarket/httpapi"
)

// tokenCmd prints a user token for the _by_token endpoints, signed with the configured
// JWT secret (the demo's when none is set): for trying the API and for load tests.
func tokenCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := commonFlags(fs)
	user := fs.String("user", "", "the user (openId claim)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := activity.CheckUserID(*user); err != nil {
		return fmt.Errorf("-user: %w", err)
	}
	if *ttl <= 0 {
		return errors.New("-ttl must be positive")
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, httpapi.SignToken([]byte(cfg.JWTSecret), *user, time.Now().Add(*ttl)))
	return nil
}

// adminTokenCmd prints the demo's admin token, the one serve keeps in the data directory
// (making it up and keeping it there if serve has not run yet), for scripts:
// TOKEN=$(bigmarket admin-token). Production has no such token and refuses.
func adminTokenCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("admin-token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := commonFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if cfg.Mode != app.ModeDemo {
		return errors.New("admin-token: production keeps no admin token of its own: it is BIGMARKET_ADMIN_TOKEN, as configured")
	}
	if err := cfg.SaveAdminToken(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, cfg.AdminToken)
	return nil
}
