package redis

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/redpacket"
)

// startRedisServer starts a private standalone redis-server on a free loopback port with
// its data under dir and extra arguments, and returns its address once it answers; it is
// killed when the test ends. Without redis-server the test is skipped, except in CI.
func startRedisServer(t testing.TB, dir string, extra ...string) (string, *exec.Cmd) {
	t.Helper()
	server := lookTool(t, "redis-server")
	var lastErr error
	for range 5 {
		port, err := freeClusterPort(map[int]bool{})
		if err != nil {
			t.Fatal(err)
		}
		addr, cmd, err := runRedisServer(t, server, port, dir, extra...)
		if err == nil {
			return addr, cmd
		}
		lastErr = err
	}
	t.Fatalf("no redis-server came up: %v", lastErr)
	return "", nil
}

// runRedisServer starts redis-server on port with its data under dir and waits until it
// answers; the process is killed when the test ends.
func runRedisServer(t testing.TB, server string, port int, dir string, extra ...string) (string, *exec.Cmd, error) {
	t.Helper()
	args := append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"), "--save", "",
	}, extra...)
	cmd := exec.Command(server, args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", server, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := awaitNode(addr, cmd.Process.Pid, exited); err != nil {
		logText, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
		return "", nil, errors.New(err.Error() + "\n" + string(logText))
	}
	return addr, cmd, nil
}

// newPlainClient returns a go-redis client of addr as serve opens one, closed when the
// test ends.
func newPlainClient(t testing.TB, addr string) goredis.UniversalClient {
	t.Helper()
	return openClient(t, Options{Addrs: []string{addr}})
}

// replicaPair starts a master and a replica of it, and returns clients of both once the
// replica is in sync.
func replicaPair(t *testing.T) (master, replica goredis.UniversalClient) {
	t.Helper()
	maddr, _ := startRedisServer(t, t.TempDir(), "--repl-diskless-sync-delay", "0")
	host, port, _ := net.SplitHostPort(maddr)
	raddr, _ := startRedisServer(t, t.TempDir(), "--replicaof", host, port)
	master, replica = newPlainClient(t, maddr), newPlainClient(t, raddr)
	testenv.Eventually(t, 20*time.Second, "replica in sync", func() (bool, string) {
		info, err := replica.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up"), info
	})
	return master, replica
}

var replidPattern = regexp.MustCompile(`^[0-9a-f]{40}$`)

// TestProbeFence: Redis answers its replication id inside a script; the embedded server
// cannot, so its hot state is built unfenced.
// promote waits until the replica has every write the master took (WAIT 1), then promotes
// it (REPLICAOF NO ONE), and returns the replication id before and after, which differ.
func promote(t *testing.T, master, replica goredis.UniversalClient) (oldID, newID string) {
	t.Helper()
	ctx := context.Background()
	if n, err := master.Do(ctx, "WAIT", 1, 10000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d, %v", n, err)
	}
	oldID, err := ProbeFence(ctx, replica)
	if err != nil {
		t.Fatal(err)
	}
	if err := replica.SlaveOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	newID, err = ProbeFence(ctx, replica)
	if err != nil || newID == oldID {
		t.Fatalf("replication id after promotion %q (%v), before %q: want a new one", newID, err, oldID)
	}
	return oldID, newID
}

func TestProbeFence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := openClient(t, Options{Addrs: []string{testenv.RedisAddr(t)}})
	id, err := ProbeFence(ctx, client)
	if err != nil || !replidPattern.MatchString(id) {
		t.Fatalf("probe of Redis: %q, %v; want a replication id", id, err)
	}
	info, err := client.Info(ctx, "replication").Result()
	if err != nil || !strings.Contains(info, "master_replid:"+id+"\r\n") {
		t.Fatalf("probe answered %s; INFO replication says:\n%s", id, info)
	}
	if id, err := ProbeFence(ctx, openEmbedded(t, false)); err == nil {
		t.Fatalf("probe of the embedded server: %q, want an error", id)
	}
}

