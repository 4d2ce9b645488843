package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/sqlstore"
	"github.com/bigmarket/bigmarket/strategy"
)

// topUpAward is the award of faultStrategy the top-up tests sell out and top up: seeded
// with count 100 and surplus 15, so 85 units are granted before the test starts. (101 is
// also the luck award, which would blur the count.)
const topUpAward = 102

// favourAward makes every pick of faultStrategy all but certainly topUpAward (rate 1
// against 0.0001 for each other award), so that a test can count grants of it per draw.
// Run it before any process assembles the strategy.
func favourAward(t *testing.T, d *deployment) {
	t.Helper()
	if _, err := d.db.SQL.Exec(`UPDATE strategy_award SET award_rate = CASE WHEN award_id = ? THEN 1 ELSE 0.0001 END
		WHERE strategy_id = ?`, topUpAward, faultStrategy); err != nil {
		t.Fatal(err)
	}
}

// randomRaffles sends n concurrent random_raffle draws of faultStrategy spread over bases
// (with the admin token, which production mode asks for) and counts the awards granted.
func randomRaffles(t *testing.T, d *deployment, bases []string, n int) map[int]int {
	t.Helper()
	body := fmt.Appendf(nil, `{"strategyId":%d}`, faultStrategy)
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			r := call(t, "POST", bases[i%len(bases)]+"/api/v1/raffle/strategy/random_raffle", body, bearer(d.adminToken))
			if r.Status != 200 || r.Code != "0000" {
				t.Errorf("random_raffle: HTTP %d %s %s", r.Status, r.Code, r.Info)
				return
			}
			v, err := dataOf[struct{ AwardID int }](r)
			if err != nil {
				t.Errorf("random_raffle data %s: %v", r.Data, err)
			}
			mu.Lock()
			got[v.AwardID]++
			mu.Unlock()
		})
	}
	wg.Wait()
	return got
}

// strategyArmory runs the strategy armory of faultStrategy on base.
func strategyArmory(t *testing.T, d *deployment, base string) {
	t.Helper()
	url := fmt.Sprintf("%s/api/v1/raffle/strategy/strategy_armory?strategyId=%d", base, faultStrategy)
	if r := call(t, "GET", url, nil, bearer(d.adminToken)); r.Code != "0000" {
		t.Fatalf("strategy armory on %s: %+v", base, r)
	}
}

// awardCount reads an award's count and surplus of faultStrategy from SQL.
func awardCount(t *testing.T, d *deployment, awardID int) (count, surplus int64) {
	t.Helper()
	if err := d.db.SQL.QueryRow(`SELECT award_count, award_count_surplus FROM strategy_award WHERE strategy_id = ? AND award_id = ?`,
		faultStrategy, awardID).Scan(&count, &surplus); err != nil {
		t.Fatal(err)
	}
	return count, surplus
}

// soldOutPair favours the top-up award in the deployment's strategy, starts two serve
// processes with env, assembles the strategy on both and sells the award out through
// them; it returns their base URLs.
func soldOutPair(t *testing.T, d *deployment, env ...string) []string {
	t.Helper()
	favourAward(t, d)
	var bases []string
	for range 2 {
		_, base := d.start(t, env...)
		bases = append(bases, base)
	}
	for _, base := range bases {
		strategyArmory(t, d, base)
	}
	sellOut(t, d, bases)
	return bases
}

// sellOut draws on bases until topUpAward has given its 15 seeded units, and checks that
// it gave no more.
func sellOut(t *testing.T, d *deployment, bases []string) {
	t.Helper()
	if got := randomRaffles(t, d, bases, 40); got[topUpAward] != 15 {
		t.Fatalf("40 draws on award %d with 15 left granted %v; want exactly 15 of it", topUpAward, got)
	}
	testenv.Eventually(t, 30*time.Second, "the sold-out award's SQL surplus synced to 0", func() bool {
		_, surplus := awardCount(t, d, topUpAward)
		return surplus == 0
	})
}

