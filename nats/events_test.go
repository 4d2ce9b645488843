package nats

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/internal/testenv"
)

// testEventOptions are fast timings for tests, under a prefix of their own.
func testEventOptions(prefix string) EventOptions {
	return EventOptions{
		Prefix:     prefix,
		AckWait:    2 * time.Second,
		MaxDeliver: 4,
		Backoff:    []time.Duration{10 * time.Millisecond, 20 * time.Millisecond},
		FetchWait:  100 * time.Millisecond,
	}
}

// eachEventBackend runs fn against the embedded server and against the real server named
// by BIGMARKET_TEST_NATS_URL, each under a unique prefix, with the event streams created.
// The streams are deleted when the test ends on the real server.
func eachEventBackend(t *testing.T, fn func(t *testing.T, js jetstream.JetStream, opts EventOptions)) {
	ensure := func(t *testing.T, js jetstream.JetStream, opts EventOptions) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := EnsureEventStreams(ctx, js, opts); err != nil {
			t.Fatalf("EnsureEventStreams: %v", err)
		}
	}
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		js := embeddedJS(t, startEmbedded(t, t.TempDir()))
		opts := testEventOptions(testenv.Unique("e"))
		ensure(t, js, opts)
		fn(t, js, opts)
	})
	t.Run("server", func(t *testing.T) {
		t.Parallel()
		js := serverJS(t)
		opts := testEventOptions(testenv.Unique("e"))
		deleteStreamsAtEnd(t, js, opts.Stream(), opts.DLQStream())
		ensure(t, js, opts)
		fn(t, js, opts)
	})
}

// recorder is a Handler that records the events it is called with. Fn, when set, decides
// each call's error; it must be safe for concurrent use.
type recorder struct {
	Fn func(e Event) error

	mu     sync.Mutex
	events []Event
}

func (r *recorder) handle(_ context.Context, e Event) error {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	if r.Fn != nil {
		return r.Fn(e)
	}
	return nil
}

// calls returns the deliveries of msgID the handler saw.
func (r *recorder) calls(msgID string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, e := range r.events {
		if e.MsgID == msgID {
			out = append(out, e)
		}
	}
	return out
}

// publish publishes one event or fails the test.
func publish(t *testing.T, p *Publisher, topic, msgID, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Publish(ctx, topic, msgID, []byte(body)); err != nil {
		t.Fatalf("Publish %s: %v", msgID, err)
	}
}

// settled is a condition for testenv.Eventually: the topic's consumer holds no message, pending
// or awaiting its ack, and has delivered every message of the stream.
func settled(t *testing.T, js jetstream.JetStream, opts EventOptions, topic string) func() (bool, string) {
	return func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cons, err := js.Consumer(ctx, opts.Stream(), opts.Durable(topic))
		if err != nil {
			return false, err.Error()
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0,
			fmt.Sprintf("pending %d, ack pending %d, redelivered %d", info.NumPending, info.NumAckPending, info.NumRedelivered)
	}
}

// wasHandled is a condition for testenv.Eventually: the handler was called with msgID.
func wasHandled(r *recorder, msgID string) func() (bool, string) {
	return func() (bool, string) {
		got := r.calls(msgID)
		return len(got) > 0, fmt.Sprintf("%d calls", len(got))
	}
}

// streamCount returns how many messages a stream holds.
func streamCount(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	return info.State.Msgs
}

// lastDLQ returns the last dead-lettered copy of topic's events.
func lastDLQ(t *testing.T, js jetstream.JetStream, opts EventOptions, topic string) *jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, opts.DLQStream())
	if err != nil {
		t.Fatalf("stream %s: %v", opts.DLQStream(), err)
	}
	m, err := s.GetLastMsgForSubject(ctx, opts.DLQSubject(topic))
	if err != nil {
		t.Fatalf("last dead letter of %s: %v", topic, err)
	}
	return m
}

func TestEventOptionsNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prefix, stream, dlq, subject, dlqSubject, durable string
	}{
		{"", "BIGMARKET_EVENTS", "BIGMARKET_EVENTS_DLQ", "bigmarket.event.send_award", "bigmarket.dlq.send_award", "bigmarket_send_award"},
		{"t1", "t1_BIGMARKET_EVENTS", "t1_BIGMARKET_EVENTS_DLQ", "t1.bigmarket.event.send_award", "t1.bigmarket.dlq.send_award", "t1_bigmarket_send_award"},
	}
	for _, tt := range tests {
		o := EventOptions{Prefix: tt.prefix}
		got := []string{o.Stream(), o.DLQStream(), o.Subject("send_award"), o.DLQSubject("send_award"), o.Durable("send_award")}
		want := []string{tt.stream, tt.dlq, tt.subject, tt.dlqSubject, tt.durable}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("prefix %q: got %v, want %v", tt.prefix, got, want)
		}
	}
	if err := EnsureEventStreams(context.Background(), nil, EventOptions{Prefix: "a.b"}); err == nil {
		t.Error("EnsureEventStreams accepted a prefix with a dot")
	}
	p := NewPublisher(nil, EventOptions{})
	for _, topic := range []string{"", "a.b", "a>", "a b"} {
		if err := p.Publish(context.Background(), topic, "id", nil); err == nil {
			t.Errorf("Publish accepted topic %q", topic)
		}
	}
	for _, id := range []string{"", "a\r\nb"} {
		if err := p.Publish(context.Background(), "t", id, nil); err == nil {
			t.Errorf("Publish accepted msg id %q", id)
		}
	}
	if err := NewConsumer(nil, EventOptions{}, "a.b", nil, nil).Run(context.Background()); err == nil {
		t.Error("Consumer.Run accepted topic a.b")
	}
	o := EventOptions{Backoff: []time.Duration{1, 2, 3}}
	for delivered, want := range []time.Duration{1, 1, 2, 3, 3} {
		if got := o.backoff(uint64(delivered)); got != want {
			t.Errorf("backoff(%d) = %v, want %v", delivered, got, want)
		}
	}
	if got := headerValue("a\r\nb" + strings.Repeat("é", maxReasonLen)); len(got) > maxReasonLen || !strings.HasPrefix(got, "a  bé") {
		t.Errorf("headerValue kept %d bytes: %.10q", len(got), got)
	}
}

// TestEventHandledOnceAndAcked publishes one event: the handler sees it once, with its id,
// body and first delivery, and the consumer acks it.
func TestEventHandledOnceAndAcked(t *testing.T) {
	t.Parallel()
	eachEventBackend(t, func(t *testing.T, js jetstream.JetStream, opts EventOptions) {
		const topic = "send_award"
		r := &recorder{}
		c := NewConsumer(js, opts, topic, r.handle, nil)
		background(t, c.Run)
		publish(t, NewPublisher(js, opts), topic, "order_1", `{"id":"order_1"}`)

		testenv.Eventually(t, 30*time.Second, "event handled", wasHandled(r, "order_1"))
		testenv.Eventually(t, 30*time.Second, "event acked", settled(t, js, opts, topic))
		got := r.calls("order_1")
		if len(got) != 1 || got[0].Topic != topic || string(got[0].Data) != `{"id":"order_1"}` || got[0].Delivered != 1 {
			t.Fatalf("handler calls = %+v, want one first delivery of the event", got)
		}
		if st := c.Stats(); st != (ConsumerStats{Handled: 1}) {
			t.Errorf("stats = %+v, want 1 handled", st)
		}
	})
}

// TestEventDuplicateMsgIDHandledOnce publishes the same message id twice within the
// duplicate window: the stream stores one message and the handler sees it once.
func TestEventDuplicateMsgIDHandledOnce(t *testing.T) {
	t.Parallel()
	eachEventBackend(t, func(t *testing.T, js jetstream.JetStream, opts EventOptions) {
		const topic = "send_award"
		r := &recorder{}
		background(t, NewConsumer(js, opts, topic, r.handle, nil).Run)
		p := NewPublisher(js, opts)
		publish(t, p, topic, "order_1", "first")
		publish(t, p, topic, "order_1", "retried publish")
		publish(t, p, topic, "order_2", "another")

		if n := streamCount(t, js, opts.Stream()); n != 2 {
			t.Fatalf("stream holds %d messages, want 2", n)
		}
		testenv.Eventually(t, 30*time.Second, "both events handled", wasHandled(r, "order_2"))
		testenv.Eventually(t, 30*time.Second, "both events acked", settled(t, js, opts, topic))
		if got := r.calls("order_1"); len(got) != 1 || string(got[0].Data) != "first" {
			t.Fatalf("order_1 handled %+v, want once with the first body", got)
		}
	})
}

