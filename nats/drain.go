package nats

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// WaitApplied returns once every event of the consumer's topic published before the call
// has been handled (acked, or dead-lettered): the consumer's ack floor has reached the
// topic's last message. Recovery calls it so that state rebuilt from the database
// includes every event already in flight.
func (c *Consumer) WaitApplied(ctx context.Context) error {
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
