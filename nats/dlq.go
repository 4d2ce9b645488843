package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/outbox"
)

// MaxDeadLetters bounds one listing of dead letters (the oldest first); Since narrows it.
const MaxDeadLetters = 1000

// maxReasons bounds the reasons a dead letter carries: the latest are kept.
const maxReasons = 16

// DeadLetters lists and replays the messages of the dead-letter stream. A replay
// publishes the message again to the subject it was consumed from and then deletes it
// from the dead-letter stream, so a second replay of the same sequence finds nothing.
//
// The replay's Nats-Msg-Id is new — the original id, ".replay." and the dead-letter
// sequence — because the event stream drops a message whose id it saw in the last two
// minutes: with the original id, a replay soon after the original was published (a
// handler that fails at once, a small max deliver) would be acknowledged and dropped.
// The original id travels in HeaderMsgID and is the replayed event's MsgID; consumers
// stay idempotent on their business keys, as for any redelivery. The id is the same for
// every replay of one sequence, so a replay retried after a lost answer, or two operators
// replaying at once, publish it once within the window.
type DeadLetters struct {
	js   jetstream.JetStream
	opts EventOptions
	log  *slog.Logger
}

// NewDeadLetters returns the dead letters of the event streams EnsureEventStreams
// created with opts.
func NewDeadLetters(js jetstream.JetStream, opts EventOptions, logger *slog.Logger) *DeadLetters {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &DeadLetters{js: js, opts: opts.withDefaults(), log: logger.With("component", "dead-letters")}
}

// checkStream refuses a stream filter that names no stream with dead letters here.
func (d *DeadLetters) checkStream(stream string) error {
	if stream != "" && stream != d.opts.Stream() {
		return fmt.Errorf("dead letters of stream %q (known: %s): %w", stream, d.opts.Stream(), outbox.ErrUnknownStream)
	}
	return nil
}

