package redis

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/flash"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/rain"
	"github.com/bigmarket/bigmarket/redpacket"
	"github.com/bigmarket/bigmarket/strategy"
)

// waitTimeout is the replica wait of the tests: long enough for a loopback replica on a
// loaded machine, short enough for the refusals the tests wait through.
const waitTimeout = 200 * time.Millisecond

// replicaPairProcs is replicaPair that also returns the replica's process, so that a test
// can freeze it (SIGSTOP: its link stays up on the master, but it acknowledges nothing,
// as a replica cut off by a partition) and thaw it again.
func replicaPairProcs(t *testing.T) (master, replica goredis.UniversalClient, replicaProc *exec.Cmd) {
	t.Helper()
	maddr, _ := startRedisServer(t, t.TempDir(), "--repl-diskless-sync-delay", "0")
	host, port, _ := net.SplitHostPort(maddr)
	raddr, proc := startRedisServer(t, t.TempDir(), "--replicaof", host, port)
	// Runs before the kill that startRedisServer registered: a stopped process is thawed.
	t.Cleanup(func() { _ = proc.Process.Signal(syscall.SIGCONT) })
	master, replica = newPlainClient(t, maddr), newPlainClient(t, raddr)
	testenv.Eventually(t, 20*time.Second, "replica in sync", func() (bool, string) {
		info, err := replica.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up"), info
	})
	// A replica acknowledges only once it has loaded the master's snapshot, a little after
	// its link is up: until then every wait would time out.
	w := ReplicaWait{Client: master, Replicas: 1, Timeout: waitTimeout}
	testenv.Eventually(t, 20*time.Second, "replica acknowledging writes", func() (bool, string) {
		err := w.cover(context.Background(), "bmtest:wait-ready")
		return err == nil, err2s(err)
	})
	return master, replica, proc
}

// signal sends sig to p, failing the test if it cannot.
func signal(t *testing.T, p *exec.Cmd, sig syscall.Signal) {
	t.Helper()
	if err := p.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// TestRedPacketWaitReplicas: with WAIT 1 required, a grab answers only once the replica
// has it. A frozen replica (linked, acknowledging nothing) makes the grab answer
// unconfirmed, and so does the user's retry, which finds the grab again without writing
// (WAIT covers only its own connection's writes: the retry writes a marker first).
// Thawed, the retry is confirmed and answered.
func TestRedPacketWaitReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master, replica, proc := replicaPairProcs(t)
	w := ReplicaWait{Client: master, Replicas: 1, Timeout: waitTimeout}
	if err := w.Check(); err != nil {
		t.Fatal(err)
	}
	// The auto-pipeliner the app gives red packets: a waiting grab goes around it.
	ap, err := master.AutoPipeline()
	if err != nil {
		t.Fatal(err)
	}
	rp := NewRedPackets(ap, "bmtest").Fence(true).WaitReplicas(w)
	expireAt := time.Now().Add(10 * time.Minute).Truncate(time.Millisecond)
	now := expireAt.Add(-time.Minute)
	items := splitItems(5, 7)
	const id = "p-wait"
	mustLoad(t, rp, id, items, nil, expireAt, nil)

	first := mustGrab(t, rp, id, "u1", now)
	if again := mustGrab(t, rp, id, "u1", now); !again.Again || again.Item != first.Item {
		t.Fatalf("u1's second grab: %+v, want again %+v", again, first.Item)
	}

	signal(t, proc, syscall.SIGSTOP)
	res, err := rp.grab(ctx, id, "u2", now)
	if !errors.Is(err, ErrUnreplicated) || !errors.Is(err, redpacket.ErrUnavailable) || !errors.Is(err, redpacket.ErrUnconfirmed) {
		t.Fatalf("grab with the replica frozen: %+v, %v; want ErrUnreplicated, redpacket.ErrUnavailable and ErrUnconfirmed", res, err)
	}
	// The master took the item: the outcome is unknown, not undone.
	grabs, err := master.HGetAll(ctx, rp.Keys(id)[1]).Result()
	if err != nil || grabs["u2"] == "" {
		t.Fatalf("u2's grab on the master: %v, %v; want it taken", grabs, err)
	}
	res, err = rp.grab(ctx, id, "u2", now)
	if !errors.Is(err, ErrUnreplicated) || !errors.Is(err, redpacket.ErrUnconfirmed) {
		t.Fatalf("u2's retry with the replica frozen: %+v, %v; want it unconfirmed too", res, err)
	}
	if _, err := rp.grab(ctx, id, "u1", now); !errors.Is(err, ErrUnreplicated) {
		t.Fatalf("u1's repeat with the replica frozen: %v; want it unconfirmed", err)
	}

	signal(t, proc, syscall.SIGCONT)
	testenv.Eventually(t, 20*time.Second, "u2's retry confirmed once the replica thaws", func() (bool, string) {
		res, err := rp.grab(ctx, id, "u2", now)
		return err == nil && res.Again && res.Item.Index == mustParseGrab(t, grabs["u2"]).Index, err2s(err)
	})
	// The replica has it now: a promotion keeps it.
	if got, err := replica.HGet(ctx, rp.Keys(id)[1], "u2").Result(); err != nil || got != grabs["u2"] {
		t.Fatalf("u2's grab on the replica: %q, %v; want %q", got, err, grabs["u2"])
	}
	mustGrab(t, rp, id, "u3", now)
}

