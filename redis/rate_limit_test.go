package redis

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bigmarket/bigmarket/internal/testenv"
)

// TestRateLimiterSharesOneBudget checks the cluster-wide limit on every backend: a burst
// is granted exactly once however many callers race for it, users do not share budgets,
// and a bad limit is refused.
func TestRateLimiterSharesOneBudget(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			client := b.client(t)
			prefix := testenv.Unique("bmtest_rl_")
			t.Cleanup(func() {
				ctx := context.Background()
				iter := client.Scan(ctx, 0, "rate:"+prefix+":*", 1000).Iterator()
				for iter.Next(ctx) {
					client.Del(ctx, iter.Val())
				}
			})
			// Two limiters on one client stand for two nodes; one takes its permits through
			// the client's auto-pipeliner, as serve does.
			ap, err := client.AutoPipeline()
			if err != nil {
				t.Fatal(err)
			}
			nodes := []*RateLimiter{NewRateLimiter(client, prefix), NewRateLimiter(ap, prefix)}
			ctx := context.Background()
			const burst, callers = 10, 60
			var granted atomic.Int64
			var wg sync.WaitGroup
			for i := range callers {
				wg.Go(func() {
					ok, err := nodes[i%2].Allow(ctx, "flood", 0.001, burst) // no refill within the test
					if err != nil {
						t.Error(err)
					}
					if ok {
						granted.Add(1)
					}
				})
			}
			wg.Wait()
			if n := granted.Load(); n != burst {
				t.Fatalf("granted %d of %d racing calls, want exactly the burst %d", n, callers, burst)
			}
			if ok, err := nodes[0].Allow(ctx, "someone-else", 0.001, burst); err != nil || !ok {
				t.Fatalf("another user: %v %v, want granted", ok, err)
			}
			if _, err := nodes[0].Allow(ctx, "flood", 0, burst); err == nil {
				t.Fatal("a zero rate was accepted")
			}
		})
	}
}
