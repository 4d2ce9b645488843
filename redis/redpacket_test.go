package redis

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/redpacket"
)

func TestRedPackets(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			client := b.client(t)
			testRedPackets(t, client, NewRedPackets(client, uniquePrefix(t, client)).Fence(b.fence))
		})
	}
}

// testRedPackets is the contract of RedPackets on one backend.
func testRedPackets(t *testing.T, client goredis.UniversalClient, rp *RedPackets) {
	ctx := context.Background()
	expireAt := time.Now().Add(10 * time.Minute).Truncate(time.Millisecond)
	before := expireAt.Add(-time.Minute)

	t.Run("ConcurrentGrabsGrantEachItemOnce", func(t *testing.T) {
		t.Parallel()
		const (
			id      = "p-concurrent"
			n       = 100
			singles = 800 // users grabbing once
			doubles = 100 // users grabbing twice at the same time
		)
		items := splitItems(n, 1)
		mustLoad(t, rp, id, items, nil, expireAt, nil)

		type result struct {
			user string
			res  grabResult
			err  error
		}
		var (
			start   = make(chan struct{})
			results = make(chan result, singles+2*doubles)
			wg      sync.WaitGroup
		)
		grab := func(user string) {
			<-start
			res, err := rp.grab(ctx, id, user, before)
			results <- result{user, res, err}
		}
		for i := range singles {
			wg.Go(func() { grab("s" + strconv.Itoa(i)) })
		}
		for i := range doubles {
			user := "d" + strconv.Itoa(i)
			wg.Go(func() { grab(user) })
			wg.Go(func() { grab(user) })
		}
		close(start)
		wg.Wait()
		close(results)

		granted := map[string]rpItem{} // first-time grants by user
		byIndex := map[int]string{}
		again := map[string][]rpItem{}
		empties := map[string]int{}
		for r := range results {
			switch {
			case r.err == nil && !r.res.Again:
				if prev, ok := granted[r.user]; ok {
					t.Fatalf("user %s granted %v and %v", r.user, prev, r.res.Item)
				}
				if other, ok := byIndex[r.res.Item.Index]; ok {
					t.Fatalf("item %d granted to %s and %s", r.res.Item.Index, other, r.user)
				}
				granted[r.user] = r.res.Item
				byIndex[r.res.Item.Index] = r.user
			case r.err == nil:
				again[r.user] = append(again[r.user], r.res.Item)
			case errors.Is(r.err, redpacket.ErrEmpty):
				empties[r.user]++
			default:
				t.Fatalf("grab of %s: %v", r.user, r.err)
			}
		}
		if len(granted) != n {
			t.Fatalf("%d first-time grants, want %d", len(granted), n)
		}
		assertSameItems(t, slices.Collect(maps.Values(granted)), items)
		// A user grabbing twice at once gets an item and then Again with that item, or
		// redpacket.ErrEmpty twice (the list was empty before either ran).
		for i := range doubles {
			user := "d" + strconv.Itoa(i)
			it, ok := granted[user]
			switch {
			case ok && (len(again[user]) != 1 || again[user][0] != it):
				t.Fatalf("user %s granted %v, then Again %v; want Again with the same item once", user, it, again[user])
			case !ok && empties[user] != 2:
				t.Fatalf("user %s: no grant, %d empty, Again %v; want empty twice", user, empties[user], again[user])
			}
		}
		for user, its := range again {
			if !strings.HasPrefix(user, "d") {
				t.Fatalf("user %s grabbing once got Again %v", user, its)
			}
		}

		// Later grabs of the winners, even past the expiry, return their item with Again.
		for user, it := range granted {
			res, err := rp.grab(ctx, id, user, expireAt.Add(time.Hour))
			if err != nil || res != (grabResult{Item: it, Again: true}) {
				t.Fatalf("second grab of %s: %+v, %v; want Again with %v", user, res, err, it)
			}
		}
		if got := mustGrabs(t, rp, id); !maps.Equal(got, granted) {
			t.Fatalf("Grabs %v, want %v", got, granted)
		}
		assertRemaining(t, rp, id, 0)
		if _, err := rp.grab(ctx, id, "late", before); !errors.Is(err, redpacket.ErrEmpty) {
			t.Fatalf("grab of an emptied packet: %v, want redpacket.ErrEmpty", err)
		}
	})

	t.Run("ExpiryAndClose", func(t *testing.T) {
		t.Parallel()
		const id = "p-close"
		items := splitItems(5, 2)
		mustLoad(t, rp, id, items, nil, expireAt, nil)

		first := mustGrab(t, rp, id, "early", expireAt.Add(-time.Millisecond))
		if first.Again || first.Item != items[0] {
			t.Fatalf("first grab %+v, want new grab of %v", first, items[0])
		}
		for _, now := range []time.Time{expireAt, expireAt.Add(time.Second)} {
			if _, err := rp.grab(ctx, id, "late", now); !errors.Is(err, redpacket.ErrClosed) {
				t.Fatalf("grab at expiry%+v: %v, want redpacket.ErrClosed", now.Sub(expireAt), err)
			}
		}
		assertRemaining(t, rp, id, 4)

		refund, closedNow, err := rp.closePacket(ctx, id)
		if err != nil || !closedNow {
			t.Fatalf("close: closedNow %v, %v; want true, nil", closedNow, err)
		}
		if !slices.Equal(refund, items[1:]) {
			t.Fatalf("close returned %v, want the remaining %v", refund, items[1:])
		}
		if got := first.Item.Cents + sumCents(refund); got != sumCents(items) {
			t.Fatalf("grabbed + refunded = %d cents, loaded %d", got, sumCents(items))
		}
		rest, closedNow, err := rp.closePacket(ctx, id)
		if err != nil || closedNow || len(rest) != 0 {
			t.Fatalf("second close: %v, %v, %v; want nothing, false, nil", rest, closedNow, err)
		}
		assertRemaining(t, rp, id, 0)

		// Closed beats the clock: even before the expiry nobody new grabs.
		if _, err := rp.grab(ctx, id, "after-close", before); !errors.Is(err, redpacket.ErrClosed) {
			t.Fatalf("grab after close: %v, want redpacket.ErrClosed", err)
		}
		if res := mustGrab(t, rp, id, "early", before); res != (grabResult{Item: items[0], Again: true}) {
			t.Fatalf("earlier grabber after close: %+v, want Again with %v", res, items[0])
		}
		if got := mustGrabs(t, rp, id); !maps.Equal(got, map[string]rpItem{"early": items[0]}) {
			t.Fatalf("Grabs after close %v", got)
		}
	})

	t.Run("CloseEmptyPacket", func(t *testing.T) {
		t.Parallel()
		const id = "p-close-empty"
		mustLoad(t, rp, id, splitItems(1, 3), nil, expireAt, nil)
		mustGrab(t, rp, id, "u", before)
		rest, closedNow, err := rp.closePacket(ctx, id)
		if err != nil || !closedNow || len(rest) != 0 {
			t.Fatalf("close of a grabbed-out packet: %v, %v, %v; want nothing, true, nil", rest, closedNow, err)
		}
	})

	t.Run("Eligibility", func(t *testing.T) {
		t.Parallel()
		const id = "p-eligible"
		items := splitItems(3, 4)
		mustLoad(t, rp, id, items, nil, expireAt, []string{"x", "y"})
		if _, err := rp.grab(ctx, id, "z", before); !errors.Is(err, redpacket.ErrNotEligible) {
			t.Fatalf("grab of a stranger: %v, want redpacket.ErrNotEligible", err)
		}
		x := mustGrab(t, rp, id, "x", before)
		y := mustGrab(t, rp, id, "y", before)
		if x.Again || y.Again || x.Item == y.Item {
			t.Fatalf("eligible grabs %+v, %+v; want two new items", x, y)
		}
		if res := mustGrab(t, rp, id, "x", before); res != (grabResult{Item: x.Item, Again: true}) {
			t.Fatalf("second grab of x: %+v", res)
		}
		if _, err := rp.grab(ctx, id, "z", before); !errors.Is(err, redpacket.ErrNotEligible) {
			t.Fatalf("grab of a stranger with items left: %v, want redpacket.ErrNotEligible", err)
		}
		assertRemaining(t, rp, id, 1)

		// An empty list, nil or not, leaves the packet open to anyone.
		for _, eligible := range [][]string{nil, {}} {
			id := fmt.Sprintf("p-eligible-all-%t", eligible == nil)
			mustLoad(t, rp, id, items, nil, expireAt, eligible)
			mustGrab(t, rp, id, "z", before)
		}
	})

	t.Run("MissingAndRebuild", func(t *testing.T) {
		t.Parallel()
		const id = "p-missing"
		assertMissing(t, rp, id)

		items := splitItems(10, 5)
		mustLoad(t, rp, id, items, nil, expireAt, nil)
		durable := map[string]rpItem{} // what the caller recorded
		for i := range 4 {
			user := "u" + strconv.Itoa(i)
			durable[user] = mustGrab(t, rp, id, user, before).Item
		}
		want := int64(3) // items, grabs, meta; and the fence when fenced
		if rp.fence {
			want++
		}
		if n, err := client.Del(ctx, rp.Keys(id)...).Result(); err != nil || n != want {
			t.Fatalf("del: %d, %v; want the %d keys of an open packet", n, err, want)
		}
		assertMissing(t, rp, id)

		mustLoad(t, rp, id, remainingItems(items, durable), durable, expireAt, nil)
		assertRebuilt(t, rp, id, items, durable, before)
	})

	// A packet that lost its grabs hash or its items list (eviction, a stray DEL) is
	// missing: the earlier grabber must not get a second item from a lost hash (a grab
	// still found is theirs), nobody grabs from a list that lost items, and no refund is
	// computed from it.
	for _, lost := range []struct {
		name string
		key  int // index in Keys
	}{{"LostGrabsIsMissing", 1}, {"LostItemsIsMissing", 0}} {
		t.Run(lost.name, func(t *testing.T) {
			t.Parallel()
			id := "p-" + lost.name
			items := splitItems(6, 6)
			mustLoad(t, rp, id, items, nil, expireAt, nil)
			durable := map[string]rpItem{"u0": mustGrab(t, rp, id, "u0", before).Item}
			if err := client.Del(ctx, rp.Keys(id)[lost.key]).Err(); err != nil {
				t.Fatal(err)
			}
			res, err := rp.grab(ctx, id, "u0", before)
			if lost.key == 1 && !errors.Is(err, redpacket.ErrUnavailable) {
				t.Fatalf("grab of the earlier grabber: %+v, %v; want redpacket.ErrUnavailable", res, err)
			}
			if lost.key == 0 && (err != nil || res != grabResult{Item: durable["u0"], Again: true}) {
				t.Fatalf("grab of the earlier grabber: %+v, %v; want Again with %v", res, err, durable["u0"])
			}
			if res, err := rp.grab(ctx, id, "u1", before); !errors.Is(err, redpacket.ErrUnavailable) {
				t.Fatalf("grab of a new user: %+v, %v; want redpacket.ErrUnavailable", res, err)
			}
			if _, _, err := rp.closePacket(ctx, id); !errors.Is(err, redpacket.ErrUnavailable) {
				t.Fatalf("close: %v, want redpacket.ErrUnavailable", err)
			}
			mustLoad(t, rp, id, remainingItems(items, durable), durable, expireAt, nil)
			assertRebuilt(t, rp, id, items, durable, before)
		})
	}

	t.Run("LoadKeepsLiveState", func(t *testing.T) {
		t.Parallel()
		const id = "p-reload"
		items := splitItems(4, 7)
		mustLoad(t, rp, id, items, nil, expireAt, nil)
		got := mustGrab(t, rp, id, "u", before).Item
		// A second loader with stale records (no grabs) must not put the item back.
		mustLoad(t, rp, id, items, nil, expireAt, nil)
		assertRemaining(t, rp, id, 3)
		if res := mustGrab(t, rp, id, "u", before); res != (grabResult{Item: got, Again: true}) {
			t.Fatalf("grab after a second load: %+v, want Again with %v", res, got)
		}
		// Nor may a load reopen a closed packet, whose remainder is being refunded.
		if _, _, err := rp.closePacket(ctx, id); err != nil {
			t.Fatal(err)
		}
		mustLoad(t, rp, id, items, nil, expireAt, nil)
		if _, err := rp.grab(ctx, id, "v", before); !errors.Is(err, redpacket.ErrClosed) {
			t.Fatalf("grab after loading a closed packet: %v, want redpacket.ErrClosed", err)
		}
	})

	t.Run("LargePacketAndAmounts", func(t *testing.T) {
		t.Parallel()
		const id = "p-large"
		// More than one chunk of items, grabs and eligible users, at odd offsets.
		items := splitItems(4001, 8)
		items[0].Cents = 1<<62 + 1 // amounts are strings to Lua: no double rounding
		grabs := map[string]rpItem{}
		var eligible []string
		for i, it := range items[2500:] {
			grabs["g"+strconv.Itoa(i)] = it
		}
		for i := range 2501 {
			eligible = append(eligible, "e"+strconv.Itoa(i))
		}
		mustLoad(t, rp, id, items[:2500], grabs, expireAt, eligible)
		assertRemaining(t, rp, id, 2500)
		if got := mustGrabs(t, rp, id); !maps.Equal(got, grabs) {
			t.Fatalf("Grabs: %d entries, want the %d loaded", len(got), len(grabs))
		}
		if res := mustGrab(t, rp, id, "e2500", before); res.Again || res.Item != items[0] {
			t.Fatalf("grab of the last eligible user: %+v, want %v", res, items[0])
		}
		if res := mustGrab(t, rp, id, "g1500", before); res != (grabResult{Item: items[4000], Again: true}) {
			t.Fatalf("grab of a loaded grabber: %+v, want Again with %v", res, items[4000])
		}
	})

	t.Run("KeysCarryExpiry", func(t *testing.T) {
		t.Parallel()
		const id = "p-ttl"
		mustLoad(t, rp, id, splitItems(3, 9), nil, expireAt, []string{"u"})
		keys := rp.Keys(id)
		if n, err := client.Exists(ctx, keys[1]).Result(); err != nil || n != 0 {
			t.Fatalf("grabs hash exists before any grab: %d, %v", n, err)
		}
		mustGrab(t, rp, id, "u", before)
		keep := time.Until(expireAt.Add(24 * time.Hour))
		if !rp.fence {
			keys = keys[:4] // no fence key
		}
		for _, key := range keys {
			d, err := client.PTTL(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			if d > keep+time.Second || d < keep-time.Minute {
				t.Fatalf("PTTL of %s is %v, want about %v (expiry + 24h)", key, d, keep)
			}
		}
	})

	t.Run("BadArguments", func(t *testing.T) {
		t.Parallel()
		items := splitItems(2, 10)
		for name, load := range map[string]func() error{
			"no id":         func() error { return rp.load(ctx, "", items, nil, expireAt, nil) },
			"brace in id":   func() error { return rp.load(ctx, "a}b", items, nil, expireAt, nil) },
			"no expiry":     func() error { return rp.load(ctx, "p-bad", items, nil, time.Time{}, nil) },
			"zero cents":    func() error { return rp.load(ctx, "p-bad", []rpItem{{0, 0}}, nil, expireAt, nil) },
			"index < 0":     func() error { return rp.load(ctx, "p-bad", []rpItem{{-1, 5}}, nil, expireAt, nil) },
			"index twice":   func() error { return rp.load(ctx, "p-bad", []rpItem{{1, 5}, {1, 6}}, nil, expireAt, nil) },
			"grabbed item":  func() error { return rp.load(ctx, "p-bad", items, map[string]rpItem{"u": items[1]}, expireAt, nil) },
			"no grab user":  func() error { return rp.load(ctx, "p-bad", items[:1], map[string]rpItem{"": items[1]}, expireAt, nil) },
			"empty allowed": func() error { return rp.load(ctx, "p-bad", items, nil, expireAt, []string{""}) },
		} {
			if err := load(); err == nil {
				t.Errorf("load with %s succeeded", name)
			}
		}
		assertMissing(t, rp, "p-bad")

		mustLoad(t, rp, "p-bad", items, nil, expireAt, nil)
		if _, err := rp.grab(ctx, "p-bad", "", before); err == nil {
			t.Error("grab without user succeeded")
		}
		if _, err := rp.grab(ctx, "p-bad", "u", time.Time{}); err == nil {
			t.Error("grab without time succeeded")
		}
		if err := client.HSet(ctx, rp.Keys("p-bad")[2], "expire_ms", "soon").Err(); err != nil {
			t.Fatal(err)
		}
		_, err := rp.grab(ctx, "p-bad", "u", before)
		if err == nil || errors.Is(err, redpacket.ErrUnavailable) || errors.Is(err, redpacket.ErrClosed) || errors.Is(err, redpacket.ErrEmpty) {
			t.Errorf("grab of a corrupt packet: %v, want a plain error", err)
		}
	})
}

// TestRedPacketKeysShareClusterSlot checks that every key of a packet hashes to one slot,
// whatever the prefix, and that packets spread over slots.
func TestRedPacketKeysShareClusterSlot(t *testing.T) {
	t.Parallel()
	seen := map[int]bool{}
	for _, prefix := range []string{"", "bigmarket", "a:b"} {
		rp := NewRedPackets(nil, prefix)
		for i := range 50 {
			id := "rp" + strconv.Itoa(1000+i)
			keys := rp.Keys(id)
			if len(keys) != 5 {
				t.Fatalf("%d keys, want 5", len(keys))
			}
			slot := keySlot(keys[0])
			for _, k := range keys {
				if !strings.HasPrefix(k, rp.prefix+"rp:{"+id+"}:") {
					t.Fatalf("key %q lacks the tag {%s}", k, id)
				}
				if keySlot(k) != slot {
					t.Fatalf("key %q in slot %d, %q in %d", k, keySlot(k), keys[0], slot)
				}
			}
			if slot != keySlot(id) {
				t.Fatalf("packet %s in slot %d, want the slot of its id, %d", id, slot, keySlot(id))
			}
			seen[slot] = true
		}
	}
	if len(seen) < 10 {
		t.Fatalf("50 packets use only %d slots: the tag does not spread them", len(seen))
	}
}

// TestRedPacketsCluster runs the scripts, fenced, on a real three-master Redis Cluster:
// Redis would answer CROSSSLOT if any script touched keys of two slots, and each packet's
// fence holds the replication id of the master serving its slot.
func TestRedPacketsCluster(t *testing.T) {
	t.Parallel()
	client := openClient(t, Options{Addrs: startCluster(t, 3), Cluster: true})
	rp := NewRedPackets(client, "bmtest_rp_cluster").Fence(true)
	ids := map[string]bool{} // replication ids seen in fences
	ctx := context.Background()
	expireAt := time.Now().Add(10 * time.Minute)
	before := expireAt.Add(-time.Minute)
	slots := map[int]bool{}
	for p := range 12 {
		id := "c" + strconv.Itoa(p)
		slots[keySlot(rp.Keys(id)[0])] = true
		items := splitItems(5, uint64(p))
		mustLoad(t, rp, id, items[1:], map[string]rpItem{"g": items[0]}, expireAt, []string{"g", "a", "b"})
		if s, err := client.ClusterKeySlot(ctx, rp.Keys(id)[3]).Result(); err != nil || int(s) != keySlot(rp.Keys(id)[0]) {
			t.Fatalf("CLUSTER KEYSLOT %d, %v; want %d", s, err, keySlot(rp.Keys(id)[0]))
		}
		node, err := client.(*goredis.ClusterClient).MasterForKey(ctx, rp.Keys(id)[4])
		if err != nil {
			t.Fatal(err)
		}
		fence, err := client.Get(ctx, rp.Keys(id)[4]).Result()
		if err != nil {
			t.Fatal(err)
		}
		if info, err := node.Info(ctx, "replication").Result(); err != nil || !strings.Contains(info, "master_replid:"+fence+"\r\n") {
			t.Fatalf("packet %s: fence %q, the slot's master says %v\n%s", id, fence, err, info)
		}
		ids[fence] = true
		if res := mustGrab(t, rp, id, "g", before); res != (grabResult{Item: items[0], Again: true}) {
			t.Fatalf("packet %s: loaded grab %+v", id, res)
		}
		if res := mustGrab(t, rp, id, "a", before); res.Item != items[1] {
			t.Fatalf("packet %s: grab %+v, want %v", id, res, items[1])
		}
		if _, err := rp.grab(ctx, id, "z", before); !errors.Is(err, redpacket.ErrNotEligible) {
			t.Fatalf("packet %s: stranger %v", id, err)
		}
		if got := mustGrabs(t, rp, id); len(got) != 2 {
			t.Fatalf("packet %s: grabs %v", id, got)
		}
		assertRemaining(t, rp, id, 3)
		if rest, closedNow, err := rp.closePacket(ctx, id); err != nil || !closedNow || !slices.Equal(rest, items[2:]) {
			t.Fatalf("packet %s: close %v, %v, %v", id, rest, closedNow, err)
		}
		if err := client.Del(ctx, rp.Keys(id)...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if len(slots) < 6 {
		t.Fatalf("12 packets in %d slots", len(slots))
	}
	if len(ids) < 2 {
		t.Fatalf("12 packets fenced with %d replication ids: want those of several masters", len(ids))
	}
}

func BenchmarkGrab(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			client := be.client(b)
			prefix := testenv.Unique("bmbench_rp_")
			rp := NewRedPackets(client, prefix)
			ctx := context.Background()
			expireAt := time.Now().Add(10 * time.Minute)
			now := time.Now()
			// A packet of its own per round, with one item per grab, each by a new user:
			// the full grant path.
			id := testenv.Unique("bench")
			b.Cleanup(func() { client.Del(ctx, rp.Keys(id)...) })
			if err := rp.load(ctx, id, splitItems(b.N, 1), nil, expireAt, nil); err != nil {
				b.Fatal(err)
			}
			var users atomic.Int64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					user := "u" + strconv.FormatInt(users.Add(1), 10)
					if res, err := rp.grab(ctx, id, user, now); err != nil || res.Again {
						b.Errorf("grab: %+v, %v", res, err)
						return
					}
				}
			})
		})
	}
}

