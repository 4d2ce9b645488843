package redis

import (
	"context"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/strategy"
)

// TestLevels reads several award and SKU counters in one round trip on every backend: a
// fresh one, one with grants, one not in Redis, and one set back up above what its total
// still allows, whose grantable units stay within the total.
func TestLevels(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			client := b.client(t)
			ctx := context.Background()
			st := newTestStock(t, client)
			expireAt := time.Now().Add(time.Hour)
			fresh, drawn, absent, raised := strategy.AwardRef{StrategyID: 1, AwardID: 101}, strategy.AwardRef{StrategyID: 1, AwardID: 102},
				strategy.AwardRef{StrategyID: 1, AwardID: 103}, strategy.AwardRef{StrategyID: 2, AwardID: 101}
			mustPreheat(t, st, fresh, 10, expireAt)
			mustPreheat(t, st, drawn, 5, expireAt)
			mustPreheat(t, st, raised, 3, expireAt)
			for range 2 {
				if _, err := st.Deduct(ctx, drawn, expireAt); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := st.Deduct(ctx, raised, expireAt); err != nil {
				t.Fatal(err)
			}
			if err := client.Set(ctx, st.CounterKey(raised), 50, 0).Err(); err != nil { // a stale preheat
				t.Fatal(err)
			}
			levels, err := st.Levels(ctx, []strategy.AwardRef{fresh, drawn, absent, raised})
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range []struct {
				left  int64
				known bool
			}{{10, true}, {3, true}, {0, false}, {2, true}} {
				if left, known := levels[i].Grantable(); left != want.left || known != want.known {
					t.Errorf("award %d: grantable %d, %t; want %d, %t (level %+v)", i, left, known, want.left, want.known, levels[i])
				}
			}
			if l := levels[1]; l != level(3, 2, 5) {
				t.Errorf("level of the award drawn twice: %+v", l)
			}

			skus := NewSKUStock(client, st.prefix[:len(st.prefix)-1])
			if err := skus.Preheat(ctx, 9011, 100, 100, expireAt); err != nil {
				t.Fatal(err)
			}
			if _, _, err := skus.Deduct(ctx, 9011, expireAt); err != nil {
				t.Fatal(err)
			}
			sl, err := skus.Levels(ctx, []int64{9011, 9012})
			if err != nil {
				t.Fatal(err)
			}
			if left, ok := sl[0].Grantable(); !ok || left != 99 {
				t.Errorf("sku 9011: %d, %t; want 99", left, ok)
			}
			if _, ok := sl[1].Grantable(); ok {
				t.Errorf("sku 9012 is not in Redis, yet its units are known: %+v", sl[1])
			}
			if l, err := st.Levels(ctx, nil); err != nil || len(l) != 0 {
				t.Errorf("no refs: %v, %v", l, err)
			}
		})
	}
}