// TestRedPacketFenceAfterFailover runs a red packet over a real master and replica. The
// replica stops following the master (REPLICAOF NO ONE: it is promoted, with a new
// replication id) before the master answers two more grabs, so those grabs are lost on it
// while the packet's counts still add up. Fenced, the promoted replica refuses the next
// grab and the close (ErrFenced, ErrUnavailable: the rebuild path), taking nothing; a load
// from the durable records replaces the stale packet even though its counts add up, sets
// the fence, and grabs go on without any item granted twice. Unfenced, the same sequence
// grants an item twice: the failure the fence exists for.
func TestRedPacketFenceAfterFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master, replica := replicaPair(t)
	expireAt := time.Now().Add(10 * time.Minute).Truncate(time.Millisecond)
	before := expireAt.Add(-time.Minute)
	items := splitItems(8, 3)

	type setup struct {
		id       string
		onMaster *RedPackets
		durable  map[string]rpItem // grabs answered by the master (and made durable)
	}
	var setups []setup
	for _, fence := range []bool{true, false} {
		s := setup{id: "p-fence-" + strconv.FormatBool(fence), onMaster: NewRedPackets(master, "bmtest").Fence(fence), durable: map[string]rpItem{}}
		mustLoad(t, s.onMaster, s.id, items, nil, expireAt, nil)
		for _, u := range []string{"u0", "u1", "u2"} {
			s.durable[u] = mustGrab(t, s.onMaster, s.id, u, before).Item
		}
		setups = append(setups, s)
	}
	oldID, newID := promote(t, master, replica)
	// The master answers two more grabs of each packet; the promoted replica never sees them.
	for _, s := range setups {
		for _, u := range []string{"u3", "u4"} {
			s.durable[u] = mustGrab(t, s.onMaster, s.id, u, before).Item
		}
	}

	t.Run("Fenced", func(t *testing.T) {
		s := setups[0]
		rp := NewRedPackets(replica, "bmtest").Fence(true)
		keys := rp.Keys(s.id)
		if got := mustGrabs(t, rp, s.id); len(got) != 3 {
			t.Fatalf("the promoted replica holds %d grabs, want the 3 it had before (the test needs lost writes)", len(got))
		}
		for _, u := range []string{"u3", "u9"} {
			res, err := rp.grab(ctx, s.id, u, before)
			if !errors.Is(err, ErrFenced) || !errors.Is(err, redpacket.ErrUnavailable) {
				t.Fatalf("grab of %s on the promoted replica: %+v, %v; want ErrFenced and redpacket.ErrUnavailable", u, res, err)
			}
		}
		if _, _, err := rp.closePacket(ctx, s.id); !errors.Is(err, ErrFenced) || !errors.Is(err, redpacket.ErrUnavailable) {
			t.Fatalf("close on the promoted replica: %v, want ErrFenced and redpacket.ErrUnavailable", err)
		}
		// Nothing was written: five items left, three grabs, the old fence.
		assertRemaining(t, rp, s.id, 5)
		if got := mustGrabs(t, rp, s.id); len(got) != 3 {
			t.Fatalf("grabs after fenced calls: %v", got)
		}
		if f, err := replica.Get(ctx, keys[4]).Result(); err != nil || f != oldID {
			t.Fatalf("fence after fenced calls: %q, %v; want the old id %s", f, err, oldID)
		}
		// The rebuild: the durable records (every answered grab) replace the stale packet,
		// whose counts add up, and the fence takes the new id.
		mustLoad(t, rp, s.id, remainingItems(items, s.durable), s.durable, expireAt, nil)
		if f, err := replica.Get(ctx, keys[4]).Result(); err != nil || f != newID {
			t.Fatalf("fence after the rebuild: %q, %v; want the new id %s", f, err, newID)
		}
		assertRebuilt(t, rp, s.id, items, s.durable, before)
	})

	t.Run("UnfencedGrantsTwice", func(t *testing.T) {
		s := setups[1]
		rp := NewRedPackets(replica, "bmtest").Fence(false)
		// A rebuild is never asked for: the counts add up. The next grabs pop the items the
		// master already gave u3 and u4.
		taken := map[int]string{}
		for u, it := range s.durable {
			taken[it.Index] = u
		}
		var twice []string
		for _, u := range []string{"u5", "u6"} {
			res := mustGrab(t, rp, s.id, u, before)
			if other, ok := taken[res.Item.Index]; ok {
				twice = append(twice, u+" got the item of "+other)
			}
		}
		slices.Sort(twice)
		if len(twice) != 2 {
			t.Fatalf("unfenced grabs after the failover granted %v twice; want both lost items granted again", twice)
		}
		t.Logf("without the fence: %v", twice)
	})
}

