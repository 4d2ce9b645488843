package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/money"
)

// redisProxy forwards TCP connections to a Redis server it can be pointed away from, as a
// virtual IP or a Sentinel-aware proxy moves clients to a promoted replica: switchTo
// closes every connection to the old target, and new ones reach the new target.
type redisProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	target string
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

// startRedisProxy listens on a free loopback port and forwards to target until the test
// ends.
func startRedisProxy(t *testing.T, target string) *redisProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &redisProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.closeAll()
		p.wg.Wait()
	})
	return p
}

func (p *redisProxy) addr() string { return p.ln.Addr().String() }

func (p *redisProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		up, err := net.DialTimeout("tcp", target, 2*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		p.wg.Go(func() { pipe(up, c) })
		p.wg.Go(func() { pipe(c, up) })
	}
}

func (p *redisProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// switchTo sends new connections to target and cuts the existing ones.
func (p *redisProxy) switchTo(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
	p.closeAll()
}

func splitPort(addr string) (string, string) {
	host, port, _ := net.SplitHostPort(addr)
	return host, port
}

// failoverRun is what the users were told around a Redis failover of one packet.
type failoverRun struct {
	d        *deployment
	serve    *process
	packetID string
	count    int
	told     map[string]money.Cents // user → amount, every 0000
	codes    map[string]int         // the final answers of the grabs after the failover
}

// runRedPacketFailover runs one serve process on a Redis master behind a proxy, with a
// replica. Users grab a packet; the replica is then cut off and promoted (REPLICAOF NO ONE:
// a new replication id) before the master answers more grabs, so those grabs exist on the
// master, in the broker and in the database but not on the replica; then the proxy moves
// serve to the promoted replica and more users grab until the packet is empty. env is
// added to serve's environment.
func runRedPacketFailover(t *testing.T, env ...string) failoverRun {
	t.Helper()
	master := startPrivateRedis(t, "--repl-diskless-sync-delay", "0")
	host, port := splitPort(master)
	replica := startPrivateRedis(t, "--replicaof", host, port)
	proxy := startRedisProxy(t, master)
	d := newDeployment(t, proxy.addr())
	serve, a := d.start(t, append([]string{"BIGMARKET_RED_PACKET_PUBLISH_TIMEOUT=1s", "BIGMARKET_RED_PACKET_RECOVER_GRACE=2s"}, env...)...)
	const count = 20
	run := failoverRun{d: d, serve: serve, count: count, told: map[string]money.Cents{}, codes: map[string]int{}}
	run.packetID = d.sendPacket(t, a, "", "100.00", count)

	users := testenv.Unique("fo")
	grab := func(i int, untilFinal bool) grabReply {
		user := fmt.Sprintf("%s-%d", users, i)
		var g grabReply
		if untilFinal {
			g = grabUntilFinal(t, a, user, run.packetID)
		} else {
			g = grabOnce(t, a, user, run.packetID)
		}
		if g.code == "0000" {
			run.told[user] = g.amount
		}
		return g
	}
	for i := range 6 {
		if g := grab(i, false); g.code != "0000" {
			t.Fatalf("grab %d before the failover: %+v", i, g)
		}
	}
	ctx := context.Background()
	mc := goredis.NewClient(&goredis.Options{Addr: master})
	defer mc.Close()
	rc := goredis.NewClient(&goredis.Options{Addr: replica})
	defer rc.Close()
	testenv.Eventually(t, 30*time.Second, "replica in sync", func() (bool, string) {
		info, err := rc.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up"), info
	})
	if n, err := mc.Do(ctx, "WAIT", 1, 10000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 on the master: %d, %v", n, err)
	}
	if err := rc.SlaveOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	for i := 6; i < 10; i++ {
		if g := grab(i, false); g.code != "0000" {
			t.Fatalf("grab %d on the master after the replica left: %+v", i, g)
		}
	}
	// The failover: serve's connections now reach the promoted replica, which lacks the
	// last four grabs while the packet's counts still add up.
	proxy.switchTo(replica)
	for i := 10; i < 40; i++ {
		run.codes[grab(i, true).code]++
	}
	return run
}

// TestRedPacketFailoverFenced: after a failover to a replica that lost the last grabs, the
// first grab on it is refused as retryable (the fence), the packet is rebuilt from the
// database, and every item is granted once: 20 users told of an item, each holding it, and
// the sum is the total.
func TestRedPacketFailoverFenced(t *testing.T) {
	t.Parallel()
	run := runRedPacketFailover(t)
	t.Logf("grabs after the failover: %v", run.codes)
	if len(run.told) != run.count || run.codes["ERR_RP_001"] != 40-run.count {
		t.Fatalf("%d users told of an item of %d, final codes %v: want each item granted once and the rest empty", len(run.told), run.count, run.codes)
	}
	fenced := false // a rebuild caused by the fence, not by a loss of keys
	for _, line := range strings.Split(run.serve.log.String(), "\n") {
		if strings.Contains(line, "red packet rebuilt from the database") && strings.Contains(line, "redis hot state fenced") {
			fenced = true
		}
	}
	if !fenced {
		t.Fatalf("no rebuild caused by the fence in serve's log:\n%s", run.serve.log.String())
	}
	var sum money.Cents
	for _, a := range run.told {
		sum += a
	}
	if sum != 100_00 {
		t.Fatalf("told amounts sum to %s, want 100.00", sum)
	}
	run.d.expireNow(t, run.d.redis, run.packetID)
	run.d.settled(t, run.packetID, run.told)
	if out, ok := run.d.verify(t, nil); !ok {
		t.Fatalf("verify after the failover:\n%s", out)
	}
}

// TestRedPacketFailoverUnfenced proves the failover test catches what the fence prevents:
// with BIGMARKET_REDIS_FENCE=false the promoted replica's packet looks whole, and the items
// the master granted last are granted again to other users.
func TestRedPacketFailoverUnfenced(t *testing.T) {
	t.Parallel()
	run := runRedPacketFailover(t, "BIGMARKET_REDIS_FENCE=false")
	t.Logf("grabs after the failover: %v; %d users told of an item of %d", run.codes, len(run.told), run.count)
	if len(run.told) <= run.count {
		t.Fatalf("%d users told of an item of %d: the failover lost no grab, the test proves nothing", len(run.told), run.count)
	}
	// The repeats cannot be recorded: their items belong to the master's last grabbers.
	ctx := context.Background()
	testenv.Eventually(t, time.Minute, "every item recorded", func() bool {
		_, items, err := run.d.users.RedPacket(ctx, run.packetID)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			if it.UserID == "" {
				return false
			}
		}
		return true
	})
	_, items, err := run.d.users.RedPacket(ctx, run.packetID)
	if err != nil {
		t.Fatal(err)
	}
	holders := map[string]bool{}
	for _, it := range items {
		holders[it.UserID] = true
	}
	var unpaid []string
	for user := range run.told {
		if !holders[user] {
			unpaid = append(unpaid, user)
		}
	}
	if len(unpaid) != len(run.told)-run.count {
		t.Fatalf("%d told users hold no item, want %d", len(unpaid), len(run.told)-run.count)
	}
}
