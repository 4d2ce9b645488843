package redis

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/strategy"
)

// TestStockFenceAfterFailover runs award and SKU stock counters over a real master and
// replica. The replica is promoted (REPLICAOF NO ONE: a new replication id) before the
// master grants two more units, so those grants are lost on it while its counter is whole
// and consistent (issued and units left still add up to the total): the counter would
// grant their sequence numbers again.
//
// Fenced, the promoted replica refuses the next deduction (ErrFenced and the domain's
// "missing" error, which is the rebuild path) and the top-up, writing nothing; the rebuild
// (Preheat with what the durable records allow) replaces the whole stale counter and sets
// the fence to the new id; a later preheat from a stale source changes nothing; the units
// then run out with every sequence number granted once and no more than the total.
// Unfenced, the same sequence grants the lost sequence numbers again and more units than
// the stock has: the oversell the fence exists for.
func TestStockFenceAfterFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master, replica := replicaPair(t)
	expireAt := time.Now().Add(10 * time.Minute).Truncate(time.Millisecond)
	const total = 5

	type setup struct {
		fence   bool
		ref     strategy.AwardRef
		sku     int64
		granted map[int64]int // award sequence number → times granted (the durable records)
		skuLast int64         // the highest SKU unit granted by the master
	}
	var setups []*setup
	for i, fence := range []bool{true, false} {
		s := &setup{fence: fence, ref: strategy.AwardRef{StrategyID: 900001, AwardID: 1 + i}, sku: int64(9001 + i), granted: map[int64]int{}}
		stock := NewStock(master, "bmtest").Fence(fence)
		skus := NewSKUStock(master, "bmtest").Fence(fence)
		if err := stock.Preheat(ctx, s.ref, total, total, expireAt); err != nil {
			t.Fatal(err)
		}
		if err := skus.Preheat(ctx, s.sku, total, total, expireAt); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			g, err := stock.Deduct(ctx, s.ref, expireAt)
			if err != nil {
				t.Fatal(err)
			}
			s.granted[g.Issued]++
		}
		if _, issued, err := skus.DeductN(ctx, s.sku, 2, expireAt); err != nil || issued != 2 {
			t.Fatalf("sku deduct on the master: %d, %v", issued, err)
		}
		setups = append(setups, s)
	}
	oldID, newID := promote(t, master, replica)
	// The master grants two more units of each stock; the promoted replica never sees them.
	for _, s := range setups {
		stock := NewStock(master, "bmtest").Fence(s.fence)
		for range 2 {
			g, err := stock.Deduct(ctx, s.ref, expireAt)
			if err != nil {
				t.Fatal(err)
			}
			s.granted[g.Issued]++
		}
		_, issued, err := NewSKUStock(master, "bmtest").Fence(s.fence).DeductN(ctx, s.sku, 2, expireAt)
		if err != nil || issued != 4 {
			t.Fatalf("sku deduct on the master after the promotion: %d, %v", issued, err)
		}
		s.skuLast = issued
	}

	t.Run("Fenced", func(t *testing.T) {
		s := setups[0]
		stock := NewStock(replica, "bmtest").Fence(true)
		skus := NewSKUStock(replica, "bmtest").Fence(true)
		fenceKey := stock.CounterKey(s.ref) + ":fence"
		if l := mustLevel(t, stock, s.ref); !l.HasCounter || l.Issued != 2 || l.Counter != total-2 || l.Total != total {
			t.Fatalf("the promoted replica holds %+v, want the whole counter with 2 issued (the test needs lost writes)", l)
		}
		if f, err := replica.Get(ctx, fenceKey).Result(); err != nil || f != oldID {
			t.Fatalf("fence before: %q, %v; want the old id %s", f, err, oldID)
		}
		for range 2 {
			g, err := stock.Deduct(ctx, s.ref, expireAt)
			if !errors.Is(err, ErrFenced) || !errors.Is(err, strategy.ErrStockMissing) {
				t.Fatalf("deduct on the promoted replica: %+v, %v; want ErrFenced and strategy.ErrStockMissing", g, err)
			}
		}
		if ok, err := stock.TopUp(ctx, s.ref, total+3, expireAt); ok || err != nil {
			t.Fatalf("top-up on the promoted replica: %v, %v; want false (left to the rebuild)", ok, err)
		}
		if _, _, err := skus.Deduct(ctx, s.sku, expireAt); !errors.Is(err, ErrFenced) || !errors.Is(err, activity.ErrSKUStockMissing) {
			t.Fatalf("sku deduct on the promoted replica: %v; want ErrFenced and activity.ErrSKUStockMissing", err)
		}
		if _, _, err := skus.DeductN(ctx, s.sku, 2, expireAt); !errors.Is(err, ErrFenced) || !errors.Is(err, activity.ErrSKUStockMissing) {
			t.Fatalf("sku bulk deduct on the promoted replica: %v; want ErrFenced and activity.ErrSKUStockMissing", err)
		}
		// Nothing was written.
		if l := mustLevel(t, stock, s.ref); l.Issued != 2 || l.Counter != total-2 || l.Total != total {
			t.Fatalf("counter after fenced calls: %+v", l)
		}
		if l, err := skus.Remaining(ctx, s.sku); err != nil || l.Issued != 2 || l.Counter != total-2 {
			t.Fatalf("sku counter after fenced calls: %+v, %v", l, err)
		}
		if f, err := replica.Get(ctx, fenceKey).Result(); err != nil || f != oldID {
			t.Fatalf("fence after fenced calls: %q, %v; want the old id", f, err)
		}

		// The rebuild: the durable records say 4 units were granted, so 1 is left. The
		// counter is whole, yet it is replaced, and the fence takes the new id.
		if err := stock.Preheat(ctx, s.ref, total, total-4, expireAt); err != nil {
			t.Fatal(err)
		}
		if l := mustLevel(t, stock, s.ref); l.Issued != 4 || l.Counter != 1 || l.Total != total {
			t.Fatalf("counter after the rebuild: %+v, want 4 issued and 1 left", l)
		}
		if f, err := replica.Get(ctx, fenceKey).Result(); err != nil || f != newID {
			t.Fatalf("fence after the rebuild: %q, %v; want the new id %s", f, err, newID)
		}
		if err := skus.Preheat(ctx, s.sku, total, total-s.skuLast, expireAt); err != nil {
			t.Fatal(err)
		}
		// A second node's rebuild from a source that lags (the SQL surplus before the
		// lost grants synced) finds the fence current and the counter whole: kept.
		if err := stock.Preheat(ctx, s.ref, total, total-2, expireAt); err != nil {
			t.Fatal(err)
		}
		if l := mustLevel(t, stock, s.ref); l.Issued != 4 || l.Counter != 1 {
			t.Fatalf("counter after a stale preheat: %+v, want it kept", l)
		}
		// Deductions go on and every unit is granted once, none beyond the total.
		for {
			g, err := stock.Deduct(ctx, s.ref, expireAt)
			if errors.Is(err, strategy.ErrStockOut) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			s.granted[g.Issued]++
		}
		assertGrantedOnce(t, s.granted, total)
		_, issued, err := skus.Deduct(ctx, s.sku, expireAt)
		if err != nil || issued != 5 {
			t.Fatalf("sku deduct after the rebuild: unit %d, %v; want unit 5", issued, err)
		}
		if _, _, err := skus.Deduct(ctx, s.sku, expireAt); !errors.Is(err, activity.ErrSKUStockExhausted) {
			t.Fatalf("sku deduct past the stock: %v, want ErrSKUStockExhausted", err)
		}
		// A top-up on the rebuilt counter is written again.
		if ok, err := stock.TopUp(ctx, s.ref, total+1, expireAt); !ok || err != nil {
			t.Fatalf("top-up after the rebuild: %v, %v", ok, err)
		}
		if g, err := stock.Deduct(ctx, s.ref, expireAt); err != nil || g.Issued != total+1 {
			t.Fatalf("deduct after the top-up: %+v, %v; want unit %d", g, err, total+1)
		}
	})

	t.Run("UnfencedOversells", func(t *testing.T) {
		s := setups[1]
		stock := NewStock(replica, "bmtest").Fence(false)
		skus := NewSKUStock(replica, "bmtest").Fence(false)
		// No rebuild is asked for: the counter is whole.
		for {
			g, err := stock.Deduct(ctx, s.ref, expireAt)
			if errors.Is(err, strategy.ErrStockOut) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			s.granted[g.Issued]++
		}
		var twice, units int
		for _, n := range s.granted {
			units += n
			if n > 1 {
				twice++
			}
		}
		if twice != 2 || units != total+2 {
			t.Fatalf("unfenced: %v granted; want the 2 lost sequence numbers granted twice, %d units of %d", s.granted, total+2, total)
		}
		_, issued, err := skus.DeductN(ctx, s.sku, 3, expireAt)
		if err != nil || issued != 5 {
			t.Fatalf("unfenced sku deduct: unit %d, %v; want 3 more units (3..5) of which 2 were granted by the master", issued, err)
		}
		t.Logf("without the fence: %d award units of %d granted (sequence numbers %v), SKU units 3 and 4 granted twice", units, total, s.granted)
	})
}