// splitItems returns n items with indexes 0..n-1 and seeded random amounts of 1 to 10000
// cents.
func splitItems(n int, seed uint64) []rpItem {
	rng := rand.New(rand.NewPCG(seed, 42))
	items := make([]rpItem, n)
	for i := range items {
		items[i] = rpItem{Index: i, Cents: 1 + rng.Int64N(10000)}
	}
	return items
}

// remainingItems returns the items not in grabs, as a caller computes them from its
// durable records for a rebuild.
func remainingItems(items []rpItem, grabs map[string]rpItem) []rpItem {
	taken := map[int]bool{}
	for _, it := range grabs {
		taken[it.Index] = true
	}
	var rest []rpItem
	for _, it := range items {
		if !taken[it.Index] {
			rest = append(rest, it)
		}
	}
	return rest
}

func sumCents(items []rpItem) int64 {
	var s int64
	for _, it := range items {
		s += it.Cents
	}
	return s
}

// assertSameItems fails unless got holds each of want exactly once, in any order, so the
// cents granted add up to the cents loaded.
func assertSameItems(t *testing.T, got, want []rpItem) {
	t.Helper()
	byIndex := func(a, b rpItem) int { return a.Index - b.Index }
	got, want = slices.SortedFunc(slices.Values(got), byIndex), slices.SortedFunc(slices.Values(want), byIndex)
	if !slices.Equal(got, want) {
		t.Fatalf("items %v, want %v", got, want)
	}
	if sumCents(got) != sumCents(want) {
		t.Fatalf("%d cents granted, %d loaded", sumCents(got), sumCents(want))
	}
}

