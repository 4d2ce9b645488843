package nats

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/internal/testenv"
)

// fakeSKUStore is a SKUSurplusStore keeping min(surplus, remaining) per SKU, every SKU
// having a stock_count of 10. Fn, when set, runs before each call; an error it returns
// fails the call unapplied.
type fakeSKUStore struct {
	Fn func(sku, remaining int64) error

	mu      sync.Mutex
	surplus map[int64]int64
}

const fakeSKUCount = 10

func (f *fakeSKUStore) SyncSKUIssued(ctx context.Context, sku, issued int64) error {
	return f.SyncSKUSurplus(ctx, sku, max(fakeSKUCount-issued, 0))
}

func (f *fakeSKUStore) SyncSKUSurplus(_ context.Context, sku, remaining int64) error {
	if f.Fn != nil {
		if err := f.Fn(sku, remaining); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.surplus == nil {
		f.surplus = make(map[int64]int64)
	}
	if cur, ok := f.surplus[sku]; !ok || remaining < cur {
		f.surplus[sku] = remaining
	}
	return nil
}

func (f *fakeSKUStore) snapshot() map[int64]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.surplus)
}

func TestSKUStockZeroHandler(t *testing.T) {
	t.Parallel()
	storeDown := errors.New("database is locked")
	tests := []struct {
		name, body string
		storeErr   error
		want       map[int64]int64 // the store after the call
		permanent  bool
	}{
		{"big-market message", `{"id":"12345678901","timestamp":1700000000000,"data":9011}`, nil, map[int64]int64{9011: 0}, false},
		{"after a top-up", `{"id":"x","timestamp":1,"data":9011,"issued":8}`, nil, map[int64]int64{9011: 2}, false},
		{"store down", `{"id":"x","timestamp":1,"data":9011}`, storeDown, nil, false},
		{"not json", `{not json`, nil, nil, true},
		{"sku as text", `{"id":"x","timestamp":1,"data":"abc"}`, nil, nil, true},
		{"no sku", `{"id":"x","timestamp":1}`, nil, nil, true},
		{"negative sku", `{"id":"x","timestamp":1,"data":-1}`, nil, nil, true},
	}
	for _, tt := range tests {
		store := &fakeSKUStore{Fn: func(int64, int64) error { return tt.storeErr }}
		err := SKUStockZeroHandler(store)(context.Background(), Event{Topic: TopicSKUStockZero, MsgID: "m", Data: []byte(tt.body)})
		switch {
		case tt.permanent && !errors.Is(err, ErrPermanent):
			t.Errorf("%s: %v, want ErrPermanent", tt.name, err)
		case tt.storeErr != nil && (!errors.Is(err, tt.storeErr) || errors.Is(err, ErrPermanent)):
			t.Errorf("%s: %v, want the store's error, retryable", tt.name, err)
		case !tt.permanent && tt.storeErr == nil && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		}
		if got := store.snapshot(); !maps.Equal(got, tt.want) {
			t.Errorf("%s: store %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestSKUStockZeroEndToEnd publishes a SKU's stock zero twice (a retried publish) and a
// malformed message on the topic: the stream holds big-market's message once, the store
// clears the SKU, and the malformed message is dead-lettered.
func TestSKUStockZeroEndToEnd(t *testing.T) {
	t.Parallel()
	eachEventBackend(t, func(t *testing.T, js jetstream.JetStream, opts EventOptions) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p := NewPublisher(js, opts)
		z := NewSKUStockZero(p)
		z.now = func() time.Time { return time.UnixMilli(1700000000123) }
		for range 2 {
			if err := z.PublishSKUStockZero(ctx, 9011, 10); err != nil {
				t.Fatalf("PublishSKUStockZero: %v", err)
			}
		}
		if err := p.Publish(ctx, TopicSKUStockZero, "junk", []byte("{not json")); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		s, err := js.Stream(ctx, opts.Stream())
		if err != nil {
			t.Fatal(err)
		}
		first, err := s.GetMsg(ctx, 1)
		if err != nil {
			t.Fatalf("GetMsg: %v", err)
		}
		const want = `{"id":"sku_stock_zero_9011_10","timestamp":1700000000123,"data":9011,"issued":10}`
		if string(first.Data) != want || first.Header.Get(jetstream.MsgIDHeader) != "sku_stock_zero_9011_10" ||
			first.Subject != opts.Subject(TopicSKUStockZero) {
			t.Errorf("message on %s = %s %v, want %s", first.Subject, first.Data, first.Header, want)
		}
		if n := streamCount(t, js, opts.Stream()); n != 2 {
			t.Errorf("stream holds %d messages, want 2 (the retried publish dropped)", n)
		}

		store := &fakeSKUStore{surplus: map[int64]int64{9011: 7, 9012: 5}}
		c := NewConsumer(js, opts, TopicSKUStockZero, SKUStockZeroHandler(store), nil)
		background(t, c.Run)
		testenv.Eventually(t, 30*time.Second, "sku cleared and junk dead-lettered", func() (bool, string) {
			got, st := store.snapshot(), c.Stats()
			return maps.Equal(got, map[int64]int64{9011: 0, 9012: 5}) && st.DeadLettered == 1,
				fmt.Sprintf("store %v, stats %+v", got, st)
		})
		testenv.Eventually(t, 30*time.Second, "consumer settled", settled(t, js, opts, TopicSKUStockZero))
		if st := c.Stats(); st != (ConsumerStats{Handled: 1, Failed: 1, DeadLettered: 1}) {
			t.Errorf("stats = %+v", st)
		}
	})
}
