package redis

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/gate"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/strategy"
)

// TestWinsFenceAfterFailover runs a one-win activity's gate over a real master and
// replica, with the flash draw's hot quota as the rebuild's marker (as serve wires it).
// Alice drew once without winning (her set knows the activity) and bob's rebuild was
// held, when the replica is promoted (REPLICAOF NO ONE: a new replication id); the master
// then notes alice's stocked win, answered and made durable (the draw writer applied its
// award record). The promoted replica's set still knows the activity and lacks the win:
// a copy with nothing missing to show the loss.
//
// Fenced, every draw of alice on the promoted replica answers ErrRebuilding (0009) while
// the slot is fenced, and bob's rebuild read before the failover is refused; the restore
// (a new epoch and fence) makes the next hold rebuild the set from the award records,
// and alice is refused as a winner: one win. Unfenced, the same replica admits alice and
// notes a second stocked win in the one-win activity: the failure the fence exists for.
func TestWinsFenceAfterFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master, replica := replicaPair(t)
	const act = 7
	won := strategy.Result{AwardID: 102, Stocked: true}

	type setup struct {
		fence    bool
		prefix   string
		records  *writerRecords
		bobEpoch string
		wins     int // alice's stocked wins noted, each answered and made durable
	}
	newGate := func(t *testing.T, client goredis.UniversalClient, s *setup) (*gate.Gate, *DrawQuota, *Wins) {
		hot := NewDrawQuota(client, s.prefix).Fence(s.fence)
		w := NewWins(client, s.prefix, time.Hour).Fence(s.fence).RebuildAfter(hot)
		g := gate.New(gate.Options{Store: oneWinSettings{}, Activities: openActivity{},
			Strategies: stockedStrategies(t, client), Records: usersRecords{s.records}, Wins: w})
		return g, hot, w
	}
	var setups []*setup
	for _, fence := range []bool{true, false} {
		s := &setup{fence: fence, prefix: "bmtest-ow-" + strconv.FormatBool(fence), records: &writerRecords{}}
		g, hot, w := newGate(t, master, s)
		if err := hot.MarkReady(ctx); err != nil {
			t.Fatal(err)
		}
		// Alice's first draw: the set is rebuilt (no records: she has not won), and
		// she draws the luck award.
		p, err := g.Admit(ctx, "alice", act, time.Minute)
		if err != nil {
			t.Fatalf("alice's first draw: %v", err)
		}
		if err := p.Won(ctx, strategy.Result{AwardID: 101}); err != nil {
			t.Fatal(err)
		}
		p.Close()
		// Bob's hold is Unknown: his rebuild is read under the current epoch.
		h, epoch, err := w.Hold(ctx, "bob", act, "b1", time.Minute)
		if err != nil || h != gate.Unknown || epoch == "" {
			t.Fatalf("bob's hold: %v %q %v, want Unknown with an epoch", h, epoch, err)
		}
		s.bobEpoch = epoch
		setups = append(setups, s)
	}
	promote(t, master, replica)
	// The master notes alice's stocked win; the promoted replica never sees it.
	for _, s := range setups {
		g, _, _ := newGate(t, master, s)
		p, err := g.Admit(ctx, "alice", act, time.Minute)
		if err != nil {
			t.Fatalf("alice's second draw on the master: %v", err)
		}
		if err := p.Won(ctx, won); err != nil {
			t.Fatal(err)
		}
		p.Close()
		s.wins++
		s.records.publish(award.Record{UserID: "alice", StrategyID: 10, AwardID: won.AwardID})
		s.records.drain()
		if _, err := g.Admit(ctx, "alice", act, time.Minute); !errors.Is(err, gate.ErrAlreadyWon) {
			t.Fatalf("alice's third draw on the master: %v, want ErrAlreadyWon", err)
		}
	}
	for _, s := range setups {
		w := NewWins(replica, s.prefix, time.Hour)
		members, err := replica.SMembers(ctx, w.SetKey("alice")).Result()
		if err != nil || len(members) != 1 || !strings.HasPrefix(members[0], "k7") {
			t.Fatalf("the promoted replica's set of alice: %v, %v; want the activity known and no win (the test needs a lost SADD)", members, err)
		}
	}

	t.Run("Fenced", func(t *testing.T) {
		s := setups[0]
		g, hot, w := newGate(t, replica, s)
		if n, codes := admitAll(t, g, "alice", act, won); n != 0 || codes[gate.ErrRebuilding] != 16 {
			t.Fatalf("alice's draws on the promoted replica: %d wins, refusals %v; want all 16 ErrRebuilding", n, codes)
		}
		if err := w.Rebuilt(ctx, "bob", act, s.bobEpoch, false); !errors.Is(err, gate.ErrRebuilding) {
			t.Fatalf("bob's rebuild read before the failover: %v, want ErrRebuilding", err)
		}
		if n, err := replica.Exists(ctx, w.SetKey("bob")).Result(); err != nil || n != 0 {
			t.Fatalf("bob's set after the refused rebuild: %d, %v; want none", n, err)
		}
		if err := w.Release(ctx, "bob", act, "b1"); err != nil { // as the gate does after a failed rebuild
			t.Fatal(err)
		}
		// The restore (after the grace and the draw writer's drain): a new epoch and fence.
		if err := hot.MarkReady(ctx); err != nil {
			t.Fatal(err)
		}
		if n, codes := admitAll(t, g, "alice", act, won); n != 0 || codes[gate.ErrAlreadyWon] == 0 || codes[gate.ErrRebuilding] != 0 {
			t.Fatalf("alice's draws after the restore: %d wins, refusals %v; want none, the winner refused", n, codes)
		}
		members, err := replica.SMembers(ctx, w.SetKey("alice")).Result()
		if err != nil || len(members) != 2 {
			t.Fatalf("alice's set after the rebuild: %v, %v; want the win and one known-member", members, err)
		}
		// Bob, who never won, draws again after his rebuild under the new epoch.
		p, err := g.Admit(ctx, "bob", act, time.Minute)
		if err != nil {
			t.Fatalf("bob's draw after the restore: %v", err)
		}
		p.Close()
		if s.wins != 1 {
			t.Fatalf("alice won %d times in a one-win activity", s.wins)
		}
	})

	t.Run("UnfencedWinsTwice", func(t *testing.T) {
		s := setups[1]
		g, _, _ := newGate(t, replica, s)
		n, codes := admitAll(t, g, "alice", act, won)
		s.wins += n
		if s.wins != 2 {
			t.Fatalf("unfenced: alice won %d times (refusals %v); want the lost win won again", s.wins, codes)
		}
		t.Logf("without the fence: alice won %d stocked awards in a one-win activity", s.wins)
	})
}