// TestStockFenceAfterRestart: a master restarted from its AOF has a new replication id,
// so its counters are fenced and cost one rebuild each; a counter preheated before the
// fence existed (no fence key) is fenced too.
func TestStockFenceAfterRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	addr, cmd := startRedisServer(t, dir, "--appendonly", "yes", "--appendfsync", "always")
	client := newPlainClient(t, addr)
	stock := NewStock(client, "bmtest").Fence(true)
	expireAt := time.Now().Add(10 * time.Minute).Truncate(time.Millisecond)
	ref := strategy.AwardRef{StrategyID: 900002, AwardID: 1}
	if err := stock.Preheat(ctx, ref, 3, 3, expireAt); err != nil {
		t.Fatal(err)
	}
	if g, err := stock.Deduct(ctx, ref, expireAt); err != nil || g.Issued != 1 {
		t.Fatalf("deduct: %+v, %v", g, err)
	}
	// An unfenced counter (preheated before the fence was turned on).
	old := strategy.AwardRef{StrategyID: 900002, AwardID: 2}
	if err := NewStock(client, "bmtest").Preheat(ctx, old, 3, 3, expireAt); err != nil {
		t.Fatal(err)
	}
	if _, err := stock.Deduct(ctx, old, expireAt); !errors.Is(err, ErrFenced) {
		t.Fatalf("deduct of a counter without a fence: %v, want ErrFenced", err)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	testenv.Eventually(t, 20*time.Second, "redis-server restarted on its port", func() (bool, string) {
		_, _, err := runRedisServer(t, lookTool(t, "redis-server"), port, dir, "--appendonly", "yes", "--appendfsync", "always")
		return err == nil, ""
	})
	if l := mustLevel(t, stock, ref); l.Issued != 1 {
		t.Fatalf("counter after the restart: %+v, want the grant from the AOF", l)
	}
	if _, err := stock.Deduct(ctx, ref, expireAt); !errors.Is(err, ErrFenced) || !errors.Is(err, strategy.ErrStockMissing) {
		t.Fatalf("deduct after the restart: %v, want ErrFenced and strategy.ErrStockMissing", err)
	}
	if err := stock.Preheat(ctx, ref, 3, 2, expireAt); err != nil {
		t.Fatal(err)
	}
	if g, err := stock.Deduct(ctx, ref, expireAt); err != nil || g.Issued != 2 {
		t.Fatalf("deduct after the rebuild: %+v, %v; want unit 2", g, err)
	}
}

