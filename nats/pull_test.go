package nats

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/strategy"
)

// TestFaultConsumerWaitsOutReconnect stops the broker under a running consumer for ten
// fetch waits and starts it again. While the client is disconnected the consumer sends
// nothing: a fetch made then would leave its pull request in the reconnect buffer, ten of
// them over this outage, to reach the server only on reconnect with an expiry counted from
// then, after the loop has given it up. Once the client is back, messages published right
// away are applied well before AckWait, which here is longer than the test's deadline.
func TestFaultConsumerWaitsOutReconnect(t *testing.T) {
	t.Parallel()
	srv := testenv.StartNATSServer(t)
	js := connectChild(t, srv)
	nc := js.Conn()
	opts := testOptions("")
	opts.AckWait = 30 * time.Second // a redelivery cannot pass the 10s deadline below
	opts.FetchWait = 200 * time.Millisecond
	ensureStream(t, js, opts)

	store := &fakeSurplusStore{}
	background(t, NewStockSyncConsumer(js, opts, store, nil).Run)
	ss := NewStockSync(js, opts, nil)
	ref := strategy.AwardRef{StrategyID: 100006, AwardID: 101}
	commit := func(remaining int64) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ss.Commit(ctx, ref, grant(remaining)); err != nil {
			t.Fatalf("Commit: %v", err)
		}
	}
	commit(100)
	testenv.Eventually(t, 30*time.Second, "store holds the grant made before the outage",
		storeEquals(store, map[strategy.AwardRef]int64{ref: 100}))

	srv.Stop()
	testenv.Eventually(t, 10*time.Second, "client sees the broker gone", func() (bool, string) {
		return !nc.IsConnected(), nc.Status().String()
	})
	sent := nc.Stats().OutMsgs
	// The outage lasts ten fetch waits: the fault injected, not a wait for async work.
	time.Sleep(10 * opts.FetchWait)
	// One fetch may have started as the broker went away; a loop that kept fetching
	// would have sent about ten.
	if n := nc.Stats().OutMsgs - sent; n > 1 {
		t.Errorf("consumer sent %d messages (pull requests) while disconnected, want at most 1", n)
	}
	srv.Start()
	testenv.Eventually(t, 10*time.Second, "client reconnected", func() (bool, string) {
		return nc.IsConnected(), nc.Status().String()
	})

	for r := int64(99); r > 90; r-- {
		commit(r)
	}
	want := map[strategy.AwardRef]int64{ref: 91}
	testenv.Eventually(t, 10*time.Second, "store holds the grants made right after the reconnect",
		func() (bool, string) {
			got := store.snapshot()
			return maps.Equal(got, want), fmt.Sprintf("got %v, want %v", got, want)
		})
}

// TestFaultFetchWhileDisconnectedLeavesNoSubscription fetches while the client is
// disconnected and its reconnect buffer is off, so that a pull request cannot be sent:
// jetstream's Fetch subscribes its inbox before it publishes the request and, when the
// publish fails, returns without unsubscribing it. Every failed fetch must leave the
// connection's subscriptions as they were.
func TestFaultFetchWhileDisconnectedLeavesNoSubscription(t *testing.T) {
	t.Parallel()
	srv := testenv.StartNATSServer(t)
	js := connectChild(t, srv, natsgo.ReconnectBufSize(-1))
	nc := js.Conn()
	opts := testOptions("")
	ensureStream(t, js, opts)
	c := NewStockSyncConsumer(js, opts, &fakeSurplusStore{}, nil)
	ctx := t.Context()
	cons, err := c.ensureConsumer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	loop := pullLoop{what: "test consumer", conn: nc, log: slog.New(slog.DiscardHandler), batchSize: 8, fetchWait: opts.FetchWait}

	srv.Stop()
	testenv.Eventually(t, 10*time.Second, "client sees the broker gone", func() (bool, string) {
		return !nc.IsConnected(), nc.Status().String()
	})
	before := nc.NumSubscriptions()
	for range 5 {
		if _, err := loop.fetch(ctx, cons); err == nil {
			t.Fatal("fetch while disconnected without a reconnect buffer succeeded")
		}
	}
	if n := nc.NumSubscriptions(); n != before {
		t.Errorf("%d subscriptions after 5 failed fetches, want %d as before", n, before)
	}
}