// admitAll sends 16 concurrent draws of user in activity through g; each admitted draw
// picks res (a win, noted). It returns the wins noted and the refusals by error.
func admitAll(t *testing.T, g *gate.Gate, user string, activityID int64, res strategy.Result) (wins int, codes map[error]int) {
	t.Helper()
	ctx := context.Background()
	codes = map[error]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			p, err := g.Admit(ctx, user, activityID, time.Minute)
			if err == nil {
				defer p.Close()
				err = p.Won(ctx, res)
			}
			mu.Lock()
			defer mu.Unlock()
			if p != nil && err == nil {
				wins++
				return
			}
			for _, want := range []error{gate.ErrRebuilding, gate.ErrAlreadyWon, gate.ErrBusy} {
				if errors.Is(err, want) {
					codes[want]++
					return
				}
			}
			t.Errorf("draw of %s: %v", user, err)
		})
	}
	wg.Wait()
	return wins, codes
}

// usersRecords are writerRecords read per user.
type usersRecords struct{ *writerRecords }

func (r usersRecords) AwardRecords(ctx context.Context, userID string, activityID int64) ([]award.Record, error) {
	all, err := r.writerRecords.AwardRecords(ctx, userID, activityID)
	return slices.DeleteFunc(all, func(rec award.Record) bool { return rec.UserID != userID }), err
}

// TestWinsFenceUpgrade: sets built unfenced (before the fence, or with
// BIGMARKET_REDIS_FENCE=false) are trusted by fenced scripts only for their wins: a known
// activity waits for the restore (the slot's marker has no fence) and is rebuilt once
// under the new epoch, while a win is answered at once.
func TestWinsFenceUpgrade(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := openClient(t, Options{Addrs: []string{testenv.RedisAddr(t)}})
	prefix := cleanPrefix(t, client)
	oldHot := NewDrawQuota(client, prefix)
	old := NewWins(client, prefix, time.Hour).RebuildAfter(oldHot)
	if err := oldHot.MarkReady(ctx); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		h, epoch, err := old.Hold(ctx, u, 7, "t", time.Minute)
		if err != nil || h != gate.Unknown {
			t.Fatalf("unfenced hold of %s: %v %v", u, h, err)
		}
		if err := old.Rebuilt(ctx, u, 7, epoch, u == "alice"); err != nil {
			t.Fatal(err)
		}
		if err := old.Release(ctx, u, 7, "t"); err != nil {
			t.Fatal(err)
		}
	}
	hot := NewDrawQuota(client, prefix).Fence(true)
	w := NewWins(client, prefix, time.Hour).Fence(true).RebuildAfter(hot)
	hold := func(user string, want gate.Hold) string {
		t.Helper()
		h, epoch, err := w.Hold(ctx, user, 7, "f", time.Minute)
		if err != nil || h != want {
			t.Fatalf("fenced hold of %s: %v %v, want %v", user, h, err, want)
		}
		return epoch
	}
	hold("alice", gate.Won)
	hold("bob", gate.NotReady)
	if err := hot.MarkReady(ctx); err != nil {
		t.Fatal(err)
	}
	hold("alice", gate.Won)
	if err := w.Rebuilt(ctx, "bob", 7, hold("bob", gate.Unknown), false); err != nil {
		t.Fatal(err)
	}
	if err := w.Release(ctx, "bob", 7, "f"); err != nil {
		t.Fatal(err)
	}
	hold("bob", gate.Held)
}