// runStockAdd runs "bigmarket stock add" with the deployment's config and args, and
// returns its output.
func runStockAdd(t *testing.T, d *deployment, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(d.bin, append([]string{"stock", "add"}, args...)...)
	cmd.Env = append(os.Environ(), d.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestStockTopUpAcrossTwoProcesses sells out an award on two serve processes and tops it
// up by 10 with "bigmarket stock add" on the second: 50 draws sent only to the first,
// which had flagged the award sold out, get exactly 10 more of it (the top-up reached the
// other node at once, no unit granted before comes back), and the SQL surplus follows
// without the reconcile job writing the pre-top-up state back. A second top-up of 5, run
// right after the first node flagged the award sold out again, is granted there too, and
// exactly.
func TestStockTopUpAcrossTwoProcesses(t *testing.T) {
	d := newDeployment(t, "")
	bases := soldOutPair(t, d)

	// Bad input changes nothing.
	for _, args := range [][]string{
		{"-url", bases[0], "-strategy", "100006", "-award", "999", "-units", "10"},
		{"-url", bases[0], "-strategy", "999999", "-award", "102", "-units", "10"},
		{"-url", bases[0], "-strategy", "100006", "-award", "102", "-units", "0"},
		{"-url", bases[0], "-strategy", "100006", "-award", "102", "-units", "1000000000"},
	} {
		if out, err := runStockAdd(t, d, args...); err == nil {
			t.Errorf("stock add %v succeeded: %s", args, out)
		}
	}
	if count, surplus := awardCount(t, d, topUpAward); count != 100 || surplus != 0 {
		t.Fatalf("after refused top-ups award %d has count %d and surplus %d; want 100 and 0", topUpAward, count, surplus)
	}

	out, err := runStockAdd(t, d, "-url", bases[1], "-strategy", "100006", "-award", "102", "-units", "10")
	if err != nil || !strings.Contains(out, "award_count is now 110") {
		t.Fatalf("stock add: %v\n%s", err, out)
	}
	if count, surplus := awardCount(t, d, topUpAward); count != 110 || surplus != 10 {
		t.Fatalf("after the top-up award %d has count %d and surplus %d; want 110 and 10", topUpAward, count, surplus)
	}
	// The reconcile job runs every second (deployment env); through three of its runs the
	// surplus must stay at the top-up, not go back to the old watermark.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if _, surplus := awardCount(t, d, topUpAward); surplus != 10 {
			t.Fatalf("the SQL surplus of award %d went from 10 to %d after the top-up", topUpAward, surplus)
		}
	}

	// Only through the node that did not run the top-up.
	hits := metric(t, bases[0], "bigmarket_award_sold_out_hits_total")
	if hits == 0 {
		t.Fatal("the first node never flagged the sold-out award; the test would prove nothing")
	}
	if got := randomRaffles(t, d, bases[:1], 50); got[topUpAward] != 10 {
		t.Fatalf("50 draws on the other node after a top-up of 10 granted %v; want exactly 10 of award %d", got, topUpAward)
	}
	// Those draws ran the award out again on the first node: it has just flagged it.
	if after := metric(t, bases[0], "bigmarket_award_sold_out_hits_total"); after <= hits {
		t.Fatalf("sold-out hits on the first node %v → %v: its flag was not set by the 40 refused draws", hits, after)
	}
	out, err = runStockAdd(t, d, "-url", bases[1], "-strategy", "100006", "-award", "102", "-units", "5")
	if err != nil || !strings.Contains(out, "award_count is now 115") {
		t.Fatalf("second stock add: %v\n%s", err, out)
	}
	// The other node hears of the top-up asynchronously (the bus, or its flag lapsing),
	// so its draws are polled until the 5 units are gone; then no more come.
	granted := 0
	testenv.Eventually(t, 30*time.Second, "the flagged node granted the second top-up", func() bool {
		granted += randomRaffles(t, d, bases[:1], 5)[topUpAward]
		return granted >= 5
	})
	if more := randomRaffles(t, d, bases[:1], 20)[topUpAward]; granted+more != 5 {
		t.Fatalf("the flagged node granted %d units after a top-up of 5; want exactly 5", granted+more)
	}
	testenv.Eventually(t, 30*time.Second, "the SQL surplus synced to 0 after the new units went", func() bool {
		_, surplus := awardCount(t, d, topUpAward)
		return surplus == 0
	})
}

