package redis

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/gate"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/strategy"
)

// cleanPrefix returns a unique key prefix whose keys are deleted when the test ends.
func cleanPrefix(t *testing.T, client goredis.UniversalClient) string {
	t.Helper()
	prefix := testenv.Unique("bmtest_gate_")
	t.Cleanup(func() {
		ctx := context.Background()
		iter := client.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
	})
	return prefix
}

func TestWins(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			client := b.client(t)
			w := NewWins(client, cleanPrefix(t, client), time.Hour)
			ctx := context.Background()
			hold := func(user, token string) gate.Hold {
				t.Helper()
				h, err := w.Hold(ctx, user, 7, token, time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				return h
			}
			// A set that never knew the activity (or lost it) is Unknown, and held.
			if h := hold("alice", "t1"); h != gate.Unknown {
				t.Fatalf("first hold: %v, want Unknown", h)
			}
			if h := hold("alice", "t2"); h != gate.Busy {
				t.Fatalf("second hold while the first runs: %v, want Busy", h)
			}
			if err := w.Rebuilt(ctx, "alice", 7, false); err != nil {
				t.Fatal(err)
			}
			if err := w.Release(ctx, "alice", 7, "t2"); err != nil { // not the holder's token
				t.Fatal(err)
			}
			if h := hold("alice", "t3"); h != gate.Busy {
				t.Fatalf("hold after a release by the wrong token: %v, want Busy", h)
			}
			if err := w.Release(ctx, "alice", 7, "t1"); err != nil {
				t.Fatal(err)
			}
			if h := hold("alice", "t4"); h != gate.Held {
				t.Fatalf("hold after the rebuild: %v, want Held", h)
			}
			if err := w.Note(ctx, "alice", 7); err != nil {
				t.Fatal(err)
			}
			w.Release(ctx, "alice", 7, "t4")
			if h := hold("alice", "t5"); h != gate.Won {
				t.Fatalf("hold after a win: %v, want Won", h)
			}
			if err := w.Unnote(ctx, "alice", 7); err != nil {
				t.Fatal(err)
			}
			if h := hold("alice", "t6"); h != gate.Held {
				t.Fatalf("hold after the win was taken back: %v, want Held", h)
			}
			w.Release(ctx, "alice", 7, "t6")
			// The set's loss makes it Unknown again, never "has not won".
			if err := client.Del(ctx, w.SetKey("alice")).Err(); err != nil {
				t.Fatal(err)
			}
			if h := hold("alice", "t7"); h != gate.Unknown {
				t.Fatalf("hold after the set's loss: %v, want Unknown", h)
			}
			if err := w.Rebuilt(ctx, "alice", 7, true); err != nil {
				t.Fatal(err)
			}
			w.Release(ctx, "alice", 7, "t7")
			if h := hold("alice", "t8"); h != gate.Won {
				t.Fatalf("hold after a rebuild that found a win: %v, want Won", h)
			}
			if ttl := client.PTTL(ctx, w.SetKey("alice")).Val(); ttl <= 0 || ttl > time.Hour {
				t.Errorf("set TTL %s, want at most an hour", ttl)
			}
			// Concurrent holds of one user in one activity: one wins.
			var held atomic.Int32
			var wg sync.WaitGroup
			for range 16 {
				wg.Go(func() {
					if h, err := w.Hold(ctx, "bob", 7, "x", time.Minute); err == nil && (h == gate.Held || h == gate.Unknown) {
						held.Add(1)
					}
				})
			}
			wg.Wait()
			if held.Load() != 1 {
				t.Errorf("%d concurrent holds taken, want 1", held.Load())
			}
		})
	}
}

func TestNonces(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			client := b.client(t)
			n := NewNonces(client, cleanPrefix(t, client))
			ctx := context.Background()
			until := time.Now().Add(time.Minute)
			var fresh atomic.Int32
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					if ok, err := n.Use(ctx, "abc", until); err == nil && ok {
						fresh.Add(1)
					}
				})
			}
			wg.Wait()
			if fresh.Load() != 1 {
				t.Errorf("nonce spent %d times, want once", fresh.Load())
			}
			if ok, _ := n.Use(ctx, "abd", time.Now().Add(-time.Second)); ok {
				t.Error("an expired nonce was spent")
			}
		})
	}
}

func TestStockStates(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			client := b.client(t)
			st := newTestStock(t, client)
			ctx := context.Background()
			exp := time.Now().Add(time.Hour)
			left, out, missing := strategy.AwardRef{StrategyID: 1, AwardID: 1}, strategy.AwardRef{StrategyID: 1, AwardID: 2}, strategy.AwardRef{StrategyID: 1, AwardID: 3}
			mustPreheat(t, st, left, 2, exp)
			if err := st.Preheat(ctx, out, 1, 1, exp); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Deduct(ctx, out, exp); err != nil {
				t.Fatal(err)
			}
			states, err := st.States(ctx, []strategy.AwardRef{left, out, missing})
			if err != nil {
				t.Fatal(err)
			}
			if want := []strategy.StockState{strategy.StockLeft, strategy.StockOut, strategy.StockMissing}; len(states) != 3 ||
				states[0] != want[0] || states[1] != want[1] || states[2] != want[2] {
				t.Errorf("states %v, want %v", states, want)
			}
		})
	}
}