// BenchmarkWinsHoldFence measures the server time of a one-win hold of a user whose set
// knows the activity (the admitted draw's path), fenced and unfenced with the hot quota's
// marker as serve wires it, alternated by blocks of 1,000 holds on a private
// redis-server; the time is EVALSHA's from INFO commandstats (the hold is dropped by a
// plain DEL between holds).
func BenchmarkWinsHoldFence(b *testing.B) {
	addr, _ := startRedisServer(b, b.TempDir())
	client := newPlainClient(b, addr)
	ctx := context.Background()
	ws := map[bool]*Wins{}
	for _, f := range []bool{false, true} {
		prefix := "bmbench_ow_" + strconv.FormatBool(f)
		hot := NewDrawQuota(client, prefix).Fence(f)
		if err := hot.MarkReady(ctx); err != nil {
			b.Fatal(err)
		}
		w := NewWins(client, prefix, time.Hour).Fence(f).RebuildAfter(hot)
		h, epoch, err := w.Hold(ctx, "bench", 1, "x", time.Minute)
		if err != nil || h != gate.Unknown {
			b.Fatal(h, err)
		}
		if err := w.Rebuilt(ctx, "bench", 1, epoch, false); err != nil {
			b.Fatal(err)
		}
		if err := w.Release(ctx, "bench", 1, "x"); err != nil {
			b.Fatal(err)
		}
		ws[f] = w
	}
	benchFenced(b, client, "hold", 1000, nil, func(_ int, fence bool) {
		w := ws[fence]
		if h, _, err := w.Hold(ctx, "bench", 1, "x", time.Minute); err != nil || h != gate.Held {
			b.Fatal(h, err)
		}
		b.StopTimer()
		if err := client.Del(ctx, w.holdKey("bench", 1)).Err(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	})
}

// TestWinsFenceAfterRestart: a master restarted from its AOF has a new replication id,
// so the slot's marker is fenced: a set that knows the activity waits for the restore
// (NotReady, nothing held) and is rebuilt once under the new epoch, while a win in the
// AOF is answered at once.
func TestWinsFenceAfterRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	aof := []string{"--appendonly", "yes", "--appendfsync", "always"}
	addr, cmd := startRedisServer(t, dir, aof...)
	client := newPlainClient(t, addr)
	hot := NewDrawQuota(client, "bmtest").Fence(true)
	w := NewWins(client, "bmtest", time.Hour).Fence(true).RebuildAfter(hot)
	if err := hot.MarkReady(ctx); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		h, epoch, err := w.Hold(ctx, u, 7, "t", time.Minute)
		if err != nil || h != gate.Unknown {
			t.Fatalf("hold of %s: %v %v", u, h, err)
		}
		if err := w.Rebuilt(ctx, u, 7, epoch, false); err != nil {
			t.Fatal(err)
		}
		if err := w.Release(ctx, u, 7, "t"); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Note(ctx, "alice", 7); err != nil {
		t.Fatal(err)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	testenv.Eventually(t, 20*time.Second, "redis-server restarted on its port", func() (bool, string) {
		_, _, err := runRedisServer(t, lookTool(t, "redis-server"), port, dir, aof...)
		return err == nil, ""
	})
	if n, err := client.SCard(ctx, w.SetKey("bob")).Result(); err != nil || n != 1 {
		t.Fatalf("bob's set after the restart: %d members, %v; want the known-member from the AOF", n, err)
	}
	hold := func(user string, want gate.Hold) string {
		t.Helper()
		h, epoch, err := w.Hold(ctx, user, 7, "r", time.Minute)
		if err != nil || h != want {
			t.Fatalf("hold of %s after the restart: %v %v, want %v", user, h, err, want)
		}
		return epoch
	}
	hold("alice", gate.Won)
	hold("bob", gate.NotReady)
	if n, err := client.Exists(ctx, w.holdKey("bob", 7)).Result(); err != nil || n != 0 {
		t.Fatalf("NotReady took the hold: %d, %v", n, err)
	}
	if err := hot.MarkReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Rebuilt(ctx, "bob", 7, hold("bob", gate.Unknown), false); err != nil {
		t.Fatal(err)
	}
	if err := w.Release(ctx, "bob", 7, "r"); err != nil {
		t.Fatal(err)
	}
	hold("bob", gate.Held)
	members, err := client.SMembers(ctx, w.SetKey("bob")).Result()
	if err != nil || len(members) != 1 {
		t.Fatalf("bob's set after the rebuild: %v, %v; want only the new epoch's known-member", members, err)
	}
}
