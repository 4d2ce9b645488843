package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/nats"
)

// drawWriterInfo reads the state of the deployment's draw writer consumer.
func (d *deployment) drawWriterInfo(t *testing.T) (info *jetstream.ConsumerInfo, err error) {
	t.Helper()
	d.withJetStream(t, func(ctx context.Context, js jetstream.JetStream, opts nats.EventOptions) {
		opts = nats.DrawEventOptions(opts)
		var cons jetstream.Consumer
		if cons, err = js.Consumer(ctx, opts.Stream(), opts.Durable(nats.TopicDraw)); err == nil {
			info, err = cons.Info(ctx)
		}
	})
	return info, err
}

// TestDrawWriterKilledBetweenCommitAndAcks SIGKILLs, in the middle of a draw run, a
// serve process whose draw writer has committed a batch of draws to SQL but not yet
// acked it (it pauses there), so the broker redelivers those draws to the other
// process's writer: no draw may be written twice. 20 users draw through both processes
// at once, a user's draws alternating between them and retrying an unanswered draw
// on the other, until 100 draws were answered after the kill. Once no draw is pending
// and the writer drained: every draw answered 0000 has its award record with its award,
// a draw not answered is recorded at most once, each record is on its own used order
// with one task, the units taken are the orders, the hot quota equals SQL, no award
// beyond its stock; and once the awards are distributed, verify is clean.
func TestDrawWriterKilledBetweenCommitAndAcks(t *testing.T) {
	d := newDeployment(t, "")
	common := []string{"BIGMARKET_EVENT_ACK_WAIT=3s", "BIGMARKET_OUTBOX_GRACE=1s", "BIGMARKET_OUTBOX_EVERY=1s",
		// Short leases and a frequent sweep settle the draws in flight on the killed process.
		"BIGMARKET_DRAW_TIMEOUT=2s", "BIGMARKET_DRAW_SWEEP_EVERY=1s"}
	p1, a := d.start(t, append(common, "BIGMARKET_FAULT_DELAY_AFTER_DRAW_WRITE=60s")...)
	_, b := d.start(t, common...)
	bases := []string{a, b}
	d.armory(t, bases...)
	users := d.provision(t, b, 20)

	var (
		mu                   sync.Mutex
		ledgers              = make([]drawLedger, len(users))
		codes                = map[string]int{}
		killed, stop         bool
		beforeKill, lost     int
		afterKill, committed int
	)
	// The writer of p1 commits a batch, then pauses before acking it: kill it there, while
	// the users draw on.
	var killer sync.WaitGroup
	killer.Go(func() {
		testenv.Eventually(t, 60*time.Second, "p1's draw writer paused between its commit and its acks", func() bool {
			return strings.Contains(p1.log.String(), "fault injection: pausing")
		})
		if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Errorf("kill: %v", err)
		}
		<-p1.exited
		n := 0
		for _, c := range d.awardStates(t) {
			n += c
		}
		mu.Lock()
		killed, committed = true, n
		mu.Unlock()
	})
	deadline := time.Now().Add(2 * time.Minute)
	// Every user draws at once: a user's loop runs until the run stops.
	fanOut(len(users), len(users), func(i int) {
		for n := 0; time.Now().Before(deadline); n++ {
			mu.Lock()
			if stop {
				mu.Unlock()
				return
			}
			base := bases[(i+n)%2]
			if killed {
				base = b // a client's load balancer drops the dead node
			}
			mu.Unlock()
			resp, raw, err := do("POST", base+"/api/v1/raffle/activity/draw", drawReq{users[i], faultActivity}, "Content-Type: application/json")
			var r envelope
			if err == nil {
				if jerr := json.Unmarshal(raw, &r); jerr != nil {
					t.Errorf("draw of %s: HTTP %d, not an envelope: %.300q", users[i], resp.StatusCode, raw)
				}
			}
			mu.Lock()
			if err != nil {
				lost++ // no answer: unknown outcome, as a 0009
				ledgers[i].unknown++
			} else {
				ledgers[i].note(t, r)
				codes[r.Code]++
			}
			switch {
			case err != nil, r.Code == "0009", r.Code == "0006":
			case r.Code == "0000" && killed:
				afterKill++
				stop = stop || afterKill >= 100
			case r.Code == "0000":
				beforeKill++
			case r.Code == "ERR_BIZ_006":
				mu.Unlock()
				return
			default:
				t.Errorf("draw of %s: %+v", users[i], r)
			}
			mu.Unlock()
			if err != nil || r.Code != "0000" {
				time.Sleep(100 * time.Millisecond) // a client's retry, as the answer asks
			}
		}
		t.Errorf("user %s: the run did not end within 2 minutes", users[i])
	})
	killer.Wait()
	t.Logf("draw answers %v; %d draws without an answer; %d answered 0000 before the kill, %d after; %d records committed at the kill",
		codes, lost, beforeKill, afterKill, committed)
	if committed == 0 || afterKill == 0 {
		t.Fatalf("%d records committed at the kill, %d draws answered after it: the test proves nothing", committed, afterKill)
	}

	testenv.Eventually(t, 2*time.Minute, "every pending draw settled", func() (bool, string) {
		n := 0
		for _, user := range users {
			n += len(d.pendingDraws(t, user))
		}
		return n == 0, fmt.Sprintf("%d pending draws", n)
	})
	d.drainDraws(t)
	total := 0
	for i, user := range users {
		n, taken := d.checkLedger(t, user, ledgers[i])
		if taken != int64(n) {
			t.Errorf("user %s: %d records, %d units taken", user, n, taken)
		}
		if got := totalSurplus(t, b, user); got != 50-taken {
			t.Errorf("user %s: surplus %d after %d units of 50 taken", user, got, taken)
		}
		total += n
	}
	d.endsClean(t, nil, total)
}
