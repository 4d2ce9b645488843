package nats

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/strategy"
)

func TestStockLogMaxIssued(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, js jetstream.JetStream, opts StockOptions) {
		ensureStream(t, js, opts)
		ctx := context.Background()
		log := NewStockLog(js, opts)
		ref := strategy.AwardRef{StrategyID: 7, AwardID: 102}
		if _, ok, err := log.MaxIssued(ctx, ref, fakeAwardCount); err != nil || ok {
			t.Fatalf("empty log: %v %v", ok, err)
		}
		// Two nodes flush for one award; the second flushes an older, higher value last.
		sync := NewStockSync(js, opts, nil)
		for _, remaining := range []int64{50, 30, 45, 40} {
			sync.Consumed(ref, grant(remaining))
			if err := sync.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		sync.Consumed(strategy.AwardRef{StrategyID: 7, AwardID: 103}, grant(3))
		if err := sync.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := log.MaxIssued(ctx, ref, fakeAwardCount); err != nil || !ok || got != fakeAwardCount-30 {
			t.Errorf("max issued %d %v %v, want %d", got, ok, err, fakeAwardCount-30)
		}
		// A message of the old form (a remaining count, no sequence number) reads as
		// award_count − remaining.
		if _, err := js.Publish(ctx, opts.awardSubject(ref), []byte(`{"strategyId":7,"awardId":102,"remaining":20}`)); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := log.MaxIssued(ctx, ref, fakeAwardCount); err != nil || !ok || got != fakeAwardCount-20 {
			t.Errorf("max issued with an old-form message %d %v %v, want %d", got, ok, err, fakeAwardCount-20)
		}
	})
}
