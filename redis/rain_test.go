package redis

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/rain"
)

func TestRain(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			client := b.client(t)
			testRain(t, client, NewRain(client, uniquePrefix(t, client)).Fence(b.fence))
		})
	}
}

// TestRainCluster runs the rain contract on a real three-master Redis Cluster: Redis
// would answer CROSSSLOT if any script touched keys of two slots.
func TestRainCluster(t *testing.T) {
	t.Parallel()
	client := openClient(t, Options{Addrs: startCluster(t, 3), Cluster: true})
	r := NewRain(client, "bmtest_rain_cluster").Fence(true)
	ctx := context.Background()
	slots := map[int]bool{}
	for id := int64(1); id <= 12; id++ {
		keys := r.scriptKeys(id)
		slots[keySlot(keys[0])] = true
		for _, k := range keys {
			s, err := client.ClusterKeySlot(ctx, k).Result()
			if err != nil || int(s) != keySlot(keys[0]) {
				t.Fatalf("CLUSTER KEYSLOT of %s: %d, %v; want %d", k, s, err, keySlot(keys[0]))
			}
		}
	}
	if len(slots) < 6 {
		t.Fatalf("12 sessions in %d slots", len(slots))
	}
	testRain(t, client, r)
}

// TestRainKeysShareClusterSlot checks that every key of a session hashes to one slot,
// whatever the prefix, and that sessions spread over slots.
func TestRainKeysShareClusterSlot(t *testing.T) {
	t.Parallel()
	seen := map[int]bool{}
	for _, prefix := range []string{"", "bigmarket", "a:b"} {
		r := NewRain(nil, prefix)
		for i := range 50 {
			id := int64(1000 + i)
			keys := r.Keys(id)
			if len(keys) != 6 {
				t.Fatalf("%d keys, want 6", len(keys))
			}
			keys = r.scriptKeys(id)
			tag := "{" + strconv.FormatInt(id, 10) + "}"
			for _, k := range keys {
				if !strings.HasPrefix(k, r.prefix+"rain:"+tag+":") {
					t.Fatalf("key %q lacks the tag %s", k, tag)
				}
				if keySlot(k) != keySlot(keys[0]) {
					t.Fatalf("key %q in slot %d, %q in %d", k, keySlot(k), keys[0], keySlot(keys[0]))
				}
			}
			seen[keySlot(keys[0])] = true
		}
		if want := prefix; want != "" && !strings.HasPrefix(r.pendingKey("u"), want+":rain:pending:{u}") {
			t.Fatalf("pending key %q", r.pendingKey("u"))
		}
	}
	if len(seen) < 10 {
		t.Fatalf("50 sessions use only %d slots: the tag does not spread them", len(seen))
	}
}

