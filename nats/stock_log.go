package nats

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/strategy"
)

// StockLog reads the award stock sync stream as a durable log of grants. Several nodes
// publish for one award, each flush its own maximum, so the log's answer is the maximum
// over every retained message of the award, not the last one.
type StockLog struct {
	js   jetstream.JetStream
	opts StockOptions
}

// NewStockLog returns a StockLog on the stream EnsureStockStream created.
func NewStockLog(js jetstream.JetStream, opts StockOptions) *StockLog {
	return &StockLog{js: js, opts: opts.withDefaults()}
}

// MaxIssued returns the highest grant sequence number published for the award, and false
// when the stream holds no message for it. A message of the old form counts as
// total − its remaining count (total being the award's count now, which a top-up since
// can only make larger: undersell). It reads the award's subject with an ordered
// consumer; at most MaxPerAward messages are retained per award.
func (l *StockLog) MaxIssued(ctx context.Context, ref strategy.AwardRef, total int64) (int64, bool, error) {
	fail := func(err error) (int64, bool, error) {
		return 0, false, fmt.Errorf("stock log of award %d/%d: %w", ref.StrategyID, ref.AwardID, err)
	}
	cons, err := l.js.OrderedConsumer(ctx, l.opts.Stream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{l.opts.awardSubject(ref)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fail(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fail(err)
	}
	pending := info.NumPending
	var high int64
	found := false
	for pending > 0 {
		batch, err := fetchConnected(l.js.Conn(), func() (jetstream.MessageBatch, error) {
			return cons.Fetch(int(min(pending, 256)), jetstream.FetchMaxWait(2*time.Second))
		})
		if err != nil {
			return fail(err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			var m stockMessage
			if err := json.Unmarshal(msg.Data(), &m); err != nil {
				continue // the consumer terminates malformed messages too
			}
			issued := m.Issued
			if issued <= 0 {
				issued = total - m.Remaining
			}
			if !found || issued > high {
				high, found = issued, true
			}
			if md, err := msg.Metadata(); err == nil {
				pending = md.NumPending
			}
		}
		if err := batch.Error(); err != nil {
			return fail(err)
		}
		if got == 0 {
			return fail(fmt.Errorf("%d messages pending but none delivered", pending))
		}
	}
	return high, found, nil
}
