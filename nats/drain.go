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
func (c EventDrain) WaitApplied(ctx context.Context) error {
	stream, err := c.js.Stream(ctx, c.opts.Stream())
	if err != nil {
		return fmt.Errorf("wait for %s events: %w", c.topic, err)
	}
	last, err := stream.GetLastMsgForSubject(ctx, c.opts.Subject(c.topic))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // nothing ever published
	}
	if err != nil {
		return fmt.Errorf("wait for %s events: last message: %w", c.topic, err)
	}
	cons, err := stream.Consumer(ctx, c.opts.Durable(c.topic))
	if err != nil {
		return fmt.Errorf("wait for %s events: %w", c.topic, err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("wait for %s events: %w", c.topic, err)
		}
		if info.AckFloor.Stream >= last.Sequence {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s events up to %d (applied up to %d): %w", c.topic, last.Sequence, info.AckFloor.Stream, ctx.Err())
		case <-tick.C:
		}
	}
}
