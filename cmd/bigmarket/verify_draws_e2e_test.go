package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/flash"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/nats"
	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// TestVerifyFlashDraws runs draws on the real backends, then "bigmarket verify":
// clean after the writer drained, with the draw events and hot quotas checked; then it
// plants one discrepancy of each draw check and verify must report each kind; with the
// writer stopped behind a published draw, verify says it skipped the hot quota check.
func TestVerifyFlashDraws(t *testing.T) {
	const users, draws = 30, 5
	d := newDeployment(t, "")
	p, base := d.start(t)
	d.armory(t, base)
	ids := make([]string, users)
	for i := range ids {
		ids[i] = fmt.Sprintf("vf%s%03d", d.prefix[len(d.prefix)-6:], i)
	}
	fanOut(users, 8, func(i int) {
		if r := d.recharge(t, base, ids[i], 9011, ids[i]+"-9011"); r.Code != "0000" {
			t.Errorf("recharge %s: %s", ids[i], r)
		}
	})
	fanOut(users*draws, 16, func(i int) {
		if r := call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{ids[i%users], faultActivity}); r.Code != "0000" {
			t.Errorf("draw: %s", r)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	d.drainDraws(t)
	// The answer path clears a pending draw in the background, and the credit awards are
	// distributed behind the writer (verify's credit balances read accounts and orders in
	// two passes): once both settled, verify is clean with every hot copy compared. None
	// of the draw checks may fail meanwhile.
	testenv.Eventually(t, 60*time.Second, "verify clean with every hot quota compared", func() (bool, string) {
		out, clean := d.verify(t, nil)
		for _, k := range []string{reconcile.KindDrawUnwritten, reconcile.KindHotQuota, reconcile.KindOneWin, reconcile.KindAwardOverStock, "skipped"} {
			if strings.Contains(out, k) {
				t.Fatalf("verify after a flash run reports %s:\n%s", k, out)
			}
		}
		return clean && strings.Contains(out, fmt.Sprintf("%d draw events against their rows", users*draws)) &&
			strings.Contains(out, fmt.Sprintf("%d hot quotas (0 with pending", users)), out
	})

	// bench draw's verification makes the same checks after its run.
	bench := exec.Command(d.bin, "bench", "draw", "-url", base, "-admin-token", d.adminToken, "-users", "10",
		"-prefix", "vb"+d.prefix[len(d.prefix)-6:], "-c", "4", "-n", "60", "-provision-c", "2", "-q")
	bench.Env = append(os.Environ(), d.env...)
	if out, err := bench.CombinedOutput(); err != nil || !strings.Contains(string(out), "PASS draw events written: ") ||
		!strings.Contains(string(out), "PASS hot quota = SQL quota: ") || !strings.Contains(string(out), "PASS records <= stock: ") {
		t.Fatalf("bench draw: %v\n%s", err, out)
	}

	ctx := context.Background()
	router := sqlstore.Router{DBs: 2, Tables: 4}
	execSQL := func(user, query string, args ...any) int64 {
		t.Helper()
		r := router.Route(user)
		res, err := d.userDBs[r.DB].SQL.ExecContext(ctx, strings.ReplaceAll(query, "{t}", r.Suffix), args...)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := res.RowsAffected()
		return n
	}
	wantKinds := func(name string, kinds ...string) {
		t.Helper()
		out, clean := d.verify(t, nil)
		if clean {
			t.Fatalf("%s: verify clean:\n%s", name, out)
		}
		for _, k := range kinds {
			if !strings.Contains(out, k+" user=") {
				t.Errorf("%s: verify does not report %s:\n%s", name, k, out)
			}
		}
	}

	// A draw event whose award record is gone.
	recs, err := d.users.AwardRecords(ctx, ids[0], faultActivity)
	if err != nil || len(recs) != draws {
		t.Fatalf("records of %s: %d %v", ids[0], len(recs), err)
	}
	if n := execSQL(ids[0], "DELETE FROM user_award_record{t} WHERE order_id = ?", recs[0].OrderID); n != 1 {
		t.Fatalf("deleted %d records", n)
	}
	wantKinds("record deleted", reconcile.KindDrawUnwritten)

	// A hot quota a unit ahead of SQL.
	if err := d.redis.HIncrBy(ctx, d.prefix+":fq:{u:"+ids[1]+"}:"+fmt.Sprint(faultActivity), "ts", -1).Err(); err != nil {
		t.Fatal(err)
	}
	wantKinds("hot quota changed", reconcile.KindDrawUnwritten, reconcile.KindHotQuota)

	// One win on, and a user with two records of stocked awards.
	cfg, err := sqlstore.NewConfigStore(d.db).LoadStrategy(ctx, faultStrategy)
	if err != nil {
		t.Fatal(err)
	}
	stocked := reconcile.StockedAwards(cfg)
	var awardID int
	for id := range stocked {
		awardID = id
	}
	if awardID == 0 {
		t.Fatalf("strategy %d has no stocked award", faultStrategy)
	}
	if r := call(t, "POST", base+"/api/v1/admin/activity/settings",
		[]byte(fmt.Sprintf(`{"activityId":%d,"oneWin":true}`, faultActivity)), bearer(d.adminToken)); r.Code != "0000" {
		t.Fatalf("one win on: %s", r)
	}
	twice := ids[2] + "w"
	for _, order := range []string{"vfw1", "vfw2"} {
		execSQL(twice, `INSERT INTO user_award_record{t} (user_id, activity_id, strategy_id, order_id, award_id, award_title,
			award_time, award_state, create_time) VALUES (?, ?, ?, ?, ?, 'title', ?, 'completed', ?)`,
			twice, faultActivity, faultStrategy, order+d.prefix[len(d.prefix)-6:], awardID, time.Now().Add(-48*time.Hour), time.Now().Add(-48*time.Hour))
	}
	wantKinds("two stocked awards in a one-win activity", reconcile.KindOneWin)

	// An award's stock below its records.
	counts, err := d.users.AwardRecordCounts(ctx, faultStrategy)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.db.SQL.ExecContext(ctx, `UPDATE strategy_award SET award_count = ? WHERE strategy_id = ? AND award_id = ?`,
		counts[awardID]-1, faultStrategy, awardID); err != nil {
		t.Fatal(err)
	}
	out, _ := d.verify(t, nil)
	if !strings.Contains(out, reconcile.KindAwardOverStock+" user= key="+fmt.Sprintf("%d/%d", faultStrategy, awardID)) {
		t.Errorf("stock below records: verify does not report %s:\n%s", reconcile.KindAwardOverStock, out)
	}

	// The writer stopped behind a published draw: the hot quota check is skipped, and
	// said so, and the unapplied draw is not taken for missing.
	p.cmd.Process.Kill()
	<-p.exited
	d.withJetStream(t, func(ctx context.Context, js jetstream.JetStream, opts nats.EventOptions) {
		drawOpts := nats.DrawEventOptions(opts)
		e := flash.Event{OrderID: "vf_behind" + d.prefix[len(d.prefix)-6:], UserID: ids[3], ActivityID: faultActivity,
			StrategyID: faultStrategy, AwardID: awardID, AwardTime: time.Now(), OrderTime: time.Now()}
		if err := nats.NewDrawEvents(nats.NewPublisher(js, drawOpts)).PublishDraw(ctx, e); err != nil {
			t.Fatal(err)
		}
	})
	out, _ = d.verify(t, nil)
	if !strings.Contains(out, "verify: skipped hot quota = SQL quota: the draw writer is 1 events behind") ||
		!strings.Contains(out, "verify: skipped draw events: 1 published after the draw writer's progress") ||
		strings.Contains(out, "vf_behind") {
		t.Errorf("writer behind: want the hot quota check skipped and the new draw not checked:\n%s", out)
	}
}
