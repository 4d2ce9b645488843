package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/strategy"
)

// backends are the servers the Stock contract runs against. Each returns a client that is
// closed when the test ends.
//
// fence is whether hot state on the backend is fenced by replication id, as serve runs it:
// on Redis, not on the embedded server (which has no INFO replication).
var backends = []struct {
	name   string
	client func(tb testing.TB) goredis.UniversalClient
	fence  bool
}{
	{"embedded", func(tb testing.TB) goredis.UniversalClient { return openEmbedded(tb, false) }, false},
	// miniredis answers CLUSTER SLOTS as a one-node cluster, so this runs the script and
	// MGET through go-redis' ClusterClient routing.
	{"embedded-cluster-client", func(tb testing.TB) goredis.UniversalClient { return openEmbedded(tb, true) }, false},
	{"redis", func(tb testing.TB) goredis.UniversalClient {
		return openClient(tb, Options{Addrs: []string{testenv.RedisAddr(tb)}})
	}, true},
}

func openEmbedded(tb testing.TB, cluster bool) goredis.UniversalClient {
	tb.Helper()
	e, err := StartEmbedded()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.Close)
	return openClient(tb, Options{Addrs: []string{e.Addr()}, Cluster: cluster, ReadTimeout: EmbeddedTimeout, WriteTimeout: EmbeddedTimeout, PoolTimeout: EmbeddedTimeout})
}

func openClient(tb testing.TB, o Options) goredis.UniversalClient {
	tb.Helper()
	c, err := Open(context.Background(), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// newTestStock returns a Stock under a unique prefix on client and deletes its keys when
// the test ends; the shared Redis is never flushed.
func newTestStock(t *testing.T, client goredis.UniversalClient) *Stock {
	t.Helper()
	prefix := testenv.Unique("bmtest_stock_")
	t.Cleanup(func() {
		ctx := context.Background()
		iter := client.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
	})
	return NewStock(client, prefix)
}

func TestStock(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			testStock(t, b.client(t), b.fence)
		})
	}
}

// TestStockDeductsThroughAutoPipeliner: with DeductVia an auto-pipeliner (as serve runs
// it), racing deductions still grant each unit once, on every backend.
func TestStockDeductsThroughAutoPipeliner(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			client := b.client(t)
			st := newTestStock(t, client).Fence(b.fence)
			ap, err := client.AutoPipeline()
			if err != nil {
				t.Fatal(err)
			}
			st.DeductVia(ap)
			expireAt := time.Now().Add(10 * time.Minute)
			ref := strategy.AwardRef{StrategyID: 100001, AwardID: 9}
			mustPreheat(t, st, ref, 100, expireAt)
			granted, outs := deductConcurrently(t, st, ref, 300, expireAt)
			if want := seq(99, 0); !slices.Equal(granted, want) {
				t.Fatalf("granted %v, want each of 0..99 once", granted)
			}
			if outs != 200 {
				t.Fatalf("%d ErrStockOut, want 200", outs)
			}
			assertLevel(t, st, ref, level(0, 100, 100))
		})
	}
}

