package redis

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/flash"
	"github.com/bigmarket/bigmarket/gate"
)

// TestDrawQuotaFenceAfterFailover runs a user's hot quota (6 draws in total) over a real
// master and replica. The master answers three draws (the third's pending entry not yet
// cleared), the replica has them all, and is then promoted (REPLICAOF NO ONE: a new
// replication id) before the master clears the third and answers two more draws. So the
// promoted replica lacks two answered units, and still holds a pending draw that was
// settled: a copy that adds up, with nothing missing to show the loss.
//
// Fenced, the promoted replica refuses takes (ErrHotNotReady: the restore path) and the
// sweep's resume, and reports itself not ready; the restore sets a new epoch and fence;
// the next take loads the quota again from the durable records (5 of 6 used), replacing
// the stale copy and its pending draw, and the user gets exactly one more draw.
// Unfenced, the same replica hands out three more units (8 draws of 6) and lets the sweep
// settle the third draw again: the failure the fence exists for.
func TestDrawQuotaFenceAfterFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master, replica := replicaPair(t)
	now := time.Now().Truncate(time.Millisecond)
	expireAt := now.Add(time.Hour)
	const total = 6
	key := activity.QuotaKey{UserID: "fu", ActivityID: 17, Day: now.Format("2006-01-02"), Month: now.Format("2006-01")}
	fresh := activity.Quota{Account: acct(total, total, total, total, total, total)}

	type setup struct {
		prefix   string
		onMaster *DrawQuota
		epoch    string
		answered int // units the master answered, each made durable (the draw writer's SQL)
	}
	take := func(t *testing.T, d *DrawQuota, order string) {
		t.Helper()
		if _, _, err := d.Take(ctx, key, order, now, time.Minute); err != nil {
			t.Fatalf("take %s: %v", order, err)
		}
	}
	clear := func(t *testing.T, d *DrawQuota, order string) {
		t.Helper()
		if err := d.Clear(ctx, key.UserID, key.ActivityID, order); err != nil {
			t.Fatal(err)
		}
	}
	var setups []*setup
	for _, fence := range []bool{true, false} {
		s := &setup{prefix: "bmtest-fq-" + strconv.FormatBool(fence)}
		s.onMaster = NewDrawQuota(master, s.prefix).Fence(fence)
		if err := s.onMaster.MarkReady(ctx); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.onMaster.Take(ctx, key, "o1", now, time.Minute)
		missing, ok := errors.AsType[*flash.HotMissing](err)
		if !ok {
			t.Fatalf("first take: %v, want HotMissing", err)
		}
		s.epoch = missing.Epoch
		if _, _, err := s.onMaster.LoadTake(ctx, key, s.epoch, fresh, expireAt, "o1", now, time.Minute); err != nil {
			t.Fatal(err)
		}
		clear(t, s.onMaster, "o1")
		take(t, s.onMaster, "o2")
		clear(t, s.onMaster, "o2")
		take(t, s.onMaster, "o3") // published; its clear comes after the failover
		s.answered = 3
		setups = append(setups, s)
	}
	_, newID := promote(t, master, replica)
	// The master clears o3 and answers two more draws; the promoted replica sees none of it.
	for _, s := range setups {
		clear(t, s.onMaster, "o3")
		for _, o := range []string{"o4", "o5"} {
			take(t, s.onMaster, o)
			clear(t, s.onMaster, o)
		}
		s.answered += 2
	}
	// The durable records: every answered draw used a unit.
	durable := activity.Quota{Account: acct(total, total-int64(setups[0].answered), total, total-int64(setups[0].answered),
		total, total-int64(setups[0].answered))}
	o3 := flash.PendingRef{UserID: key.UserID, ActivityID: key.ActivityID, OrderID: "o3"}
	later := now.Add(2 * time.Minute) // o3's lease has run out

	t.Run("Fenced", func(t *testing.T) {
		s := setups[0]
		d := NewDrawQuota(replica, s.prefix).Fence(true)
		if q, ok, err := d.Read(ctx, key); err != nil || !ok || q.Account.TotalSurplus != total-3 {
			t.Fatalf("the promoted replica's quota: %s, %v, %v; want the 3 left it had (the test needs lost writes)", show(q), ok, err)
		}
		if _, _, err := d.Take(ctx, key, "o6", now, time.Minute); !errors.Is(err, flash.ErrHotNotReady) {
			t.Fatalf("take on the promoted replica: %v, want ErrHotNotReady", err)
		}
		if _, _, err := d.LoadTake(ctx, key, s.epoch, durable, expireAt, "o6", now, time.Minute); !errors.Is(err, flash.ErrHotStale) {
			t.Fatalf("load and take under the old epoch: %v, want ErrHotStale", err)
		}
		if err := d.Load(ctx, key, s.epoch, durable, expireAt); !errors.Is(err, flash.ErrHotStale) {
			t.Fatalf("load under the old epoch: %v, want ErrHotStale", err)
		}
		if p, ok, err := d.Resume(ctx, o3, later, time.Minute); err != nil || ok {
			t.Fatalf("resume of o3 on the promoted replica: %+v, %v, %v; want not resumable", p, ok, err)
		}
		if ready, err := d.Ready(ctx); err != nil || ready {
			t.Fatalf("Ready on the promoted replica: %v, %v; want false", ready, err)
		}
		// Nothing was written.
		if q, _, err := d.Read(ctx, key); err != nil || q.Account.TotalSurplus != total-3 {
			t.Fatalf("quota after fenced calls: %s, %v", show(q), err)
		}
		if n, err := replica.HLen(ctx, d.pendingKey(key.UserID, key.ActivityID)).Result(); err != nil || n != 2 {
			t.Fatalf("pending fields after fenced calls: %d, %v; want o3's two", n, err)
		}
		// The restore (after the grace and the draw writer's drain): a new epoch and fence.
		if err := d.MarkReady(ctx); err != nil {
			t.Fatal(err)
		}
		if ready, err := d.Ready(ctx); err != nil || !ready {
			t.Fatalf("Ready after the restore: %v, %v", ready, err)
		}
		if f, err := replica.Get(ctx, d.fenceKey(0)).Result(); err != nil || f != newID {
			t.Fatalf("fence after the restore: %q, %v; want %s", f, err, newID)
		}
		// verify's reads skip the stale copy: it is loaded again before any take reads it.
		if cp, found, err := d.Copy(ctx, key.UserID, key.ActivityID); err != nil || found {
			t.Fatalf("copy read after the restore: %+v, %v, %v; want the stale copy skipped", cp, found, err)
		}
		_, _, err := d.Take(ctx, key, "o6", now, time.Minute)
		missing, ok := errors.AsType[*flash.HotMissing](err)
		if !ok || missing.Epoch == s.epoch {
			t.Fatalf("take after the restore: %v, want HotMissing under a new epoch", err)
		}
		// The sweep finds o3 again: its copy is stale, so it is dropped, not settled again.
		if p, ok, err := d.Resume(ctx, o3, later, time.Minute); err != nil || ok {
			t.Fatalf("resume of o3 after the restore: %+v, %v, %v; want gone", p, ok, err)
		}
		if _, _, err := d.LoadTake(ctx, key, missing.Epoch, durable, expireAt, "o6", now, time.Minute); err != nil {
			t.Fatalf("load and take after the restore: %v", err)
		}
		granted := s.answered + 1
		if cp, found, err := d.Copy(ctx, key.UserID, key.ActivityID); err != nil || !found || cp.Quota.Account.TotalSurplus != 0 || cp.Pending != 1 {
			t.Fatalf("copy read after the reload: %+v, %v, %v; want none left and o6 pending", cp, found, err)
		}
		if _, _, err := d.Take(ctx, key, "o7", now, time.Minute); !errors.Is(err, activity.ErrTotalQuotaExhausted) {
			t.Fatalf("take o7: %v, want the total exhausted (%d of %d drawn)", err, granted, total)
		}
		pend, err := replica.HKeys(ctx, d.pendingKey(key.UserID, key.ActivityID)).Result()
		if err != nil || len(pend) != 2 || pend[0][2:] != "o6" || pend[1][2:] != "o6" {
			t.Fatalf("pending draws after the reload: %v, %v; want only o6", pend, err)
		}
		if granted != total {
			t.Fatalf("%d draws of %d", granted, total)
		}
	})

	t.Run("UnfencedOverQuota", func(t *testing.T) {
		s := setups[1]
		d := NewDrawQuota(replica, s.prefix).Fence(false)
		granted := s.answered
		for _, o := range []string{"o6", "o7", "o8", "o9"} {
			if _, _, err := d.Take(ctx, key, o, now, time.Minute); err != nil {
				if !errors.Is(err, activity.ErrTotalQuotaExhausted) {
					t.Fatal(err)
				}
				break
			}
			granted++
		}
		p, ok, err := d.Resume(ctx, o3, later, time.Minute)
		if err != nil || !ok {
			t.Fatalf("unfenced resume of o3: %v, %v; want the settled draw resumed again", ok, err)
		}
		if granted != total+2 || p.OrderID != "o3" {
			t.Fatalf("unfenced: %d draws of %d, o3 %+v; want the two lost units drawn again", granted, total, p)
		}
		t.Logf("without the fence: %d draws of a quota of %d, and o3 resumed after it was settled", granted, total)
	})
}