// TestRedPacketWaitSplitBrain: the replica is promoted while the old master still takes
// writes (a partition). Fencing cannot refuse on the old master — its replication id did
// not change — but the wait does: nothing it takes there is answered, and the promoted
// replica, rebuilt from the answered grabs, grants every item once.
func TestRedPacketWaitSplitBrain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master, replica, _ := replicaPairProcs(t)
	expireAt := time.Now().Add(10 * time.Minute).Truncate(time.Millisecond)
	now := expireAt.Add(-time.Minute)
	items := splitItems(6, 11)
	const id = "p-split"
	old := NewRedPackets(master, "bmtest").Fence(true).WaitReplicas(ReplicaWait{Client: master, Replicas: 1, Timeout: waitTimeout})
	mustLoad(t, old, id, items, nil, expireAt, nil)
	answered := map[string]rpItem{}
	for _, u := range []string{"u0", "u1"} {
		answered[u] = mustGrab(t, old, id, u, now).Item
	}
	promote(t, master, replica)

	// The cut-off master still runs the scripts; every grab it takes is unconfirmed.
	for _, u := range []string{"u2", "u3", "u2"} {
		if res, err := old.grab(ctx, id, u, now); !errors.Is(err, ErrUnreplicated) || !errors.Is(err, redpacket.ErrUnconfirmed) {
			t.Fatalf("grab of %s on the cut-off master: %+v, %v; want unconfirmed", u, res, err)
		}
	}
	if left, err := master.LLen(ctx, old.Keys(id)[0]).Result(); err != nil || left != 4-2 {
		t.Fatalf("items left on the cut-off master: %d, %v; want 2 (the unconfirmed grabs took theirs)", left, err)
	}

	// The promoted replica: fenced, rebuilt from the answered grabs, then granting.
	rp := NewRedPackets(replica, "bmtest").Fence(true).WaitReplicas(ReplicaWait{Client: replica, Replicas: 0})
	if _, err := rp.grab(ctx, id, "u2", now); !errors.Is(err, ErrFenced) {
		t.Fatalf("grab on the promoted replica: %v; want ErrFenced", err)
	}
	mustLoad(t, rp, id, remainingItems(items, answered), answered, expireAt, nil)
	owner := map[int]string{}
	for u, it := range answered {
		owner[it.Index] = u
	}
	for _, u := range []string{"u2", "u3", "u4", "u5"} {
		it := mustGrab(t, rp, id, u, now).Item
		if other, ok := owner[it.Index]; ok {
			t.Fatalf("%s got item %d, already answered to %s", u, it.Index, other)
		}
		owner[it.Index] = u
	}
	if len(owner) != len(items) {
		t.Fatalf("items answered: %v; want each of the %d once", owner, len(items))
	}
}

