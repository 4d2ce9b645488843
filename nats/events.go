package nats

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/bigmarket/bigmarket/outbox"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Default names of the event streams. An event of topic T is published to
// EventSubject+"."+T and read by the durable consumer EventDurable+"_"+T; an event its
// consumer gives up on is copied to EventDLQSubject+"."+T.
const (
	EventStream     = "BIGMARKET_EVENTS"
	EventSubject    = "bigmarket.event"
	EventDurable    = "bigmarket"
	EventDLQStream  = "BIGMARKET_EVENTS_DLQ"
	EventDLQSubject = "bigmarket.dlq"
)

// Headers a dead-lettered copy carries, besides the original's own headers.
const (
	// HeaderReason is the error of the last handler call.
	HeaderReason = "Bigmarket-Reason"
	// HeaderMsgID is the original message's Nats-Msg-Id.
	HeaderMsgID = "Bigmarket-Msg-Id"
	// HeaderDelivered is how many times the original was delivered.
	HeaderDelivered = "Bigmarket-Delivered"
	// HeaderStream and HeaderSubject are the stream the original was consumed from and
	// the subject it was published to, where a replay publishes it again.
	HeaderStream  = "Bigmarket-Stream"
	HeaderSubject = "Bigmarket-Subject"
	// HeaderEarlierReason holds, one value each, the reasons of the earlier dead-letterings
	// of a replayed message, so that its next dead letter carries them all.
	HeaderEarlierReason = "Bigmarket-Earlier-Reason"
	// HeaderReplayOf is the dead-letter sequence a replayed message was replayed from.
	HeaderReplayOf = "Bigmarket-Replay-Of"
)

// ErrPermanent marks a handler error that redelivery cannot fix (a malformed message, an
// unknown business id): a message whose handler returns an error wrapping it is
// dead-lettered at once instead of being retried.
var ErrPermanent = errors.New("permanent event failure")

// EventOptions names and tunes the event streams, their publishers and consumers. The
// zero value is the production naming with the defaults listed on each field; tests set
// Prefix to keep apart.
type EventOptions struct {
	// Prefix, when set, is prepended to the stream, subject and consumer names
	// ("<p>_BIGMARKET_EVENTS", "<p>.bigmarket.event.<topic>", "<p>_bigmarket_<topic>").
	// It may hold letters, digits, '-' and '_'.
	Prefix string
	// Replicas of the streams: 1 embedded (default), 3 on a production cluster.
	Replicas int
	// MaxAge is how long the event stream keeps a message (default 72h). The dead-letter
	// stream keeps its messages 30 days, long enough for an operator to look.
	MaxAge time.Duration

	// AckWait is how long the server waits for an ack, or for a handler's sign of life,
	// before it redelivers (default 5s). While a handler works on its messages the
	// consumer marks them in progress every third of it, so a slow handler keeps them; a
	// delivery that reached no one (its pull request died with a broker, or its node)
	// waits this long for its next delivery, and whatever waits on the consumer (a
	// rebuild's drain) with it.
	AckWait time.Duration
	// HandlerTimeout is how long one handler call may take (default 30s).
	HandlerTimeout time.Duration
	// MaxDeliver is how many deliveries a failing message gets before it is dead-lettered
	// (default 10).
	MaxDeliver int
	// Backoff is the delay before a message whose handler failed is redelivered, by
	// delivery count; the last entry repeats (default 1s, 5s, 30s, 60s).
	Backoff []time.Duration
	// BatchSize is how many messages a consumer fetches at once (default 64).
	BatchSize int
	// FetchWait is how long one fetch waits to fill a batch (default 500ms).
	FetchWait time.Duration

	// stream, subject and durable, when set, replace EventStream, EventSubject and the
	// consumer names of the stream's own consumers (DrawEventOptions).
	stream, subject, durable string
}

// Stream returns the event stream's name.
func (o EventOptions) Stream() string { return prefixed(o.Prefix, "_", cmp.Or(o.stream, EventStream)) }

// DLQStream returns the dead-letter stream's name.
func (o EventOptions) DLQStream() string { return prefixed(o.Prefix, "_", EventDLQStream) }

// Subject returns the subject events of topic are published to.
func (o EventOptions) Subject(topic string) string {
	return prefixed(o.Prefix, ".", cmp.Or(o.subject, EventSubject)) + "." + topic
}