// TestEventRedeliveredUntilHandled fails the handler twice: the event is redelivered
// after the backoff and handled on its third delivery, and nothing is dead-lettered.
func TestEventRedeliveredUntilHandled(t *testing.T) {
	t.Parallel()
	eachEventBackend(t, func(t *testing.T, js jetstream.JetStream, opts EventOptions) {
		const topic = "send_rebate"
		const failFirst = 2
		r := &recorder{Fn: func(e Event) error {
			if e.Delivered <= failFirst {
				return errors.New("database is locked")
			}
			return nil
		}}
		c := NewConsumer(js, opts, topic, r.handle, nil)
		background(t, c.Run)
		publish(t, NewPublisher(js, opts), topic, "rebate_1", "{}")

		testenv.Eventually(t, 30*time.Second, "event handled after failures", func() (bool, string) {
			st := c.Stats()
			return st.Handled == 1, fmt.Sprintf("%+v", st)
		})
		testenv.Eventually(t, 30*time.Second, "event acked", settled(t, js, opts, topic))
		got := r.calls("rebate_1")
		if len(got) != failFirst+1 || got[failFirst].Delivered != failFirst+1 {
			t.Fatalf("handler calls = %+v, want %d, the last one delivery %d", got, failFirst+1, failFirst+1)
		}
		if st := c.Stats(); st != (ConsumerStats{Handled: 1, Failed: failFirst}) {
			t.Errorf("stats = %+v", st)
		}
		if n := streamCount(t, js, opts.DLQStream()); n != 0 {
			t.Errorf("dead-letter stream holds %d messages, want 0", n)
		}
	})
}

// TestEventDeadLetteredAfterMaxDeliver fails the handler always: after MaxDeliver
// deliveries the event is copied to the dead-letter stream with the reason and not
// delivered again, while the topic's other events go on.
func TestEventDeadLetteredAfterMaxDeliver(t *testing.T) {
	t.Parallel()
	eachEventBackend(t, func(t *testing.T, js jetstream.JetStream, opts EventOptions) {
		const topic = "credit_adjust_success"
		r := &recorder{Fn: func(e Event) error {
			if e.MsgID == "bad" {
				return errors.New("credit account locked")
			}
			return nil
		}}
		c := NewConsumer(js, opts, topic, r.handle, nil)
		background(t, c.Run)
		p := NewPublisher(js, opts)
		publish(t, p, topic, "bad", "payload")
		publish(t, p, topic, "good", "{}")

		testenv.Eventually(t, 30*time.Second, "event dead-lettered", func() (bool, string) {
			st := c.Stats()
			return st.DeadLettered == 1, fmt.Sprintf("%+v", st)
		})
		testenv.Eventually(t, 30*time.Second, "consumer settled", settled(t, js, opts, topic))
		if got := r.calls("bad"); len(got) != opts.MaxDeliver {
			t.Fatalf("failing event delivered %d times, want MaxDeliver %d", len(got), opts.MaxDeliver)
		}
		if got := r.calls("good"); len(got) != 1 {
			t.Errorf("other event handled %d times, want 1", len(got))
		}
		m := lastDLQ(t, js, opts, topic)
		if string(m.Data) != "payload" || m.Header.Get(HeaderReason) != "credit account locked" ||
			m.Header.Get(HeaderMsgID) != "bad" || m.Header.Get(HeaderDelivered) != fmt.Sprint(opts.MaxDeliver) ||
			m.Header.Get(jetstream.MsgIDHeader) != "dlq_bad" {
			t.Errorf("dead letter = %q %v", m.Data, m.Header)
		}
		// Another event handled after the dead letter proves the consumer went on; the
		// terminated one must not have come back meanwhile.
		publish(t, p, topic, "later", "{}")
		testenv.Eventually(t, 30*time.Second, "later event handled", wasHandled(r, "later"))
		testenv.Eventually(t, 30*time.Second, "consumer settled again", settled(t, js, opts, topic))
		if got := r.calls("bad"); len(got) != opts.MaxDeliver {
			t.Errorf("dead-lettered event delivered again: %d deliveries", len(got))
		}
		if st := c.Stats(); st != (ConsumerStats{Handled: 2, Failed: int64(opts.MaxDeliver), DeadLettered: 1}) {
			t.Errorf("stats = %+v", st)
		}
	})
}