// TestRedPacketFenceAfterRestart: a master restarted from its AOF comes back with a new
// replication id (writes after the last fsync may be gone), so its packets are fenced and
// cost one rebuild each.
func TestRedPacketFenceAfterRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	addr, cmd := startRedisServer(t, dir, "--appendonly", "yes", "--appendfsync", "always")
	client := newPlainClient(t, addr)
	rp := NewRedPackets(client, "bmtest").Fence(true)
	expireAt := time.Now().Add(10 * time.Minute).Truncate(time.Millisecond)
	before := expireAt.Add(-time.Minute)
	items := splitItems(4, 11)
	mustLoad(t, rp, "p-restart", items, nil, expireAt, nil)
	durable := map[string]rpItem{"u0": mustGrab(t, rp, "p-restart", "u0", before).Item}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	var err error
	testenv.Eventually(t, 20*time.Second, "redis-server restarted on its port", func() (bool, string) {
		_, _, err = runRedisServer(t, lookTool(t, "redis-server"), p, dir, "--appendonly", "yes", "--appendfsync", "always")
		return err == nil, ""
	})
	if got := mustGrabs(t, rp, "p-restart"); len(got) != 1 {
		t.Fatalf("grabs after the restart: %v, want the one from the AOF", got)
	}
	if _, err := rp.grab(ctx, "p-restart", "u1", before); !errors.Is(err, ErrFenced) {
		t.Fatalf("grab after the restart: %v, want ErrFenced", err)
	}
	mustLoad(t, rp, "p-restart", remainingItems(items, durable), durable, expireAt, nil)
	assertRebuilt(t, rp, "p-restart", items, durable, before)
}

// BenchmarkRedPacketGrabFence measures a grab with and without the fence on a private
// redis-server, alternating the two by 1,000-item packet so that a busy machine weighs on
// both alike: server-us/grab is what Redis spends per grab script in each mode (INFO
// commandstats, the packet loads left out); ns/op is a serial caller's round trip of the
// two together.
func BenchmarkRedPacketGrabFence(b *testing.B) {
	addr, _ := startRedisServer(b, b.TempDir())
	client := newPlainClient(b, addr)
	ctx := context.Background()
	prefix := testenv.Unique("bmbench_rp_")
	rps := map[bool]*RedPackets{false: NewRedPackets(client, prefix), true: NewRedPackets(client, prefix).Fence(true)}
	const per = 1000
	items := splitItems(per, 1)
	expireAt := time.Now().Add(time.Hour)
	now := time.Now()
	var id string
	benchFenced(b, client, "grab", per, func(turn int, fence bool) {
		id = "p" + strconv.Itoa(turn) // a packet per turn
		if err := rps[fence].load(ctx, id, items, nil, expireAt, nil); err != nil {
			b.Fatal(err)
		}
	}, func(i int, fence bool) {
		if _, err := rps[fence].grab(ctx, id, "u"+strconv.Itoa(i), now); err != nil {
			b.Fatal(err)
		}
	})
}

// benchFenced runs b.N calls of op, unfenced and fenced in turns of per calls (setup,
// when set, prepares each turn: a new packet or counter for it), and reports the server
// time of EVALSHA per call of each kind, read from INFO commandstats (reset at each
// turn), as "server-us/<what>-fence=false|true". op runs with the timer on and may stop
// and start it around work it does not want counted; setup runs with it off.
func benchFenced(b *testing.B, client goredis.UniversalClient, what string, per int,
	setup func(turn int, fence bool), op func(i int, fence bool)) {
	ctx := context.Background()
	usec, calls := map[bool]int64{}, map[bool]int64{}
	fence := false
	settle := func() { // adds the script time of the turn just run
		stats, err := client.Info(ctx, "commandstats").Result()
		if err != nil {
			b.Fatal(err)
		}
		u, c := evalshaStats(stats)
		usec[fence], calls[fence] = usec[fence]+u, calls[fence]+c
	}
	b.ResetTimer()
	for i := range b.N {
		if i%per == 0 {
			b.StopTimer()
			if i > 0 {
				settle()
			}
			fence = (i/per)%2 == 1
			if setup != nil {
				setup(i/per, fence)
			}
			if err := client.ConfigResetStat(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		op(i, fence)
	}
	b.StopTimer()
	settle()
	for _, f := range []bool{false, true} {
		if calls[f] > 0 {
			b.ReportMetric(float64(usec[f])/float64(calls[f]), "server-us/"+what+"-fence="+strconv.FormatBool(f))
		}
	}
}

// evalshaStats reads the microseconds and calls of EVALSHA from INFO commandstats.
func evalshaStats(info string) (usec, calls int64) {
	for _, line := range strings.Split(info, "\r\n") {
		rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:")
		if !ok {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "calls":
				calls = n
			case "usec":
				usec = n
			}
		}
	}
	return usec, calls
}