// testRain is the contract of Rain on one backend. Each case has a session of its own.
func testRain(t *testing.T, client goredis.UniversalClient, r *Rain) {
	ctx := context.Background()
	start := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	end := start.Add(10 * time.Minute)
	now := start.Add(time.Minute)
	session := func(id int64, left []rain.Prize, wins []rain.Win) rain.HotSession {
		return rain.HotSession{ID: id, Start: start, End: end, Left: left, Wins: wins}
	}

	t.Run("GrabUntilEmpty", func(t *testing.T) {
		t.Parallel()
		const id = 101
		prizes := rainPrizes(0, 20)
		mustLoadRain(t, r, session(id, prizes, nil), true)
		var won []rain.Win
		for i := range 20 {
			user := "u" + strconv.Itoa(i%10)
			at := now.Add(time.Duration(i) * 300 * time.Millisecond)
			out := mustGrabRain(t, r, id, user, at, 100, 2)
			want := rain.Win{SessionID: id, UserID: user, N: i/10 + 1, Prize: out.Win.Prize, Time: at}
			if out.Status != rain.Won || out.Issued != i+1 || !sameWin(out.Win, want) {
				t.Fatalf("grab %d: %+v, want Won %+v with issued %d", i, out, want, i+1)
			}
			won = append(won, out.Win)
			mustAck(t, r, out.Win)
		}
		assertPrizes(t, winPrizes(won), prizes)
		if out := mustGrabRain(t, r, id, "late", now, 100, 2); out.Status != rain.Empty || out.Issued != 20 {
			t.Fatalf("grab of an emptied pool: %+v, want Empty with issued 20", out)
		}
		// Empty comes before Paced: an emptied pool is also paced out (issued = armed).
		if out := mustGrabRain(t, r, id, "late", now, 20, 2); out.Status != rain.Empty {
			t.Fatalf("grab of an emptied, paced pool: %+v, want Empty", out)
		}
		st := mustState(t, r, id)
		if st.Issued != 20 || st.Left != 0 || sumSeconds(st) != 20 {
			t.Fatalf("state %+v, want 20 issued, 0 left, seconds summing to 20", st)
		}
		for sec, n := range st.PerSecond {
			if sec < now.Unix() || sec > now.Add(6*time.Second).Unix() || n < 1 || n > 4 {
				t.Fatalf("second %d with %d wins: outside the grabs' times", sec, n)
			}
		}
		assertWins(t, mustWins(t, r, id), won)
	})

	t.Run("Cap", func(t *testing.T) {
		t.Parallel()
		const id = 102
		mustLoadRain(t, r, session(id, rainPrizes(0, 10), nil), true)
		for n := 1; n <= 2; n++ {
			out := mustGrabRain(t, r, id, "ann", now, 100, 2)
			if out.Status != rain.Won || out.Win.N != n {
				t.Fatalf("grab %d of ann: %+v, want Won n=%d", n, out, n)
			}
			mustAck(t, r, out.Win)
		}
		if out := mustGrabRain(t, r, id, "ann", now, 100, 2); out.Status != rain.Capped || out.Issued != 2 {
			t.Fatalf("third grab of ann with cap 2: %+v, want Capped with issued 2", out)
		}
		// A cap raised by a new quota version lets her win again; lowered, it stops her.
		if out := mustGrabRain(t, r, id, "ann", now, 100, 3); out.Status != rain.Won || out.Win.N != 3 {
			t.Fatalf("grab of ann with cap 3: %+v, want Won n=3", out)
		} else {
			mustAck(t, r, out.Win)
		}
		if out := mustGrabRain(t, r, id, "ann", now, 100, 1); out.Status != rain.Capped {
			t.Fatalf("grab of ann with cap 1: %+v, want Capped", out)
		}
		if out := mustGrabRain(t, r, id, "ben", now, 100, 1); out.Status != rain.Won || out.Win.N != 1 {
			t.Fatalf("grab of ben: %+v, want Won n=1", out)
		}
	})

	t.Run("Pacing", func(t *testing.T) {
		t.Parallel()
		const id = 103
		mustLoadRain(t, r, session(id, rainPrizes(0, 10), nil), true)
		for i := range 3 {
			if out := mustGrabRain(t, r, id, "u"+strconv.Itoa(i), now, 3, 5); out.Status != rain.Won {
				t.Fatalf("grab %d with 3 allowed: %+v, want Won", i, out)
			}
		}
		for _, allowed := range []int{3, 2, 0, -1} {
			if out := mustGrabRain(t, r, id, "x", now, allowed, 5); out.Status != rain.Paced || out.Issued != 3 {
				t.Fatalf("grab with %d allowed and 3 issued: %+v, want Paced with issued 3", allowed, out)
			}
		}
		if out := mustGrabRain(t, r, id, "x", now, 4, 5); out.Status != rain.Won || out.Issued != 4 {
			t.Fatalf("grab with 4 allowed: %+v, want Won with issued 4", out)
		}
		if st := mustState(t, r, id); st.Issued != 4 || st.Left != 6 {
			t.Fatalf("state %+v, want 4 issued, 6 left", st)
		}
	})

	t.Run("AgainUntilAcked", func(t *testing.T) {
		t.Parallel()
		const id = 104
		mustLoadRain(t, r, session(id, rainPrizes(0, 10), nil), true)
		first := mustGrabRain(t, r, id, "ann", now, 100, 3).Win
		// Unacknowledged, the win comes back — the same prize, n and time — whatever the
		// clock, the plan or the cap now say, and nothing new is issued.
		for _, c := range []struct {
			at           time.Time
			allowed, cap int
		}{{now.Add(time.Second), 100, 3}, {end.Add(time.Hour), 100, 3}, {now, 0, 3}, {now, 100, 1}, {start.Add(-time.Hour), 100, 3}} {
			out := mustGrabRain(t, r, id, "ann", c.at, c.allowed, c.cap)
			if out.Status != rain.Again || !sameWin(out.Win, first) || out.Issued != 1 {
				t.Fatalf("grab at %s, allowed %d, cap %d before the ack: %+v, want Again with %+v", c.at, c.allowed, c.cap, out, first)
			}
		}
		// Another user is not held up by ann's unacknowledged win.
		if out := mustGrabRain(t, r, id, "ben", now, 100, 3); out.Status != rain.Won {
			t.Fatalf("grab of ben: %+v, want Won", out)
		}
		mustAck(t, r, first)
		second := mustGrabRain(t, r, id, "ann", now, 100, 3)
		if second.Status != rain.Won || second.Win.N != 2 || second.Win.Prize == first.Prize {
			t.Fatalf("grab after the ack: %+v, want a new win n=2", second)
		}
		// A late acknowledgement of the first win (a retried publish) must not drop the
		// second, unacknowledged one; acking twice is harmless.
		mustAck(t, r, first)
		mustAck(t, r, first)
		if out := mustGrabRain(t, r, id, "ann", now, 100, 3); out.Status != rain.Again || !sameWin(out.Win, second.Win) {
			t.Fatalf("grab after a stale ack: %+v, want Again with %+v", out, second.Win)
		}
		mustAck(t, r, second.Win)
		if out := mustGrabRain(t, r, id, "ann", now, 100, 3); out.Status != rain.Won || out.Win.N != 3 {
			t.Fatalf("grab after the second ack: %+v, want Won n=3", out)
		}
		if err := r.Acked(ctx, rain.Win{SessionID: 9104, UserID: "ann", N: 1}); !errors.Is(err, rain.ErrUnavailable) {
			t.Fatalf("ack in a session not loaded: %v, want rain.ErrUnavailable", err)
		}
	})

	t.Run("Window", func(t *testing.T) {
		t.Parallel()
		const id = 105
		mustLoadRain(t, r, session(id, rainPrizes(0, 10), nil), true)
		for at, want := range map[time.Time]rain.Status{
			start.Add(-time.Millisecond): rain.NotStarted,
			start.Add(-time.Hour):        rain.NotStarted,
			end:                          rain.Ended,
			end.Add(time.Hour):           rain.Ended,
		} {
			if out := mustGrabRain(t, r, id, "u", at, 100, 2); out.Status != want || out.Issued != 0 {
				t.Fatalf("grab at start%+v: %+v, want status %d", at.Sub(start), out, want)
			}
		}
		for _, at := range []time.Time{start, end.Add(-time.Millisecond)} {
			out := mustGrabRain(t, r, id, "u", at, 100, 2)
			if out.Status != rain.Won || !out.Win.Time.Equal(at) {
				t.Fatalf("grab at start%+v: %+v, want Won at that instant", at.Sub(start), out)
			}
			mustAck(t, r, out.Win)
		}
	})

	t.Run("SetEnd", func(t *testing.T) {
		t.Parallel()
		const id = 131
		mustLoadRain(t, r, session(id, rainPrizes(0, 10), nil), true)
		later := end.Add(5 * time.Minute)
		if out := mustGrabRain(t, r, id, "u", end.Add(time.Minute), 100, 3); out.Status != rain.Ended {
			t.Fatalf("grab past the end: %+v", out)
		}
		if err := r.SetEnd(ctx, id, later); err != nil {
			t.Fatal(err)
		}
		out := mustGrabRain(t, r, id, "u", end.Add(time.Minute), 100, 3)
		if out.Status != rain.Won {
			t.Fatalf("grab within the extension: %+v", out)
		}
		mustAck(t, r, out.Win)
		if out := mustGrabRain(t, r, id, "u", later, 100, 3); out.Status != rain.Ended {
			t.Fatalf("grab at the new end: %+v", out)
		}
		keep := time.Until(later.Add(24 * time.Hour))
		for _, key := range r.Keys(id) {
			d, err := client.PTTL(ctx, key).Result()
			if d == -2 { // an empty hash (unacked, once acked) is no key
				continue
			}
			if err != nil || d > keep+time.Second || d < keep-time.Minute {
				t.Fatalf("PTTL of %s is %v (%v), want about %v", key, d, err, keep)
			}
		}
		// Shortening works too.
		if err := r.SetEnd(ctx, id, start.Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if out := mustGrabRain(t, r, id, "v", start.Add(3*time.Minute), 100, 3); out.Status != rain.Ended {
			t.Fatalf("grab past the shortened end: %+v", out)
		}
		if err := r.SetEnd(ctx, 999_131, later); !errors.Is(err, rain.ErrUnavailable) {
			t.Fatalf("set end of a session not loaded: %v", err)
		}
	})

	t.Run("CloseKeepsPoolAndStopsGrabs", func(t *testing.T) {
		t.Parallel()
		const id = 106
		prizes := rainPrizes(0, 6)
		mustLoadRain(t, r, session(id, prizes, nil), true)
		acked := mustGrabRain(t, r, id, "ann", now, 100, 2).Win
		mustAck(t, r, acked)
		pending := mustGrabRain(t, r, id, "ben", now, 100, 2).Win
		left := mustClose(t, r, id)
		assertPrizes(t, append(left, acked.Prize, pending.Prize), prizes)
		// Idempotent: the pool is kept, so a retried close returns the same prizes.
		assertPrizes(t, mustClose(t, r, id), left)
		if out := mustGrabRain(t, r, id, "cy", now, 100, 2); out.Status != rain.Ended {
			t.Fatalf("grab after close: %+v, want Ended", out)
		}
		if out := mustGrabRain(t, r, id, "ann", now, 100, 2); out.Status != rain.Ended {
			t.Fatalf("grab of an acked winner after close: %+v, want Ended", out)
		}
		if out := mustGrabRain(t, r, id, "ben", now, 100, 2); out.Status != rain.Again || !sameWin(out.Win, pending) {
			t.Fatalf("grab of the unacked winner after close: %+v, want Again with %+v", out, pending)
		}
		if st := mustState(t, r, id); st.Issued != 2 || st.Left != 4 {
			t.Fatalf("state after close %+v, want 2 issued, 4 left", st)
		}
		// A closed copy is whole: a load keeps it, and it stays closed.
		mustLoadRain(t, r, session(id, prizes, nil), false)
		if out := mustGrabRain(t, r, id, "cy", now, 100, 2); out.Status != rain.Ended {
			t.Fatalf("grab after a load of a closed session: %+v, want Ended", out)
		}
		if err := r.AddPrizes(ctx, id, rainPrizes(6, 1)); !errors.Is(err, rain.ErrEnded) {
			t.Fatalf("add prizes to a closed session: %v, want rain.ErrEnded", err)
		}
	})

	t.Run("LoadKeepsLiveState", func(t *testing.T) {
		t.Parallel()
		const id = 107
		prizes := rainPrizes(0, 5)
		mustLoadRain(t, r, session(id, prizes, nil), true)
		w := mustGrabRain(t, r, id, "ann", now, 100, 2).Win
		// A second loader with stale records (no wins) must not put the prize back.
		mustLoadRain(t, r, session(id, prizes, nil), false)
		if st := mustState(t, r, id); st.Issued != 1 || st.Left != 4 {
			t.Fatalf("state after a second load %+v, want 1 issued, 4 left", st)
		}
		if out := mustGrabRain(t, r, id, "ann", now, 100, 2); out.Status != rain.Again || !sameWin(out.Win, w) {
			t.Fatalf("grab after a second load: %+v, want Again with %+v", out, w)
		}
	})

	// A session that lost a key is not whole: every read and write but Load answers
	// rain.ErrUnavailable, and Load rebuilds it from the durable records — never giving a
	// prize twice nor a user more than the cap.
	for i, lost := range []string{"meta", "pool", "users", "wins", "all"} {
		t.Run("Lost_"+lost, func(t *testing.T) {
			t.Parallel()
			id := int64(110 + i)
			prizes := rainPrizes(0, 8)
			mustLoadRain(t, r, session(id, prizes, nil), true)
			var durable []rain.Win
			for _, user := range []string{"ann", "ann", "ben"} {
				out := mustGrabRain(t, r, id, user, now, 100, 2)
				mustAck(t, r, out.Win)
				durable = append(durable, out.Win)
			}
			keys := r.Keys(id)
			del := map[string][]string{"meta": keys[:1], "pool": keys[1:2], "users": keys[2:3], "wins": keys[3:4], "all": keys}[lost]
			if n, err := client.Del(ctx, del...).Result(); err != nil || n == 0 {
				t.Fatalf("del %v: %d, %v", del, n, err)
			}
			assertRainMissing(t, r, id)

			mustLoadRain(t, r, session(id, remainingPrizes(prizes, durable), durable), true)
			if st := mustState(t, r, id); st.Issued != 3 || st.Left != 5 || sumSeconds(st) != 3 {
				t.Fatalf("state after the rebuild %+v, want 3 issued, 5 left, 3 in the seconds", st)
			}
			assertWins(t, mustWins(t, r, id), durable)
			if out := mustGrabRain(t, r, id, "ann", now, 100, 2); out.Status != rain.Capped {
				t.Fatalf("grab of ann (2 wins, cap 2) after the rebuild: %+v, want Capped", out)
			}
			if out := mustGrabRain(t, r, id, "ben", now, 100, 2); out.Status != rain.Won || out.Win.N != 2 {
				t.Fatalf("grab of ben after the rebuild: %+v, want Won n=2", out)
			} else {
				durable = append(durable, out.Win)
			}
			if out := mustGrabRain(t, r, id, "cy", now, 4, 2); out.Status != rain.Paced || out.Issued != 4 {
				t.Fatalf("grab at 4 allowed after the rebuild: %+v, want Paced with issued 4", out)
			}
			for i := range 4 {
				out := mustGrabRain(t, r, id, "new"+strconv.Itoa(i), now, 100, 2)
				if out.Status != rain.Won {
					t.Fatalf("grab %d after the rebuild: %+v, want Won", i, out)
				}
				durable = append(durable, out.Win)
			}
			if out := mustGrabRain(t, r, id, "last", now, 100, 2); out.Status != rain.Empty {
				t.Fatalf("grab past the last prize: %+v, want Empty", out)
			}
			assertPrizes(t, winPrizes(durable), prizes)
		})
	}

	t.Run("LoadWithWins", func(t *testing.T) {
		t.Parallel()
		const id = 120
		prizes := rainPrizes(0, 6)
		at := now.Add(-3 * time.Second)
		// ann's second win is missing from the records: her count is her highest N, so her
		// next win is n=4, not a second n=3 with another prize under the same event id.
		wins := []rain.Win{
			{SessionID: id, UserID: "ann", N: 1, Prize: prizes[0], Time: at},
			{SessionID: id, UserID: "ann", N: 3, Prize: prizes[1], Time: at.Add(time.Second)},
			{SessionID: id, UserID: "b:c", N: 1, Prize: prizes[2]},
		}
		mustLoadRain(t, r, session(id, prizes[3:], wins), true)
		st := mustState(t, r, id)
		if st.Issued != 3 || st.Left != 3 || !maps.Equal(st.PerSecond, map[int64]int{at.Unix(): 1, at.Unix() + 1: 1}) {
			t.Fatalf("state %+v, want 3 issued, 3 left, one win in each of seconds %d and %d", st, at.Unix(), at.Unix()+1)
		}
		assertWins(t, mustWins(t, r, id), wins)
		if out := mustGrabRain(t, r, id, "ann", now, 100, 3); out.Status != rain.Capped {
			t.Fatalf("grab of ann at cap 3: %+v, want Capped", out)
		}
		if out := mustGrabRain(t, r, id, "ann", now, 100, 4); out.Status != rain.Won || out.Win.N != 4 {
			t.Fatalf("grab of ann at cap 4: %+v, want Won n=4", out)
		}
		if out := mustGrabRain(t, r, id, "b:c", now, 100, 4); out.Status != rain.Won || out.Win.N != 2 || out.Win.UserID != "b:c" {
			t.Fatalf("grab of b:c: %+v, want Won n=2", out)
		}
		// A rebuild starts with no unacknowledged win: whatever was unacked before is not
		// durable and its prize is back in the pool.
		if out := mustGrabRain(t, r, id, "b:c", now, 3, 4); out.Status != rain.Again {
			t.Fatalf("grab of b:c unacked: %+v, want Again", out)
		}
		if err := client.Del(ctx, r.Keys(id)[0]).Err(); err != nil {
			t.Fatal(err)
		}
		mustLoadRain(t, r, session(id, prizes[3:], wins), true)
		if out := mustGrabRain(t, r, id, "b:c", now, 100, 4); out.Status != rain.Won || out.Win.N != 2 {
			t.Fatalf("grab of b:c after the rebuild: %+v, want a new Won n=2", out)
		}
	})

	t.Run("AddPrizes", func(t *testing.T) {
		t.Parallel()
		const id = 121
		prizes := rainPrizes(0, 3)
		if err := r.AddPrizes(ctx, id, prizes); !errors.Is(err, rain.ErrUnavailable) {
			t.Fatalf("add to a session not loaded: %v, want rain.ErrUnavailable", err)
		}
		mustLoadRain(t, r, session(id, prizes, nil), true)
		var won []rain.Win
		for i := range 3 {
			out := mustGrabRain(t, r, id, "u"+strconv.Itoa(i), now, 100, 5)
			won = append(won, out.Win)
		}
		if out := mustGrabRain(t, r, id, "x", now, 100, 5); out.Status != rain.Empty {
			t.Fatalf("grab of an emptied pool: %+v, want Empty", out)
		}
		// The emptied pool's key is gone; adding recreates it. The prizes armed before
		// (won since) are skipped, so none is issued twice.
		more := rainPrizes(3, 2)
		if err := r.AddPrizes(ctx, id, append(slices.Clone(prizes), more...)); err != nil {
			t.Fatal(err)
		}
		if err := r.AddPrizes(ctx, id, more); err != nil {
			t.Fatal(err)
		}
		if st := mustState(t, r, id); st.Issued != 3 || st.Left != 2 {
			t.Fatalf("state after adding %+v, want 3 issued, 2 left", st)
		}
		if ttl, err := client.PTTL(ctx, r.Keys(id)[1]).Result(); err != nil || ttl <= 0 {
			t.Fatalf("PTTL of a pool recreated by AddPrizes: %v, %v; want the session's expiry", ttl, err)
		}
		for i := range 2 {
			out := mustGrabRain(t, r, id, "v"+strconv.Itoa(i), now, 100, 5)
			if out.Status != rain.Won {
				t.Fatalf("grab %d of an added prize: %+v", i, out)
			}
			won = append(won, out.Win)
		}
		if out := mustGrabRain(t, r, id, "x", now, 100, 5); out.Status != rain.Empty {
			t.Fatalf("grab past the added prizes: %+v, want Empty", out)
		}
		assertPrizes(t, winPrizes(won), append(prizes, more...))
		if err := r.AddPrizes(ctx, id, []rain.Prize{{Index: 9, Kind: rain.KindCash}}); !errors.Is(err, rain.ErrInvalid) {
			t.Fatalf("add a prize of no value: %v, want rain.ErrInvalid", err)
		}
	})

	t.Run("LargeLoad", func(t *testing.T) {
		t.Parallel()
		const id = 122
		// More than one chunk of members, wins, users and seconds.
		prizes := rainPrizes(0, 5003)
		var wins []rain.Win
		for i, p := range prizes[2501:] {
			wins = append(wins, rain.Win{SessionID: id, UserID: "g" + strconv.Itoa(i/2), N: i%2 + 1, Prize: p,
				Time: now.Add(-time.Duration(i) * time.Second)})
		}
		mustLoadRain(t, r, session(id, prizes[:2501], wins), true)
		st := mustState(t, r, id)
		if st.Issued != 2502 || st.Left != 2501 || len(st.PerSecond) != 2502 {
			t.Fatalf("state: %d issued, %d left, %d seconds; want 2502, 2501, 2502", st.Issued, st.Left, len(st.PerSecond))
		}
		assertWins(t, mustWins(t, r, id), wins)
		if out := mustGrabRain(t, r, id, "g1250", now, 10000, 2); out.Status != rain.Capped {
			t.Fatalf("grab of a loaded winner at cap: %+v, want Capped", out)
		}
		if out := mustGrabRain(t, r, id, "g1250", now, 10000, 3); out.Status != rain.Won || out.Win.N != 3 {
			t.Fatalf("grab of a loaded winner: %+v, want Won n=3", out)
		}
	})

	t.Run("KeysCarryExpiry", func(t *testing.T) {
		t.Parallel()
		const id = 123
		mustLoadRain(t, r, session(id, rainPrizes(0, 3), nil), true)
		mustGrabRain(t, r, id, "u", now, 100, 2)
		keep := time.Until(end.Add(24 * time.Hour))
		for _, key := range r.Keys(id) {
			d, err := client.PTTL(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			if d > keep+time.Second || d < keep-time.Minute {
				t.Fatalf("PTTL of %s is %v, want about %v (end + 24h)", key, d, keep)
			}
		}
	})

	t.Run("Pending", func(t *testing.T) {
		t.Parallel()
		at := time.UnixMilli(now.UnixMilli())
		p := rainPrizes(0, 3)
		wins := []rain.Win{
			{SessionID: 124, UserID: "ann:x", N: 1, Prize: p[0], Time: at},
			{SessionID: 124, UserID: "ann:x", N: 2, Prize: p[1], Time: at.Add(time.Second)},
			{SessionID: 1 << 52, UserID: "ann:x", N: 1, Prize: p[2], Time: at},
			{SessionID: 124, UserID: "ben", N: 1, Prize: p[2], Time: at},
		}
		t.Cleanup(func() { client.Del(context.Background(), r.pendingKey("ann:x"), r.pendingKey("ben")) })
		for _, w := range wins {
			if err := r.AddPending(ctx, w); err != nil {
				t.Fatal(err)
			}
		}
		assertWins(t, mustPending(t, r, "ann:x"), wins[:3])
		if ttl, err := client.PTTL(ctx, r.pendingKey("ann:x")).Result(); err != nil || ttl <= 7*24*time.Hour {
			t.Fatalf("PTTL of the pending hash: %v, %v; want about %v", ttl, err, pendingTTL)
		}
		if err := r.DonePending(ctx, []rain.Win{wins[0], wins[3]}); err != nil {
			t.Fatal(err)
		}
		assertWins(t, mustPending(t, r, "ann:x"), wins[1:3])
		assertWins(t, mustPending(t, r, "ben"), nil)
		if err := r.DonePending(ctx, nil); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("BadArguments", func(t *testing.T) {
		t.Parallel()
		const id = 125
		p := rainPrizes(0, 2)
		for name, s := range map[string]rain.HotSession{
			"no id":          {ID: 0, Start: start, End: end, Left: p},
			"end before":     {ID: id, Start: end, End: start, Left: p},
			"no start":       {ID: id, End: end, Left: p},
			"index twice":    {ID: id, Start: start, End: end, Left: []rain.Prize{p[0], p[0]}},
			"won and left":   {ID: id, Start: start, End: end, Left: p, Wins: []rain.Win{{SessionID: id, UserID: "u", N: 1, Prize: p[1]}}},
			"bad kind":       {ID: id, Start: start, End: end, Left: []rain.Prize{{Index: 0, Kind: "gold", Amount: 1}}},
			"zero amount":    {ID: id, Start: start, End: end, Left: []rain.Prize{{Index: 0, Kind: rain.KindCash}}},
			"negative index": {ID: id, Start: start, End: end, Left: []rain.Prize{{Index: -1, Kind: rain.KindCash, Amount: 1}}},
			"win of another": {ID: id, Start: start, End: end, Wins: []rain.Win{{SessionID: id + 1, UserID: "u", N: 1, Prize: p[1]}}},
			"win without n":  {ID: id, Start: start, End: end, Wins: []rain.Win{{SessionID: id, UserID: "u", Prize: p[1]}}},
			"win of nobody":  {ID: id, Start: start, End: end, Wins: []rain.Win{{SessionID: id, N: 1, Prize: p[1]}}},
			"same win twice": {ID: id, Start: start, End: end, Wins: []rain.Win{{SessionID: id, UserID: "u", N: 1, Prize: p[0]}, {SessionID: id, UserID: "u", N: 1, Prize: p[1]}}},
		} {
			if _, err := r.Load(ctx, s); !errors.Is(err, rain.ErrInvalid) {
				t.Errorf("load with %s: %v, want rain.ErrInvalid", name, err)
			}
		}
		assertRainMissing(t, r, id)
		mustLoadRain(t, r, session(id, p, nil), true)
		for name, grab := range map[string]func() error{
			"no id":   func() error { _, err := r.Grab(ctx, 0, "u", now, 10, 1); return err },
			"no user": func() error { _, err := r.Grab(ctx, id, "", now, 10, 1); return err },
			"no time": func() error { _, err := r.Grab(ctx, id, "u", time.Time{}, 10, 1); return err },
		} {
			if err := grab(); !errors.Is(err, rain.ErrInvalid) {
				t.Errorf("grab with %s: %v, want rain.ErrInvalid", name, err)
			}
		}
		// A corrupt meta is not "unavailable" (a rebuild would not fix what wrote it).
		if err := client.HSet(ctx, r.Keys(id)[0], "end_ms", "soon").Err(); err != nil {
			t.Fatal(err)
		}
		if out, err := r.Grab(ctx, id, "u", now, 10, 1); err == nil || errors.Is(err, rain.ErrUnavailable) {
			t.Errorf("grab of a corrupt session: %+v, %v; want a plain error", out, err)
		}
	})

	// Many users hammer one session from 200 goroutines: the plan's allowance, the pool
	// and the cap hold exactly, and no prize goes out twice.
	t.Run("ConcurrentGrabs", func(t *testing.T) {
		t.Parallel()
		const (
			id      = 130
			armed   = 500
			allowed = 300
			userCap = 2
			users   = 400
			workers = 200
		)
		prizes := rainPrizes(0, armed)
		mustLoadRain(t, r, session(id, prizes, nil), true)
		var (
			mu      sync.Mutex
			won     []rain.Win
			agains  []rain.Win
			errs    []error
			wg      sync.WaitGroup
			startCh = make(chan struct{})
		)
		fail := func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		for g := range workers {
			wg.Go(func() {
				<-startCh
				// Each worker walks the users from its own offset until the plan says
				// paced; Capped users are passed over. The bound only stops a runaway.
				for i := range 5000 {
					user := "u" + strconv.Itoa((g*37+i)%users)
					at := now.Add(time.Duration(i%3) * time.Second)
					out, err := r.Grab(ctx, id, user, at, allowed, userCap)
					if err != nil {
						fail(err)
						return
					}
					switch out.Status {
					case rain.Won:
						mu.Lock()
						won = append(won, out.Win)
						mu.Unlock()
						if err := r.Acked(ctx, out.Win); err != nil {
							fail(err)
							return
						}
					case rain.Again:
						mu.Lock()
						agains = append(agains, out.Win)
						mu.Unlock()
					case rain.Capped:
					case rain.Paced:
						if out.Issued < allowed {
							fail(errors.New("paced at issued " + strconv.Itoa(out.Issued)))
						}
						return
					default:
						fail(errors.New("unexpected status " + strconv.Itoa(int(out.Status))))
						return
					}
				}
				fail(errors.New("worker never paced"))
			})
		}
		close(startCh)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("%d workers failed, first: %v", len(errs), errs[0])
		}
		if len(won) != allowed {
			t.Fatalf("%d wins, want exactly the %d allowed", len(won), allowed)
		}
		perUser := map[string][]int{}
		for _, w := range won {
			perUser[w.UserID] = append(perUser[w.UserID], w.N)
		}
		for user, ns := range perUser {
			slices.Sort(ns)
			if len(ns) > userCap || !slices.Equal(ns, []int{1, 2}[:len(ns)]) {
				t.Fatalf("user %s won n=%v, want 1..k with k ≤ %d", user, ns, userCap)
			}
		}
		byKey := map[string]rain.Win{}
		for _, w := range won {
			byKey[w.MsgID()] = w
		}
		for _, w := range agains {
			if first, ok := byKey[w.MsgID()]; !ok || !sameWin(first, w) {
				t.Fatalf("Again %+v is not the user's win %+v", w, first)
			}
		}
		st := mustState(t, r, id)
		if st.Issued != allowed || st.Left != armed-allowed || sumSeconds(st) != allowed {
			t.Fatalf("state: %d issued, %d left, %d in the seconds; want %d, %d, %d",
				st.Issued, st.Left, sumSeconds(st), allowed, armed-allowed, allowed)
		}
		assertWins(t, mustWins(t, r, id), won)
		// The rest of the pool goes when the plan allows it all, each prize once.
		for i := 0; ; i++ {
			out := mustGrabRain(t, r, id, "late"+strconv.Itoa(i), now, armed, userCap)
			if out.Status == rain.Empty {
				break
			}
			if out.Status != rain.Won || i >= armed {
				t.Fatalf("late grab %d: %+v", i, out)
			}
			won = append(won, out.Win)
		}
		assertPrizes(t, winPrizes(won), prizes)
	})
}

func BenchmarkRainGrab(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			client := be.client(b)
			r := NewRain(client, testenv.Unique("bmbench_rain_"))
			ctx := context.Background()
			now := time.Now()
			// A session of its own per round, with one prize per grab, each by a new user:
			// the full win path.
			id := time.Now().UnixNano() % (1 << 40)
			b.Cleanup(func() { client.Del(ctx, r.Keys(id)...) })
			s := rain.HotSession{ID: id, Start: now.Add(-time.Minute), End: now.Add(time.Hour), Left: rainPrizes(0, b.N)}
			if _, err := r.Load(ctx, s); err != nil {
				b.Fatal(err)
			}
			var users atomic.Int64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					user := "u" + strconv.FormatInt(users.Add(1), 10)
					if out, err := r.Grab(ctx, id, user, now, b.N, 1); err != nil || out.Status != rain.Won {
						b.Errorf("grab: %+v, %v", out, err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkRainMiss is a tap the plan paces out, on a pool of 10,000 prizes: the grab
// script's checks without the SPOP.
func BenchmarkRainMiss(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			client := be.client(b)
			r := NewRain(client, testenv.Unique("bmbench_rain_"))
			ctx := context.Background()
			now := time.Now()
			id := time.Now().UnixNano() % (1 << 40)
			b.Cleanup(func() { client.Del(ctx, r.Keys(id)...) })
			s := rain.HotSession{ID: id, Start: now.Add(-time.Minute), End: now.Add(time.Hour), Left: rainPrizes(0, 10_000)}
			if _, err := r.Load(ctx, s); err != nil {
				b.Fatal(err)
			}
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if out, err := r.Grab(ctx, id, "u", now, 0, 1); err != nil || out.Status != rain.Paced {
						b.Errorf("grab: %+v, %v", out, err)
						return
					}
				}
			})
		})
	}
}