// TestStockTopUpHealedByReconcile leaves a top-up as a process killed after its SQL step
// would: award_count and the surplus raised in SQL, Redis untouched. The stock reconcile
// job (every second here) raises the Redis total to the count, and both nodes grant
// exactly the 10 new units, with no request repeated.
func TestStockTopUpHealedByReconcile(t *testing.T) {
	d := newDeployment(t, "")
	bases := soldOutPair(t, d)
	ctx := context.Background()
	total, err := sqlstore.NewConfigStore(d.db).AddAwardStock(ctx, strategy.AwardRef{StrategyID: faultStrategy, AwardID: topUpAward}, 10)
	if err != nil || total != 110 {
		t.Fatalf("SQL step of the top-up: %d %v", total, err)
	}
	totalKey := d.counterKey(topUpAward) + ":total"
	testenv.Eventually(t, 30*time.Second, "the reconcile job raised the Redis total to the SQL count", func() bool {
		n, err := d.redis.Get(ctx, totalKey).Int64()
		return err == nil && n == 110
	})
	if got := randomRaffles(t, d, bases, 50); got[topUpAward] != 10 {
		t.Fatalf("50 draws after a top-up healed by the reconcile granted %v; want exactly 10 of award %d", got, topUpAward)
	}
}

// TestStockTopUpThenRedisFlush tops up a sold-out award and FLUSHALLs Redis right after:
// the rebuilt stock holds exactly the 10 new units, none of the 100 granted before.
func TestStockTopUpThenRedisFlush(t *testing.T) {
	d := newDeployment(t, startPrivateRedis(t))
	bases := soldOutPair(t, d, "BIGMARKET_RECOVERY_GRACE=1s")

	s := d.stack(bases...)
	r := call(t, "POST", s.bases[0]+"/api/v1/admin/stock/add", map[string]any{"strategyId": faultStrategy, "awardId": topUpAward, "units": 10}, bearer(s.adminToken))
	if r.Code != "0000" || string(r.Data) != `{"awardCount":110}` {
		t.Fatalf("stock add: %+v", r)
	}
	if err := d.redis.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	for _, base := range bases {
		strategyArmory(t, d, base)
	}
	if got := randomRaffles(t, d, bases, 50); got[topUpAward] != 10 {
		t.Fatalf("50 draws after a top-up of 10 and a FLUSHALL granted %v; want exactly 10 of award %d", got, topUpAward)
	}
}