// DLQSubject returns the subject dead-lettered events of topic are copied to.
func (o EventOptions) DLQSubject(topic string) string {
	return prefixed(o.Prefix, ".", EventDLQSubject) + "." + topic
}

// Durable returns the name of topic's durable consumer, shared by every node.
func (o EventOptions) Durable(topic string) string {
	if o.durable != "" {
		return prefixed(o.Prefix, "_", o.durable)
	}
	return prefixed(o.Prefix, "_", EventDurable) + "_" + topic
}

func prefixed(prefix, sep, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + sep + name
}

func (o EventOptions) withDefaults() EventOptions {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 72 * time.Hour
	}
	if o.AckWait <= 0 {
		o.AckWait = 5 * time.Second
	}
	if o.HandlerTimeout <= 0 {
		o.HandlerTimeout = 30 * time.Second
	}
	if o.MaxDeliver <= 0 {
		o.MaxDeliver = 10
	}
	if len(o.Backoff) == 0 {
		o.Backoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, time.Minute}
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 64
	}
	if o.FetchWait <= 0 {
		o.FetchWait = 500 * time.Millisecond
	}
	return o
}

// backoff picks the Backoff entry for a message delivered delivered times.
func (o EventOptions) backoff(delivered uint64) time.Duration { return backoffAt(o.Backoff, delivered) }

// backoffAt picks the entry of backoff (not empty) for a message delivered delivered
// times: the first for the first delivery, the last repeating.
func backoffAt(backoff []time.Duration, delivered uint64) time.Duration {
	i := 0
	if delivered > 0 {
		i = int(min(delivered-1, uint64(len(backoff)-1)))
	}
	return backoff[i]
}

// dlqMaxAge is how long the dead-letter stream keeps a message.
const dlqMaxAge = 30 * 24 * time.Hour

// topicPattern is what a topic may hold: it is one subject token and part of a consumer
// name.
var topicPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func checkTopic(topic string) error {
	if !topicPattern.MatchString(topic) {
		return fmt.Errorf("event topic %q: want letters, digits, '-' and '_'", topic)
	}
	return nil
}