// assertRebuilt checks a packet rebuilt from durable grabs: the earlier grabbers get their
// items with Again, new users get the other items, and no item goes out twice.
func assertRebuilt(t *testing.T, rp *RedPackets, id string, items []rpItem, durable map[string]rpItem, now time.Time) {
	t.Helper()
	all := map[string]rpItem{}
	for user, it := range durable {
		if res := mustGrab(t, rp, id, user, now); res != (grabResult{Item: it, Again: true}) {
			t.Fatalf("earlier grabber %s after rebuild: %+v, want Again with %v", user, res, it)
		}
		all[user] = it
	}
	for i := range len(items) - len(durable) {
		user := "new" + strconv.Itoa(i)
		res := mustGrab(t, rp, id, user, now)
		if res.Again {
			t.Fatalf("new user %s got Again %v", user, res.Item)
		}
		all[user] = res.Item
	}
	if _, err := rp.grab(context.Background(), id, "one-too-many", now); !errors.Is(err, redpacket.ErrEmpty) {
		t.Fatalf("grab past the last item: %v, want redpacket.ErrEmpty", err)
	}
	assertSameItems(t, slices.Collect(maps.Values(all)), items)
	if got := mustGrabs(t, rp, id); !maps.Equal(got, all) {
		t.Fatalf("Grabs %v, want %v", got, all)
	}
}