// TestStockWaitReplicas: award and SKU deductions wait for the replica. Frozen, a
// deduction answers the loss path's retry (ErrStockMissing, ErrSKUStockMissing) having
// taken its sequence number on the master, which is then never granted (undersell by
// one, never twice); thawed, the next deduction is granted the number after it.
func TestStockWaitReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master, _, proc := replicaPairProcs(t)
	w := ReplicaWait{Client: master, Replicas: 1, Timeout: waitTimeout}
	ap, err := master.AutoPipeline()
	if err != nil {
		t.Fatal(err)
	}
	stock := NewStock(master, "bmtest").Fence(true).WaitReplicas(w)
	stock.DeductVia(ap) // as the app does: a waiting deduction goes around it
	skus := NewSKUStock(master, "bmtest").Fence(true).WaitReplicas(w)
	ref := strategy.AwardRef{StrategyID: 900101, AwardID: 1}
	const sku = 9101
	expireAt := time.Now().Add(10 * time.Minute).Truncate(time.Millisecond)
	if err := stock.Preheat(ctx, ref, 5, 5, expireAt); err != nil {
		t.Fatal(err)
	}
	if err := skus.Preheat(ctx, sku, 5, 5, expireAt); err != nil {
		t.Fatal(err)
	}
	if g, err := stock.Deduct(ctx, ref, expireAt); err != nil || g.Issued != 1 {
		t.Fatalf("award deduction with the replica healthy: %+v, %v", g, err)
	}
	if _, issued, err := skus.Deduct(ctx, sku, expireAt); err != nil || issued != 1 {
		t.Fatalf("sku deduction with the replica healthy: %d, %v", issued, err)
	}

	signal(t, proc, syscall.SIGSTOP)
	if g, err := stock.Deduct(ctx, ref, expireAt); !errors.Is(err, ErrUnreplicated) || !errors.Is(err, strategy.ErrStockMissing) {
		t.Fatalf("award deduction with the replica frozen: %+v, %v; want ErrUnreplicated and strategy.ErrStockMissing", g, err)
	}
	if _, issued, err := skus.Deduct(ctx, sku, expireAt); !errors.Is(err, ErrUnreplicated) || !errors.Is(err, activity.ErrSKUStockMissing) {
		t.Fatalf("sku deduction with the replica frozen: %d, %v; want ErrUnreplicated and activity.ErrSKUStockMissing", issued, err)
	}
	if _, _, err := skus.DeductN(ctx, sku, 2, expireAt); !errors.Is(err, ErrUnreplicated) || !errors.Is(err, activity.ErrSKUStockMissing) {
		t.Fatalf("bulk sku deduction with the replica frozen: %v; want ErrUnreplicated and activity.ErrSKUStockMissing", err)
	}
	if l := mustLevel(t, stock, ref); l.Issued != 2 || l.Counter != 3 {
		t.Fatalf("award counter after the unconfirmed deduction: %+v; want number 2 taken on the master", l)
	}

	signal(t, proc, syscall.SIGCONT)
	// Each refused deduction spends a number: first wait until the replica acknowledges.
	testenv.Eventually(t, 20*time.Second, "replica acknowledging again", func() (bool, string) {
		err := w.cover(ctx, "bmtest:wait-probe")
		return err == nil, err2s(err)
	})
	if g, err := stock.Deduct(ctx, ref, expireAt); err != nil || g.Issued != 3 {
		t.Fatalf("award deduction after the thaw: %+v, %v; want number 3 (2 is spent unconfirmed, never granted)", g, err)
	}
	if _, issued, err := skus.Deduct(ctx, sku, expireAt); err != nil || issued != 5 {
		t.Fatalf("sku deduction after the thaw: %d, %v; want number 5 (2 to 4 spent unconfirmed)", issued, err)
	}
}

// mustParseGrab parses a grabs hash value.
func mustParseGrab(t *testing.T, v string) rpItem {
	t.Helper()
	it, _, err := parseRPGrab(v)
	if err != nil {
		t.Fatal(err)
	}
	return it
}

