// Package redis is the hot-state adapter: Redis clients (standalone or Cluster), an
// embedded Redis-compatible server for the one-binary default, keys and Lua scripts.
package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Defaults for Options fields left zero. Every draw makes one short Lua call, so the
// pool is large and the timeouts are short: a stuck Redis fails a draw quickly instead
// of queueing the whole crowd behind it.
const (
	DefaultPoolSize     = 128
	DefaultDialTimeout  = 2 * time.Second
	DefaultReadTimeout  = time.Second
	DefaultWriteTimeout = time.Second
	DefaultPoolTimeout  = 2 * time.Second
)

// Options says how to reach Redis. Several Addrs, or Cluster set, mean Redis Cluster
// (the addresses are seeds); otherwise Addrs[0] is a standalone server.
type Options struct {
	Addrs    []string
	Cluster  bool
	Username string
	Password string
	// DB selects the database of a standalone server; Cluster has only database 0.
	DB int
	// PoolSize is the number of connections per node (default DefaultPoolSize).
	PoolSize     int
	MinIdleConns int
	DialTimeout  time.Duration // default DefaultDialTimeout
	ReadTimeout  time.Duration // default DefaultReadTimeout
	WriteTimeout time.Duration // default DefaultWriteTimeout
	PoolTimeout  time.Duration // default DefaultPoolTimeout
}

// Open returns a client for o and pings it, so a wrong address or password is reported
// at start rather than on the first draw. The caller closes the client.
func Open(ctx context.Context, o Options) (goredis.UniversalClient, error) {
	if len(o.Addrs) == 0 {
		return nil, errors.New("open redis: no address")
	}
	for _, a := range o.Addrs {
		if strings.TrimSpace(a) == "" {
			return nil, fmt.Errorf("open redis: empty address in %q", o.Addrs)
		}
	}
	if o.PoolSize <= 0 {
		o.PoolSize = DefaultPoolSize
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.PoolTimeout <= 0 {
		o.PoolTimeout = DefaultPoolTimeout
	}
	client := goredis.NewUniversalClient(&goredis.UniversalOptions{
		Addrs:         o.Addrs,
		IsClusterMode: o.Cluster,
		Username:      o.Username,
		Password:      o.Password,
		DB:            o.DB,
		PoolSize:      o.PoolSize,
		MinIdleConns:  o.MinIdleConns,
		DialTimeout:   o.DialTimeout,
		ReadTimeout:   o.ReadTimeout,
		WriteTimeout:  o.WriteTimeout,
		PoolTimeout:   o.PoolTimeout,
		// No CLIENT SETINFO round trip on every new connection.
		DisableIdentity: true,
		// Never send a command again after a failure: go-redis retries a read timeout
		// by default, and a script whose reply timed out may have run (a stock
		// deduction retried three times took four units for one answer). The caller
		// answers the unknown outcome (0009) or settles it (a pending draw). A Cluster
		// client still follows MOVED/ASK, and retries a timeout within MaxRedirects:
		// a Cluster failover's guard is its own work.
		MaxRetries: -1,
		// Deadlines of callers (the draw's time budget) bound each command, not only ReadTimeout.
		ContextTimeoutEnabled: true,
	})
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		mode := "standalone"
		if o.Cluster || len(o.Addrs) > 1 {
			mode = "cluster"
		}
		return nil, fmt.Errorf("open redis (%s) %s: ping: %w", mode, strings.Join(o.Addrs, ","), err)
	}
	return client, nil
}