// TestDrawQuotaFenceCluster runs the fenced hot quota on a real 3-master Cluster: the
// restore sets all 16,384 slots' markers and fences (each fence the replication id of its
// slot's master), Ready sees them, and users of many slots load and take, and have their
// fenced one-win sets rebuilt under their slots' epochs.
func TestDrawQuotaFenceCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := openClient(t, Options{Addrs: startCluster(t, 3), Cluster: true})
	cluster := client.(*goredis.ClusterClient)
	d := NewDrawQuota(client, "bmtest_fq_cluster").Fence(true)
	w := NewWins(client, "bmtest_fq_cluster", time.Hour).Fence(true).RebuildAfter(d)
	if ready, err := d.Ready(ctx); err != nil || ready {
		t.Fatalf("Ready before the restore: %v, %v", ready, err)
	}
	if err := d.MarkReady(ctx); err != nil {
		t.Fatal(err)
	}
	if ready, err := d.Ready(ctx); err != nil || !ready {
		t.Fatalf("Ready after the restore: %v, %v", ready, err)
	}
	now := time.Now()
	ids := map[string]bool{}
	for i := range 30 {
		key := activity.QuotaKey{UserID: "cu" + strconv.Itoa(i), ActivityID: 5, Day: now.Format("2006-01-02"), Month: now.Format("2006-01")}
		_, _, err := d.Take(ctx, key, "a", now, time.Minute)
		missing, ok := errors.AsType[*flash.HotMissing](err)
		if !ok {
			t.Fatalf("first take of %s: %v, want HotMissing", key.UserID, err)
		}
		if _, _, err := d.LoadTake(ctx, key, missing.Epoch, activity.Quota{Account: acct(2, 2, 2, 2, 2, 2)},
			now.Add(time.Hour), "a", now, time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.Take(ctx, key, "b", now, time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.Take(ctx, key, "c", now, time.Minute); !errors.Is(err, activity.ErrTotalQuotaExhausted) {
			t.Fatalf("third take of %s: %v, want the total exhausted", key.UserID, err)
		}
		fk := d.fenceKey(d.userSlot(key.UserID))
		node, err := cluster.MasterForKey(ctx, fk)
		if err != nil {
			t.Fatal(err)
		}
		fence, err := client.Get(ctx, fk).Result()
		if err != nil {
			t.Fatal(err)
		}
		if info, err := node.Info(ctx, "replication").Result(); err != nil || !strings.Contains(info, "master_replid:"+fence+"\r\n") {
			t.Fatalf("user %s: fence %q, the slot's master says %v\n%s", key.UserID, fence, err, info)
		}
		ids[fence] = true
		// The user's one-win set reads the slot's marker and fence in the same script.
		h, epoch, err := w.Hold(ctx, key.UserID, 5, "t", time.Minute)
		if err != nil || h != gate.Unknown || epoch == "" {
			t.Fatalf("one-win hold of %s: %v %q %v, want Unknown under the slot's epoch", key.UserID, h, epoch, err)
		}
		if err := w.Rebuilt(ctx, key.UserID, 5, epoch, i%2 == 0); err != nil {
			t.Fatal(err)
		}
		if err := w.Release(ctx, key.UserID, 5, "t"); err != nil {
			t.Fatal(err)
		}
		want := gate.Held
		if i%2 == 0 {
			want = gate.Won
		}
		if h, _, err := w.Hold(ctx, key.UserID, 5, "u", time.Minute); err != nil || h != want {
			t.Fatalf("one-win hold of %s after the rebuild: %v %v, want %v", key.UserID, h, err, want)
		}
	}
	if len(ids) != 3 {
		t.Fatalf("fences name %d replication ids, want the 3 masters'", len(ids))
	}
}

// BenchmarkDrawQuotaTakeFence measures the server time of a take (one unit and a pending
// draw, then its clear) fenced and unfenced, alternated by blocks of 1,000 takes on a
// private redis-server; the time is EVALSHA's from INFO commandstats (the take script;
// the pending draw is cleared by plain HDEL and ZREM between takes).
func BenchmarkDrawQuotaTakeFence(b *testing.B) {
	addr, _ := startRedisServer(b, b.TempDir())
	client := newPlainClient(b, addr)
	ctx := context.Background()
	now := time.Now()
	ds := map[bool]*DrawQuota{false: NewDrawQuota(client, "bmbench_fq_off"), true: NewDrawQuota(client, "bmbench_fq_on").Fence(true)}
	keys := map[bool]activity.QuotaKey{}
	for f, d := range ds {
		if err := d.MarkReady(ctx); err != nil {
			b.Fatal(err)
		}
		key := activity.QuotaKey{UserID: "bench", ActivityID: 1, Day: now.Format("2006-01-02"), Month: now.Format("2006-01")}
		_, _, err := d.Take(ctx, key, "x", now, time.Minute)
		missing, ok := errors.AsType[*flash.HotMissing](err)
		if !ok {
			b.Fatal(err)
		}
		const lots = 1 << 40
		if _, _, err := d.LoadTake(ctx, key, missing.Epoch, activity.Quota{Account: acct(lots, lots, lots, lots, lots, lots)},
			now.Add(time.Hour), "x", now, time.Minute); err != nil {
			b.Fatal(err)
		}
		if err := d.Clear(ctx, key.UserID, key.ActivityID, "x"); err != nil {
			b.Fatal(err)
		}
		keys[f] = key
	}
	benchFenced(b, client, "take", 1000, nil, func(i int, fence bool) {
		d, key, order := ds[fence], keys[fence], "o"+strconv.Itoa(i)
		if _, _, err := d.Take(ctx, key, order, now, time.Minute); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		// The clear's effect without a script, so EVALSHA counts only takes.
		if err := client.HDel(ctx, d.pendingKey(key.UserID, key.ActivityID), "i:"+order, "l:"+order).Err(); err != nil {
			b.Fatal(err)
		}
		if err := client.ZRem(ctx, d.indexKey(0), member(key.UserID, key.ActivityID, order)).Err(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	})
}
