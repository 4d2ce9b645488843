package main

import (
	"cmp"
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/nats"
)

// withJetStream connects to the deployment's NATS for f, with the deployment's event
// options and a bounded context, and closes the connection after it.
func (d *deployment) withJetStream(t *testing.T, f func(ctx context.Context, js jetstream.JetStream, opts nats.EventOptions)) {
	t.Helper()
	nc, err := natsgo.Connect(cmp.Or(d.natsURL, testenv.NATSURL(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f(ctx, js, nats.EventOptions{Prefix: d.prefix})
}

// consumerInfo reads the state of topic's durable consumer.
func (d *deployment) consumerInfo(t *testing.T, topic string) (info *jetstream.ConsumerInfo, err error) {
	t.Helper()
	d.withJetStream(t, func(ctx context.Context, js jetstream.JetStream, opts nats.EventOptions) {
		var cons jetstream.Consumer
		if cons, err = js.Consumer(ctx, opts.Stream(), opts.Durable(topic)); err == nil {
			info, err = cons.Info(ctx)
		}
	})
	return info, err
}

// eventsSettled reports whether topic's durable consumer holds no message, pending or
// unacked.
func (d *deployment) eventsSettled(t *testing.T, topic string) bool {
	t.Helper()
	info, err := d.consumerInfo(t, topic)
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}

// withDeadLetters opens the deployment's dead-letter stream for f, naming its send_award
// subject.
func (d *deployment) withDeadLetters(t *testing.T, f func(ctx context.Context, s jetstream.Stream, subject string)) {
	t.Helper()
	d.withJetStream(t, func(ctx context.Context, js jetstream.JetStream, opts nats.EventOptions) {
		s, err := js.Stream(ctx, opts.DLQStream())
		if err != nil {
			t.Fatalf("stream %s: %v", opts.DLQStream(), err)
		}
		f(ctx, s, opts.DLQSubject(award.TopicSendAward))
	})
}

// deadLetters counts the send_award messages in the deployment's dead-letter stream.
func (d *deployment) deadLetters(t *testing.T) (n uint64) {
	t.Helper()
	d.withDeadLetters(t, func(ctx context.Context, s jetstream.Stream, subject string) {
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			t.Fatalf("dead-letter stream info: %v", err)
		}
		n = info.State.Subjects[subject]
	})
	return n
}

// lastDeadLetterReason returns the reason header of the last dead-lettered send_award.
func (d *deployment) lastDeadLetterReason(t *testing.T) (reason string) {
	t.Helper()
	d.withDeadLetters(t, func(ctx context.Context, s jetstream.Stream, subject string) {
		m, err := s.GetLastMsgForSubject(ctx, subject)
		if err != nil {
			t.Fatalf("last dead letter: %v", err)
		}
		reason = m.Header.Get(nats.HeaderReason)
	})
	return reason
}

// TestExternalAwardsWithoutWebhook runs serve on MariaDB, Redis and NATS without a webhook
// URL. In demo mode the built-in demo receiver takes every external award: each is logged
// at INFO and its record completed, nothing is dead-lettered and nothing is logged at
// ERROR. In production mode the same awards are refused: dead-lettered with the reason,
// their records left in create.
func TestExternalAwardsWithoutWebhook(t *testing.T) {
	d := newDeployment(t, "")
	const noWebhook = "BIGMARKET_WEBHOOK_URL="

	demo, base := d.start(t, noWebhook)
	d.armory(t, base)
	drawAll(t, base, d.provision(t, base, 4), 40)
	d.drainDraws(t)
	external := d.externalAwards(t)
	if len(external) == 0 {
		t.Fatal("40 draws won no external award; the demo receiver went untested")
	}
	testenv.Eventually(t, 60*time.Second, "every award record completed", func() bool {
		return d.awardStates(t)["completed"] == 40
	})
	if n := d.deadLetters(t); n != 0 {
		t.Errorf("demo mode dead-lettered %d awards, want 0", n)
	}
	log := demo.log.String()
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("demo mode logged an error: %s", line)
		}
	}
	for order := range external {
		found := false
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "level=INFO") && strings.Contains(line, "demo receiver") && strings.Contains(line, order) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no INFO line of the demo receiver names order %s", order)
		}
	}
	if n := d.hook.total(); n != 0 {
		t.Errorf("the webhook receiver got %d deliveries with no webhook configured", n)
	}
	if err := demo.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-demo.exited

	_, prod := d.start(t, noWebhook, "BIGMARKET_MODE=production", "BIGMARKET_JWT_SECRET="+e2eJWTSecret,
		"BIGMARKET_PLAIN_USER_ENDPOINTS=on")
	if r := call(t, "GET", prod+"/api/v1/raffle/activity/armory?activityId=100301", nil, bearer(d.adminToken)); r.Code != "0000" {
		t.Fatalf("activity armory in production: %+v", r)
	}
	drawAll(t, prod, d.provision(t, prod, 4), 40)
	d.drainDraws(t)
	waiting := 0
	for _, state := range d.externalAwards(t) {
		if state != string(award.StateCompleted) {
			waiting++
		}
	}
	if waiting == 0 {
		t.Fatal("40 draws in production won no external award")
	}
	testenv.Eventually(t, 60*time.Second, "every external award of production dead-lettered, every credit award completed", func() bool {
		return d.deadLetters(t) == uint64(waiting) && d.awardStates(t)["completed"] == 80-waiting
	})
	if st := d.awardStates(t); st["create"] != waiting {
		t.Errorf("award records in production: %v; want the %d external ones in create", st, waiting)
	}
	if reason := d.lastDeadLetterReason(t); !strings.Contains(reason, award.ErrNoDistributor.Error()) {
		t.Errorf("dead letter reason %q, want it to say %q", reason, award.ErrNoDistributor)
	}
}
