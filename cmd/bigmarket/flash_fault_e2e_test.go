package main

import (
	"context"
	"os"
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

// TestDrawWriterKilledBetweenCommitAndAcks SIGKILLs a flash serve process whose draw
// writer has committed a batch of draws to SQL but not yet acked it (it pauses there), so
// the broker redelivers those draws to the next process's writer: no draw may be written
// twice. Every draw answered 0000 has exactly one award record with its award, one used
// order, one task and one unit of quota; the hot quota equals SQL; and once the awards
// are distributed, verify is clean.
func TestDrawWriterKilledBetweenCommitAndAcks(t *testing.T) {
	if os.Getenv("BIGMARKET_DRAW_PATH") == "sql" {
		t.Skip("the draw writer is the flash path's")
	}
	path := drawPath{flash: true}
	d := newDeployment(t, "")
	common := []string{path.env(), "BIGMARKET_EVENT_ACK_WAIT=3s", "BIGMARKET_OUTBOX_GRACE=1s", "BIGMARKET_OUTBOX_EVERY=1s"}
	p1, base := d.start(t, append(common, "BIGMARKET_FAULT_DELAY_AFTER_DRAW_WRITE=60s")...)
	d.armory(t, base)
	users := d.provision(t, base, 10)
	var mu sync.Mutex
	ledgers := make([]drawLedger, len(users))
	fanOut(100, 16, func(i int) {
		r := call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{users[i%len(users)], faultActivity})
		if r.Code != "0000" {
			t.Errorf("draw %d: %+v", i, r)
		}
		mu.Lock()
		ledgers[i%len(users)].note(t, r)
		mu.Unlock()
	})
	if t.Failed() {
		t.FailNow()
	}

	// The writer commits its first batch, then pauses before acking it.
	records := func() int {
		n := 0
		for _, c := range d.awardStates(t) {
			n += c
		}
		return n
	}
	testenv.Eventually(t, 30*time.Second, "a batch of draws committed to SQL", func() bool { return records() > 0 })
	if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p1.exited
	committed := records()
	ci, err := d.drawWriterInfo(t)
	if err != nil {
		t.Fatal(err)
	}
	if ci.NumAckPending == 0 {
		t.Fatalf("no unacked draw after the kill (%d records committed): the test proves nothing", committed)
	}
	t.Logf("killed with %d draws committed and %d unacked", committed, ci.NumAckPending)

	_, base2 := d.start(t, common...)
	testenv.Eventually(t, 60*time.Second, "every draw event acked after the restart", func() bool {
		ci, err := d.drawWriterInfo(t)
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0
	})
	for i, user := range users {
		if n, taken := d.checkLedger(t, path, user, ledgers[i]); n != len(ledgers[i].answered) || taken != int64(n) {
			t.Errorf("user %s: %d records, %d units taken, %d draws answered 0000", user, n, taken, len(ledgers[i].answered))
		}
		if got := totalSurplus(t, base2, user); got != 50-int64(len(ledgers[i].answered)) {
			t.Errorf("user %s: surplus %d after %d draws of 50", user, got, len(ledgers[i].answered))
		}
	}
	d.checkStock(t)
	testenv.Eventually(t, 120*time.Second, "every award distributed", func() bool {
		return d.awardStates(t)["completed"] == 100
	})
	var out string
	testenv.Eventually(t, 60*time.Second, "verify clean", func() bool {
		var clean bool
		out, clean = d.verify(t, nil, "-grace", "0s")
		return clean
	})
	t.Logf("verify: %s", strings.TrimSpace(out))
}
