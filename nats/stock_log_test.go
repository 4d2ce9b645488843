package nats

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/strategy"
)

func TestStockLogMinRemaining(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, js jetstream.JetStream, opts StockOptions) {
		ensureStream(t, js, opts)
		ctx := context.Background()
		log := NewStockLog(js, opts)
		ref := strategy.AwardRef{StrategyID: 7, AwardID: 102}
		if _, ok, err := log.MinRemaining(ctx, ref); err != nil || ok {
			t.Fatalf("empty log: %v %v", ok, err)
		}
		// Two nodes flush for one award; the second flushes an older, higher value last.
		sync := NewStockSync(js, opts, nil)
		for _, remaining := range []int64{50, 30, 45, 40} {
			sync.Consumed(ref, remaining)
			if err := sync.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		sync.Consumed(strategy.AwardRef{StrategyID: 7, AwardID: 103}, 3)
		if err := sync.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := log.MinRemaining(ctx, ref); err != nil || !ok || got != 30 {
			t.Errorf("min remaining %d %v %v, want 30", got, ok, err)
		}
	})
}
