package redis

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/redpacket"
)

func TestRedPacketEmptyMemo(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			client := b.client(t)
			hook := &roundTrips{}
			client.AddHook(hook)
			prefix := uniquePrefix(t, client)
			// on and off share the keys: off is the script's own answer to compare with.
			on := NewRedPackets(client, prefix).Fence(b.fence).EmptyMemo(16)
			off := NewRedPackets(client, prefix).Fence(b.fence)
			testEmptyMemo(t, hook, on, off)
		})
	}
}

func testEmptyMemo(t *testing.T, hook *roundTrips, on, off *RedPackets) {
	ctx := context.Background()
	expireAt := time.Now().Add(10 * time.Minute).Truncate(time.Millisecond)
	before := expireAt.Add(-time.Minute)

	// empty loads a packet of n items, has users g0..g(n-1) grab them all and one more
	// user find it empty through the script (which builds the memo), and returns what
	// the grabbers got.
	empty := func(t *testing.T, id string, n int, eligible []string) map[string]rpItem {
		t.Helper()
		mustLoad(t, on, id, splitItems(n, 7), nil, expireAt, eligible)
		got := map[string]rpItem{}
		for i := range n {
			user := "g" + strconv.Itoa(i)
			got[user] = mustGrab(t, on, id, user, before).Item
		}
		if _, err := on.grab(ctx, id, "first-late", before); !errors.Is(err, redpacket.ErrEmpty) {
			t.Fatalf("grab of an empty packet: %v, want ErrEmpty", err)
		}
		if !on.memo.cache.Contains(id) {
			t.Fatalf("no memo of %s after it answered empty", id)
		}
		return got
	}
	// noRedis runs f and fails if it sent any command.
	noRedis := func(t *testing.T, f func()) {
		t.Helper()
		before := hook.n.Load()
		f()
		if n := hook.n.Load() - before; n != 0 {
			t.Fatalf("%d commands sent to Redis, want none", n)
		}
	}

	t.Run("NewUsersAnswerEmptyWithoutRedis", func(t *testing.T) {
		const id = "p-memo-empty"
		empty(t, id, 3, nil)
		noRedis(t, func() {
			for i := range 50 {
				_, err := on.grab(ctx, id, "late"+strconv.Itoa(i), before)
				if !errors.Is(err, redpacket.ErrEmpty) {
					t.Fatalf("late grab %d: %v, want ErrEmpty", i, err)
				}
			}
		})
		// The script gives the same answer.
		if _, err := off.grab(ctx, id, "late0", before); !errors.Is(err, redpacket.ErrEmpty) {
			t.Fatalf("script answer: %v, want ErrEmpty", err)
		}
	})

	t.Run("GrabberGetsItemAgainThroughRedis", func(t *testing.T) {
		const id = "p-memo-again"
		got := empty(t, id, 3, nil)
		for user, want := range got {
			sent := hook.n.Load()
			res, err := on.grab(ctx, id, user, before)
			if err != nil || !res.Again || res.Item != want {
				t.Fatalf("grabber %s again: %+v, %v; want Again %+v", user, res, err, want)
			}
			if hook.n.Load() == sent {
				t.Fatalf("grabber %s was answered without Redis", user)
			}
		}
	})

	t.Run("RestrictedOutsiderNotEligibleFromMemo", func(t *testing.T) {
		const id = "p-memo-restricted"
		eligible := []string{"g0", "g1", "first-late", "insider"}
		empty(t, id, 2, eligible)
		for _, c := range []struct {
			user string
			want error
		}{{"outsider", redpacket.ErrNotEligible}, {"insider", redpacket.ErrEmpty}, {"first-late", redpacket.ErrEmpty}} {
			noRedis(t, func() {
				if _, err := on.grab(ctx, id, c.user, before); !errors.Is(err, c.want) {
					t.Fatalf("memo answer to %s: %v, want %v", c.user, err, c.want)
				}
			})
			if _, err := off.grab(ctx, id, c.user, before); !errors.Is(err, c.want) {
				t.Fatalf("script answer to %s: %v, want %v", c.user, err, c.want)
			}
		}
		// A grabber is never told empty: their item comes back from Redis.
		if res, err := on.grab(ctx, id, "g1", before); err != nil || !res.Again {
			t.Fatalf("grabber g1 again: %+v, %v", res, err)
		}
	})

	t.Run("ExpiryDropsMemo", func(t *testing.T) {
		const id = "p-memo-expiry"
		empty(t, id, 2, nil)
		sent := hook.n.Load()
		if _, err := on.grab(ctx, id, "late", expireAt); !errors.Is(err, redpacket.ErrClosed) {
			t.Fatalf("grab at the expiry: %v, want ErrClosed", err)
		}
		if hook.n.Load() == sent {
			t.Fatal("grab at the expiry was answered without Redis")
		}
		if on.memo.cache.Contains(id) {
			t.Fatal("memo kept after the expiry")
		}
		// The script's closed answer builds no new memo.
		if _, err := on.grab(ctx, id, "late", expireAt.Add(time.Second)); !errors.Is(err, redpacket.ErrClosed) {
			t.Fatalf("grab after the expiry: %v, want ErrClosed", err)
		}
		if on.memo.cache.Contains(id) {
			t.Fatal("memo built after the expiry")
		}
	})

	t.Run("MemoLapses", func(t *testing.T) {
		const id = "p-memo-lapse"
		empty(t, id, 2, nil)
		sent := hook.n.Load()
		if _, err := on.grab(ctx, id, "within", before.Add(rpMemoLife-time.Millisecond)); !errors.Is(err, redpacket.ErrEmpty) || hook.n.Load() != sent {
			t.Fatalf("grab within the memo's life: %v, %d round trips; want ErrEmpty from the memo", err, hook.n.Load()-sent)
		}
		if _, err := on.grab(ctx, id, "after", before.Add(rpMemoLife)); !errors.Is(err, redpacket.ErrEmpty) || hook.n.Load() == sent {
			t.Fatalf("grab once the memo lapsed: %v; want ErrEmpty from the script", err)
		}
		// The script's empty answer built it again.
		sent = hook.n.Load()
		if _, err := on.grab(ctx, id, "again", before.Add(rpMemoLife+time.Second)); !errors.Is(err, redpacket.ErrEmpty) || hook.n.Load() != sent {
			t.Fatalf("grab after the rebuilt memo: %v, %d round trips; want ErrEmpty from the memo", err, hook.n.Load()-sent)
		}
	})

	t.Run("CloseDropsMemo", func(t *testing.T) {
		const id = "p-memo-close"
		empty(t, id, 2, nil)
		if err := on.Close(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := on.grab(ctx, id, "late", before); !errors.Is(err, redpacket.ErrClosed) {
			t.Fatalf("grab after close: %v, want ErrClosed", err)
		}
	})

	t.Run("RebuildDropsMemo", func(t *testing.T) {
		// The packet is lost and rebuilt without g0's grab (answered with an error, never
		// made durable): its item is free again, and this node's memo must not hide it.
		const id = "p-memo-rebuild"
		got := empty(t, id, 2, nil)
		if err := on.client.Del(ctx, on.Keys(id)...).Err(); err != nil {
			t.Fatal(err)
		}
		mustLoad(t, on, id, []rpItem{got["g0"]}, map[string]rpItem{"g1": got["g1"]}, expireAt, nil)
		if res := mustGrab(t, on, id, "after-rebuild", before); res.Again || res.Item != got["g0"] {
			t.Fatalf("grab after the rebuild: %+v, want the freed item %+v", res, got["g0"])
		}
	})

	t.Run("ConcurrentEmptyGrabsBuildOnce", func(t *testing.T) {
		const (
			id      = "p-memo-concurrent"
			grabber = 64
		)
		mustLoad(t, on, id, splitItems(1, 3), nil, expireAt, nil)
		mustGrab(t, on, id, "winner", before)
		builds := on.memo.builds.Load()
		var (
			start = make(chan struct{})
			wg    sync.WaitGroup
		)
		for i := range grabber {
			wg.Go(func() {
				<-start
				if _, err := on.grab(ctx, id, "c"+strconv.Itoa(i), before); !errors.Is(err, redpacket.ErrEmpty) {
					t.Errorf("concurrent late grab %d: %v", i, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if n := on.memo.builds.Load() - builds; n != 1 {
			t.Fatalf("%d memo builds for one packet, want 1", n)
		}
		if !on.memo.cache.Contains(id) {
			t.Fatal("no memo after concurrent empty grabs")
		}
	})

	t.Run("NoMemoWhileItemsLeft", func(t *testing.T) {
		const id = "p-memo-open"
		mustLoad(t, on, id, splitItems(2, 5), nil, expireAt, nil)
		mustGrab(t, on, id, "a", before)
		if on.memo.cache.Contains(id) {
			t.Fatal("memo of a packet with items left")
		}
		if res := mustGrab(t, on, id, "b", before); res.Again {
			t.Fatalf("second user: %+v", res)
		}
	})
}

// BenchmarkRedPacketGrabEmpty measures late grabs of an empty packet, each by a new user,
// with the empty memo off and on, on a private redis-server: ns/op is a serial caller's
// grab, server-us/grab the EVALSHA time Redis spends per grab (INFO commandstats) and
// evalsha/grab how many scripts a grab runs (0 with the memo: it answers on the node).
func BenchmarkRedPacketGrabEmpty(b *testing.B) {
	addr, _ := startRedisServer(b, b.TempDir())
	client := newPlainClient(b, addr)
	ctx := context.Background()
	prefix := testenv.Unique("bmbench_rp_")
	expireAt := time.Now().Add(time.Hour)
	now := time.Now()
	for _, size := range []int{0, 1024} {
		name := "memo=off"
		if size > 0 {
			name = "memo=on"
		}
		b.Run(name, func(b *testing.B) {
			rp := NewRedPackets(client, prefix).Fence(true).EmptyMemo(size)
			id := testenv.Unique("empty")
			if err := rp.load(ctx, id, splitItems(1000, 1), nil, expireAt, nil); err != nil {
				b.Fatal(err)
			}
			for i := range 1000 {
				if _, err := rp.grab(ctx, id, "g"+strconv.Itoa(i), now); err != nil {
					b.Fatal(err)
				}
			}
			// The first empty answer (and, with the memo, its build) is not measured.
			if _, err := rp.grab(ctx, id, "first", now); !errors.Is(err, redpacket.ErrEmpty) {
				b.Fatal(err)
			}
			if err := client.ConfigResetStat(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				if _, err := rp.grab(ctx, id, "u"+strconv.Itoa(i), now); !errors.Is(err, redpacket.ErrEmpty) {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			stats, err := client.Info(ctx, "commandstats").Result()
			if err != nil {
				b.Fatal(err)
			}
			usec, calls := evalshaStats(stats)
			b.ReportMetric(float64(calls)/float64(b.N), "evalsha/grab")
			b.ReportMetric(float64(usec)/float64(b.N), "server-us/grab")
		})
	}
}
