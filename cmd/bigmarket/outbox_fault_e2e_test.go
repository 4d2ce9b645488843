package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/app"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// awardStates counts the deployment's award records by state across every user database
// and table.
func (d *deployment) awardStates(t *testing.T) map[string]int {
	t.Helper()
	states := map[string]int{}
	for _, db := range d.userDBs {
		for table := range 4 {
			rows, err := db.SQL.Query("SELECT award_state, COUNT(*) FROM user_award_record" + sqlstore.TableSuffix(table) + " GROUP BY award_state")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var (
					state string
					n     int
				)
				if err := rows.Scan(&state, &n); err != nil {
					t.Fatal(err)
				}
				states[state] += n
			}
			rows.Close()
		}
	}
	return states
}

// externalAwards returns the order id and state of every award record of the deployment
// whose award goes to the webhook (every seeded award but the credit ones, 100 and 101).
func (d *deployment) externalAwards(t *testing.T) map[string]string {
	t.Helper()
	orders := map[string]string{}
	for _, db := range d.userDBs {
		for table := range 4 {
			rows, err := db.SQL.Query("SELECT order_id, award_state FROM user_award_record" + sqlstore.TableSuffix(table) + " WHERE award_id NOT IN (100, 101)")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var order, state string
				if err := rows.Scan(&order, &state); err != nil {
					t.Fatal(err)
				}
				orders[order] = state
			}
			rows.Close()
		}
	}
	return orders
}

// verify runs "bigmarket verify" on the deployment with extra flags and returns its
// output and whether it found the data clean.
func (d *deployment) verify(t *testing.T, env []string, flags ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(d.bin, append([]string{"verify"}, flags...)...)
	cmd.Env = append(append(os.Environ(), d.env...), env...)
	out, err := cmd.CombinedOutput()
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		t.Fatalf("verify: %v", err)
	}
	return string(out), err == nil
}

// provision recharges n fresh users with SKU 9012 (50 draws each) and returns them.
func (d *deployment) provision(t *testing.T, base string, n int) []string {
	t.Helper()
	users := make([]string, n)
	for i := range users {
		users[i] = testenv.Unique("ob")[:14]
		if code := d.recharge(t, base, users[i], 9012, users[i]).Code; code != "0000" {
			t.Fatalf("recharge %s: %s", users[i], code)
		}
	}
	return users
}

