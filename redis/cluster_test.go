package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/strategy"
)

// TestStockCluster runs the award stock script on a real three-master Redis Cluster of
// private child servers, reached through Open with Cluster set. Every key of one script
// call shares a hash tag, so Redis never answers CROSSSLOT, while different awards land on
// different masters.
func TestStockCluster(t *testing.T) {
	t.Parallel()
	addrs := startCluster(t, 3)
	client := openClient(t, Options{Addrs: addrs, Cluster: true})
	cluster, ok := client.(*goredis.ClusterClient)
	if !ok {
		t.Fatalf("Open with Cluster set returned %T, want *ClusterClient", client)
	}
	ctx := context.Background()
	expireAt := time.Now().Add(10 * time.Minute)
	st := NewStock(client, "bmtest_cluster").Fence(true)

	const (
		awards  = 20
		surplus = 50
		calls   = 200
	)
	refs := make([]strategy.AwardRef, awards)
	for i := range refs {
		refs[i] = strategy.AwardRef{StrategyID: 200001, AwardID: 101 + i}
	}

	// The control: without a shared hash tag the same script is refused, so the cases
	// below really run under Cluster's one-slot rule.
	t.Run("UntaggedKeysAreRefused", func(t *testing.T) {
		a, b := "bmtest_cluster:a", "bmtest_cluster:b"
		if keySlot(a) == keySlot(b) {
			t.Fatalf("control keys %q and %q share slot %d", a, b, keySlot(a))
		}
		err := deductScript.off.Run(ctx, client, []string{a, b}, expireAt.UnixMilli()).Err()
		if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
			t.Fatalf("script on keys of two slots: %v, want CROSSSLOT", err)
		}
	})

	t.Run("ConcurrentDeductAcrossSlots", func(t *testing.T) {
		for _, ref := range refs {
			mustPreheat(t, st, ref, surplus, expireAt)
		}
		granted, outs := deductAcross(t, st, refs, calls, expireAt)
		for _, ref := range refs {
			if got := granted[ref]; !slices.Equal(got, seq(surplus-1, 0)) {
				t.Errorf("award %d: granted %v, want each of 0..%d once", ref.AwardID, got, surplus-1)
			}
			if outs[ref] != calls-surplus {
				t.Errorf("award %d: %d ErrStockOut, want %d", ref.AwardID, outs[ref], calls-surplus)
			}
			assertLevel(t, st, ref, level(0, surplus, surplus))
		}
		// The counters run fenced: each fence holds the replication id of its slot's master.
		ids := map[string]bool{}
		for _, ref := range refs {
			fk := st.CounterKey(ref) + ":fence"
			node, err := cluster.MasterForKey(ctx, fk)
			if err != nil {
				t.Fatal(err)
			}
			fence, err := client.Get(ctx, fk).Result()
			if err != nil {
				t.Fatal(err)
			}
			if info, err := node.Info(ctx, "replication").Result(); err != nil || !strings.Contains(info, "master_replid:"+fence+"\r\n") {
				t.Fatalf("award %d: fence %q, the slot's master says %v\n%s", ref.AwardID, fence, err, info)
			}
			ids[fence] = true
		}
		if len(ids) < 2 {
			t.Fatalf("fences %v: want the ids of more than one master", ids)
		}
	})

	t.Run("KeysSpreadOverMasters", func(t *testing.T) {
		// Redis itself puts every key of an award in one slot, the one keySlot computes.
		for _, ref := range refs {
			ck := st.CounterKey(ref)
			for _, k := range stockKeys(st, ref) {
				ks, err := client.ClusterKeySlot(ctx, k).Result()
				if err != nil {
					t.Fatal(err)
				}
				if int(ks) != keySlot(ck) {
					t.Fatalf("award %d: CLUSTER KEYSLOT of %s is %d, keySlot %d; want equal", ref.AwardID, k, ks, keySlot(ck))
				}
			}
		}
		// Ask every master directly (a node client does not follow MOVED): each award's
		// three keys are stored together on exactly one master, and more than one master
		// holds awards.
		var (
			mu      sync.Mutex
			holders = map[strategy.AwardRef][]string{}
			filled  = map[string]int64{}
		)
		err := cluster.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
			addr := node.Options().Addr
			size, err := node.DBSize(ctx).Result()
			if err != nil {
				return fmt.Errorf("dbsize on %s: %w", addr, err)
			}
			for _, ref := range refs {
				n, err := node.Exists(ctx, st.CounterKey(ref), st.IssuedKey(ref), st.TotalKey(ref)).Result()
				if err != nil && strings.HasPrefix(err.Error(), "MOVED ") {
					continue // another master owns the slot
				}
				if err != nil {
					return fmt.Errorf("exists on %s: %w", addr, err)
				}
				if n != 3 {
					return fmt.Errorf("award %d: %d of its 3 keys on %s, the owner of its slot", ref.AwardID, n, addr)
				}
				mu.Lock()
				holders[ref] = append(holders[ref], addr)
				mu.Unlock()
			}
			mu.Lock()
			filled[addr] = size
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(filled) != len(addrs) {
			t.Fatalf("ForEachMaster visited %v, want %d masters", filled, len(addrs))
		}
		perMaster := map[string]int{}
		for _, ref := range refs {
			if len(holders[ref]) != 1 {
				t.Fatalf("award %d held by %v, want exactly one master", ref.AwardID, holders[ref])
			}
			perMaster[holders[ref][0]]++
		}
		nonEmpty := 0
		for _, size := range filled {
			if size > 0 {
				nonEmpty++
			}
		}
		if len(perMaster) < 2 || nonEmpty < 2 {
			t.Fatalf("awards per master %v, DBSIZE per master %v: want keys on more than one master", perMaster, filled)
		}
		t.Logf("awards per master %v", perMaster)
	})

	t.Run("StalePreheatGrantsNothing", func(t *testing.T) {
		for _, ref := range refs {
			// Preheat is NX: the exhausted counter stays at 0.
			mustPreheat(t, st, ref, surplus, expireAt)
			assertLevel(t, st, ref, level(0, surplus, surplus))
			// A stale writer sets the counter back up through the cluster client.
			if err := client.Set(ctx, st.CounterKey(ref), surplus, 0).Err(); err != nil {
				t.Fatal(err)
			}
			assertLevel(t, st, ref, level(surplus, surplus, surplus))
		}
		granted, outs := deductAcross(t, st, refs, 20, expireAt)
		for _, ref := range refs {
			if len(granted[ref]) != 0 || outs[ref] != 20 {
				t.Errorf("award %d after a stale preheat: granted %v, %d out; want none granted, 20 out",
					ref.AwardID, granted[ref], outs[ref])
			}
			assertLevel(t, st, ref, level(0, surplus, surplus))
		}
	})

	t.Run("TopUpAcrossSlots", func(t *testing.T) {
		// Every exhausted award gets 3 more units: exactly those are granted, numbered
		// after the old ones.
		for _, ref := range refs {
			if ok, err := st.TopUp(ctx, ref, surplus+3, expireAt); err != nil || !ok {
				t.Fatalf("top-up of award %d: %v %v", ref.AwardID, ok, err)
			}
		}
		granted, outs := deductAcross(t, st, refs, 10, expireAt)
		for _, ref := range refs {
			if got := granted[ref]; !slices.Equal(got, seq(2, 0)) || outs[ref] != 7 {
				t.Errorf("award %d after a top-up of 3: granted %v, %d out", ref.AwardID, got, outs[ref])
			}
			assertLevel(t, st, ref, level(0, surplus+3, surplus+3))
		}
	})

	t.Run("PreheatKeepsPartialCounter", func(t *testing.T) {
		for i := range 5 {
			ref := strategy.AwardRef{StrategyID: 200002, AwardID: 1 + i}
			mustPreheat(t, st, ref, 10, expireAt)
			if got := deductSerially(t, st, ref, 3, expireAt); !slices.Equal(got, seq(9, 7)) {
				t.Fatalf("award %d: grants %v, want 9 8 7", ref.AwardID, got)
			}
			mustPreheat(t, st, ref, 100, expireAt)
			assertLevel(t, st, ref, level(7, 3, 10))
			if got := deductSerially(t, st, ref, 10, expireAt); !slices.Equal(got, seq(6, 0)) {
				t.Fatalf("award %d: grants after second preheat %v, want 6..0 then out", ref.AwardID, got)
			}
		}
	})

	t.Run("SingleSeedFindsEveryAward", func(t *testing.T) {
		// BIGMARKET_REDIS_CLUSTER=true with one address: the seed tells the client about
		// the other masters.
		seeded := NewStock(openClient(t, Options{Addrs: addrs[len(addrs)-1:], Cluster: true}), "bmtest_cluster")
		for _, ref := range refs {
			assertLevel(t, seeded, ref, level(0, surplus+3, surplus+3))
		}
	})

	// The whole Stock contract, also on the cluster (under its own key prefix).
	t.Run("Contract", func(t *testing.T) { testStock(t, client, true) })
}