// testStock is the contract of strategy.Stock with the watermark guard.
func testStock(t *testing.T, client goredis.UniversalClient, fence bool) {
	st := newTestStock(t, client).Fence(fence)
	ctx := context.Background()
	expireAt := time.Now().Add(10 * time.Minute)

	t.Run("ConcurrentDeductGrantsEachUnitOnce", func(t *testing.T) {
		t.Parallel()
		ref := strategy.AwardRef{StrategyID: 100001, AwardID: 1}
		mustPreheat(t, st, ref, 100, expireAt)
		granted, outs := deductConcurrently(t, st, ref, 500, expireAt)
		if want := seq(99, 0); !slices.Equal(granted, want) {
			t.Fatalf("granted %v, want each of 0..99 once", granted)
		}
		if outs != 400 {
			t.Fatalf("%d ErrStockOut, want 400", outs)
		}
		assertLevel(t, st, ref, level(0, 100, 100))

		// Preheat again must not reset the counter (NX).
		mustPreheat(t, st, ref, 100, expireAt)
		assertLevel(t, st, ref, level(0, 100, 100))
		if _, err := st.Deduct(ctx, ref, expireAt); !errors.Is(err, strategy.ErrStockOut) {
			t.Fatalf("deduct after second preheat: %v, want ErrStockOut", err)
		}

		// A stale preheat sets the counter back up: nothing more is granted.
		if err := client.Set(ctx, st.CounterKey(ref), 100, 0).Err(); err != nil {
			t.Fatal(err)
		}
		granted, outs = deductConcurrently(t, st, ref, 50, expireAt)
		if len(granted) != 0 || outs != 50 {
			t.Fatalf("after counter reset: granted %v, %d out; want none granted, 50 out", granted, outs)
		}
		assertLevel(t, st, ref, level(0, 100, 100))
	})

	t.Run("CounterSetBackUpAfterPartialGrant", func(t *testing.T) {
		t.Parallel()
		ref := strategy.AwardRef{StrategyID: 100001, AwardID: 2}
		mustPreheat(t, st, ref, 10, expireAt)
		if got := deductSerially(t, st, ref, 4, expireAt); !slices.Equal(got, seq(9, 6)) {
			t.Fatalf("first grants %v, want 9 8 7 6", got)
		}
		if err := client.Set(ctx, st.CounterKey(ref), 10, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if got := deductSerially(t, st, ref, 10, expireAt); !slices.Equal(got, seq(5, 0)) {
			t.Fatalf("grants after reset %v, want 5 4 3 2 1 0 then out", got)
		}
	})

	t.Run("CounterSetBelowWatermark", func(t *testing.T) {
		t.Parallel()
		ref := strategy.AwardRef{StrategyID: 100001, AwardID: 3}
		mustPreheat(t, st, ref, 10, expireAt)
		if got := deductSerially(t, st, ref, 2, expireAt); !slices.Equal(got, seq(9, 8)) {
			t.Fatalf("first grants %v, want 9 8", got)
		}
		if err := client.Set(ctx, st.CounterKey(ref), 3, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if got := deductSerially(t, st, ref, 10, expireAt); !slices.Equal(got, seq(2, 0)) {
			t.Fatalf("grants after lowering %v, want 2 1 0 then out", got)
		}
	})

	t.Run("MissingCounter", func(t *testing.T) {
		t.Parallel()
		ref := strategy.AwardRef{StrategyID: 100001, AwardID: 4}
		for range 3 {
			if _, err := st.Deduct(ctx, ref, expireAt); !errors.Is(err, strategy.ErrStockMissing) {
				t.Fatalf("deduct without preheat: %v, want ErrStockMissing", err)
			}
		}
		if ok, err := st.TopUp(ctx, ref, 10, expireAt); err != nil || ok {
			t.Fatalf("top-up of a missing counter: %v %v, want false", ok, err)
		}
		n, err := client.Exists(ctx, stockKeys(st, ref)...).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("%d stock keys exist after deducting a missing counter, want 0", n)
		}
		assertLevel(t, st, ref, Level{})
	})

	t.Run("ZeroSurplus", func(t *testing.T) {
		t.Parallel()
		ref := strategy.AwardRef{StrategyID: 100001, AwardID: 5}
		mustPreheat(t, st, ref, 0, expireAt)
		if _, err := st.Deduct(ctx, ref, expireAt); !errors.Is(err, strategy.ErrStockOut) {
			t.Fatalf("deduct of zero stock: %v, want ErrStockOut", err)
		}
		assertLevel(t, st, ref, level(0, 0, 0))
	})

	t.Run("LargeStockStaysExact", func(t *testing.T) {
		t.Parallel()
		ref := strategy.AwardRef{StrategyID: 100001, AwardID: 6}
		const big = 1<<53 - 7
		mustPreheat(t, st, ref, big, expireAt)
		if got := deductSerially(t, st, ref, 2, expireAt); !slices.Equal(got, []int64{big - 1, big - 2}) {
			t.Fatalf("grants %v, want %d %d", got, int64(big-1), int64(big-2))
		}
		assertLevel(t, st, ref, level(big-2, 2, big))
	})

	t.Run("KeysCarryExpiry", func(t *testing.T) {
		t.Parallel()
		ref := strategy.AwardRef{StrategyID: 100001, AwardID: 7}
		mustPreheat(t, st, ref, 5, expireAt)
		assertPTTL(t, client, st.CounterKey(ref), 10*time.Minute)
		// Deduct gives every key the expiry it is passed, and so does a top-up.
		later := time.Now().Add(20 * time.Minute)
		if _, err := st.Deduct(ctx, ref, later); err != nil {
			t.Fatal(err)
		}
		for _, key := range stockKeys(st, ref)[:3] {
			assertPTTL(t, client, key, 20*time.Minute)
		}
		if _, err := st.TopUp(ctx, ref, 6, time.Now().Add(5*time.Minute)); err != nil {
			t.Fatal(err)
		}
		for _, key := range stockKeys(st, ref)[:3] {
			assertPTTL(t, client, key, 5*time.Minute)
		}
	})

	t.Run("ShortExpiryExpires", func(t *testing.T) {
		t.Parallel()
		ref := strategy.AwardRef{StrategyID: 100001, AwardID: 8}
		mustPreheat(t, st, ref, 5, expireAt)
		if _, err := st.Deduct(ctx, ref, time.Now().Add(300*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 10*time.Second, "stock keys gone after their expiry", func() (bool, string) {
			n, err := client.Exists(ctx, stockKeys(st, ref)...).Result()
			if err != nil {
				t.Fatal(err)
			}
			return n == 0, fmt.Sprintf("%d stock keys still exist", n)
		})
		if _, err := st.Deduct(ctx, ref, expireAt); !errors.Is(err, strategy.ErrStockMissing) {
			t.Fatalf("deduct after expiry: %v, want ErrStockMissing", err)
		}
	})

	t.Run("TopUpGrantsOnlyTheNewUnits", func(t *testing.T) {
		t.Parallel()
		ref := strategy.AwardRef{StrategyID: 100001, AwardID: 10}
		mustPreheat(t, st, ref, 5, expireAt)
		if granted, _ := deductConcurrently(t, st, ref, 20, expireAt); len(granted) != 5 {
			t.Fatalf("granted %v of 5", granted)
		}
		if ok, err := st.TopUp(ctx, ref, 8, expireAt); err != nil || !ok {
			t.Fatalf("top-up: %v %v", ok, err)
		}
		assertLevel(t, st, ref, level(3, 5, 8))
		// A repeat, and a stale top-up to a smaller total, change nothing.
		for _, total := range []int64{8, 7, 5} {
			if ok, err := st.TopUp(ctx, ref, total, expireAt); err != nil || !ok {
				t.Fatalf("top-up to %d: %v %v", total, ok, err)
			}
		}
		assertLevel(t, st, ref, level(3, 5, 8))
		var issued []int64
		for range 10 {
			g, err := st.Deduct(ctx, ref, expireAt)
			if errors.Is(err, strategy.ErrStockOut) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			issued = append(issued, g.Issued)
		}
		if !slices.Equal(issued, []int64{6, 7, 8}) {
			t.Fatalf("grants after a top-up of 3 numbered %v, want 6 7 8", issued)
		}
		// A stale preheat that sets the counter back up gives nothing beyond the total.
		if err := client.Set(ctx, st.CounterKey(ref), 100, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if granted, outs := deductConcurrently(t, st, ref, 20, expireAt); len(granted) != 0 || outs != 20 {
			t.Fatalf("after the counter was set back up: granted %v", granted)
		}
	})

	t.Run("OldFormIsRebuilt", func(t *testing.T) {
		t.Parallel()
		ref := strategy.AwardRef{StrategyID: 100001, AwardID: 11}
		// An old-form counter: 7 left, but grants already reached remaining value 4 once.
		if err := client.Set(ctx, st.CounterKey(ref), 7, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := client.Set(ctx, st.LowKey(ref), 4, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if ok, err := st.Exists(ctx, ref); err != nil || ok {
			t.Fatalf("an old-form counter exists: %v %v, want false", ok, err)
		}
		if _, err := st.Deduct(ctx, ref, expireAt); !errors.Is(err, strategy.ErrStockMissing) {
			t.Fatalf("deduct of an old-form counter: %v, want ErrStockMissing", err)
		}
		if ok, err := st.TopUp(ctx, ref, 20, expireAt); err != nil || ok {
			t.Fatalf("top-up of an old-form counter: %v %v, want false", ok, err)
		}
		// Durable records (total 10, 9 left) allow more than the old form did: the rebuild
		// keeps the old form's 4 (values 3..0 were never granted).
		if err := st.Preheat(ctx, ref, 10, 9, expireAt); err != nil {
			t.Fatal(err)
		}
		assertLevel(t, st, ref, level(4, 6, 10))
		if got := deductSerially(t, st, ref, 10, expireAt); !slices.Equal(got, seq(3, 0)) {
			t.Fatalf("grants after the rebuild %v, want 3 2 1 0", got)
		}
	})

	t.Run("PartialSurvivorBoundsTheRebuild", func(t *testing.T) {
		t.Parallel()
		ref := strategy.AwardRef{StrategyID: 100001, AwardID: 12}
		mustPreheat(t, st, ref, 10, expireAt)
		deductSerially(t, st, ref, 3, expireAt)
		if err := client.Del(ctx, st.CounterKey(ref)).Err(); err != nil {
			t.Fatal(err)
		}
		// A rebuild from a lagging surplus (all 10 left) keeps the surviving issued.
		if err := st.Preheat(ctx, ref, 10, 10, expireAt); err != nil {
			t.Fatal(err)
		}
		assertLevel(t, st, ref, level(7, 3, 10))
	})

	t.Run("CounterSetDownIsHonoured", func(t *testing.T) {
		t.Parallel()
		ref := strategy.AwardRef{StrategyID: 100001, AwardID: 13}
		mustPreheat(t, st, ref, 10, expireAt)
		if err := client.Set(ctx, st.CounterKey(ref), 0, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Deduct(ctx, ref, expireAt); !errors.Is(err, strategy.ErrStockOut) {
			t.Fatalf("deduct of a counter set to 0: %v, want ErrStockOut", err)
		}
		// A top-up adds to what the counter allows, not to what the total would.
		if _, err := st.TopUp(ctx, ref, 12, expireAt); err != nil {
			t.Fatal(err)
		}
		assertLevel(t, st, ref, level(2, 0, 12))
	})

	t.Run("BadArguments", func(t *testing.T) {
		t.Parallel()
		ref := strategy.AwardRef{StrategyID: 100001, AwardID: 9}
		if err := st.Preheat(ctx, ref, 1, -1, expireAt); err == nil {
			t.Error("preheat with negative surplus succeeded")
		}
		if err := st.Preheat(ctx, ref, 1, 2, expireAt); err == nil {
			t.Error("preheat with more left than the total succeeded")
		}
		if err := st.Preheat(ctx, ref, 1, 1, time.Time{}); err == nil {
			t.Error("preheat without expiry succeeded")
		}
		mustPreheat(t, st, ref, 1, expireAt)
		if _, err := st.Deduct(ctx, ref, time.Time{}); err == nil {
			t.Error("deduct without expiry succeeded")
		}
		if _, err := st.TopUp(ctx, ref, 2, time.Time{}); err == nil {
			t.Error("top-up without expiry succeeded")
		}
		if err := client.Set(ctx, st.CounterKey(ref), "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		_, err := st.Deduct(ctx, ref, expireAt)
		if err == nil || errors.Is(err, strategy.ErrStockOut) || errors.Is(err, strategy.ErrStockMissing) {
			t.Errorf("deduct of a corrupt counter: %v, want a plain error", err)
		}
	})
}

// mustPreheat preheats a fresh award of surplus units (its total).
func mustPreheat(t *testing.T, st *Stock, ref strategy.AwardRef, surplus int64, expireAt time.Time) {
	t.Helper()
	if err := st.Preheat(context.Background(), ref, surplus, surplus, expireAt); err != nil {
		t.Fatal(err)
	}
}

// level is the Level of a current-form counter.
func level(counter, issued, total int64) Level {
	return Level{Counter: counter, Issued: issued, Total: total, HasCounter: true, HasIssued: true, HasTotal: true}
}

// stockKeys are every key of ref's stock, old form included.
func stockKeys(st *Stock, ref strategy.AwardRef) []string {
	return []string{st.CounterKey(ref), st.IssuedKey(ref), st.TotalKey(ref), st.LowKey(ref)}
}

// deductConcurrently runs calls Deducts from 50 goroutines and returns the remaining
// values granted, sorted high to low, and the number of ErrStockOut.
func deductConcurrently(t *testing.T, st *Stock, ref strategy.AwardRef, calls int, expireAt time.Time) ([]int64, int) {
	t.Helper()
	const workers = 50
	var (
		mu      sync.Mutex
		granted []int64
		outs    int
		errs    []error
		wg      sync.WaitGroup
		next    = make(chan struct{}, calls)
	)
	for range calls {
		next <- struct{}{}
	}
	close(next)
	for range workers {
		wg.Go(func() {
			for range next {
				g, err := st.Deduct(context.Background(), ref, expireAt)
				mu.Lock()
				switch {
				case err == nil:
					granted = append(granted, g.Remaining)
				case errors.Is(err, strategy.ErrStockOut):
					outs++
				default:
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d deducts failed, first: %v", len(errs), errs[0])
	}
	slices.Sort(granted)
	slices.Reverse(granted)
	return granted, outs
}

// deductSerially calls Deduct up to calls times and returns the values granted in order;
// the first ErrStockOut ends it, and a grant after it would be reported.
func deductSerially(t *testing.T, st *Stock, ref strategy.AwardRef, calls int, expireAt time.Time) []int64 {
	t.Helper()
	var got []int64
	out := false
	for range calls {
		g, err := st.Deduct(context.Background(), ref, expireAt)
		switch {
		case err == nil && out:
			t.Fatalf("granted %+v after ErrStockOut", g)
		case err == nil:
			got = append(got, g.Remaining)
		case errors.Is(err, strategy.ErrStockOut):
			out = true
		default:
			t.Fatal(err)
		}
	}
	return got
}

// seq returns hi, hi-1, …, lo.
func seq(hi, lo int64) []int64 {
	var s []int64
	for i := hi; i >= lo; i-- {
		s = append(s, i)
	}
	return s
}

func assertLevel(t *testing.T, st *Stock, ref strategy.AwardRef, want Level) {
	t.Helper()
	got, err := st.Remaining(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("level %+v, want %+v", got, want)
	}
}

func assertPTTL(t *testing.T, client goredis.UniversalClient, key string, max time.Duration) {
	t.Helper()
	d, err := client.PTTL(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 || d > max {
		t.Fatalf("PTTL of %s is %v, want in (0, %v]", key, d, max)
	}
}

func TestStockKeysShareClusterSlot(t *testing.T) {
	t.Parallel()
	if got := crc16([]byte("123456789")); got != 0x31C3 {
		t.Fatalf("crc16 check value %#x, want 0x31c3", got)
	}
	if got := keySlot("foo"); got != 12182 { // CLUSTER KEYSLOT foo on Redis 7
		t.Fatalf("slot of foo %d, want 12182", got)
	}
	seen := map[int]bool{}
	for _, prefix := range []string{"", "bigmarket", "a:b"} {
		st := NewStock(nil, prefix)
		for award := range 50 {
			ref := strategy.AwardRef{StrategyID: 100006, AwardID: 101 + award}
			ck, lk := st.CounterKey(ref), st.LowKey(ref)
			tag := fmt.Sprintf("{%d_%d}", ref.StrategyID, ref.AwardID)
			if !strings.Contains(ck, tag) || !strings.HasPrefix(lk, ck) {
				t.Fatalf("keys %q, %q do not share the tag %s", ck, lk, tag)
			}
			if keySlot(ck) != keySlot(lk) {
				t.Fatalf("keys %q (slot %d) and %q (slot %d) differ", ck, keySlot(ck), lk, keySlot(lk))
			}
			seen[keySlot(ck)] = true
		}
	}
	if len(seen) < 10 {
		t.Fatalf("50 awards use only %d slots: the tag does not spread them", len(seen))
	}
}

func BenchmarkDeduct(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			client := be.client(b)
			prefix := testenv.Unique("bmbench_stock_")
			st := NewStock(client, prefix)
			ref := strategy.AwardRef{StrategyID: 1, AwardID: 1}
			expireAt := time.Now().Add(10 * time.Minute)
			ctx := context.Background()
			b.Cleanup(func() { client.Del(ctx, stockKeys(st, ref)...) })
			if err := st.Preheat(ctx, ref, 1<<40, 1<<40, expireAt); err != nil {
				b.Fatal(err)
			}
			// Many draws are in flight at once; measure throughput, not one caller's latency.
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := st.Deduct(ctx, ref, expireAt); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