func assertMissing(t *testing.T, rp *RedPackets, id string) {
	t.Helper()
	ctx := context.Background()
	if _, err := rp.grab(ctx, id, "u", time.Now()); !errors.Is(err, redpacket.ErrUnavailable) {
		t.Fatalf("grab of %s: %v, want redpacket.ErrUnavailable", id, err)
	}
	if _, _, err := rp.closePacket(ctx, id); !errors.Is(err, redpacket.ErrUnavailable) {
		t.Fatalf("close of %s: %v, want redpacket.ErrUnavailable", id, err)
	}
	if _, err := rp.grabs(ctx, id); !errors.Is(err, redpacket.ErrUnavailable) {
		t.Fatalf("grabs of %s: %v, want redpacket.ErrUnavailable", id, err)
	}
	if _, err := rp.Remaining(ctx, id); !errors.Is(err, redpacket.ErrUnavailable) {
		t.Fatalf("remaining of %s: %v, want redpacket.ErrUnavailable", id, err)
	}
}

func mustLoad(t *testing.T, rp *RedPackets, id string, items []rpItem, grabs map[string]rpItem, expireAt time.Time, eligible []string) {
	t.Helper()
	if err := rp.load(context.Background(), id, items, grabs, expireAt, eligible); err != nil {
		t.Fatal(err)
	}
}

