package nats

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/strategy"
)

// StockSyncConsumer applies the award stock stream to SQL. Every node may run one: they
// share one durable pull consumer, so each message goes to one of them at a time, and a
// message applied twice or out of order changes nothing, because the store's updates are
// monotone.
type StockSyncConsumer struct {
	js    jetstream.JetStream
	opts  StockOptions
	store strategy.SurplusStore
	log   *slog.Logger

	applied atomic.Int64
	failed  atomic.Int64
}

// NewStockSyncConsumer returns a consumer of the stream named by opts that applies its
// messages to store. Call Run to start it.
func NewStockSyncConsumer(js jetstream.JetStream, opts StockOptions, store strategy.SurplusStore, logger *slog.Logger) *StockSyncConsumer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &StockSyncConsumer{
		js:    js,
		opts:  opts.withDefaults(),
		store: store,
		log:   logger.With("component", "stock-sync-consumer"),
	}
}

// StockSyncConsumerStats counts a consumer's store calls since it was created.
type StockSyncConsumerStats struct {
	Applied int64 // store calls that succeeded
	Failed  int64 // store calls that failed (their messages were redelivered)
}

// Stats returns the counters.
func (c *StockSyncConsumer) Stats() StockSyncConsumerStats {
	return StockSyncConsumerStats{Applied: c.applied.Load(), Failed: c.failed.Load()}
}

// Run creates or updates the durable consumer, then fetches batches until ctx is done.
// Each batch is collapsed to the highest sequence number per award (and the lowest
// remaining count of old-form messages) and the store is called once per award; the award's messages are acked after the store call succeeded and redelivered
// with a delay (opts.Backoff) when it failed. Run returns an error only when the
// consumer cannot be created at start (the stream must exist: see EnsureStockStream);
// later broker errors are logged and retried. It returns nil when ctx is done.
func (c *StockSyncConsumer) Run(ctx context.Context) error {
	cons, err := c.ensureConsumer(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	pullLoop{
		what: "stock sync consumer", conn: c.js.Conn(), log: c.log, batchSize: c.opts.BatchSize, fetchWait: c.opts.FetchWait,
		ensure: c.ensureConsumer,
		handle: func(ctx context.Context, msgs []jetstream.Msg, _ time.Time) { c.apply(ctx, msgs) },
	}.run(ctx, cons)
	return nil
}

func (c *StockSyncConsumer) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	cons, err := c.js.CreateOrUpdateConsumer(ctx, c.opts.Stream(), jetstream.ConsumerConfig{
		Durable:       c.opts.Durable(),
		Description:   "applies award stock to SQL award_count_surplus",
		FilterSubject: c.opts.Subject() + ".>",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.opts.AckWait,
		MaxDeliver:    c.opts.MaxDeliver,
		MaxAckPending: 10 * c.opts.BatchSize,
		Replicas:      0, // as the stream
	})
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s on %s: %w", c.opts.Durable(), c.opts.Stream(), err)
	}
	return cons, nil
}

// apply collapses msgs per award and syncs each award once.
func (c *StockSyncConsumer) apply(ctx context.Context, msgs []jetstream.Msg) {
	type group struct {
		issued    int64 // highest sequence number; 0: none
		remaining int64 // lowest old-form remaining count; meaningful when old
		old       bool
		msgs      []jetstream.Msg
	}
	groups := make(map[strategy.AwardRef]*group)
	for _, m := range msgs {
		var sm stockMessage
		if err := json.Unmarshal(m.Data(), &sm); err != nil {
			// Redelivery cannot fix it; drop it so it does not block the award.
			c.log.Error("malformed stock message dropped", "subject", m.Subject(), "err", err)
			_ = m.TermWithReason("malformed stock message")
			continue
		}
		ref := strategy.AwardRef{StrategyID: sm.StrategyID, AwardID: sm.AwardID}
		g, ok := groups[ref]
		if !ok {
			g = &group{}
			groups[ref] = g
		}
		if sm.Issued > 0 {
			g.issued = max(g.issued, sm.Issued)
		} else if !g.old || sm.Remaining < g.remaining {
			g.remaining, g.old = sm.Remaining, true
		}
		g.msgs = append(g.msgs, m)
	}
	for ref, g := range groups {
		var err error
		if g.issued > 0 {
			err = c.store.SyncAwardIssued(ctx, ref, g.issued)
		}
		if err == nil && g.old {
			err = c.store.SyncAwardSurplus(ctx, ref, g.remaining)
		}
		if err != nil {
			c.failed.Add(1)
			c.log.Warn("sync award surplus failed; redelivering",
				"strategy_id", ref.StrategyID, "award_id", ref.AwardID, "issued", g.issued, "err", err)
			for _, m := range g.msgs {
				_ = m.NakWithDelay(c.redeliverDelay(m))
			}
			continue
		}
		c.applied.Add(1)
		for _, m := range g.msgs {
			// A lost ack means one more delivery, which the monotone update absorbs.
			_ = m.Ack()
		}
	}
}

// redeliverDelay picks the Backoff entry for the message's delivery count.
func (c *StockSyncConsumer) redeliverDelay(m jetstream.Msg) time.Duration {
	var delivered uint64
	if md, err := m.Metadata(); err == nil {
		delivered = md.NumDelivered
	}
	return backoffAt(c.opts.Backoff, delivered)
}
