package nats

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/strategy"
)

// faultOptions are the test timings with a short publish timeout, so that a flush made
// while the broker is down fails (and keeps its entries) quickly, and a short ack wait.
//
// The consumer no longer fetches while the client is disconnected (see pullLoop), but a
// delivery can still miss it on a loaded machine: a fetch ends on the client's clock
// (FetchWait) and on the server's (90% of it, counted from when the request arrived), and
// when the request was held up by more than the difference a message handed to it after
// the client gave up reaches nobody. Nothing is lost: the server redelivers it after
// AckWait (default 5s); with 2s these tests wait for it well within their deadlines.
func faultOptions() StockOptions {
	opts := testOptions("")
	opts.PublishTimeout = 300 * time.Millisecond
	opts.AckWait = 2 * time.Second
	return opts
}

// connectChild connects to s the way the app does (reconnecting forever) and returns
// JetStream on it; the connection is closed when the test ends.
func connectChild(t *testing.T, s *testenv.NATSServer, extra ...natsgo.Option) jetstream.JetStream {
	t.Helper()
	nc, err := Connect([]string{s.URL}, "test", extra...)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream.New: %v", err)
	}
	return js
}

// grants records every value passed to Consumed and the minimum per award: what the
// store must end at.
type grants struct {
	mu   sync.Mutex
	next map[strategy.AwardRef]int64 // the next remaining count to grant, per award
	min  map[strategy.AwardRef]int64
}

func newGrants(refs []strategy.AwardRef, stock int64) *grants {
	g := &grants{next: make(map[strategy.AwardRef]int64), min: make(map[strategy.AwardRef]int64)}
	for _, ref := range refs {
		g.next[ref] = stock
	}
	return g
}

// take grants one unit of ref, as the Redis counter does: each remaining count once.
func (g *grants) take(ref strategy.AwardRef) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.next[ref]--
	r := g.next[ref]
	if cur, ok := g.min[ref]; !ok || r < cur {
		g.min[ref] = r
	}
	return r
}

func (g *grants) want() map[strategy.AwardRef]int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.min)
}

// consumeConcurrently grants perWorker units from each of workers goroutines, spread over
// refs, calling s.Consumed for each, and fails the test unless all the calls return
// within bound. Workers start on different awards and race, so remaining counts reach
// StockSync out of order, as they do from concurrent draws.
func consumeConcurrently(t *testing.T, s *StockSync, g *grants, refs []strategy.AwardRef, workers, perWorker int, bound time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range perWorker {
					ref := refs[(w+i)%len(refs)]
					s.Consumed(ref, grant(g.take(ref)))
				}
			})
		}
		wg.Wait()
	}()
	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		// The stuck calls finish once the test's connection is closed.
		t.Fatalf("%d Consumed calls did not return within %v: the draw path waits for the broker",
			workers*perWorker, bound)
	}
}

// consumeBound is a liveness bound for a burst of Consumed calls: they take microseconds
// when Consumed does not wait for the broker, and a publish timeout each if it did.
const consumeBound = 2 * time.Second

// TestFaultStockSyncSurvivesBrokerRestart stops the broker while draws go on: Consumed
// keeps returning at once, the flushes made during the outage fail and keep their
// entries, and once the broker is back on the same port and store the SQL surplus of
// every award ends at the lowest remaining count ever granted. It runs with the client's
// reconnect buffer (as the app connects) and without it: the buffer replays a timed-out
// publish on reconnect, which would hide a StockSync that dropped its failed entries.
func TestFaultStockSyncSurvivesBrokerRestart(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		extra []natsgo.Option
	}{
		{"reconnect-buffer", nil},
		{"no-reconnect-buffer", []natsgo.Option{natsgo.ReconnectBufSize(-1)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			testStockSyncBrokerRestart(t, tt.extra...)
		})
	}
}