// TestSKUTopUp sells out a SKU on two serve processes, tops it up by 5 and expects
// exactly 5 more recharges to succeed, spread over both processes; then the same after a
// FLUSHALL of Redis right after a second top-up.
func TestSKUTopUp(t *testing.T) {
	d := newDeployment(t, startPrivateRedis(t))
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO raffle_activity_count (activity_count_id, total_count, day_count, month_count) VALUES (99301, 1, 1, 1)`,
		`INSERT INTO raffle_activity_sku (sku, activity_id, activity_count_id, stock_count, stock_count_surplus, product_amount) VALUES (99301, 100301, 99301, 3, 3, '1.00')`,
	} {
		if _, err := d.db.SQL.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var bases []string
	for range 2 {
		_, base := d.start(t, "BIGMARKET_RECOVERY_GRACE=1s")
		bases = append(bases, base)
	}
	d.armory(t, bases...)
	next := 0
	recharges := func(n int) int {
		codes := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			user := fmt.Sprintf("sku%d", next+i)
			wg.Go(func() { codes[i] = d.recharge(t, bases[i%2], user, 99301, user).Code })
		}
		wg.Wait()
		next += n
		ok := 0
		for _, c := range codes {
			switch c {
			case "0000":
				ok++
			case "ERR_BIZ_005":
			default:
				t.Errorf("recharge: %s", c)
			}
		}
		return ok
	}
	if ok := recharges(8); ok != 3 {
		t.Fatalf("8 recharges of a SKU with stock 3 succeeded %d times", ok)
	}
	stock := func() (count, surplus int64) {
		if err := d.db.SQL.QueryRow(`SELECT stock_count, stock_count_surplus FROM raffle_activity_sku WHERE sku = 99301`).Scan(&count, &surplus); err != nil {
			t.Fatal(err)
		}
		return count, surplus
	}
	testenv.Eventually(t, 30*time.Second, "the sold-out SKU's SQL stock synced to 0", func() bool { _, s := stock(); return s == 0 })

	s := d.stack(bases...)
	for _, bad := range []map[string]any{
		{"sku": 99399, "units": 5}, {"sku": 99301, "units": 0}, {"sku": 99301, "units": -1}, {"sku": 99301},
		{"sku": 99301, "units": 5, "strategyId": 100006, "awardId": 102}, {"units": 5}, {"sku": 99301, "units": 1.5},
	} {
		if r := call(t, "POST", s.bases[0]+"/api/v1/admin/stock/add", bad, bearer(s.adminToken)); r.Code != "0002" {
			t.Errorf("stock add %v: %+v, want 0002", bad, r)
		}
	}
	if count, surplus := stock(); count != 3 || surplus != 0 {
		t.Fatalf("after refused top-ups sku 99301 has stock %d and surplus %d; want 3 and 0", count, surplus)
	}

	r := call(t, "POST", s.bases[0]+"/api/v1/admin/stock/add", map[string]any{"sku": 99301, "units": 5}, bearer(s.adminToken))
	if r.Code != "0000" || string(r.Data) != `{"stockCount":8}` {
		t.Fatalf("stock add: %+v", r)
	}
	if ok := recharges(12); ok != 5 {
		t.Fatalf("12 recharges after a top-up of 5 succeeded %d times; want 5", ok)
	}

	out, err := runStockAdd(t, d, "-url", bases[1], "-sku", "99301", "-units", "4")
	if err != nil || !strings.Contains(out, "stock_count is now 12") {
		t.Fatalf("stock add: %v\n%s", err, out)
	}
	if err := d.redis.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	d.armory(t, bases...)
	if ok := recharges(12); ok != 4 {
		t.Fatalf("12 recharges after a top-up of 4 and a FLUSHALL succeeded %d times; want 4", ok)
	}
	if orders, err := d.users.SKUOrderCount(ctx, 99301); err != nil || orders != 12 {
		t.Errorf("sku 99301 (stock 12) has %d orders %v", orders, err)
	}
}

// TestRandomRaffleGrantsSurviveRedisFlush draws with random_raffle, which writes no award
// record, then FLUSHALLs Redis before the periodic stock sync (an hour here) or the
// reconcile job could run: the rebuilt stock of every award is no more than what was
// left before the flush, because each random_raffle grant was in the stock log before it
// was answered.
func TestRandomRaffleGrantsSurviveRedisFlush(t *testing.T) {
	d := newDeployment(t, startPrivateRedis(t))
	_, base := d.start(t, "BIGMARKET_STOCK_SYNC_INTERVAL=1h", "BIGMARKET_STOCK_RECONCILE_EVERY=1h", "BIGMARKET_RECOVERY_GRACE=1s")
	strategyArmory(t, d, base)
	ctx := context.Background()
	awards := readStockAwards(t, d.db)
	got := randomRaffles(t, d, []string{base}, 40)
	before, err := d.counters(ctx, awards)
	if err != nil {
		t.Fatal(err)
	}
	taken := 0
	for _, a := range awards {
		taken += int(a.surplus - before[a.id])
	}
	if taken == 0 {
		t.Fatalf("40 draws (%v) took no stock", got)
	}
	if err := d.redis.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	strategyArmory(t, d, base)
	after, err := d.counters(ctx, awards)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range slices.Sorted(maps.Keys(before)) {
		if after[id] > before[id] {
			t.Errorf("award %d: %d units left before the flush, %d after the rebuild: random_raffle grants given again", id, before[id], after[id])
		}
	}
	t.Logf("draws %v took %d units; stock before the flush %v, rebuilt %v", got, taken, before, after)
}