// List returns the dead letters that match f, the oldest first, at most MaxDeadLetters.
func (d *DeadLetters) List(ctx context.Context, f outbox.DeadLetterFilter) ([]outbox.DeadLetter, error) {
	if err := d.checkStream(f.Stream); err != nil {
		return nil, err
	}
	out := []outbox.DeadLetter{}
	err := d.scan(ctx, f.Since, 0, func(dl outbox.DeadLetter) bool {
		if f.Stream == "" || dl.Stream == f.Stream {
			out = append(out, dl)
		}
		return len(out) < MaxDeadLetters
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Count returns how many dead letters the dead-letter stream holds, in one request to the
// broker; 0 before the stream exists.
func (d *DeadLetters) Count(ctx context.Context) (int64, error) {
	s, err := d.js.Stream(ctx, d.opts.DLQStream())
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("count dead letters: %w", err)
	}
	return int64(s.CachedInfo().State.Msgs), nil
}

// Replay publishes dead letter seq again and removes it from the dead-letter stream. It
// returns the dead letter as it was; outbox.ErrNoDeadLetter when the stream holds no
// message seq (never dead-lettered, replayed already, or aged out).
func (d *DeadLetters) Replay(ctx context.Context, seq uint64) (outbox.DeadLetter, error) {
	s, err := d.js.Stream(ctx, d.opts.DLQStream())
	if err != nil {
		return outbox.DeadLetter{}, fmt.Errorf("replay dead letter %d: %w", seq, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return outbox.DeadLetter{}, fmt.Errorf("replay dead letter %d: %w", seq, outbox.ErrNoDeadLetter)
	}
	if err != nil {
		return outbox.DeadLetter{}, fmt.Errorf("replay dead letter %d: %w", seq, err)
	}
	dl := d.parse(m.Subject, m.Header, m.Sequence, m.Time)
	return dl, d.replay(ctx, s, dl, m.Header, m.Data)
}

// ReplayAll replays every dead letter of stream (empty: of every stream) that is in the
// dead-letter stream when it starts, the oldest first; a replayed message dead-lettered
// again meanwhile waits for the next call. It returns those it replayed, also with an
// error, which stops it.
func (d *DeadLetters) ReplayAll(ctx context.Context, stream string) ([]outbox.DeadLetter, error) {
	if err := d.checkStream(stream); err != nil {
		return nil, err
	}
	s, err := d.js.Stream(ctx, d.opts.DLQStream())
	if err != nil {
		return nil, fmt.Errorf("replay dead letters: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("replay dead letters: %w", err)
	}
	var seqs []uint64
	err = d.scan(ctx, time.Time{}, info.State.LastSeq, func(dl outbox.DeadLetter) bool {
		if stream == "" || dl.Stream == stream {
			seqs = append(seqs, dl.Seq)
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("replay dead letters: %w", err)
	}
	done := []outbox.DeadLetter{}
	for _, seq := range seqs {
		dl, err := d.Replay(ctx, seq)
		if errors.Is(err, outbox.ErrNoDeadLetter) {
			continue // replayed by someone else since the scan
		}
		if err != nil {
			return done, err
		}
		done = append(done, dl)
	}
	return done, nil
}

// replay publishes the dead letter's message to its subject and deletes it from s.
func (d *DeadLetters) replay(ctx context.Context, s jetstream.Stream, dl outbox.DeadLetter, h natsgo.Header, data []byte) error {
	if dl.Stream != d.opts.Stream() || !strings.HasPrefix(dl.Subject, d.opts.Subject("")) {
		return fmt.Errorf("replay dead letter %d: it names stream %q, subject %q: not an event subject here: %w",
			dl.Seq, dl.Stream, dl.Subject, outbox.ErrUnknownStream)
	}
	header := natsgo.Header{}
	for k, v := range h {
		switch k {
		case HeaderReason, HeaderDelivered, HeaderStream, HeaderSubject, HeaderEarlierReason, HeaderReplayOf, HeaderMsgID:
			continue
		}
		if !strings.HasPrefix(strings.ToLower(k), "nats-") {
			header[k] = slices.Clone(v)
		}
	}
	header[HeaderEarlierReason] = slices.Clone(dl.Reasons)
	if dl.MsgID != "" {
		header.Set(HeaderMsgID, dl.MsgID)
	}
	header.Set(HeaderReplayOf, strconv.FormatUint(dl.Seq, 10))
	msg := &natsgo.Msg{Subject: dl.Subject, Header: header, Data: data}
	if _, err := d.js.PublishMsg(ctx, msg,
		jetstream.WithMsgID(replayID(dl.MsgID, dl.Seq)),
		jetstream.WithExpectStream(dl.Stream)); err != nil {
		return fmt.Errorf("replay dead letter %d: publish: %w", dl.Seq, err)
	}
	// Published: a crash before the delete leaves the dead letter for another replay,
	// which the stream drops within its window and the consumer absorbs beyond it.
	if err := s.DeleteMsg(ctx, dl.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("replay dead letter %d: published, but not removed: %w", dl.Seq, err)
	}
	d.log.Info("dead letter replayed", "seq", dl.Seq, "msg_id", dl.MsgID, "subject", dl.Subject, "reasons", len(dl.Reasons))
	return nil
}

// replayID is the Nats-Msg-Id of the replay of dead letter seq of message msgID.
func replayID(msgID string, seq uint64) string {
	return msgID + ".replay." + strconv.FormatUint(seq, 10)
}

// scanBatch is how many dead letters one fetch of a scan reads.
const scanBatch = 256

// scan calls fn on each dead letter stored at or after since (zero: all) and at most at
// sequence upto (0: no bound), in order, until fn returns false. It reads through an
// ordered consumer, which the server removes once idle.
func (d *DeadLetters) scan(ctx context.Context, since time.Time, upto uint64, fn func(outbox.DeadLetter) bool) error {
	s, err := d.js.Stream(ctx, d.opts.DLQStream())
	if err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	if info.State.Msgs == 0 || (!since.IsZero() && info.State.LastTime.Before(since)) {
		return nil
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{d.opts.DLQSubject(">")},
		InactiveThreshold: 10 * time.Second,
	}
	if !since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	for {
		// No wait: the server answers with what it holds now, and the fetch is over when the
		// batch is, so that no fetch outlives the scan.
		batch, err := fetchConnected(d.js.Conn(), func() (jetstream.MessageBatch, error) { return cons.FetchNoWait(scanBatch) })
		if err != nil {
			return fmt.Errorf("dead letters: fetch: %w", err)
		}
		n, more, err := d.scanBatch(batch, upto, fn)
		for range batch.Messages() { // drain what a stopped scan left
		}
		if err != nil || !more {
			return err
		}
		if err := batch.Error(); err != nil && !errors.Is(err, natsgo.ErrTimeout) {
			return fmt.Errorf("dead letters: fetch: %w", err)
		}
		if n == 0 {
			return ctx.Err() // the rest was deleted meanwhile
		}
	}
}

// scanBatch calls fn on the dead letters of batch and says how many it read and whether
// the scan goes on.
func (d *DeadLetters) scanBatch(batch jetstream.MessageBatch, upto uint64, fn func(outbox.DeadLetter) bool) (int, bool, error) {
	n := 0
	for m := range batch.Messages() {
		n++
		md, err := m.Metadata()
		if err != nil {
			return n, false, fmt.Errorf("dead letters: %w", err)
		}
		if upto > 0 && md.Sequence.Stream > upto {
			return n, false, nil
		}
		if !fn(d.parse(m.Subject(), m.Headers(), md.Sequence.Stream, md.Timestamp)) || md.NumPending == 0 {
			return n, false, nil
		}
	}
	return n, true, nil
}

// parse reads a dead-lettered copy. Copies made before HeaderStream and HeaderSubject
// existed name neither: they came from the event stream, to the subject of the topic
// their dead-letter subject ends in.
func (d *DeadLetters) parse(subject string, h natsgo.Header, seq uint64, at time.Time) outbox.DeadLetter {
	dl := outbox.DeadLetter{
		Seq: seq, Stream: h.Get(HeaderStream), Subject: h.Get(HeaderSubject), MsgID: h.Get(HeaderMsgID), DeadAt: at.UTC(),
	}
	if dl.Stream == "" {
		dl.Stream = d.opts.Stream()
	}
	if topic, ok := strings.CutPrefix(subject, d.opts.DLQSubject("")); ok && dl.Subject == "" {
		dl.Subject = d.opts.Subject(topic)
	}
	dl.Reasons = slices.Clone(h.Values(HeaderEarlierReason))
	if r := h.Get(HeaderReason); r != "" {
		dl.Reasons = append(dl.Reasons, r)
	}
	if len(dl.Reasons) > maxReasons {
		dl.Reasons = dl.Reasons[len(dl.Reasons)-maxReasons:]
	}
	if dl.Reasons == nil {
		dl.Reasons = []string{}
	}
	return dl
}