// drawAll sends draws draws spread over users through base, 16 at a time, and fails the
// test unless every one succeeds.
func drawAll(t *testing.T, base string, users []string, draws int) {
	t.Helper()
	fanOut(draws, 16, func(i int) {
		if r := call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{users[i%len(users)], faultActivity}); r.Code != "0000" {
			t.Errorf("draw %d: %+v", i, r)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
}

// TestAwardsSurviveBrokerOutage stops a private nats-server for 10 s in the middle of a
// run in which 40 users draw their 5 units each (SKU 9013), retrying 0009 and 0006 as a
// client is told to, then restarts it. A draw needs the broker's ack, so draws answer
// 0009 (or 0006 once the breaker opens) until it is back, and the retries answer the
// outcomes already fixed. Every draw answered 0000 has its record, a draw not answered
// is recorded at most once, each user's 5 units end as 5 records, no award beyond its
// stock, every award is distributed exactly once after the restart, and bigmarket verify
// comes back clean.
func TestAwardsSurviveBrokerOutage(t *testing.T) {
	t.Parallel()
	const users, quota = 40, 5
	broker := testenv.StartNATSServer(t)
	d := newDeployment(t, "")
	d.natsURL = broker.URL
	env := []string{"BIGMARKET_NATS_URLS=" + broker.URL, "BIGMARKET_OUTBOX_GRACE=1s", "BIGMARKET_OUTBOX_EVERY=1s"}
	_, base := d.start(t, env...)
	d.armory(t, base)
	ids := make([]string, users)
	for i := range ids {
		ids[i] = testenv.Unique("ob")[:14]
		if r := d.recharge(t, base, ids[i], 9013, ids[i]); r.Code != "0000" {
			t.Fatalf("recharge %s: %+v", ids[i], r)
		}
	}

	var (
		mu                    sync.Mutex
		ledgers               = make([]drawLedger, users)
		successes, afterStart int
		outage                = map[string]int{} // answers while the broker is down
		down, restarted       bool
	)
	stopAt := make(chan struct{})
	var outageDone sync.WaitGroup
	outageDone.Go(func() {
		<-stopAt
		broker.Stop()
		mu.Lock()
		down = true
		mu.Unlock()
		time.Sleep(10 * time.Second) // the outage the test is about
		mu.Lock()
		down = false
		mu.Unlock()
		broker.Start()
		mu.Lock()
		restarted = true
		mu.Unlock()
	})
	deadline := time.Now().Add(2 * time.Minute)
	fanOut(users, 16, func(i int) {
		for n := 0; time.Now().Before(deadline); n++ {
			r := call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{ids[i], faultActivity})
			mu.Lock()
			ledgers[i].note(t, r)
			if down {
				outage[r.Code]++
			}
			switch r.Code {
			case "0000":
				successes++
				if restarted {
					afterStart++
				}
				if successes == users*quota/4 {
					close(stopAt)
				}
			case "0009", "0006":
			case "ERR_BIZ_006":
				mu.Unlock()
				return
			default:
				t.Errorf("draw of %s: %+v", ids[i], r)
			}
			mu.Unlock()
			if r.Code != "0000" {
				time.Sleep(100 * time.Millisecond) // a client's retry, as the answer asks
			}
		}
		t.Errorf("user %s: quota not used up within the run", ids[i])
	})
	outageDone.Wait()
	t.Logf("answers during the outage %v; %d draws answered 0000 after the restart", outage, afterStart)
	if outage["0009"]+outage["0006"] == 0 {
		t.Error("no draw met the outage: the test proves nothing")
	}
	if afterStart == 0 {
		t.Error("no draw answered 0000 after the restart")
	}

	d.drainDraws(t)
	total := 0
	for i, user := range ids {
		n, taken := d.checkLedger(t, user, ledgers[i])
		if n != quota || taken != quota {
			t.Errorf("user %s: %d records, %d units taken; want %d each", user, n, taken, quota)
		}
		total += n
	}
	d.endsClean(t, env, total)
}

func sum(m map[string]int) (n int) {
	for _, v := range m {
		n += v
	}
	return n
}

// TestConsumerKilledMidBatch SIGKILLs a serve process whose award consumer has committed a
// batch of distributions but not yet acked it (it pauses there), so the broker redelivers
// those messages to the next process: they must credit nobody twice. verify checks every
// award record completed with exactly one credit order per credit award and every balance
// equal to the sum of its orders. External awards are delivered at least once: the
// webhook receiver gets every one, and an award of the killed batch again, with the same
// Idempotency-Key and the very same body, so that it can drop the repeat.
func TestConsumerKilledMidBatch(t *testing.T) {
	d := newDeployment(t, "")
	common := []string{"BIGMARKET_EVENT_ACK_WAIT=3s", "BIGMARKET_OUTBOX_GRACE=1s", "BIGMARKET_OUTBOX_EVERY=1s"}
	p1, base := d.start(t, append(common, "BIGMARKET_FAULT_DELAY_AFTER_DISTRIBUTE=60s")...)
	d.armory(t, base)
	users := d.provision(t, base, 20)
	drawAll(t, base, users, 200)

	// The consumer commits its first batch, then pauses before acking it.
	testenv.Eventually(t, 30*time.Second, "a committed batch", func() bool { return d.awardStates(t)["completed"] > 0 })
	if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p1.exited
	committed := d.awardStates(t)["completed"]
	var killedExternal []string // external awards completed by the killed process, their acks lost
	for order, state := range d.externalAwards(t) {
		if state == string(award.StateCompleted) {
			killedExternal = append(killedExternal, order)
		}
	}

	// Those messages are still unacked on the broker: they will be delivered again.
	ci, err := d.consumerInfo(t, "send_award")
	if err != nil {
		t.Fatal(err)
	}
	if ci.NumAckPending == 0 {
		t.Fatalf("no unacked send_award messages after the kill (%d records completed)", committed)
	}
	t.Logf("killed with %d awards committed and %d messages unacked", committed, ci.NumAckPending)

	_, base2 := d.start(t, common...)
	_ = base2
	testenv.Eventually(t, 120*time.Second, "every award distributed after the restart", func() bool {
		return d.awardStates(t)["completed"] == 200
	})
	// The killed batch's records were completed before the kill: its redelivery is over
	// only once the broker holds no send_award message pending or unacked.
	testenv.Eventually(t, 60*time.Second, "every send_award message acked", func() bool {
		return d.eventsSettled(t, "send_award")
	})
	var out string
	testenv.Eventually(t, 60*time.Second, "verify clean", func() bool {
		var clean bool
		out, clean = d.verify(t, nil, "-grace", "0s")
		return clean
	})
	t.Logf("verify: %s", strings.TrimSpace(out))

	external := d.externalAwards(t)
	if len(external) == 0 {
		t.Fatal("200 draws won no external award; the webhook went untested")
	}
	redelivered := 0
	for order := range external {
		bodies := d.hook.deliveries(order)
		if len(bodies) == 0 {
			t.Errorf("external award of order %s completed without reaching the webhook", order)
			continue
		}
		if len(bodies) > 1 {
			redelivered++
		}
		for i, b := range bodies[1:] {
			if b != bodies[0] {
				t.Errorf("order %s: delivery %d has another body than the first:\n%s\n%s", order, i+2, b, bodies[0])
			}
		}
	}
	if _, _, bad := d.hook.counts(); bad != 0 {
		t.Errorf("the receiver got %d deliveries with a bad signature or an Idempotency-Key unlike the order id", bad)
	}
	for _, order := range killedExternal {
		if n := len(d.hook.deliveries(order)); n < 2 {
			t.Errorf("external award of order %s, completed by the killed process, was delivered %d times; its message was redelivered", order, n)
		}
	}
	t.Logf("%d external awards, each delivered at least once; %d delivered again with the same key and body (%d in the killed batch)",
		len(external), redelivered, len(killedExternal))
}

// TestWebhookReceiverDown draws external awards (strategy 10007: mostly usage counts)
// while the webhook receiver answers 503: the awards wait in create and are retried by
// the broker; once the receiver answers, each completes, delivered with a valid
// signature.
func TestWebhookReceiverDown(t *testing.T) {
	hook := startReceiver(t)
	hook.setDown(true)
	cfg, base, _ := startEmbedded(t, func(c *app.Config) {
		c.WebhookURL, c.WebhookSecret = hook.url, e2eWebhookSecret
		c.EventBackoff = "100ms,200ms,400ms"
		c.EventMaxDeliver = 1000
	})
	users := openUserStore(t, func(i int) (*sqlstore.DB, error) {
		return sqlstore.OpenSQLite(fmt.Sprintf("%s/big_market_%02d.db", cfg.DataDir, i+1))
	})
	s := stack{bases: []string{base}, adminToken: cfg.AdminToken, users: users}
	if r := call(t, "GET", base+"/api/v1/raffle/activity/armory?activityId=100401", nil); r.Code != "0000" {
		t.Fatalf("armory: %+v", r)
	}
	const user = "hookuser"
	if r := call(t, "POST", s.bases[0]+"/api/v1/admin/activity/recharge", map[string]any{"userId": user, "sku": 9903, "outBusinessNo": "hook-1"}, bearer(s.adminToken)); r.Code != "0000" {
		t.Fatalf("recharge: %+v", r)
	}
	for range 10 {
		if r := call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{user, 100401}); r.Code != "0000" {
			t.Fatalf("draw: %+v", r)
		}
	}
	awaitDrawRecords(t, users, user, 100401, 10)
	ctx := context.Background()
	external := func() (waiting, done int) {
		recs, err := users.AwardRecords(ctx, user, 100401)
		if err != nil || len(recs) != 10 {
			t.Fatalf("award records: %d, %v", len(recs), err)
		}
		for _, r := range recs {
			if r.AwardID == 101 { // credit, not the webhook's
				continue
			}
			if r.State == "completed" {
				done++
			} else {
				waiting++
			}
		}
		return waiting, done
	}
	waiting, _ := external()
	if waiting == 0 { // award 101 has rate 0.1 in strategy 10007: p ≈ 1e-10
		t.Fatal("every draw was a credit award; nothing reached the webhook")
	}
	testenv.Eventually(t, 30*time.Second, "every external award refused at least twice", func() bool {
		hook.mu.Lock()
		defer hook.mu.Unlock()
		n := 0
		for _, c := range hook.refused {
			if c >= 2 {
				n++
			}
		}
		return n == waiting
	})
	if w, done := external(); w != waiting || done != 0 {
		t.Fatalf("while the receiver is down: %d waiting, %d completed; want %d waiting", w, done, waiting)
	}
	hook.setDown(false)
	testenv.Eventually(t, 30*time.Second, "every external award completed once the receiver answers", func() bool {
		w, _ := external()
		return w == 0
	})
	if refused, accepted, bad := hook.counts(); accepted != waiting || bad != 0 || refused != waiting {
		t.Errorf("receiver saw %d orders accepted, %d refused, %d malformed; want %d, %d, 0", accepted, refused, bad, waiting, waiting)
	}
}