// rainPrizes returns n prizes with indexes from..from+n-1, cycling through the kinds.
func rainPrizes(from, n int) []rain.Prize {
	prizes := make([]rain.Prize, n)
	for i := range prizes {
		idx := from + i
		p := rain.Prize{Index: idx}
		switch idx % 3 {
		case 0:
			p.Kind, p.Amount = rain.KindCash, money.Cents(1+idx%997)
		case 1:
			p.Kind, p.SKU = rain.KindSKU, int64(9000+idx%5)
		case 2:
			p.Kind, p.AwardID = rain.KindAward, 101+idx%7
		}
		prizes[i] = p
	}
	return prizes
}

// remainingPrizes returns the prizes no win took, as a caller computes them from its
// durable records for a rebuild.
func remainingPrizes(prizes []rain.Prize, wins []rain.Win) []rain.Prize {
	taken := map[int]bool{}
	for _, w := range wins {
		taken[w.Prize.Index] = true
	}
	var rest []rain.Prize
	for _, p := range prizes {
		if !taken[p.Index] {
			rest = append(rest, p)
		}
	}
	return rest
}

func winPrizes(wins []rain.Win) []rain.Prize {
	prizes := make([]rain.Prize, len(wins))
	for i, w := range wins {
		prizes[i] = w.Prize
	}
	return prizes
}