func mustGrab(t *testing.T, rp *RedPackets, id, user string, now time.Time) grabResult {
	t.Helper()
	res, err := rp.grab(context.Background(), id, user, now)
	if err != nil {
		t.Fatalf("grab of %s by %s: %v", id, user, err)
	}
	return res
}

func mustGrabs(t *testing.T, rp *RedPackets, id string) map[string]rpItem {
	t.Helper()
	g, err := rp.grabs(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func assertRemaining(t *testing.T, rp *RedPackets, id string, want int64) {
	t.Helper()
	n, err := rp.Remaining(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Fatalf("remaining of %s: %d, want %d", id, n, want)
	}
}

// TestRedPacketPending checks the green channel's per-user list on every backend: grabs
// noted for a user come back with their amounts and times, and credited ones go away.
func TestRedPacketPending(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			client := b.client(t)
			prefix := testenv.Unique("bmtest_rpp_")
			h := NewRedPackets(client, prefix).Fence(b.fence)
			ctx := context.Background()
			t.Cleanup(func() { client.Del(context.Background(), h.pendingKey("ann"), h.pendingKey("ben")) })
			at := time.UnixMilli(time.Now().UnixMilli())
			grabs := []redpacket.Grab{
				{PacketID: "0012345678901234567890", UserID: "ann", Index: 3, Amount: 1_23, Time: at},
				{PacketID: "0112345678901234567891", UserID: "ann", Index: 0, Amount: 99_00, Time: at},
				{PacketID: "0012345678901234567890", UserID: "ben", Index: 4, Amount: 7, Time: at},
			}
			for _, g := range grabs {
				if err := h.AddPending(ctx, g); err != nil {
					t.Fatal(err)
				}
			}
			got, err := h.Pending(ctx, "ann")
			if err != nil || len(got) != 2 {
				t.Fatalf("pending of ann: %v %v", got, err)
			}
			for _, g := range got {
				want := grabs[0]
				if g.PacketID == grabs[1].PacketID {
					want = grabs[1]
				}
				if g.UserID != "ann" || g.Index != want.Index || g.Amount != want.Amount || !g.Time.Equal(want.Time) {
					t.Fatalf("pending %+v, want %+v", g, want)
				}
			}
			if err := h.DonePending(ctx, grabs[:1]); err != nil {
				t.Fatal(err)
			}
			if got, _ := h.Pending(ctx, "ann"); len(got) != 1 || got[0].PacketID != grabs[1].PacketID {
				t.Fatalf("after done: %v", got)
			}
			if got, _ := h.Pending(ctx, "nobody"); len(got) != 0 {
				t.Fatalf("pending of nobody: %v", got)
			}
		})
	}
}