// err2s is err's text, or "" for nil.
func err2s(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestReplicaWaitCheck: a wait that cannot work is refused before use.
func TestReplicaWaitCheck(t *testing.T) {
	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	for _, tc := range []struct {
		w  ReplicaWait
		ok bool
	}{
		{ReplicaWait{}, true},
		{ReplicaWait{Client: client, Replicas: 1, Timeout: time.Millisecond}, true},
		{ReplicaWait{Client: client, Replicas: -1}, false},
		{ReplicaWait{Client: client, Replicas: 1, Timeout: time.Microsecond}, false},
		{ReplicaWait{Replicas: 1, Timeout: time.Second}, false},
	} {
		if err := tc.w.Check(); (err == nil) != tc.ok {
			t.Errorf("Check of %d replicas, %s: %v; want ok %v", tc.w.Replicas, tc.w.Timeout, err, tc.ok)
		}
	}
	if (ReplicaWait{Replicas: 1}).On() || (ReplicaWait{Client: client}).On() || !(ReplicaWait{Client: client, Replicas: 2}).On() {
		t.Error("On: want a client and replicas")
	}
}

// TestRainWaitReplicas: with WAIT 1 required, a rain win answers only once the replica
// has it. Frozen, the tap that wins answers unconfirmed (its win waits unacknowledged),
// and so does the next tap, which finds that win again; thawed, the win comes back
// confirmed, to be published, and the pool gave each prize once.
func TestRainWaitReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master, _, proc := replicaPairProcs(t)
	ap, err := master.AutoPipeline()
	if err != nil {
		t.Fatal(err)
	}
	r := NewRain(ap, "bmtest").Fence(true).WaitReplicas(ReplicaWait{Client: master, Replicas: 1, Timeout: waitTimeout})
	start := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	end := start.Add(10 * time.Minute)
	now := start.Add(time.Minute)
	const id = 7101
	mustLoadRain(t, r, rain.HotSession{ID: id, Start: start, End: end, Left: rainPrizes(0, 4)}, true)
	first := mustGrabRain(t, r, id, "u0", now, 100, 5)
	if first.Status != rain.Won {
		t.Fatalf("grab of u0 with the replica healthy: %+v", first)
	}
	mustAck(t, r, first.Win)

	signal(t, proc, syscall.SIGSTOP)
	for range 2 { // the win, then the tap that finds it again
		if out, err := r.Grab(ctx, id, "u1", now, 100, 5); !errors.Is(err, ErrUnreplicated) || !errors.Is(err, rain.ErrUnavailable) || !errors.Is(err, rain.ErrUnconfirmed) {
			t.Fatalf("grab of u1 with the replica frozen: %+v, %v; want ErrUnreplicated, rain.ErrUnavailable and rain.ErrUnconfirmed", out, err)
		}
	}
	if st := mustState(t, r, id); st.Issued != 2 || st.Left != 2 {
		t.Fatalf("session after the unconfirmed win: %+v; want it taken on the master (2 issued, 2 left)", st)
	}

	signal(t, proc, syscall.SIGCONT)
	var again rain.Outcome
	testenv.Eventually(t, 20*time.Second, "u1's win confirmed once the replica thaws", func() (bool, string) {
		again, err = r.Grab(ctx, id, "u1", now, 100, 5)
		return err == nil, err2s(err)
	})
	if again.Status != rain.Again || again.Win.N != 1 || again.Win.Prize == first.Win.Prize {
		t.Fatalf("u1's tap after the thaw: %+v; want its first win again, not u0's prize", again)
	}
	mustAck(t, r, again.Win)
	if out := mustGrabRain(t, r, id, "u2", now, 100, 5); out.Status != rain.Won || out.Win.Prize == first.Win.Prize || out.Win.Prize == again.Win.Prize {
		t.Fatalf("grab of u2: %+v; want a prize not won before", out)
	}
}

