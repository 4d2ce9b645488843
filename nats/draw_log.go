package nats

import (
	"context"
	"errors"
	"fmt"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/flash"
	"github.com/bigmarket/bigmarket/outbox"
)

// StoredDraw is a draw event as the draws stream holds it: its stream sequence, when the
// broker stored it, and the event (Err when its body does not decode).
type StoredDraw struct {
	Seq    uint64
	Stored time.Time
	Event  flash.Event
	Err    error
}

// DrawLog reads the draws stream and the draw writer's progress through it, for verify
// and the benches: which draws were published and which of them the writer has applied.
type DrawLog struct {
	js   jetstream.JetStream
	opts EventOptions
}

// NewDrawLog returns the DrawLog of the draws stream under the event options opts (the
// ones the server uses; DrawEventOptions is applied here).
func NewDrawLog(js jetstream.JetStream, opts EventOptions) DrawLog {
	return DrawLog{js: js, opts: DrawEventOptions(opts).withDefaults()}
}

// ErrNoDrawStream means the draws stream does not exist: no flash draw ever ran here.
var ErrNoDrawStream = errors.New("no draw stream")

// Progress returns the stream's last sequence and the sequence up to which the draw
// writer has handled every draw (its durable consumer's ack floor; 0 when it has none).
// The writer has no backlog when applied >= last.
func (l DrawLog) Progress(ctx context.Context) (last, applied uint64, err error) {
	stream, err := l.js.Stream(ctx, l.opts.Stream())
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, 0, ErrNoDrawStream
	}
	if err != nil {
		return 0, 0, fmt.Errorf("draw stream: %w", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("draw stream: %w", err)
	}
	last = info.State.LastSeq
	cons, err := stream.Consumer(ctx, l.opts.Durable(TopicDraw))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return last, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("draw writer: %w", err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("draw writer: %w", err)
	}
	return last, ci.AckFloor.Stream, nil
}

// walkBatch is how many draws one fetch of a walk reads.
const walkBatch = 512

// Walk calls fn on each draw stored at or after since with a sequence of at most upto,
// in stream order, until fn returns an error (which Walk returns). It reads through an
// ephemeral pull consumer without acks starting at since (one consumer for the whole
// walk, deleted after it, and removed by the server once idle should the delete fail).
//
// Not an ordered consumer: that one is deleted and made again on every fetch, and on a
// NATS cluster a pull sent right after a consumer is made can reach a server that does
// not yet know of it, which answers "no responders" (seen on deploy/cluster for a minute
// on end). A pull answered so is sent again, to the same consumer, for up to
// noResponderWait.
func (l DrawLog) Walk(ctx context.Context, since time.Time, upto uint64, fn func(StoredDraw) error) error {
	if upto == 0 {
		return nil
	}
	stream, err := l.js.Stream(ctx, l.opts.Stream())
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return ErrNoDrawStream
	}
	if err != nil {
		return fmt.Errorf("draw stream: %w", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("draw stream: %w", err)
	}
	if info.State.Msgs == 0 || info.State.LastTime.Before(since) || info.State.FirstSeq > upto {
		return nil
	}
	cons, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     l.opts.Subject(TopicDraw),
		DeliverPolicy:     jetstream.DeliverByStartTimePolicy,
		OptStartTime:      &since,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: 10 * time.Second,
		Replicas:          1,
		MemoryStorage:     true,
	})
	if err != nil {
		return fmt.Errorf("draw stream: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = stream.DeleteConsumer(dctx, cons.CachedInfo().Name) // else the server removes it once idle
	}()
	var noResponders time.Time // since when pulls have been answered "no responders"
	for {
		// No wait: the server answers with what it holds now, so no fetch outlives the walk.
		batch, err := fetchConnected(l.js.Conn(), func() (jetstream.MessageBatch, error) { return cons.FetchNoWait(walkBatch) })
		if err != nil {
			return fmt.Errorf("draw stream: fetch: %w", err)
		}
		n, more, err := walkDraws(batch, upto, fn)
		for range batch.Messages() { // drain what a stopped walk left
		}
		if err != nil || (!more && n > 0) {
			return err
		}
		berr := batch.Error()
		if n == 0 && errors.Is(berr, natsgo.ErrNoResponders) {
			if noResponders.IsZero() {
				noResponders = time.Now()
			}
			if time.Since(noResponders) < noResponderWait {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
		}
		if berr != nil && !errors.Is(berr, natsgo.ErrTimeout) {
			return fmt.Errorf("draw stream: fetch: %w", berr)
		}
		if !more || n == 0 {
			return ctx.Err() // done, or the rest aged out meanwhile
		}
		noResponders = time.Time{}
	}
}

// noResponderWait bounds how long Walk sends a pull again that was answered "no
// responders" (its consumer not yet known to the server the pull reached).
const noResponderWait = 10 * time.Second

// walkDraws calls fn on the draws of batch and says how many it read and whether the
// walk goes on.
func walkDraws(batch jetstream.MessageBatch, upto uint64, fn func(StoredDraw) error) (int, bool, error) {
	n := 0
	for m := range batch.Messages() {
		n++
		md, err := m.Metadata()
		if err != nil {
			return n, false, fmt.Errorf("draw stream: %w", err)
		}
		if md.Sequence.Stream > upto {
			return n, false, nil
		}
		d := StoredDraw{Seq: md.Sequence.Stream, Stored: md.Timestamp}
		msg, err := outbox.Decode[flash.Event](m.Data())
		if err != nil {
			d.Err = fmt.Errorf("draw %d does not decode: %w", d.Seq, err)
		}
		d.Event = msg.Data
		if err := fn(d); err != nil {
			return n, false, err
		}
		if md.NumPending == 0 || md.Sequence.Stream == upto {
			return n, false, nil
		}
	}
	return n, true, nil
}