// EnsureEventStreams creates the event stream and its dead-letter stream, or updates them
// to opts: file storage, limits retention, a 2 minute duplicate window for Nats-Msg-Id.
// Every topic shares them; each topic has its own subject and consumer.
func EnsureEventStreams(ctx context.Context, js jetstream.JetStream, opts EventOptions) error {
	if !prefixPattern.MatchString(opts.Prefix) {
		return fmt.Errorf("event stream prefix %q: only letters, digits, '-' and '_'", opts.Prefix)
	}
	opts = opts.withDefaults()
	for _, cfg := range []jetstream.StreamConfig{{
		Name:        opts.Stream(),
		Description: "bigmarket domain events, one subject per topic",
		Subjects:    []string{prefixed(opts.Prefix, ".", EventSubject) + ".>"},
		MaxAge:      opts.MaxAge,
	}, {
		Name:        opts.DLQStream(),
		Description: "bigmarket events their consumers gave up on, with the reason",
		Subjects:    []string{prefixed(opts.Prefix, ".", EventDLQSubject) + ".>"},
		MaxAge:      dlqMaxAge,
	}} {
		cfg.Storage = jetstream.FileStorage
		cfg.Retention = jetstream.LimitsPolicy
		cfg.Discard = jetstream.DiscardOld
		cfg.Duplicates = duplicateWindow
		cfg.Replicas = opts.Replicas
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// Publisher publishes events to the event stream. It is safe for concurrent use.
type Publisher struct {
	js   jetstream.JetStream
	opts EventOptions
}

// NewPublisher returns a Publisher on the stream EnsureEventStreams created.
func NewPublisher(js jetstream.JetStream, opts EventOptions) *Publisher {
	return &Publisher{js: js, opts: opts.withDefaults()}
}

// Publish publishes body as an event of topic and waits until the stream has stored it.
// msgID names the business fact (an order id, "sku_stock_zero_9011"): the stream drops a
// message whose msgID it saw in the last 2 minutes, so a retried publish is delivered
// once. Without a deadline in ctx the wait is bounded by the client's default timeout.
func (p *Publisher) Publish(ctx context.Context, topic, msgID string, body []byte) error {
	if err := checkTopic(topic); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if msgID == "" || strings.ContainsAny(msgID, "\r\n") {
		return fmt.Errorf("publish %s: msg id %q: want a non-empty single line", topic, msgID)
	}
	msg := &natsgo.Msg{Subject: p.opts.Subject(topic), Data: body}
	if _, err := p.js.PublishMsg(ctx, msg,
		jetstream.WithMsgID(msgID),
		jetstream.WithExpectStream(p.opts.Stream())); err != nil {
		return fmt.Errorf("publish %s %s: %w", topic, msgID, err)
	}
	return nil
}

// PublishTasks implements outbox.Publisher: every task goes out at once, asynchronously,
// to its topic's subject under its MessageID, and then each acknowledgement is awaited,
// so a batch costs one round trip, not one per task. A task whose acknowledgement has
// not come when ctx ends is reported failed; if the stream did store it, its re-send is a
// duplicate the stream drops (within the window) or the consumer absorbs.
func (p *Publisher) PublishTasks(ctx context.Context, tasks []outbox.Task) []error {
	errs := make([]error, len(tasks))
	futures := make([]jetstream.PubAckFuture, len(tasks))
	for i, t := range tasks {
		if err := checkTopic(t.Topic); err != nil {
			errs[i] = fmt.Errorf("publish task %s: %w", t.MessageID, err)
			continue
		}
		msg := &natsgo.Msg{Subject: p.opts.Subject(t.Topic), Data: []byte(t.Message)}
		f, err := p.js.PublishMsgAsync(msg, jetstream.WithMsgID(t.MessageID), jetstream.WithExpectStream(p.opts.Stream()))
		if err != nil {
			errs[i] = fmt.Errorf("publish task %s: %w", t.MessageID, err)
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = fmt.Errorf("publish task %s: %w", tasks[i].MessageID, err)
		case <-ctx.Done():
			errs[i] = fmt.Errorf("publish task %s: %w", tasks[i].MessageID, ctx.Err())
		}
	}
	return errs
}

// Event is one delivery of a published event to a Handler.
type Event struct {
	Topic     string
	MsgID     string // the publisher's Nats-Msg-Id
	Data      []byte
	Delivered uint64 // 1 on the first delivery
}

// Handler applies one event. It must be idempotent on the event's business key: a message
// is delivered at least once (a lost ack, a node stopping mid-batch). It returns nil once
// the effect is committed; an error redelivers the message after a backoff, or
// dead-letters it when it wraps ErrPermanent or the message has had MaxDeliver
// deliveries. ctx ends after AckWait, when the server would redeliver anyway.
type Handler func(ctx context.Context, e Event) error

// BatchHandler applies the events of one fetch together, so that their effects can share
// a transaction; errs[i] is events[i]'s outcome, with Handler's meaning.
type BatchHandler func(ctx context.Context, events []Event) (errs []error)

// Consumer runs a Handler on the events of one topic. Every node may run one: they
// share one durable pull consumer, so each message goes to one of them at a time.
type Consumer struct {
	js     jetstream.JetStream
	opts   EventOptions
	topic  string
	handle Handler
	batch  BatchHandler // set instead of handle by NewBatchConsumer
	log    *slog.Logger

	handled      atomic.Int64
	failed       atomic.Int64
	deadLettered atomic.Int64
}

// NewConsumer returns a consumer of topic's events on the streams EnsureEventStreams
// created, calling h for each. Call Run to start it.
func NewConsumer(js jetstream.JetStream, opts EventOptions, topic string, h Handler, logger *slog.Logger) *Consumer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Consumer{
		js:     js,
		opts:   opts.withDefaults(),
		topic:  topic,
		handle: h,
		log:    logger.With("component", "event-consumer", "topic", topic),
	}
}

// NewBatchConsumer is NewConsumer with a BatchHandler: each fetched batch is handed over
// in one call, and each message then acked, redelivered or dead-lettered by its outcome.
func NewBatchConsumer(js jetstream.JetStream, opts EventOptions, topic string, h BatchHandler, logger *slog.Logger) *Consumer {
	c := NewConsumer(js, opts, topic, nil, logger)
	c.batch = h
	return c
}

// Topic returns the topic the consumer handles.
func (c *Consumer) Topic() string { return c.topic }

// ConsumerStats counts a Consumer's work since it was created.
type ConsumerStats struct {
	Handled      int64 // handler calls that succeeded (their messages were acked)
	Failed       int64 // handler calls that returned an error
	DeadLettered int64 // messages copied to the dead-letter stream and terminated
}

// Stats returns the counters.
func (c *Consumer) Stats() ConsumerStats {
	return ConsumerStats{Handled: c.handled.Load(), Failed: c.failed.Load(), DeadLettered: c.deadLettered.Load()}
}

// Run creates or updates the topic's durable consumer, then fetches batches and handles
// their messages one by one until ctx is done. It returns an error only when the topic is
// invalid or the event stream does not exist at start (see EnsureEventStreams); broker
// errors are logged and retried, and a consumer deleted under it is created again. It
// returns nil when ctx is done, handing the messages it holds back to the server.
func (c *Consumer) Run(ctx context.Context) error {
	if err := checkTopic(c.topic); err != nil {
		return fmt.Errorf("event consumer: %w", err)
	}
	cons, err := c.ensureConsumer(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return err
		}
		c.log.Warn("event consumer unavailable; retrying", "err", err)
	}
	loop := pullLoop{
		what: "event consumer " + c.topic, conn: c.js.Conn(), log: c.log, batchSize: c.opts.BatchSize, fetchWait: c.opts.FetchWait,
		ensure: c.ensureConsumer, handle: c.process,
	}
	if c.batch != nil {
		loop.handle = c.processBatch
	}
	loop.run(ctx, cons)
	return nil
}