func sumSeconds(st rain.HotState) int {
	n := 0
	for _, c := range st.PerSecond {
		n += c
	}
	return n
}

// sameWin compares wins field by field, times by instant.
func sameWin(a, b rain.Win) bool {
	return a.SessionID == b.SessionID && a.UserID == b.UserID && a.N == b.N && a.Prize == b.Prize && a.Time.Equal(b.Time)
}

// assertPrizes fails unless got holds each of want exactly once, in any order.
func assertPrizes(t *testing.T, got, want []rain.Prize) {
	t.Helper()
	byIndex := func(a, b rain.Prize) int { return cmp.Compare(a.Index, b.Index) }
	got, want = slices.SortedFunc(slices.Values(got), byIndex), slices.SortedFunc(slices.Values(want), byIndex)
	if !slices.Equal(got, want) {
		t.Fatalf("%d prizes %v, want %d: %v", len(got), got, len(want), want)
	}
}

// assertWins fails unless got and want hold the same wins, in any order.
func assertWins(t *testing.T, got, want []rain.Win) {
	t.Helper()
	byID := func(a, b rain.Win) int {
		return cmp.Or(cmp.Compare(a.SessionID, b.SessionID), strings.Compare(a.UserID, b.UserID), cmp.Compare(a.N, b.N))
	}
	got, want = slices.SortedFunc(slices.Values(got), byID), slices.SortedFunc(slices.Values(want), byID)
	if !slices.EqualFunc(got, want, sameWin) {
		t.Fatalf("%d wins %+v, want %d: %+v", len(got), got, len(want), want)
	}
}

