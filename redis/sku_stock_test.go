package redis

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/internal/testenv"
)

// uniquePrefix returns a key prefix whose keys are deleted when the test ends.
func uniquePrefix(t *testing.T, client goredis.UniversalClient) string {
	prefix := testenv.Unique("bmtest_")
	t.Cleanup(func() {
		ctx := context.Background()
		iter := client.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
	})
	return prefix
}

func TestSKUStock(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			client := b.client(t)
			st := NewSKUStock(client, uniquePrefix(t, client)).Fence(b.fence)
			ctx := context.Background()
			exp := time.Now().Add(time.Hour)
			if _, _, err := st.Deduct(ctx, 9011, exp); !errors.Is(err, activity.ErrSKUStockMissing) || errors.Is(err, activity.ErrSKUStockExhausted) {
				t.Fatalf("deduct before preheat: %v, want missing (stock unknown), not exhausted", err)
			}
			if n, _ := client.Exists(ctx, st.CounterKey(9011)).Result(); n != 0 {
				t.Fatal("deduct created the missing counter")
			}
			if err := st.Preheat(ctx, 9011, 10, 10, exp); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			seen := map[int64]bool{}
			var wg sync.WaitGroup
			for range 30 {
				wg.Go(func() {
					_, n, err := st.Deduct(ctx, 9011, exp)
					if errors.Is(err, activity.ErrSKUStockExhausted) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					defer mu.Unlock()
					if seen[n] {
						t.Errorf("unit %d granted twice", n)
					}
					seen[n] = true
				})
			}
			wg.Wait()
			if len(seen) != 10 {
				t.Errorf("granted %d units of stock 10", len(seen))
			}
			// A stale preheat (the counter set back up) grants nothing more.
			client.Set(ctx, st.CounterKey(9011), 10, time.Hour)
			if _, _, err := st.Deduct(ctx, 9011, exp); !errors.Is(err, activity.ErrSKUStockExhausted) {
				t.Errorf("deduct after a stale preheat: %v, want exhausted", err)
			}
			if l, err := st.Remaining(ctx, 9011); err != nil || !l.HasIssued || l.Issued != 10 {
				t.Errorf("level %+v %v", l, err)
			}
			// A top-up of 2 sells exactly 2 more, numbered 11 and 12.
			if ok, err := st.TopUp(ctx, 9011, 12, exp); err != nil || !ok {
				t.Fatalf("top-up: %v %v", ok, err)
			}
			for _, want := range []int64{11, 12} {
				if left, n, err := st.Deduct(ctx, 9011, exp); err != nil || n != want || left != 12-want {
					t.Fatalf("deduct after a top-up: %d left, unit %d, %v; want unit %d", left, n, err, want)
				}
			}
			if _, _, err := st.Deduct(ctx, 9011, exp); !errors.Is(err, activity.ErrSKUStockExhausted) {
				t.Errorf("deduct after the new units: %v, want exhausted", err)
			}
		})
	}
}

// TestLeases: a held name cannot be claimed again, only its holder's token releases it,
// an expired lease can be claimed again (a crashed node's job goes on elsewhere), and of
// concurrent claims exactly one wins.
func TestLeases(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			client := b.client(t)
			c := NewLeases(client, uniquePrefix(t, client))
			ctx := context.Background()
			token, ok, err := c.Claim(ctx, "o1", time.Minute)
			if err != nil || !ok {
				t.Fatalf("first claim: %v %v", ok, err)
			}
			if _, ok, _ := c.Claim(ctx, "o1", time.Minute); ok {
				t.Fatal("a held name was claimed twice")
			}
			if err := c.Release(ctx, "o1", "not-the-token"); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := c.Claim(ctx, "o1", time.Minute); ok {
				t.Fatal("a release with the wrong token freed the claim")
			}
			if err := c.Release(ctx, "o1", token); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := c.Claim(ctx, "o1", 300*time.Millisecond); !ok {
				t.Fatal("claim after release failed")
			}
			// After a crash the claim expires and the order can be claimed again.
			testenv.Eventually(t, 10*time.Second, "an expired claim released", func() bool {
				_, ok, _ := c.Claim(ctx, "o1", time.Minute)
				return ok
			})
			// Concurrent claims: exactly one wins.
			var wins sync.WaitGroup
			var mu sync.Mutex
			won := 0
			for range 20 {
				wins.Go(func() {
					if _, ok, err := c.Claim(ctx, "o2", time.Minute); err == nil && ok {
						mu.Lock()
						won++
						mu.Unlock()
					}
				})
			}
			wins.Wait()
			if won != 1 {
				t.Errorf("%d concurrent claims won, want 1", won)
			}
		})
	}
}
