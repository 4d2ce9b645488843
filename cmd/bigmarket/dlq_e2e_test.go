package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/internal/testenv"
)

// runDLQ runs "bigmarket dlq" with the deployment's config, against base, and returns
// its output.
func runDLQ(t *testing.T, d *deployment, base string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(d.bin, append(append([]string{"dlq"}, args...), "-url", base)...)
	cmd.Env = append(os.Environ(), d.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// listDLQ runs "bigmarket dlq list -json" and returns the dead letters by message id.
func listDLQ(t *testing.T, d *deployment, base string) map[string]deadLetter {
	t.Helper()
	out, err := runDLQ(t, d, base, "list", "-json", "-since", "1h")
	if err != nil {
		t.Fatalf("dlq list: %v\n%s", err, out)
	}
	var dls []deadLetter
	if err := json.Unmarshal([]byte(out), &dls); err != nil {
		t.Fatalf("dlq list -json: %v\n%s", err, out)
	}
	byID := map[string]deadLetter{}
	for _, dl := range dls {
		byID[dl.MsgID] = dl
	}
	return byID
}

// TestDeadLetteredAwardReplayed draws external awards while the webhook receiver answers
// 503 and event_max_deliver is 2, so that each is dead-lettered within a second: "bigmarket
// dlq list" shows each under its order id with the reason and the record stays in create.
// One is replayed while the receiver is still down and comes back with both reasons
// under a new sequence (the replay is well inside the broker's 2 minute duplicate
// window). Once the receiver answers, "dlq replay -all" completes every award, each with
// exactly one accepted delivery under its Idempotency-Key; the dead-letter stream is
// empty, and replaying a sequence again is refused and delivers nothing.
func TestDeadLetteredAwardReplayed(t *testing.T) {
	d := newDeployment(t, "")
	d.hook.setDown(true)
	_, base := d.start(t, "BIGMARKET_EVENT_MAX_DELIVER=2", "BIGMARKET_EVENT_BACKOFF=100ms")
	if r := call(t, "GET", base+"/api/v1/raffle/activity/armory?activityId=100401", nil); r.Code != "0000" {
		t.Fatalf("armory: %+v", r)
	}
	const user = "dlquser"
	if code := d.recharge(t, base, user, 9903, "dlq-1").Code; code != "0000" {
		t.Fatalf("recharge: %s", code)
	}
	for range 4 {
		if r := call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{user, 100401}); r.Code != "0000" {
			t.Fatalf("draw: %+v", r)
		}
	}
	awaitDrawRecords(t, d.users, user, 100401, 4)
	ctx := context.Background()
	records := func() map[string]award.State { // the external awards' states by order id
		recs, err := d.users.AwardRecords(ctx, user, 100401)
		if err != nil || len(recs) != 4 {
			t.Fatalf("award records: %d, %v", len(recs), err)
		}
		out := map[string]award.State{}
		for _, r := range recs {
			if r.AwardID != 101 { // credit, not the webhook's
				out[r.OrderID] = r.State
			}
		}
		return out
	}
	external := records()
	if len(external) == 0 { // award 101 has rate 0.1 in strategy 10007
		t.Fatal("every draw was a credit award; nothing reached the webhook")
	}
	orders := slices.Sorted(func(yield func(string) bool) {
		for o := range external {
			if !yield(o) {
				return
			}
		}
	})

	var dead map[string]deadLetter
	testenv.Eventually(t, 60*time.Second, "every external award dead-lettered", func() bool {
		dead = listDLQ(t, d, base)
		return len(dead) == len(orders)
	})
	for _, o := range orders {
		dl, ok := dead[o]
		if !ok || len(dl.Reasons) != 1 || !strings.Contains(dl.Reasons[0], "503") ||
			!strings.HasSuffix(dl.Subject, ".send_award") || dl.DeadAt == 0 {
			t.Errorf("dead letter of %s: %+v", o, dl)
		}
	}
	if out, err := runDLQ(t, d, base, "list"); err != nil || !strings.Contains(out, "SEQ") ||
		!strings.Contains(out, orders[0]) || !strings.Contains(out, strconv.Itoa(len(orders))+" dead letters") {
		t.Errorf("dlq list: %v\n%s", err, out)
	}
	for o, st := range records() {
		if st != award.StateCreate {
			t.Errorf("dead-lettered award %s is %s, want create", o, st)
		}
	}

	// Replayed while the receiver is still down: it fails again and comes back with both
	// reasons.
	first := dead[orders[0]]
	if out, err := runDLQ(t, d, base, "replay", strconv.FormatUint(first.Seq, 10)); err != nil || !strings.Contains(out, "1 replayed") {
		t.Fatalf("dlq replay %d: %v\n%s", first.Seq, err, out)
	}
	testenv.Eventually(t, 60*time.Second, "the replayed award dead-lettered again", func() bool {
		dl, ok := listDLQ(t, d, base)[orders[0]]
		return ok && dl.Seq != first.Seq
	})
	again := listDLQ(t, d, base)[orders[0]]
	if len(again.Reasons) != 2 || !strings.Contains(again.Reasons[0], "503") || !strings.Contains(again.Reasons[1], "503") {
		t.Errorf("dead letter of a failed replay: %+v, want two reasons", again)
	}
	if out, err := runDLQ(t, d, base, "replay", strconv.FormatUint(first.Seq, 10)); err == nil || !strings.Contains(out, "0002") {
		t.Errorf("replaying the replayed sequence %d again: %v\n%s; want 0002", first.Seq, err, out)
	}

	d.hook.setDown(false)
	out, err := runDLQ(t, d, base, "replay", "-all")
	if err != nil || !strings.Contains(out, strconv.Itoa(len(orders))+" replayed") {
		t.Fatalf("dlq replay -all: %v\n%s", err, out)
	}
	testenv.Eventually(t, 60*time.Second, "every external award completed after the replay", func() bool {
		for _, st := range records() {
			if st != award.StateCompleted {
				return false
			}
		}
		return true
	})
	if left := listDLQ(t, d, base); len(left) != 0 {
		t.Errorf("dead letters left after the replay: %+v", left)
	}
	if out, err := runDLQ(t, d, base, "replay", strconv.FormatUint(again.Seq, 10)); err == nil || !strings.Contains(out, "0002") {
		t.Errorf("second replay of %d: %v\n%s; want 0002", again.Seq, err, out)
	}
	if out, err := runDLQ(t, d, base, "replay", "-all"); err != nil || !strings.Contains(out, "0 replayed") {
		t.Errorf("second replay -all: %v\n%s; want nothing replayed", err, out)
	}
	// Let anything a double replay would deliver arrive: the consumer holds nothing.
	testenv.Eventually(t, 30*time.Second, "send_award consumer settled", func() bool {
		return d.eventsSettled(t, award.TopicSendAward)
	})
	d.hook.mu.Lock()
	defer d.hook.mu.Unlock()
	t.Logf("%d external awards dead-lettered; %s replayed into a failure (seq %d → %d), then all replayed and completed once",
		len(orders), orders[0], first.Seq, again.Seq)
	for _, o := range orders {
		if n := d.hook.accepted[o]; n != 1 {
			t.Errorf("order %s accepted %d times by the webhook, want exactly 1", o, n)
		}
		if d.hook.refused[o] < 2 {
			t.Errorf("order %s refused %d times before its dead letter, want event_max_deliver 2", o, d.hook.refused[o])
		}
	}
	if d.hook.bad != 0 {
		t.Errorf("%d malformed webhook deliveries", d.hook.bad)
	}
}
