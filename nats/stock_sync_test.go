package nats

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/strategy"
)

// TestStockSyncPendingCountsFlushInFlight holds a flush in flight on a stopped broker (the
// client buffers the publish until it reconnects): the award counts as pending all the
// while, and only once the restarted broker has acknowledged it does Pending read 0.
func TestStockSyncPendingCountsFlushInFlight(t *testing.T) {
	t.Parallel()
	srv := testenv.StartNATSServer(t)
	js := connectChild(t, srv)
	nc := js.Conn()
	opts := testOptions("")
	opts.PublishTimeout = 30 * time.Second // the flush outlasts the outage
	ensureStream(t, js, opts)
	ss := NewStockSync(js, opts, nil)

	srv.Stop()
	testenv.Eventually(t, 10*time.Second, "client sees the broker gone", func() (bool, string) {
		return !nc.IsConnected(), nc.Status().String()
	})
	ref := strategy.AwardRef{StrategyID: 100006, AwardID: 101}
	ss.Consumed(ref, grant(41))
	sent := nc.Stats().OutMsgs
	done := make(chan error, 1)
	go func() { done <- ss.Flush(context.Background()) }()
	testenv.Eventually(t, 10*time.Second, "the flush has published into the reconnect buffer", func() (bool, string) {
		out := nc.Stats().OutMsgs
		return out > sent, fmt.Sprintf("out msgs %d", out)
	})
	select {
	case err := <-done:
		t.Fatalf("Flush returned %v with the broker down", err)
	default:
	}
	if st := ss.Stats(); st.Pending != 1 {
		t.Fatalf("stats with the flush in flight = %+v, want 1 pending", st)
	}

	srv.Start()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Flush after the restart: %v", err)
		}
	case <-time.After(opts.PublishTimeout + 5*time.Second):
		t.Fatal("Flush did not return after the restart")
	}
	if st := ss.Stats(); st.Pending != 0 || st.Published != 1 {
		t.Fatalf("stats after the ack = %+v, want 1 published and nothing pending", st)
	}
}
