package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/flash"
	"github.com/bigmarket/bigmarket/outbox"
)

// Names of the draw stream, which carries the flash draw's events to the draw writer: a
// stream of its own, so that its backlog (the writer's lag) is the stream's and does not
// share limits with the domain events. Its dead letters go to the event DLQ stream.
const (
	DrawStream  = "BIGMARKET_DRAWS"
	DrawSubject = "bigmarket.draws"
	DrawDurable = "draw_writer"
	// TopicDraw is the draw events' topic (subject token) in the draw stream.
	TopicDraw = "draw"
)

// DrawEventOptions returns opts naming the draw stream, its subject and the durable
// consumer draw_writer instead of the event stream's ("<p>_BIGMARKET_DRAWS",
// "<p>.bigmarket.draws.draw", "<p>_draw_writer"); prefix, backoff and DLQ are opts'.
// A draw is redelivered until it is written, however long the database is out: each was
// answered, and a dead-lettered one would be missing from SQL. Only a draw the database
// refuses for good (or that cannot be read) is dead-lettered, at once. Unless opts set
// one, the writer fetches DrawBatchSize draws at once.
func DrawEventOptions(opts EventOptions) EventOptions {
	opts.stream, opts.subject, opts.durable = DrawStream, DrawSubject, DrawDurable
	opts.MaxDeliver = math.MaxInt32
	if opts.BatchSize <= 0 {
		opts.BatchSize = DrawBatchSize
	}
	return opts
}

// DrawBatchSize is the draw writer's fetch: during a peak it writes this many draws in one
// transaction per user database (a fetch waits FetchWait to fill), which costs the
// database far less per draw than the event consumers' 64 (issue 14: peak shaving).
const DrawBatchSize = 512

// EnsureDrawStream creates or updates the draw stream for opts (DrawEventOptions of the
// event options): file storage, limits retention, the 2 minute duplicate window that
// drops a draw published again by its retry or the sweep (message id = order id).
func EnsureDrawStream(ctx context.Context, js jetstream.JetStream, opts EventOptions) error {
	if !prefixPattern.MatchString(opts.Prefix) {
		return fmt.Errorf("draw stream prefix %q: only letters, digits, '-' and '_'", opts.Prefix)
	}
	opts = opts.withDefaults()
	cfg := jetstream.StreamConfig{
		Name:        opts.Stream(),
		Description: "bigmarket flash draws, applied to SQL by the draw writer",
		Subjects:    []string{prefixed(opts.Prefix, ".", DrawSubject) + ".>"},
		MaxAge:      opts.MaxAge,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Duplicates:  duplicateWindow,
		Replicas:    opts.Replicas,
	}
	if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
	}
	return nil
}

// DrawEvents publishes flash draws; it is the raffle service's flash.Publisher.
type DrawEvents struct{ p *Publisher }

var _ flash.Publisher = DrawEvents{}

// NewDrawEvents returns DrawEvents publishing through p, a Publisher made with
// DrawEventOptions.
func NewDrawEvents(p *Publisher) DrawEvents { return DrawEvents{p: p} }

// PublishDraw publishes e with the order id as message id and returns once the stream
// has stored it: the draw is answered only when it cannot be lost. A repeat within the
// duplicate window is dropped by the broker, a later one by the writer.
func (d DrawEvents) PublishDraw(ctx context.Context, e flash.Event) error {
	body, err := json.Marshal(outbox.Message[flash.Event]{ID: e.OrderID, Timestamp: e.AwardTime.UnixMilli(), Data: e})
	if err != nil {
		return fmt.Errorf("encode draw %s: %w", e.OrderID, err)
	}
	return d.p.Publish(ctx, TopicDraw, e.OrderID, body)
}

// DrawWriter is what the draw writer's handler applies events with (sqlstore.UserStore).
type DrawWriter interface {
	ApplyDraws(ctx context.Context, events []flash.Event) []error
}

// DrawHandler returns the BatchHandler of the draw writer: a fetched batch is applied
// together, in one transaction per user database. Events the database rejects for good
// are dead-lettered at once.
func DrawHandler(w DrawWriter, rejected func(error) bool) BatchHandler {
	return func(ctx context.Context, events []Event) []error {
		errs := make([]error, len(events))
		var (
			draws []flash.Event
			at    []int
		)
		for i, e := range events {
			d, err := decode[flash.Event](e)
			if err != nil {
				errs[i] = err
				continue
			}
			draws = append(draws, d)
			at = append(at, i)
		}
		if len(draws) == 0 {
			return errs
		}
		for j, err := range w.ApplyDraws(ctx, draws) {
			errs[at[j]] = permanent(err, rejected)
		}
		return errs
	}
}

// Lag is how far a consumer is behind its stream: the events not yet applied and the age
// of the oldest of them.
type Lag struct {
	Events  int64
	Seconds float64
}

// Lag returns the consumer's backlog: messages not yet delivered plus those delivered
// and not yet acked, and how long ago the first message after the ack floor was stored.
func (c *Consumer) Lag(ctx context.Context) (Lag, error) {
	stream, err := c.js.Stream(ctx, c.opts.Stream())
	if err != nil {
		return Lag{}, fmt.Errorf("lag of %s: %w", c.topic, err)
	}
	cons, err := stream.Consumer(ctx, c.opts.Durable(c.topic))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return Lag{}, nil
	}
	if err != nil {
		return Lag{}, fmt.Errorf("lag of %s: %w", c.topic, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return Lag{}, fmt.Errorf("lag of %s: %w", c.topic, err)
	}
	lag := Lag{Events: int64(info.NumPending) + int64(info.NumAckPending)}
	if lag.Events == 0 {
		return lag, nil
	}
	msg, err := stream.GetMsg(ctx, info.AckFloor.Stream+1)
	if err != nil {
		// The message after the floor may be gone (another subject's, or aged out): the
		// age is unknown, the count still holds.
		return lag, nil
	}
	lag.Seconds = max(time.Since(msg.Time).Seconds(), 0)
	return lag, nil
}

// Pending returns the consumer's backlog as Lag counts it (messages not yet delivered plus
// those delivered and not yet acked) in one request to the broker, without the age: what
// the operator console reads every second. A consumer not created yet has none.
func (c *Consumer) Pending(ctx context.Context) (int64, error) {
	cons, err := c.js.Consumer(ctx, c.opts.Stream(), c.opts.Durable(c.topic))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("pending of %s: %w", c.topic, err)
	}
	info := cons.CachedInfo()
	return int64(info.NumPending) + int64(info.NumAckPending), nil
}