func (c *Consumer) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	cons, err := c.js.CreateOrUpdateConsumer(ctx, c.opts.Stream(), jetstream.ConsumerConfig{
		Durable:       c.opts.Durable(c.topic),
		Description:   "handles " + c.topic + " events",
		FilterSubject: c.opts.Subject(c.topic),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.opts.AckWait,
		// Unlimited on the server: the consumer dead-letters after opts.MaxDeliver itself,
		// so that no message is dropped without a copy.
		MaxDeliver:    -1,
		MaxAckPending: 10 * c.opts.BatchSize,
		Replicas:      0, // as the stream
	})
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s on %s: %w", c.opts.Durable(c.topic), c.opts.Stream(), err)
	}
	return cons, nil
}

// processBatch hands msgs to the batch handler in one call, bounded by HandlerTimeout
// since the fetch and keeping them in progress meanwhile, and settles each by its
// outcome.
func (c *Consumer) processBatch(ctx context.Context, msgs []jetstream.Msg, fetched time.Time) {
	events := make([]Event, len(msgs))
	seqs := make([]uint64, len(msgs))
	for i, m := range msgs {
		events[i], seqs[i] = c.event(m)
	}
	var settled atomic.Int64
	stop := c.keepInProgress(msgs, &settled)
	hctx, cancel := context.WithDeadline(ctx, fetched.Add(c.opts.HandlerTimeout))
	errs := c.batch(hctx, events)
	cancel()
	stop()
	for i, m := range msgs {
		var err error
		if i < len(errs) {
			err = errs[i]
		} else {
			err = errors.New("batch handler returned no outcome")
		}
		c.settle(ctx, m, events[i], seqs[i], err)
	}
}

// keepInProgress marks msgs[settled:] in progress every third of AckWait until the
// returned stop is called (which returns once no mark is being sent; calling it again
// is a no-op), so that the server
// redelivers none of them to another node while this one works on them.
func (c *Consumer) keepInProgress(msgs []jetstream.Msg, settled *atomic.Int64) (stop func()) {
	every := max(c.opts.AckWait/3, 100*time.Millisecond)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				for _, m := range msgs[min(int(settled.Load()), len(msgs)):] {
					_ = m.InProgress()
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(quit) })
		<-done
	}
}

// event reads m. A replayed message keeps its original message id in HeaderMsgID (its
// Nats-Msg-Id is a new one, see DeadLetters.Replay): that is the event's MsgID.
func (c *Consumer) event(m jetstream.Msg) (Event, uint64) {
	id := m.Headers().Get(HeaderMsgID)
	if id == "" {
		id = m.Headers().Get(jetstream.MsgIDHeader)
	}
	e := Event{Topic: c.topic, MsgID: id, Data: m.Data()}
	var seq uint64
	if md, err := m.Metadata(); err == nil {
		e.Delivered, seq = md.NumDelivered, md.Sequence.Stream
	}
	return e, seq
}

// process handles msgs in order, keeping those not yet settled in progress, so that
// slow handlers early in a batch do not make the server redeliver the rest to another
// node.
func (c *Consumer) process(ctx context.Context, msgs []jetstream.Msg, fetched time.Time) {
	var settled atomic.Int64
	stop := c.keepInProgress(msgs, &settled)
	defer stop()
	for i, m := range msgs {
		if ctx.Err() != nil {
			stop()
			for _, r := range msgs[i:] {
				_ = r.Nak()
			}
			return
		}
		c.handleMsg(ctx, m)
		settled.Store(int64(i + 1))
	}
}