func mustLevel(t *testing.T, s *Stock, ref strategy.AwardRef) Level {
	t.Helper()
	l, err := s.Remaining(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// assertGrantedOnce checks that the sequence numbers 1..total were each granted once.
func assertGrantedOnce(t *testing.T, granted map[int64]int, total int64) {
	t.Helper()
	if int64(len(granted)) != total {
		t.Fatalf("granted %v, want each of 1..%d once", granted, total)
	}
	for n, times := range granted {
		if n < 1 || n > total || times != 1 {
			t.Fatalf("granted %v, want each of 1..%d once", granted, total)
		}
	}
}

// BenchmarkStockDeductFence measures an award stock deduction with and without the fence
// on a private redis-server, alternating the two by 1,000-unit award as
// BenchmarkRedPacketGrabFence does: server-us/deduct is what Redis spends per deduct
// script in each mode (INFO commandstats, the preheats left out).
func BenchmarkStockDeductFence(b *testing.B) {
	addr, _ := startRedisServer(b, b.TempDir())
	client := newPlainClient(b, addr)
	ctx := context.Background()
	prefix := testenv.Unique("bmbench_stock_")
	stocks := map[bool]*Stock{false: NewStock(client, prefix), true: NewStock(client, prefix).Fence(true)}
	const per = 1000
	expireAt := time.Now().Add(time.Hour)
	var ref strategy.AwardRef
	benchFenced(b, client, "deduct", per, func(turn int, fence bool) {
		ref = strategy.AwardRef{StrategyID: 1, AwardID: turn} // a counter per turn
		if err := stocks[fence].Preheat(ctx, ref, per, per, expireAt); err != nil {
			b.Fatal(err)
		}
	}, func(_ int, fence bool) {
		if _, err := stocks[fence].Deduct(ctx, ref, expireAt); err != nil {
			b.Fatal(err)
		}
	})
}