// assertRainMissing checks that every method but Load answers rain.ErrUnavailable.
func assertRainMissing(t *testing.T, r *Rain, id int64) {
	t.Helper()
	ctx := context.Background()
	if out, err := r.Grab(ctx, id, "u", time.Now(), 1000, 1000); !errors.Is(err, rain.ErrUnavailable) {
		t.Fatalf("grab of %d: %+v, %v; want rain.ErrUnavailable", id, out, err)
	}
	if _, err := r.State(ctx, id); !errors.Is(err, rain.ErrUnavailable) {
		t.Fatalf("state of %d: %v, want rain.ErrUnavailable", id, err)
	}
	if _, err := r.Wins(ctx, id); !errors.Is(err, rain.ErrUnavailable) {
		t.Fatalf("wins of %d: %v, want rain.ErrUnavailable", id, err)
	}
	if _, err := r.Close(ctx, id); !errors.Is(err, rain.ErrUnavailable) {
		t.Fatalf("close of %d: %v, want rain.ErrUnavailable", id, err)
	}
	if err := r.AddPrizes(ctx, id, rainPrizes(1000, 1)); !errors.Is(err, rain.ErrUnavailable) {
		t.Fatalf("add prizes to %d: %v, want rain.ErrUnavailable", id, err)
	}
}

