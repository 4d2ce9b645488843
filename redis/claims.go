package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Claims are short-lived exclusive claims on raffle orders: a draw claims its order before
// it touches any stock, so two concurrent requests of one user never draw on one order.
// After a crash the claim expires and the order can be used again. The same claims on
// names are leases for jobs that one node at a time should run (NewLeases).
type Claims struct {
	client goredis.UniversalClient
	prefix string
}

// NewClaims returns Claims with keys <prefix>:order_claim:{<orderId>}.
func NewClaims(client goredis.UniversalClient, prefix string) *Claims {
	if prefix != "" {
		prefix += ":"
	}
	return &Claims{client: client, prefix: prefix + "order_claim:"}
}

// NewLeases returns Claims on job names, with keys <prefix>:lease:{<name>}: the node that
// claims a job's name runs it until the claim expires or is released.
func NewLeases(client goredis.UniversalClient, prefix string) *Claims {
	if prefix != "" {
		prefix += ":"
	}
	return &Claims{client: client, prefix: prefix + "lease:"}
}

func (c *Claims) key(id string) string { return c.prefix + "{" + id + "}" }

// Claim takes the order for ttl. It returns a token for Release and false when another
// request holds the order.
func (c *Claims) Claim(ctx context.Context, orderID string, ttl time.Duration) (string, bool, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	token := hex.EncodeToString(b)
	err := c.client.SetArgs(ctx, c.key(orderID), token, goredis.SetArgs{Mode: "NX", TTL: ttl}).Err()
	if errors.Is(err, goredis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("claim order %s: %w", orderID, err)
	}
	return token, true, nil
}

// releaseScript deletes a claim only if it still holds the caller's token.
var releaseScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Release gives the order back early (when a draw failed before using it); a claim that
// expired and was taken by another request is left alone.
func (c *Claims) Release(ctx context.Context, orderID, token string) error {
	if err := releaseScript.Run(ctx, c.client, []string{c.key(orderID)}, token).Err(); err != nil {
		return fmt.Errorf("release order %s: %w", orderID, err)
	}
	return nil
}

// extendScript renews a claim's expiry only if it still holds the caller's token.
var extendScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// Extend renews the caller's claim on the order for ttl from now, for a draw that runs
// longer than its claim was taken for; false when the claim is no longer the caller's
// (it expired, and perhaps another request took it).
func (c *Claims) Extend(ctx context.Context, orderID, token string, ttl time.Duration) (bool, error) {
	n, err := extendScript.Run(ctx, c.client, []string{c.key(orderID)}, token, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("extend claim on order %s: %w", orderID, err)
	}
	return n == 1, nil
}
