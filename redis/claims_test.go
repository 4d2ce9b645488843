package redis

import (
	"context"
	"testing"
	"time"
)

// TestClaimExtend renews a claim only for its holder: a draw that runs long keeps its
// order, and a stale token cannot extend a claim that is no longer its own.
func TestClaimExtend(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			client := b.client(t)
			prefix := uniquePrefix(t, client)
			c := NewClaims(client, prefix)
			ctx := context.Background()
			token, ok, err := c.Claim(ctx, "o1", time.Second)
			if err != nil || !ok {
				t.Fatalf("claim: %v %v", ok, err)
			}
			if ok, err := c.Extend(ctx, "o1", token, time.Minute); err != nil || !ok {
				t.Fatalf("extend by the holder: %v %v", ok, err)
			}
			if ttl := client.PTTL(ctx, prefix+":order_claim:{o1}").Val(); ttl < 30*time.Second {
				t.Fatalf("claim expires in %s after an extension to a minute", ttl)
			}
			if ok, err := c.Extend(ctx, "o1", "not-the-token", time.Hour); err != nil || ok {
				t.Fatalf("extend with another token: %v %v, want refused", ok, err)
			}
			if ttl := client.PTTL(ctx, prefix+":order_claim:{o1}").Val(); ttl > time.Minute {
				t.Fatalf("another token extended the claim to %s", ttl)
			}
			if err := c.Release(ctx, "o1", token); err != nil {
				t.Fatal(err)
			}
			if ok, err := c.Extend(ctx, "o1", token, time.Minute); err != nil || ok {
				t.Fatalf("extend of a released claim: %v %v, want refused", ok, err)
			}
			if n := client.Exists(ctx, prefix+":order_claim:{o1}").Val(); n != 0 {
				t.Fatal("extending a released claim brought it back")
			}
		})
	}
}
