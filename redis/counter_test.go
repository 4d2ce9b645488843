package redis

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
)

// TestDeductUnits pins the one deduction script for one unit (SKUStock.Deduct, as award
// stock takes it) and for k units (SKUStock.DeductN, the bulk recharge): the same counter
// states give the same grants, refusals and levels.
func TestDeductUnits(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			client := b.client(t)
			st := NewSKUStock(client, uniquePrefix(t, client))
			ctx := context.Background()
			exp := time.Now().Add(time.Hour)
			for i, c := range []struct {
				name             string
				counter, issued  int64 // the counter and issued before; total is 10
				units            int64
				left, last       int64 // the grant, when wantErr is nil
				wantErr          error
				after            Level
				oneByOneGrants   int64 // what as many single deductions grant
				oneByOneLeftover int64 // and the counter they leave
			}{
				{name: "one of ten", counter: 10, units: 1, left: 9, last: 1, after: level(9, 1, 10), oneByOneGrants: 1, oneByOneLeftover: 9},
				{name: "four of ten", counter: 10, units: 4, left: 6, last: 4, after: level(6, 4, 10), oneByOneGrants: 4, oneByOneLeftover: 6},
				{name: "the last three", counter: 3, issued: 7, units: 3, left: 0, last: 10, after: level(0, 10, 10), oneByOneGrants: 3},
				// More than is left: nothing is taken, and the counter keeps the units a
				// single deduction may still take.
				{name: "four of three", counter: 3, issued: 7, units: 4, wantErr: activity.ErrSKUStockExhausted, after: level(3, 7, 10),
					oneByOneGrants: 3},
				// None left: the counter is set to 0 so that later refusals write nothing.
				{name: "one of none", counter: 0, issued: 10, units: 1, wantErr: activity.ErrSKUStockExhausted, after: level(0, 10, 10)},
				{name: "a counter set back up", counter: 10, issued: 10, units: 2, wantErr: activity.ErrSKUStockExhausted, after: level(0, 10, 10)},
				// Set down by an operator: the counter bounds the grant.
				{name: "a counter set down", counter: 2, issued: 0, units: 2, left: 0, last: 2, after: level(0, 2, 10), oneByOneGrants: 2},
				{name: "above a set-down counter", counter: 2, issued: 0, units: 3, wantErr: activity.ErrSKUStockExhausted, after: level(2, 0, 10),
					oneByOneGrants: 2},
			} {
				for _, oneByOne := range []bool{false, true} {
					sku := int64(9100 + 2*i)
					if oneByOne {
						sku++
					}
					key := st.CounterKey(sku)
					client.Set(ctx, key, c.counter, time.Hour)
					client.Set(ctx, key+":issued", c.issued, time.Hour)
					client.Set(ctx, key+":total", 10, time.Hour)
					if !oneByOne {
						left, last, err := st.DeductN(ctx, sku, c.units, exp)
						if !errors.Is(err, c.wantErr) || (err == nil) != (c.wantErr == nil) {
							t.Fatalf("%s: %v, want %v", c.name, err, c.wantErr)
						}
						if err == nil && (left != c.left || last != c.last) {
							t.Errorf("%s: %d left, last unit %d; want %d, %d", c.name, left, last, c.left, c.last)
						}
						if l, err := st.Remaining(ctx, sku); err != nil || l != c.after {
							t.Errorf("%s: level %+v %v, want %+v", c.name, l, err, c.after)
						}
						continue
					}
					granted := int64(0)
					for range c.units {
						left, last, err := st.Deduct(ctx, sku, exp)
						if errors.Is(err, activity.ErrSKUStockExhausted) {
							break
						}
						if err != nil {
							t.Fatalf("%s, one by one: %v", c.name, err)
						}
						granted++
						if last != c.issued+granted || left != min(c.counter-granted, 10-last) {
							t.Errorf("%s, one by one: %d left, unit %d", c.name, left, last)
						}
					}
					if granted != c.oneByOneGrants {
						t.Errorf("%s, one by one: %d granted, want %d", c.name, granted, c.oneByOneGrants)
					}
					if l, _ := st.Remaining(ctx, sku); l.Counter != c.oneByOneLeftover || l.Issued != c.issued+granted {
						t.Errorf("%s, one by one: level %+v, want counter %d", c.name, l, c.oneByOneLeftover)
					}
				}
			}
			if _, _, err := st.DeductN(ctx, 9100, 0, exp); !errors.Is(err, activity.ErrInvalidUnits) {
				t.Errorf("zero units: %v, want ErrInvalidUnits", err)
			}
			if _, _, err := st.DeductN(ctx, 9999, 2, exp); !errors.Is(err, activity.ErrSKUStockMissing) {
				t.Errorf("missing counter: %v, want ErrSKUStockMissing", err)
			}
		})
	}
}

// TestDeductUnitsConcurrently mixes single and bulk deductions of one stock: every unit
// is granted once, none beyond the stock.
func TestDeductUnitsConcurrently(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			client := b.client(t)
			st := NewSKUStock(client, uniquePrefix(t, client))
			ctx := context.Background()
			exp := time.Now().Add(time.Hour)
			const stock = 500
			if err := st.Preheat(ctx, 9200, stock, stock, exp); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			seen := map[int64]int{}
			var wg sync.WaitGroup
			for g := range 20 {
				wg.Go(func() {
					units := int64(g%4 + 1) // 1, 2, 3, 4 units
					for {
						var last int64
						var err error
						if units == 1 {
							_, last, err = st.Deduct(ctx, 9200, exp)
						} else {
							_, last, err = st.DeductN(ctx, 9200, units, exp)
						}
						if errors.Is(err, activity.ErrSKUStockExhausted) {
							return
						}
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						for n := last - units + 1; n <= last; n++ {
							seen[n]++
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			for n := int64(1); n <= stock; n++ {
				if seen[n] != 1 {
					t.Errorf("unit %d granted %d times", n, seen[n])
				}
			}
			if len(seen) != stock {
				t.Errorf("%d units granted of %d", len(seen), stock)
			}
		})
	}
}