// handleMsg calls the handler on m, bounded by HandlerTimeout, and acks, redelivers or
// dead-letters it.
func (c *Consumer) handleMsg(ctx context.Context, m jetstream.Msg) {
	e, seq := c.event(m)
	hctx, cancel := context.WithTimeout(ctx, c.opts.HandlerTimeout)
	err := c.handle(hctx, e)
	cancel()
	c.settle(ctx, m, e, seq, err)
}

// settle acks m when err is nil, and otherwise redelivers it after a backoff or
// dead-letters it.
func (c *Consumer) settle(ctx context.Context, m jetstream.Msg, e Event, seq uint64, err error) {
	if err == nil {
		c.handled.Add(1)
		// A lost ack means one more delivery, which an idempotent handler absorbs.
		_ = m.Ack()
		return
	}
	if ctx.Err() != nil {
		// Shutting down cut the handler short: another node takes the message now.
		_ = m.Nak()
		return
	}
	c.failed.Add(1)
	if errors.Is(err, ErrPermanent) || e.Delivered >= uint64(c.opts.MaxDeliver) {
		c.deadLetter(ctx, m, e, seq, err)
		return
	}
	delay := c.opts.backoff(e.Delivered)
	c.log.Warn("event handler failed; redelivering",
		"msg_id", e.MsgID, "delivered", e.Delivered, "retry_in", delay, "err", err)
	_ = m.NakWithDelay(delay)
}

// dlqPublishTimeout bounds the publish of a dead-lettered copy.
const dlqPublishTimeout = 5 * time.Second

// maxReasonLen bounds the Bigmarket-Reason header.
const maxReasonLen = 1024

// deadLetter copies m to the topic's dead-letter subject with the reason and terminates
// m once the copy is stored. When the copy cannot be stored m is redelivered instead, so
// nothing is dropped; the copy's Nats-Msg-Id makes a second copy of the same message a
// duplicate the stream drops. The copy keeps m's own headers, HeaderEarlierReason of a
// replayed message among them, so that it holds every reason the message was given up
// for; its id derives from m's Nats-Msg-Id, which is new for each replay, so that a
// replayed message dead-lettered again is not dropped as a duplicate of its first copy.
func (c *Consumer) deadLetter(ctx context.Context, m jetstream.Msg, e Event, seq uint64, cause error) {
	header := natsgo.Header{}
	for k, v := range m.Headers() {
		if !strings.HasPrefix(strings.ToLower(k), "nats-") {
			header[k] = slices.Clone(v)
		}
	}
	header.Set(HeaderReason, headerValue(cause.Error()))
	header.Set(HeaderMsgID, e.MsgID)
	header.Set(HeaderDelivered, strconv.FormatUint(e.Delivered, 10))
	header.Set(HeaderStream, c.opts.Stream())
	header.Set(HeaderSubject, m.Subject())
	id := "dlq_" + m.Headers().Get(jetstream.MsgIDHeader)
	if id == "dlq_" {
		id = "dlq_seq_" + strconv.FormatUint(seq, 10)
	}
	dlq := &natsgo.Msg{Subject: c.opts.DLQSubject(c.topic), Header: header, Data: m.Data()}
	pctx, cancel := context.WithTimeout(ctx, dlqPublishTimeout)
	defer cancel()
	if _, err := c.js.PublishMsg(pctx, dlq,
		jetstream.WithMsgID(id),
		jetstream.WithExpectStream(c.opts.DLQStream())); err != nil {
		delay := c.opts.backoff(e.Delivered)
		c.log.Error("dead-letter publish failed; redelivering",
			"msg_id", e.MsgID, "delivered", e.Delivered, "retry_in", delay, "reason", cause, "err", err)
		_ = m.NakWithDelay(delay)
		return
	}
	c.deadLettered.Add(1)
	c.log.Error("event dead-lettered",
		"msg_id", e.MsgID, "delivered", e.Delivered, "dlq", c.opts.DLQStream(), "reason", cause)
	// A lost term means one more delivery; its copy is then a duplicate. (Plain Term:
	// servers before 2.10 ignore a term with a reason.)
	_ = m.Term()
}

// headerValue makes s a valid single-line header value of at most maxReasonLen bytes.
func headerValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxReasonLen {
		s = s[:maxReasonLen]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}