// TestRedPacketsHot checks RedPackets in the domain's terms on every backend: items and
// grabs go in and come out as redpacket.Item and redpacket.Grab, and the scripts' outcomes
// are the domain's errors.
func TestRedPacketsHot(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			client := b.client(t)
			var h redpacket.Hot = NewRedPackets(client, uniquePrefix(t, client)).Fence(b.fence)
			ctx := context.Background()
			const id = "p-hot"
			expireAt := time.Now().Add(10 * time.Minute).Truncate(time.Millisecond)
			now := expireAt.Add(-time.Minute)
			items := []redpacket.Item{{Index: 1, Amount: 2_00}, {Index: 2, Amount: 3}}
			earlier := []redpacket.Grab{{PacketID: id, UserID: "ann", Index: 0, Amount: 50}}
			if err := h.Load(ctx, id, items, earlier, expireAt, nil); err != nil {
				t.Fatal(err)
			}
			if it, again, err := h.Grab(ctx, id, "ann", now); err != nil || !again || it != (redpacket.Item{Index: 0, Amount: 50, UserID: "ann"}) {
				t.Fatalf("grab of the earlier grabber: %+v, %v, %v", it, again, err)
			}
			if it, again, err := h.Grab(ctx, id, "ben", now); err != nil || again || it != (redpacket.Item{Index: 1, Amount: 2_00, UserID: "ben"}) {
				t.Fatalf("first grab of ben: %+v, %v, %v", it, again, err)
			}
			if _, _, err := h.Grab(ctx, id, "cy", now); err != nil {
				t.Fatal(err)
			}
			if _, _, err := h.Grab(ctx, id, "dee", now); !errors.Is(err, redpacket.ErrEmpty) {
				t.Fatalf("grab of an emptied packet: %v, want redpacket.ErrEmpty", err)
			}
			got, err := h.Grabs(ctx, id)
			if err != nil || len(got) != 3 {
				t.Fatalf("grabs: %v, %v", got, err)
			}
			slices.SortFunc(got, func(a, b redpacket.Grab) int { return a.Index - b.Index })
			// The grabs made here carry their time at once, before any database has them;
			// the one loaded without a time has none.
			want := []redpacket.Grab{earlier[0], {PacketID: id, UserID: "ben", Index: 1, Amount: 2_00, Time: now},
				{PacketID: id, UserID: "cy", Index: 2, Amount: 3, Time: now}}
			if !slices.EqualFunc(got, want, sameGrab) {
				t.Fatalf("grabs %+v, want %+v", got, want)
			}
			if err := h.Close(ctx, id); err != nil {
				t.Fatal(err)
			}
			if err := h.Close(ctx, id); err != nil {
				t.Fatalf("second close: %v", err)
			}
			if _, _, err := h.Grab(ctx, id, "eve", now); !errors.Is(err, redpacket.ErrClosed) {
				t.Fatalf("grab after close: %v, want redpacket.ErrClosed", err)
			}
			// A rebuild from durable records keeps the recorded grab times.
			recorded := []redpacket.Grab{{PacketID: "p-timed", UserID: "ann", Index: 0, Amount: 50, Time: now.Add(-time.Second)}}
			if err := h.Load(ctx, "p-timed", items, recorded, expireAt, nil); err != nil {
				t.Fatal(err)
			}
			if got, err := h.Grabs(ctx, "p-timed"); err != nil || !slices.EqualFunc(got, recorded, sameGrab) {
				t.Fatalf("grabs of a packet loaded with timed grabs: %+v, %v; want %+v", got, err, recorded)
			}
			if _, _, err := h.Grab(ctx, "p-never", "eve", now); !errors.Is(err, redpacket.ErrUnavailable) {
				t.Fatalf("grab of a packet not loaded: %v, want redpacket.ErrUnavailable", err)
			}
			if err := h.Load(ctx, "p-few", items, nil, expireAt, []string{"ann"}); err != nil {
				t.Fatal(err)
			}
			if _, _, err := h.Grab(ctx, "p-few", "ben", now); !errors.Is(err, redpacket.ErrNotEligible) {
				t.Fatalf("grab of a stranger: %v, want redpacket.ErrNotEligible", err)
			}
		})
	}
}

// sameGrab compares grabs field by field, times by instant.
func sameGrab(a, b redpacket.Grab) bool {
	return a.PacketID == b.PacketID && a.UserID == b.UserID && a.Index == b.Index && a.Amount == b.Amount && a.Time.Equal(b.Time)
}
