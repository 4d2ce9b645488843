package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/internal/testenv"
)

// startPrivateRedis runs a redis-server child on a loopback port of its own for a test
// that breaks it; the shared Redis is never flushed. redis-server cannot bind a port it
// picks itself (port 0 turns TCP off), so a free port is chosen first; should another
// process take it before redis-server binds it, that start is told apart by its process id
// and retried on another port. extra are more redis-server arguments.
func startPrivateRedis(t *testing.T, extra ...string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server not found")
		}
		t.Skip("redis-server not found")
	}
	var lastErr error
	for range 5 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		_, port, _ := net.SplitHostPort(addr)
		args := append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir()}, extra...)
		cmd := exec.Command(bin, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-exited })
		if lastErr = awaitRedis(addr, cmd.Process.Pid, exited); lastErr == nil {
			return addr
		}
		cmd.Process.Kill()
	}
	t.Fatalf("private redis did not start: %v", lastErr)
	return ""
}

// awaitRedis waits until the redis-server with process id pid answers on addr, and gives
// up as soon as that process exits (its port was taken) or after 15s.
func awaitRedis(addr string, pid int, exited <-chan struct{}) error {
	client := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
	defer client.Close()
	want := "process_id:" + strconv.Itoa(pid) + "\r\n"
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("redis-server for %s exited", addr)
		default:
		}
		info, err := client.Info(context.Background(), "server").Result()
		if err == nil && strings.Contains(info, want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s not answering: %v", addr, err)
		}
		time.Sleep(testenv.PollInterval)
	}
}

// TestRedisFlushDuringDrawRun FLUSHALLs the Redis two serve processes share while users
// recharge and draw: afterwards no award and no SKU has granted more than its stock, the
// lost stock is rebuilt from durable records, every draw answered 0000 has its record
// and no more records exist than draws answered 0000 or 0009, and draws go on. The draw
// answers 0009 (or 0006 once the breaker opens) until the draw writer has caught up
// after the flush; its clients retry those, as they are told to.
func TestRedisFlushDuringDrawRun(t *testing.T) {
	t.Parallel()
	d := newDeployment(t, startPrivateRedis(t))
	db, rdb := d.db, d.redis
	ctx := context.Background()
	// SKU 99201 grants 4 draws and has stock 150, so the run exhausts it.
	for _, q := range []string{
		`INSERT INTO raffle_activity_count (activity_count_id, total_count, day_count, month_count) VALUES (99201, 4, 4, 4)`,
		`INSERT INTO raffle_activity_sku (sku, activity_id, activity_count_id, stock_count, stock_count_surplus, product_amount) VALUES (99201, 100301, 99201, 150, 150, '1.00')`,
	} {
		if _, err := db.SQL.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	startSurplus := map[int]int64{}
	rows, err := db.SQL.QueryContext(ctx, `SELECT award_id, award_count_surplus FROM strategy_award WHERE strategy_id = 100006`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int
		var n int64
		rows.Scan(&id, &n)
		startSurplus[id] = n
	}
	rows.Close()

	var bases []string
	for range 2 {
		_, base := d.start(t, "BIGMARKET_RECOVERY_GRACE=1s")
		bases = append(bases, base)
	}
	users, prefix := d.users, d.prefix
	s := d.stack(bases...)
	if r := call(t, "GET", bases[0]+"/api/v1/raffle/activity/armory?activityId=100301", nil); r.Code != "0000" {
		t.Fatalf("armory: %+v", r)
	}

	var drawn, unknown, afterFlushOK atomic.Int64
	var flushed atomic.Bool
	run := func(from, to int) {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		for i := from; i < to; i++ {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				user := fmt.Sprintf("flush%s%03d", prefix[len(prefix)-4:], i)
				r := call(t, "POST", s.bases[0]+"/api/v1/admin/activity/recharge", map[string]any{"userId": user, "sku": 99201, "outBusinessNo": user}, bearer(s.adminToken))
				// 0009 while the flushed SKU counter is rebuilt; ERR_BIZ_005 once it is sold out.
				if r.Code != "0000" && r.Code != "0009" && r.Code != "ERR_BIZ_005" {
					t.Errorf("recharge %s: %s %s", user, r.Code, r.Info)
				}
				for d := range 4 {
					// A draw answers 0009 (0006 once the breaker opens) until the draw
					// writer has caught up and the hot quotas may be loaded again, and
					// one that picks an award whose stock is being rebuilt answers 0009
					// until it is back (never the luck award): the client retries it
					// for up to 30 s, as it is told to.
					for try := 0; ; try++ {
						r := call(t, "POST", bases[(i+d+try)%2]+"/api/v1/raffle/activity/draw", drawReq{user, 100301})
						switch r.Code {
						case "0000":
							drawn.Add(1)
							if flushed.Load() {
								afterFlushOK.Add(1)
							}
						case "ERR_BIZ_006", "ERR_BIZ_009":
						case "0009", "0006":
							if r.Code == "0009" {
								unknown.Add(1)
							}
							if try < 300 {
								time.Sleep(100 * time.Millisecond)
								continue
							}
							t.Errorf("draw %s: %s %s", user, r.Code, r.Info)
						default:
							t.Errorf("draw %s: %s %s", user, r.Code, r.Info)
						}
						break
					}
				}
			})
		}
		wg.Wait()
	}
	run(0, 100)
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	flushed.Store(true)
	run(100, 200)
	// Recharges and draws after the rebuild: the grace is 1s, so poll until SKU and award
	// stock are back and a draw is served.
	next := 200
	testenv.Eventually(t, 30*time.Second, "lost stock rebuilt", func() bool {
		if rdb.Exists(ctx, fmt.Sprintf("%s:sku_stock:{99201}", prefix), fmt.Sprintf("%s:award_stock:{100006_101}", prefix)).Val() == 2 {
			return true
		}
		run(next, next+5)
		next += 5
		return false
	})
	run(next, next+20)
	if afterFlushOK.Load() == 0 {
		t.Error("no draw succeeded after the flush")
	}

	d.drainDraws(t)
	orders, err := users.SKUOrderCount(ctx, 99201)
	if err != nil || orders > 150 {
		t.Errorf("sku 99201 (stock 150) has %d orders %v", orders, err)
	}
	records, err := users.AwardRecordCounts(ctx, 100006)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for id, n := range records {
		total += n
		if id != 101 && n > startSurplus[id] {
			t.Errorf("award %d granted %d times with stock %d", id, n, startSurplus[id])
		}
	}
	// Every draw answered 0000 is recorded; a draw answered 0009 at most once.
	if total < drawn.Load() || total > drawn.Load()+unknown.Load() {
		t.Errorf("%d award records for %d draws answered 0000 and %d answered 0009", total, drawn.Load(), unknown.Load())
	}
	t.Logf("draws %d (after flush %d, %d answered 0009), sku orders %d/150, records by award %v, stock at start %v",
		drawn.Load(), afterFlushOK.Load(), unknown.Load(), orders, records, startSurplus)
}