func testStockSyncBrokerRestart(t *testing.T, extra ...natsgo.Option) {
	srv := testenv.StartNATSServer(t)
	js := connectChild(t, srv, extra...)
	opts := faultOptions()
	ensureStream(t, js, opts)

	store := &fakeSurplusStore{}
	consumer := NewStockSyncConsumer(js, opts, store, nil)
	background(t, consumer.Run)
	ss := NewStockSync(js, opts, nil)
	background(t, ss.Run)

	refs := []strategy.AwardRef{
		{StrategyID: 100006, AwardID: 101},
		{StrategyID: 100006, AwardID: 102},
		{StrategyID: 100006, AwardID: 103},
		{StrategyID: 100001, AwardID: 101},
	}
	g := newGrants(refs, 10000)
	consumeConcurrently(t, ss, g, refs, 4, 50, consumeBound)
	testenv.Eventually(t, 30*time.Second, "store holds the grants made before the outage", storeEquals(store, g.want()))
	before := ss.Stats()

	srv.Stop()

	// Draws go on while the broker is down: the first burst is flushed against the dead
	// broker, the second lands while such flushes are failing.
	consumeConcurrently(t, ss, g, refs, 8, 200, consumeBound)
	testenv.Eventually(t, 30*time.Second, "a flush fails while the broker is down", func() (bool, string) {
		st := ss.Stats()
		return st.Failed > before.Failed, fmt.Sprintf("stats %+v", st)
	})
	consumeConcurrently(t, ss, g, refs, 8, 200, consumeBound)
	// The entries are kept: every award is pending, waiting for a flush or in the one
	// Run has in flight. And a Flush of our own waits for Run's (one flush at a time),
	// and with no Consumed calls in between each Flush only finds what the failed flush
	// before it put back: both must find entries and fail to publish them.
	if st := ss.Stats(); st.Pending != len(refs) {
		t.Fatalf("stats with the broker down = %+v, want all %d awards pending", st, len(refs))
	}
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := ss.Flush(ctx)
		cancel()
		if err == nil {
			t.Fatalf("Flush %d with the broker down = nil (stats %+v), want the kept entries to fail", i+1, ss.Stats())
		}
	}
	if got := store.snapshot(); maps.Equal(got, g.want()) {
		t.Fatalf("store reached %v while the broker was down", got)
	}

	if st := ss.Stats(); st.Pending != len(refs) {
		t.Fatalf("stats after the failed flushes = %+v, want all %d awards pending", st, len(refs))
	}

	srv.Start()
	testenv.Eventually(t, 30*time.Second, "store holds every grant after the restart", func() (bool, string) {
		ok, state := storeEquals(store, g.want())()
		return ok, fmt.Sprintf("%s; stock sync %+v, consumer %+v, %s", state, ss.Stats(), consumer.Stats(),
			consumerState(js, opts))
	})
	testenv.Eventually(t, 30*time.Second, "nothing left pending", func() (bool, string) {
		st := ss.Stats()
		return st.Pending == 0, fmt.Sprintf("stats %+v", st)
	})
	t.Logf("stock sync %+v, consumer %+v", ss.Stats(), consumer.Stats())
}

// consumerState describes the stock durable as the server sees it, for failure messages.
func consumerState(js jetstream.JetStream, opts StockOptions) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, opts.Stream(), opts.Durable())
	if err != nil {
		return "durable: " + err.Error()
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return "durable info: " + err.Error()
	}
	return fmt.Sprintf("durable: %d pending, %d ack pending, %d redelivered, %d waiting pulls",
		info.NumPending, info.NumAckPending, info.NumRedelivered, info.NumWaiting)
}

// TestFaultStockStreamSurvivesBrokerKill publishes stock updates, kills the broker with
// SIGKILL (no graceful shutdown) and starts it again on the same store: the acknowledged
// messages are still in the stream, and a consumer started only after the restart applies
// them.
func TestFaultStockStreamSurvivesBrokerKill(t *testing.T) {
	t.Parallel()
	srv := testenv.StartNATSServer(t)
	js := connectChild(t, srv)
	opts := faultOptions()
	ensureStream(t, js, opts)

	ss := NewStockSync(js, opts, nil)
	refs := []strategy.AwardRef{
		{StrategyID: 100006, AwardID: 101},
		{StrategyID: 100006, AwardID: 102},
		{StrategyID: 100006, AwardID: 103},
	}
	g := newGrants(refs, 500)
	const rounds = 5
	for range rounds {
		consumeConcurrently(t, ss, g, refs, 4, 10, consumeBound)
		if err := ss.Flush(context.Background()); err != nil {
			t.Fatalf("Flush: %v", err)
		}
	}
	if st := ss.Stats(); st.Published != rounds*int64(len(refs)) || st.Pending != 0 {
		t.Fatalf("stats before the kill = %+v, want %d published", st, rounds*len(refs))
	}

	srv.Kill()
	srv.Start()

	// The client reconnects on its own; until it has, stream lookups fail.
	var msgs uint64
	testenv.Eventually(t, 30*time.Second, "stream readable after the restart", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := js.Stream(ctx, opts.Stream())
		if err != nil {
			return false, err.Error()
		}
		info, err := s.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		msgs = info.State.Msgs
		return true, ""
	})
	if want := uint64(rounds * len(refs)); msgs != want {
		t.Fatalf("after SIGKILL and restart the stream holds %d messages, want %d", msgs, want)
	}

	store := &fakeSurplusStore{}
	background(t, NewStockSyncConsumer(js, opts, store, nil).Run)
	testenv.Eventually(t, 30*time.Second, "consumer started after the restart applies the stream",
		storeEquals(store, g.want()))
}