func mustLoadRain(t *testing.T, r *Rain, s rain.HotSession, wantWrote bool) {
	t.Helper()
	wrote, err := r.Load(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if wrote != wantWrote {
		t.Fatalf("load of session %d wrote %v, want %v", s.ID, wrote, wantWrote)
	}
}

func mustGrabRain(t *testing.T, r *Rain, id int64, user string, now time.Time, allowed, userCap int) rain.Outcome {
	t.Helper()
	out, err := r.Grab(context.Background(), id, user, now, allowed, userCap)
	if err != nil {
		t.Fatalf("grab of %d by %s: %v", id, user, err)
	}
	return out
}

func mustAck(t *testing.T, r *Rain, w rain.Win) {
	t.Helper()
	if err := r.Acked(context.Background(), w); err != nil {
		t.Fatal(err)
	}
}

func mustState(t *testing.T, r *Rain, id int64) rain.HotState {
	t.Helper()
	st, err := r.State(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func mustWins(t *testing.T, r *Rain, id int64) []rain.Win {
	t.Helper()
	w, err := r.Wins(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func mustClose(t *testing.T, r *Rain, id int64) []rain.Prize {
	t.Helper()
	p, err := r.Close(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustPending(t *testing.T, r *Rain, user string) []rain.Win {
	t.Helper()
	w, err := r.Pending(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return w
}
