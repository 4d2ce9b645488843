package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/bench"
)

// adminClient calls the operator endpoints of a running server with the admin token:
// the commands that act on a live deployment (stock add, dlq) go through the server, so
// that its checks, locks and logs apply.
type adminClient struct {
	base  string // the server's base URL, without a trailing slash
	token string
	http  *http.Client
}

// adminFlags registers the flags of a command that calls the server (the common ones,
// -url and -admin-token) and returns the loader of its client; cmd names the command in
// errors.
func adminFlags(fs *flag.FlagSet, cmd string) func() (adminClient, error) {
	load := commonFlags(fs)
	target := fs.String("url", "", "base URL of the server (default: http:// and the config's addr)")
	adminToken := fs.String("admin-token", "", "operator token (default: BIGMARKET_ADMIN_TOKEN of the config)")
	return func() (adminClient, error) {
		cfg, err := load()
		if err != nil {
			return adminClient{}, err
		}
		c := adminClient{base: *target, token: *adminToken, http: &http.Client{Timeout: 30 * time.Second}}
		if c.base == "" {
			c.base = baseURL(cfg.Addr)
		}
		c.base = strings.TrimRight(c.base, "/")
		if c.token == "" {
			if cfg.GeneratedAdminToken() {
				return adminClient{}, errors.New(cmd + ": no admin token: set BIGMARKET_ADMIN_TOKEN as for the server, or -admin-token")
			}
			c.token = cfg.AdminToken
		}
		return c, nil
	}
}

// call sends body (nil: none) to path and decodes a successful answer's data into data;
// any code but 0000 is an error that quotes it.
func (c adminClient) call(ctx context.Context, method, path string, body []byte, data any) error {
	env, err := bench.Call(ctx, c.http, method, c.base+path, c.token, body, data)
	if err != nil {
		return err
	}
	if env.Code != "0000" {
		return fmt.Errorf("%s %s", env.Code, env.Info)
	}
	return nil
}