// deductAcross runs calls Deducts for each of refs, interleaved, from 100 goroutines, and
// returns per award the remaining values granted, sorted high to low, and the number of
// ErrStockOut.
func deductAcross(t *testing.T, st *Stock, refs []strategy.AwardRef, calls int, expireAt time.Time) (map[strategy.AwardRef][]int64, map[strategy.AwardRef]int) {
	t.Helper()
	const workers = 100
	var (
		mu      sync.Mutex
		granted = map[strategy.AwardRef][]int64{}
		outs    = map[strategy.AwardRef]int{}
		errs    []error
		wg      sync.WaitGroup
		next    = make(chan strategy.AwardRef, calls*len(refs))
	)
	for range calls {
		for _, ref := range refs {
			next <- ref
		}
	}
	close(next)
	for range workers {
		wg.Go(func() {
			for ref := range next {
				g, err := st.Deduct(context.Background(), ref, expireAt)
				mu.Lock()
				switch {
				case err == nil:
					granted[ref] = append(granted[ref], g.Remaining)
				case errors.Is(err, strategy.ErrStockOut):
					outs[ref]++
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
	for _, g := range granted {
		slices.Sort(g)
		slices.Reverse(g)
	}
	return granted, outs
}

// startCluster starts n private redis-server children with cluster mode on free loopback
// ports, joins them into one cluster of n masters with redis-cli, waits until every node
// reports it healthy and returns their addresses. The children are killed when the test
// ends. Without redis-server or redis-cli the test is skipped, except in CI, where it fails.
func startCluster(t *testing.T, n int) []string {
	t.Helper()
	return startClusterReplicas(t, n, 0)
}

// startClusterReplicas is startCluster with replicas replicas of each master: it returns
// the masters' and replicas' addresses, n*(1+replicas), in the order redis-cli was given
// them (it picks the roles itself).
func startClusterReplicas(t *testing.T, masters, replicas int) []string {
	t.Helper()
	server := lookTool(t, "redis-server")
	cli := lookTool(t, "redis-cli")

	n := masters * (1 + replicas)
	addrs := make([]string, 0, n)
	used := map[int]bool{}
	for range n {
		addrs = append(addrs, startClusterNode(t, server, used))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}

	// Every node must see all slots served and all n nodes before a client may trust
	// whichever node it asks for the slot map.
	deadline := time.Now().Add(15 * time.Second)
	for _, addr := range addrs {
		node := goredis.NewClient(&goredis.Options{Addr: addr, DisableIdentity: true})
		for {
			info, err := node.ClusterInfo(ctx).Result()
			if err == nil &&
				strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_slots_ok:16384") &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(n)+"\r\n") {
				break
			}
			if time.Now().After(deadline) {
				_ = node.Close()
				t.Fatalf("node %s not ready: %v\n%s", addr, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = node.Close()
	}
	return addrs
}

// lookTool returns the path of the named program, skipping the test when it is missing on
// a developer machine and failing it in CI.
func lookTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found in CI: %v", name, err)
	}
	t.Skipf("%s not found; skipping Redis Cluster test", name)
	return ""
}

// startClusterNode starts one cluster-enabled redis-server on a free port not in used (nor
// its bus port) and returns its address once it answers. A port taken between choosing it
// and the server binding it is retried with another.
func startClusterNode(t *testing.T, server string, used map[int]bool) string {
	t.Helper()
	var lastErr error
	for range 5 {
		port, err := freeClusterPort(used)
		if err != nil {
			t.Fatal(err)
		}
		used[port] = true
		dir := t.TempDir()
		cmd := exec.Command(server,
			"--port", strconv.Itoa(port),
			"--bind", "127.0.0.1",
			"--dir", dir,
			"--logfile", filepath.Join(dir, "redis.log"),
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000",
			"--save", "",
			"--appendonly", "no",
		)
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", server, err)
		}
		exited := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(exited)
		}()
		// Registered after t.TempDir, so it runs before the directory is removed.
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = awaitNode(addr, cmd.Process.Pid, exited); lastErr == nil {
			return addr
		}
		logText, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
		lastErr = fmt.Errorf("%w\n%s", lastErr, logText)
	}
	t.Fatalf("no redis-server came up: %v", lastErr)
	return ""
}

// awaitNode polls addr until the redis-server with process id pid answers there, and
// fails early if that process exits (as when its port was taken).
func awaitNode(addr string, pid int, exited <-chan struct{}) error {
	ctx := context.Background()
	node := goredis.NewClient(&goredis.Options{Addr: addr, DisableIdentity: true, MaxRetries: -1})
	defer node.Close()
	want := "process_id:" + strconv.Itoa(pid) + "\r\n"
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("redis-server on %s exited", addr)
		default:
		}
		info, err := node.Info(ctx, "server").Result()
		if err == nil && strings.Contains(info, want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s not answering: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeClusterPort returns a loopback port that is free now, as is the cluster bus port
// 10000 above it, and that clashes with no port or bus port in used.
func freeClusterPort(used map[int]bool) (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if port >= 65535-10000 || used[port] || used[port+10000] || used[port-10000] {
			_ = l.Close()
			continue
		}
		bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		_ = l.Close()
		if err != nil {
			continue
		}
		_ = bus.Close()
		return port, nil
	}
	return 0, errors.New("find a free port: none below 55535 with a free bus port")
}