// benchReplicaPair starts a private master and a loopback replica, waits until the
// replica acknowledges writes, and returns a client of the master and a ReplicaWait for
// one replica within 50ms.
func benchReplicaPair(b *testing.B) (goredis.UniversalClient, ReplicaWait) {
	maddr, _ := startRedisServer(b, b.TempDir(), "--repl-diskless-sync-delay", "0")
	host, port, _ := net.SplitHostPort(maddr)
	startRedisServer(b, b.TempDir(), "--replicaof", host, port)
	client := newPlainClient(b, maddr)
	w := ReplicaWait{Client: client, Replicas: 1, Timeout: 50 * time.Millisecond}
	deadline := time.Now().Add(20 * time.Second)
	for w.cover(context.Background(), "bmbench:wait-ready") != nil {
		if time.Now().After(deadline) {
			b.Fatal("replica not acknowledging")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return client, w
}

// BenchmarkRedPacketGrabWait measures what WAIT 1 costs a grab, client side, on a master
// and a loopback replica: grabs without and with the wait, alternated by packet of 1000,
// sequential (one grab in flight), each reported as wall time per grab.
func BenchmarkRedPacketGrabWait(b *testing.B) {
	client, w := benchReplicaPair(b)
	ctx := context.Background()
	prefix := testenv.Unique("bmbench_rpw_")
	rps := map[bool]*RedPackets{false: NewRedPackets(client, prefix).Fence(true), true: NewRedPackets(client, prefix).Fence(true).WaitReplicas(w)}
	const per = 1000
	items := splitItems(per, 1)
	expireAt := time.Now().Add(time.Hour)
	now := time.Now()
	spent, grabs := map[bool]time.Duration{}, map[bool]int{}
	var (
		wait  bool
		id    string
		since time.Time
	)
	b.ResetTimer()
	for i := range b.N {
		if i%per == 0 {
			b.StopTimer()
			if i > 0 {
				spent[wait] += time.Since(since)
			}
			wait, id = (i/per)%2 == 1, "p"+strconv.Itoa(i/per)
			if err := rps[wait].load(ctx, id, items, nil, expireAt, nil); err != nil {
				b.Fatal(err)
			}
			since = time.Now()
			b.StartTimer()
		}
		if _, err := rps[wait].grab(ctx, id, "u"+strconv.Itoa(i), now); err != nil {
			b.Fatal(err)
		}
		grabs[wait]++
	}
	b.StopTimer()
	spent[wait] += time.Since(since)
	for _, f := range []bool{false, true} {
		if grabs[f] > 0 {
			b.ReportMetric(float64(spent[f].Microseconds())/float64(grabs[f]), "us/grab-wait="+strconv.FormatBool(f))
		}
	}
}

// BenchmarkStockDeductWaitParallel measures award deductions under concurrency (64 in
// flight on 2 cores) on a master with a loopback replica: through the auto-pipeliner as
// the app sends them without the wait, and each with WAIT 1 on its own connection, as
// they go with it (wait timeouts 50ms and 500ms). ns/op is the wall time per deduction of
// the whole run; refused/op the share answered ErrUnreplicated (the replica did not
// acknowledge in time).
func BenchmarkStockDeductWaitParallel(b *testing.B) {
	client, _ := benchReplicaPair(b)
	ctx := context.Background()
	ap, err := client.AutoPipeline()
	if err != nil {
		b.Fatal(err)
	}
	expireAt := time.Now().Add(time.Hour)
	for i, timeout := range []time.Duration{0, 50 * time.Millisecond, 500 * time.Millisecond} {
		b.Run("wait="+timeout.String(), func(b *testing.B) {
			stock := NewStock(client, testenv.Unique("bmbench_sw_")).Fence(true)
			stock.DeductVia(ap)
			if timeout > 0 {
				stock.WaitReplicas(ReplicaWait{Client: client, Replicas: 1, Timeout: timeout})
			}
			ref := strategy.AwardRef{StrategyID: 900201, AwardID: i + 1}
			if err := stock.Preheat(ctx, ref, 1<<40, 1<<40, expireAt); err != nil {
				b.Fatal(err)
			}
			var refused atomic.Int64
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, err := stock.Deduct(ctx, ref, expireAt)
					if errors.Is(err, ErrUnreplicated) {
						refused.Add(1)
					} else if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(refused.Load())/float64(b.N), "refused/op")
		})
	}
}

// TestRedPacketWaitCluster: on a Cluster of 3 masters with a replica each, a waiting grab
// sends WAIT to its own slot's master: once it is answered, the replica of that master
// already holds it (read there at once, no polling). A frozen replica makes only its
// master's packets unconfirmed.
func TestRedPacketWaitCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	addrs := startClusterReplicas(t, 3, 1)
	client := openClient(t, Options{Addrs: addrs, Cluster: true})
	cc := client.(*goredis.ClusterClient)
	w := ReplicaWait{Client: client, Replicas: 1, Timeout: 500 * time.Millisecond}
	if err := w.Check(); err != nil {
		t.Fatal(err)
	}
	// replicaOf answers the address of the replica of the master at addr.
	replicaOf := func(master string) string {
		_, port, _ := net.SplitHostPort(master)
		for _, a := range addrs {
			c := goredis.NewClient(&goredis.Options{Addr: a, DisableIdentity: true})
			info, err := c.Info(ctx, "replication").Result()
			_ = c.Close()
			if err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_port:"+port+"\r\n") {
				return a
			}
		}
		t.Fatalf("no replica of %s", master)
		return ""
	}
	ap, err := client.AutoPipeline()
	if err != nil {
		t.Fatal(err)
	}
	rp := NewRedPackets(ap, "bmtest_rpw_cluster").Fence(true).WaitReplicas(w)
	expireAt := time.Now().Add(10 * time.Minute)
	now := expireAt.Add(-time.Minute)
	masters := map[string]string{} // packet → its master's address
	for p := range 9 {
		id := "w" + strconv.Itoa(p)
		node, err := cc.MasterForKey(ctx, rp.Keys(id)[0])
		if err != nil {
			t.Fatal(err)
		}
		masters[id] = node.Options().Addr
		// A new replica acknowledges once it has loaded its master's data.
		testenv.Eventually(t, 30*time.Second, "replica of "+masters[id]+" acknowledging", func() (bool, string) {
			err := w.cover(ctx, rp.waitKey(id))
			return err == nil, err2s(err)
		})
		mustLoad(t, rp, id, splitItems(4, uint64(p)), nil, expireAt, nil)
		got := mustGrab(t, rp, id, "u1", now)
		rc := goredis.NewClient(&goredis.Options{Addr: replicaOf(masters[id]), DisableIdentity: true})
		conn := rc.Conn()
		if err := conn.ReadOnly(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		v, err := conn.HGet(ctx, rp.Keys(id)[1], "u1").Result()
		_, _ = conn.Close(), rc.Close()
		if err != nil || mustParseGrab(t, v) != got.Item {
			t.Fatalf("packet %s: the replica of %s holds %q, %v; want the grab answered, %+v", id, masters[id], v, err, got.Item)
		}
	}
	seen := map[string]bool{}
	for _, m := range masters {
		seen[m] = true
	}
	if len(seen) < 2 {
		t.Fatalf("9 packets on %d masters: want several", len(seen))
	}

	// Freeze the replica of w0's master.
	frozen := masters["w0"]
	rc := goredis.NewClient(&goredis.Options{Addr: replicaOf(frozen), DisableIdentity: true})
	info, err := rc.Info(ctx, "server").Result()
	_ = rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(strings.SplitN(info, "process_id:", 2)[1], "\r\n", 2)[0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	for id, m := range masters {
		_, err := rp.grab(ctx, id, "u2", now)
		if m == frozen {
			if !errors.Is(err, ErrUnreplicated) || !errors.Is(err, redpacket.ErrUnconfirmed) {
				t.Fatalf("packet %s on the master whose replica is frozen: %v; want unconfirmed", id, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("packet %s on %s (replica healthy): %v", id, m, err)
		}
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "w0's retry confirmed once the replica thaws", func() (bool, string) {
		res, err := rp.grab(ctx, "w0", "u2", now)
		return err == nil && res.Again, err2s(err)
	})
}

// TestDrawQuotaWaitReplicas: with WAIT 1 required, a flash draw's take answers only once
// the replica has it. Frozen, the take answers ErrUnreplicated (the unknown outcome:
// 0009) with its unit taken as a pending draw on the master, and the sweep's resume of it
// is refused the same way; thawed, the next take (its lease run out) resumes that draw,
// confirmed, instead of taking another unit.
func TestDrawQuotaWaitReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master, _, proc := replicaPairProcs(t)
	ap, err := master.AutoPipeline()
	if err != nil {
		t.Fatal(err)
	}
	d := NewDrawQuota(ap, "bmtest-fqw").Fence(true).WaitReplicas(ReplicaWait{Client: master, Replicas: 1, Timeout: waitTimeout})
	now := time.Now().Truncate(time.Millisecond)
	expireAt := now.Add(time.Hour)
	key := activity.QuotaKey{UserID: "wu", ActivityID: 18, Day: now.Format("2006-01-02"), Month: now.Format("2006-01")}
	if err := d.MarkReady(ctx); err != nil {
		t.Fatal(err)
	}
	_, _, err = d.Take(ctx, key, "o1", now, time.Minute)
	missing, ok := errors.AsType[*flash.HotMissing](err)
	if !ok {
		t.Fatalf("first take: %v, want HotMissing", err)
	}
	if _, _, err := d.LoadTake(ctx, key, missing.Epoch, activity.Quota{Account: acct(5, 5, 5, 5, 5, 5)}, expireAt, "o1", now, time.Minute); err != nil {
		t.Fatalf("load and take with the replica healthy: %v", err)
	}
	if err := d.Clear(ctx, key.UserID, key.ActivityID, "o1"); err != nil {
		t.Fatal(err)
	}

	signal(t, proc, syscall.SIGSTOP)
	if _, _, err := d.Take(ctx, key, "o2", now, time.Minute); !errors.Is(err, ErrUnreplicated) {
		t.Fatalf("take with the replica frozen: %v; want ErrUnreplicated", err)
	}
	if q, ok, err := d.Read(ctx, key); err != nil || !ok || q.Account.TotalSurplus != 3 {
		t.Fatalf("quota after the unconfirmed take: %s, %v, %v; want its unit taken on the master (3 left)", show(q), ok, err)
	}
	later := now.Add(2 * time.Minute) // o2's lease has run out
	o2 := flash.PendingRef{UserID: key.UserID, ActivityID: key.ActivityID, OrderID: "o2"}
	if _, _, err := d.Resume(ctx, o2, later, time.Minute); !errors.Is(err, ErrUnreplicated) {
		t.Fatalf("the sweep's resume with the replica frozen: %v; want ErrUnreplicated", err)
	}

	signal(t, proc, syscall.SIGCONT)
	var (
		p       flash.Pending
		resumed bool
	)
	testenv.Eventually(t, 20*time.Second, "take confirmed once the replica thaws", func() (bool, string) {
		p, resumed, err = d.Take(ctx, key, "o3", later.Add(2*time.Minute), time.Minute)
		return err == nil, err2s(err)
	})
	if !resumed || p.OrderID != "o2" {
		t.Fatalf("take after the thaw: %+v, resumed %v; want o2 resumed, no new unit", p, resumed)
	}
	if q, ok, err := d.Read(ctx, key); err != nil || !ok || q.Account.TotalSurplus != 3 {
		t.Fatalf("quota after the resume: %s, %v, %v; want 3 left", show(q), ok, err)
	}
}

// TestRedPacketEmptyMemoWaitsForReplicas: with the replica wait on, a node keeps an
// empty packet's memo only once the replica acknowledges the emptiness; a grabber still
// gets their item again, confirmed, through Redis.
func TestRedPacketEmptyMemoWaitsForReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master, _, proc := replicaPairProcs(t)
	w := ReplicaWait{Client: master, Replicas: 1, Timeout: waitTimeout}
	rp := NewRedPackets(master, "bmtest").Fence(true).WaitReplicas(w).EmptyMemo(8)
	expireAt := time.Now().Add(10 * time.Minute).Truncate(time.Millisecond)
	now := expireAt.Add(-time.Minute)
	const id = "p-wait-memo"
	mustLoad(t, rp, id, splitItems(1, 7), nil, expireAt, nil)
	first := mustGrab(t, rp, id, "u1", now)

	// The grab that finds the packet empty builds the memo behind its answer (which its
	// own WAIT may already refuse while the replica is frozen): the build alone here.
	signal(t, proc, syscall.SIGSTOP)
	rp.noteEmpty(ctx, id, now.UnixMilli())
	if rp.memo.cache.Contains(id) {
		t.Fatal("memo kept while the replica acknowledges nothing")
	}
	signal(t, proc, syscall.SIGCONT)
	testenv.Eventually(t, 20*time.Second, "memo kept once the replica thaws", func() (bool, string) {
		_, err := rp.grab(ctx, id, "u3", now)
		return errors.Is(err, redpacket.ErrEmpty) && rp.memo.cache.Contains(id), err2s(err)
	})
	if _, err := rp.grab(ctx, id, "u4", now); !errors.Is(err, redpacket.ErrEmpty) {
		t.Fatalf("grab with the memo: %v; want ErrEmpty", err)
	}
	if res := mustGrab(t, rp, id, "u1", now); !res.Again || res.Item != first.Item {
		t.Fatalf("u1 again with the memo: %+v, want again %+v", res, first.Item)
	}
}
