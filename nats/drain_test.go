package nats

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/internal/testenv"
)

// TestEventDrainWaitsThroughABrokerRestart starts a wait for a topic's events while its
// consumer still holds them, then stops the broker and starts it again: the wait rides
// out the outage (its calls to the broker fail meanwhile) and returns once the consumer,
// back on the restarted broker, has applied every event. A rebuild waiting for the
// consumer must not fail on a leader election or a restart, or its answers stay "retry"
// until the next request starts it again. A missing consumer is an answer at once.
func TestEventDrainWaitsThroughABrokerRestart(t *testing.T) {
	t.Parallel()
	s := testenv.StartNATSServer(t)
	js := connectChild(t, s)
	opts := testEventOptions(testenv.Unique("drain"))
	opts.AckWait = 2 * time.Second
	opts.MaxDeliver = 1000 // the held events are retried, never dead-lettered
	opts.Backoff = []time.Duration{100 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := EnsureEventStreams(ctx, js, opts); err != nil {
		t.Fatalf("EnsureEventStreams: %v", err)
	}
	const topic = "drain_test"
	drain := NewEventDrain(js, opts, topic)
	if err := drain.WaitApplied(ctx); err != nil {
		t.Fatalf("nothing published: %v", err)
	}
	p := NewPublisher(js, opts)
	for i := range 3 {
		publish(t, p, topic, fmt.Sprintf("m%d", i), `{"n":1}`)
	}
	if err := drain.WaitApplied(ctx); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("no consumer yet: %v, want ErrConsumerNotFound at once", err)
	}

	var hold atomic.Bool
	hold.Store(true)
	r := &recorder{Fn: func(Event) error {
		if hold.Load() {
			return errors.New("store not ready") // redelivered after the backoff
		}
		return nil
	}}
	background(t, NewConsumer(js, opts, topic, r.handle, nil).Run)
	testenv.Eventually(t, 30*time.Second, "the consumer has seen the events", func() (bool, string) {
		return len(r.calls("m2")) > 0, fmt.Sprint(len(r.calls("m0")), len(r.calls("m2")))
	})

	done := make(chan error, 1)
	go func() {
		wctx, wcancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer wcancel()
		done <- drain.WaitApplied(wctx)
	}()
	time.Sleep(200 * time.Millisecond)
	s.Stop()
	time.Sleep(time.Second) // the wait's calls fail while the broker is down
	select {
	case err := <-done:
		t.Fatalf("the wait returned while the broker was down: %v", err)
	default:
	}
	s.Start()
	hold.Store(false)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WaitApplied after the restart: %v", err)
		}
	case <-time.After(100 * time.Second):
		t.Fatal("WaitApplied did not return")
	}
	for i := range 3 {
		if len(r.calls(fmt.Sprintf("m%d", i))) == 0 {
			t.Errorf("m%d never handled", i)
		}
	}
}

// electionJS is a JetStream whose stream lookups fail as during a JetStream leader
// election: the first fail fast with no responders, the next hangs until its context
// ends (a request the old leader took with it), then they pass.
type electionJS struct {
	jetstream.JetStream
	calls atomic.Int32
	fail  int32
}

func (e *electionJS) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	switch n := e.calls.Add(1); {
	case n <= e.fail:
		return nil, natsgo.ErrNoResponders
	case n == e.fail+1:
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return e.JetStream.Stream(ctx, name)
}

// TestEventDrainWaitsThroughAnElection waits for applied events while the broker's
// stream API fails and hangs as in a leader election: the wait goes on through both and
// returns nil once the events are applied, within its own deadline.
func TestEventDrainWaitsThroughAnElection(t *testing.T) {
	t.Parallel()
	s := testenv.StartNATSServer(t)
	js := connectChild(t, s)
	opts := testEventOptions(testenv.Unique("elect"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := EnsureEventStreams(ctx, js, opts); err != nil {
		t.Fatalf("EnsureEventStreams: %v", err)
	}
	const topic = "elect_test"
	publish(t, NewPublisher(js, opts), topic, "m0", `{"n":1}`)
	r := &recorder{}
	background(t, NewConsumer(js, opts, topic, r.handle, nil).Run)
	flaky := &electionJS{JetStream: js, fail: 3}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := NewEventDrain(flaky, opts, topic).WaitApplied(wctx); err != nil {
		t.Fatalf("WaitApplied through an election: %v", err)
	}
	if n := flaky.calls.Load(); n < 5 {
		t.Fatalf("%d stream lookups, want the 3 failures, the hung one and a good one", n)
	}
	if len(r.calls("m0")) == 0 {
		t.Fatal("returned before m0 was handled")
	}
	// A wait whose deadline passes in the election says why it gave up.
	flaky = &electionJS{JetStream: js, fail: 1 << 30}
	sctx, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer scancel()
	if err := NewEventDrain(flaky, opts, topic).WaitApplied(sctx); !errors.Is(err, natsgo.ErrNoResponders) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait ending in the election: %v, want no responders and the deadline", err)
	}
}
