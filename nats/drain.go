package nats

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// EventDrain waits for the events of one topic to be applied by the topic's durable
// consumer (the one a Consumer of the same options and topic runs). It needs no Consumer
// value, only the stream and the durable's name, so a service that waits for its own
// events (a red packet rebuild) can be built before the consumer that applies them.
type EventDrain struct {
	js    jetstream.JetStream
	opts  EventOptions
	topic string
}

// NewEventDrain returns the EventDrain of topic's events under opts.
func NewEventDrain(js jetstream.JetStream, opts EventOptions, topic string) EventDrain {
	return EventDrain{js: js, opts: opts.withDefaults(), topic: topic}
}

// WaitApplied returns once every event of the topic published before the call has been
// handled (acked, or dead-lettered): the durable consumer's ack floor has reached the
// topic's last message. Recovery calls it so that state rebuilt from the database
// includes every event already in flight.
//
// A failed call to the broker is tried again until ctx ends (at most drainRetryFor when
// ctx has no deadline): a NATS server killed or restarted costs a JetStream leader
// election of a few seconds, during which the stream and consumer APIs answer errors, and
// a rebuild waiting here should wait through it rather than fail and be started again.
// A stream or consumer that does not exist is an answer, not a fault, and is returned at
// once.
func (c EventDrain) WaitApplied(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, drainRetryFor)
		defer cancel()
	}
	var last uint64
	var lastErr error
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var done bool
		done, last, lastErr = c.applied(ctx, last)
		if done || lastErr != nil && drainGone(lastErr) {
			return lastErr
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("%w (%w)", lastErr, ctx.Err())
			}
			return fmt.Errorf("wait for %s events up to %d: %w", c.topic, last, ctx.Err())
		case <-tick.C:
		}
	}
}

// drainRetryFor bounds WaitApplied when its context has no deadline; drainCallTimeout
// bounds one check (its three or four requests to the broker).
const (
	drainRetryFor    = time.Minute
	drainCallTimeout = 3 * time.Second
)

// applied makes one check: it reads the topic's last sequence number unless last already
// holds it (it is read once, so that events published while the wait goes on are not
// waited for), then whether the durable consumer's ack floor has reached it.
func (c EventDrain) applied(ctx context.Context, last uint64) (done bool, seq uint64, err error) {
	// One check's calls get a bounded share of the wait: a request lost in an election
	// must not use up the whole of it.
	ctx, cancel := context.WithTimeout(ctx, drainCallTimeout)
	defer cancel()
	stream, err := c.js.Stream(ctx, c.opts.Stream())
	if err != nil {
		return false, last, fmt.Errorf("wait for %s events: %w", c.topic, err)
	}
	if last == 0 {
		msg, err := stream.GetLastMsgForSubject(ctx, c.opts.Subject(c.topic))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return true, 0, nil // nothing ever published
		}
		if err != nil {
			return false, 0, fmt.Errorf("wait for %s events: last message: %w", c.topic, err)
		}
		last = msg.Sequence
	}
	cons, err := stream.Consumer(ctx, c.opts.Durable(c.topic))
	if err != nil {
		return false, last, fmt.Errorf("wait for %s events: %w", c.topic, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return false, last, fmt.Errorf("wait for %s events: %w", c.topic, err)
	}
	if info.AckFloor.Stream >= last {
		return true, last, nil
	}
	return false, last, fmt.Errorf("wait for %s events up to %d: applied up to %d", c.topic, last, info.AckFloor.Stream)
}

// drainGone reports an error a retry cannot change: the stream or the consumer does not
// exist.
func drainGone(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound)
}