// TestEventPermanentErrorDeadLettersAtOnce returns ErrPermanent: the event is
// dead-lettered on its first delivery.
func TestEventPermanentErrorDeadLettersAtOnce(t *testing.T) {
	t.Parallel()
	eachEventBackend(t, func(t *testing.T, js jetstream.JetStream, opts EventOptions) {
		const topic = "send_award"
		r := &recorder{Fn: func(Event) error {
			return fmt.Errorf("decode award message: %w", ErrPermanent)
		}}
		c := NewConsumer(js, opts, topic, r.handle, nil)
		background(t, c.Run)
		publish(t, NewPublisher(js, opts), topic, "malformed", "{not json")

		testenv.Eventually(t, 30*time.Second, "event dead-lettered", func() (bool, string) {
			st := c.Stats()
			return st.DeadLettered == 1, fmt.Sprintf("%+v", st)
		})
		testenv.Eventually(t, 30*time.Second, "consumer settled", settled(t, js, opts, topic))
		if got := r.calls("malformed"); len(got) != 1 {
			t.Fatalf("event delivered %d times, want 1", len(got))
		}
		m := lastDLQ(t, js, opts, topic)
		if reason := m.Header.Get(HeaderReason); !strings.Contains(reason, "decode award message") || m.Header.Get(HeaderDelivered) != "1" {
			t.Errorf("dead letter headers %v", m.Header)
		}
	})
}

// TestEventConsumerNeedsStream runs a consumer before the streams exist: Run fails at
// once instead of retrying a setup mistake forever.
func TestEventConsumerNeedsStream(t *testing.T) {
	t.Parallel()
	js := embeddedJS(t, startEmbedded(t, t.TempDir()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := NewConsumer(js, testEventOptions("e"), "send_award", func(context.Context, Event) error { return nil }, nil).Run(ctx)
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("Run without a stream: %v, want ErrStreamNotFound", err)
	}
}

// TestEventSlowHandlerKeepsItsMessages runs two nodes' consumers of one topic with an ack
// wait of a second and a handler that takes three on its first call: the consumer marks
// the messages it works on in progress, so the server hands none of them to the other
// node meanwhile, and each event is handled once, on its first delivery. Both kinds of
// consumer: one handler call per event, and one per fetched batch.
func TestEventSlowHandlerKeepsItsMessages(t *testing.T) {
	t.Parallel()
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%t", batch), func(t *testing.T) {
			t.Parallel()
			eachEventBackend(t, func(t *testing.T, js jetstream.JetStream, opts EventOptions) {
				const topic = "send_award"
				opts.AckWait = time.Second
				var once sync.Once
				r := &recorder{Fn: func(Event) error {
					once.Do(func() { time.Sleep(3 * opts.AckWait) })
					return nil
				}}
				var consumers []*Consumer
				for range 2 {
					c := NewConsumer(js, opts, topic, r.handle, nil)
					if batch {
						c = NewBatchConsumer(js, opts, topic, func(ctx context.Context, events []Event) []error {
							errs := make([]error, len(events))
							for i, e := range events {
								errs[i] = r.handle(ctx, e)
							}
							return errs
						}, nil)
					}
					consumers = append(consumers, c)
					background(t, c.Run)
				}
				p := NewPublisher(js, opts)
				for i := range 3 {
					publish(t, p, topic, fmt.Sprintf("order_%d", i), "{}")
				}
				testenv.Eventually(t, 30*time.Second, "every event handled", wasHandled(r, "order_2"))
				testenv.Eventually(t, 30*time.Second, "every event acked", settled(t, js, opts, topic))
				for i := range 3 {
					id := fmt.Sprintf("order_%d", i)
					if got := r.calls(id); len(got) != 1 || got[0].Delivered != 1 {
						t.Errorf("%s handled %+v, want once, on its first delivery", id, got)
					}
				}
				var handled int64
				for _, c := range consumers {
					handled += c.Stats().Handled
				}
				if handled != 3 {
					t.Errorf("the consumers handled %d events, want 3", handled)
				}
			})
		})
	}
}
