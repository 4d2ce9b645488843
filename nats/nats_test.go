package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/strategy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeAwardCount is the award_count of every award in these tests: a grant leaving
// remaining units is numbered fakeAwardCount − remaining.
const fakeAwardCount = 1 << 40

// grant is the grant that leaves remaining units of an award of fakeAwardCount.
func grant(remaining int64) strategy.Grant {
	return strategy.Grant{Remaining: remaining, Issued: fakeAwardCount - remaining}
}

// fakeSurplusStore is a strategy.SurplusStore keeping min(surplus, remaining) in a map,
// every award having fakeAwardCount units. Fn, when set, runs before each call; an error
// it returns fails the call unapplied. Fn must be safe for concurrent use.
type fakeSurplusStore struct {
	Fn func(ref strategy.AwardRef, remaining int64) error

	mu      sync.Mutex
	surplus map[strategy.AwardRef]int64
	calls   int
}

func (f *fakeSurplusStore) SyncAwardIssued(ctx context.Context, ref strategy.AwardRef, issued int64) error {
	return f.SyncAwardSurplus(ctx, ref, fakeAwardCount-issued)
}

func (f *fakeSurplusStore) SyncAwardSurplus(_ context.Context, ref strategy.AwardRef, remaining int64) error {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	if f.Fn != nil {
		if err := f.Fn(ref, remaining); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.surplus == nil {
		f.surplus = make(map[strategy.AwardRef]int64)
	}
	if cur, ok := f.surplus[ref]; !ok || remaining < cur {
		f.surplus[ref] = remaining
	}
	return nil
}

func (f *fakeSurplusStore) snapshot() map[strategy.AwardRef]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.surplus)
}

// testOptions are fast timings for tests, under a prefix of their own.
func testOptions(prefix string) StockOptions {
	return StockOptions{
		Prefix:        prefix,
		FlushInterval: 10 * time.Millisecond,
		FetchWait:     100 * time.Millisecond,
		BatchSize:     64,
		Backoff:       []time.Duration{20 * time.Millisecond, 50 * time.Millisecond},
	}
}

// startEmbedded starts an embedded server under dir, stopped when the test ends.
func startEmbedded(t *testing.T, dir string) *Embedded {
	t.Helper()
	e, err := StartEmbedded(dir)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

// embeddedJS returns JetStream on a fresh embedded server.
func embeddedJS(t *testing.T, e *Embedded) jetstream.JetStream {
	t.Helper()
	nc, err := e.Connect()
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

// eachBackend runs fn against the embedded server and against the real server named by
// BIGMARKET_TEST_NATS_URL, each under a unique prefix. The stream of the prefix is deleted
// when the test ends on the real server.
func eachBackend(t *testing.T, fn func(t *testing.T, js jetstream.JetStream, opts StockOptions)) {
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		js := embeddedJS(t, startEmbedded(t, t.TempDir()))
		fn(t, js, testOptions(testenv.Unique("t")))
	})
	t.Run("server", func(t *testing.T) {
		t.Parallel()
		js := serverJS(t)
		opts := testOptions(testenv.Unique("t"))
		deleteStreamsAtEnd(t, js, opts.Stream())
		fn(t, js, opts)
	})
}

// serverJS connects to the real NATS server of the integration tests (skipping without
// one, failing under CI) and closes the connection when the test ends.
func serverJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := Connect([]string{testenv.NATSURL(t)}, "bigmarket-nats-test")
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

// deleteStreamsAtEnd deletes the named streams from the shared server when the test ends.
func deleteStreamsAtEnd(t *testing.T, js jetstream.JetStream, names ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, name := range names {
			if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				t.Errorf("delete stream %s: %v", name, err)
			}
		}
	})
}

// background runs fn until the test ends and fails the test if fn returns an error.
func background(t *testing.T, fn func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("background run: %v", err)
		}
	})
}

// storeEquals is a condition for testenv.Eventually: the store holds exactly want.
func storeEquals(store *fakeSurplusStore, want map[strategy.AwardRef]int64) func() (bool, string) {
	return func() (bool, string) {
		got := store.snapshot()
		return maps.Equal(got, want), fmt.Sprintf("got %v, want %v", got, want)
	}
}

func ensureStream(t *testing.T, js jetstream.JetStream, opts StockOptions) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := EnsureStockStream(ctx, js, opts); err != nil {
		t.Fatalf("EnsureStockStream: %v", err)
	}
}

func streamMsgs(t *testing.T, js jetstream.JetStream, opts StockOptions) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, opts.Stream())
	if err != nil {
		t.Fatalf("stream %s: %v", opts.Stream(), err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.Msgs
}

func TestPing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		e, err := StartEmbedded(t.TempDir(), WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatalf("StartEmbedded: %v", err)
		}
		defer e.Shutdown()
		nc, err := e.Connect()
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		defer nc.Close()
		if err := Ping(ctx, nc); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		nc.Close()
		if err := Ping(ctx, nc); err == nil {
			t.Fatal("Ping on a closed connection succeeded")
		}
	})
	t.Run("server", func(t *testing.T) {
		t.Parallel()
		nc, err := Connect([]string{testenv.NATSURL(t)}, "bigmarket-nats-test")
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		defer nc.Close()
		if err := Ping(ctx, nc); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})
}

func TestConnectRefused(t *testing.T) {
	t.Parallel()
	if _, err := Connect(nil, "x"); err == nil {
		t.Fatal("Connect with no urls succeeded")
	}
	// Port 1 on loopback has no server: Connect must fail, not retry forever.
	if _, err := Connect([]string{"nats://127.0.0.1:1"}, "x"); err == nil {
		t.Fatal("Connect to a closed port succeeded")
	}
}

func TestStockOptionsNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prefix, stream, subject, durable string
	}{
		{"", "BIGMARKET_STOCK", "bigmarket.stock.award", "bigmarket_stock_sync"},
		{"t1", "t1_BIGMARKET_STOCK", "t1.bigmarket.stock.award", "t1_bigmarket_stock_sync"},
	}
	for _, tt := range tests {
		o := StockOptions{Prefix: tt.prefix}
		if o.Stream() != tt.stream || o.Subject() != tt.subject || o.Durable() != tt.durable {
			t.Errorf("prefix %q: got %s %s %s", tt.prefix, o.Stream(), o.Subject(), o.Durable())
		}
	}
	if got := msgID(strategy.AwardRef{StrategyID: 100006, AwardID: 102}, 41); got != "100006_102_i41" {
		t.Errorf("msgID = %s", got)
	}
	err := EnsureStockStream(context.Background(), nil, StockOptions{Prefix: "a.b"})
	if err == nil {
		t.Error("EnsureStockStream accepted a prefix with a dot")
	}
}

func TestStockSyncConsumedKeepsMinimum(t *testing.T) {
	t.Parallel()
	s := NewStockSync(nil, StockOptions{}, nil)
	ref := strategy.AwardRef{StrategyID: 1, AwardID: 101}
	for _, r := range []int64{5, 3, 7, 4} {
		s.Consumed(ref, grant(r))
	}
	s.Consumed(strategy.AwardRef{StrategyID: 1, AwardID: 102}, grant(9))
	if got := s.pending[ref]; got != fakeAwardCount-3 {
		t.Errorf("pending = %d, want the grant that left 3", got)
	}
	if st := s.Stats(); st.Pending != 2 {
		t.Errorf("Stats().Pending = %d, want 2", st.Pending)
	}
}

// TestStockSyncConverges grants units of several awards from many goroutines on two
// "nodes", each with its StockSync, and runs two consumers on the shared durable: the
// store ends at the stock left for every award.
func TestStockSyncConverges(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, js jetstream.JetStream, opts StockOptions) {
		ensureStream(t, js, opts)
		store := &fakeSurplusStore{}
		for range 2 {
			c := NewStockSyncConsumer(js, opts, store, nil)
			background(t, c.Run)
		}
		syncs := []*StockSync{NewStockSync(js, opts, nil), NewStockSync(js, opts, nil)}
		for _, s := range syncs {
			background(t, s.Run)
		}

		const stock, awards, workers, grants = 100000, 5, 16, 400
		var (
			mu      sync.Mutex
			granted = make(map[strategy.AwardRef]int64)
			wg      sync.WaitGroup
		)
		for w := range workers {
			wg.Go(func() {
				s := syncs[w%len(syncs)]
				for i := range grants {
					ref := strategy.AwardRef{StrategyID: 100006, AwardID: 101 + (w+i)%awards}
					mu.Lock() // the Redis counter: each remaining value is granted once
					granted[ref]++
					remaining := stock - granted[ref]
					mu.Unlock()
					s.Consumed(ref, grant(remaining))
				}
			})
		}
		wg.Wait()

		want := make(map[strategy.AwardRef]int64)
		for ref, n := range granted {
			want[ref] = stock - n
		}
		testenv.Eventually(t, 30*time.Second, "store holds the stock left", storeEquals(store, want))
		for _, s := range syncs {
			if st := s.Stats(); st.Published == 0 || st.Failed != 0 {
				t.Errorf("stats = %+v, want published > 0 and no failures", st)
			}
		}
	})
}

// TestStockSyncConsumerRedeliversAfterStoreFailure fails the first store calls: the
// messages are redelivered and the store still converges.
func TestStockSyncConsumerRedeliversAfterStoreFailure(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, js jetstream.JetStream, opts StockOptions) {
		ensureStream(t, js, opts)
		const failFirst = 3
		var (
			mu    sync.Mutex
			calls int
		)
		store := &fakeSurplusStore{Fn: func(strategy.AwardRef, int64) error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls <= failFirst {
				return errors.New("database is locked")
			}
			return nil
		}}
		c := NewStockSyncConsumer(js, opts, store, nil)
		background(t, c.Run)

		s := NewStockSync(js, opts, nil)
		a := strategy.AwardRef{StrategyID: 100001, AwardID: 101}
		b := strategy.AwardRef{StrategyID: 100001, AwardID: 102}
		s.Consumed(a, grant(9))
		s.Consumed(b, grant(4))
		if err := s.Flush(context.Background()); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		testenv.Eventually(t, 30*time.Second, "store converges after failures",
			storeEquals(store, map[strategy.AwardRef]int64{a: 9, b: 4}))
		if st := c.Stats(); st.Failed != failFirst {
			t.Errorf("consumer stats = %+v, want %d failed", st, failFirst)
		}
	})
}

// TestStockSyncKeepsEntriesWhileStreamMissing publishes while no stream takes the subject
// (JetStream unavailable for it): the entries stay pending, later grants merge into them,
// and they are published once the stream exists.
func TestStockSyncKeepsEntriesWhileStreamMissing(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, js jetstream.JetStream, opts StockOptions) {
		ctx := context.Background()
		store := &fakeSurplusStore{}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := NewStockSyncConsumer(js, opts, store, nil).Run(rctx); err == nil {
			t.Fatal("consumer Run without a stream returned nil")
		}
		s := NewStockSync(js, opts, nil)
		a := strategy.AwardRef{StrategyID: 100003, AwardID: 101}
		b := strategy.AwardRef{StrategyID: 100003, AwardID: 102}
		s.Consumed(a, grant(7))
		if err := s.Flush(ctx); err == nil {
			t.Fatal("Flush without a stream succeeded")
		}
		if st := s.Stats(); st.Pending != 1 || st.Failed != 1 || st.Published != 0 {
			t.Fatalf("stats after failed flush = %+v", st)
		}
		s.Consumed(a, grant(9)) // an older grant flushed late: the minimum stays
		s.Consumed(b, grant(3))

		ensureStream(t, js, opts)
		if err := s.Flush(ctx); err != nil {
			t.Fatalf("Flush after recovery: %v", err)
		}
		if st := s.Stats(); st.Pending != 0 || st.Published != 2 {
			t.Fatalf("stats after recovery = %+v", st)
		}
		if n := streamMsgs(t, js, opts); n != 2 {
			t.Fatalf("stream holds %d messages, want 2", n)
		}
		background(t, NewStockSyncConsumer(js, opts, store, nil).Run)
		testenv.Eventually(t, 30*time.Second, "store holds the kept entries",
			storeEquals(store, map[strategy.AwardRef]int64{a: 7, b: 3}))
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
}

// TestStockSyncConsumerDropsMalformed terminates a message it cannot decode and goes on.
func TestStockSyncConsumerDropsMalformed(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, js jetstream.JetStream, opts StockOptions) {
		ensureStream(t, js, opts)
		ctx := context.Background()
		if _, err := js.Publish(ctx, opts.Subject()+".1.1", []byte("{not json")); err != nil {
			t.Fatalf("publish: %v", err)
		}
		s := NewStockSync(js, opts, nil)
		ref := strategy.AwardRef{StrategyID: 100002, AwardID: 101}
		s.Consumed(ref, grant(5))
		if err := s.Flush(ctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		store := &fakeSurplusStore{}
		background(t, NewStockSyncConsumer(js, opts, store, nil).Run)
		testenv.Eventually(t, 30*time.Second, "valid message applied", storeEquals(store, map[strategy.AwardRef]int64{ref: 5}))
	})
}

// TestEmbeddedRestartKeepsStream stops the embedded server and starts it again on the same
// directory: the stream's messages, the consumer and the dedup window survive.
func TestEmbeddedRestartKeepsStream(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	opts := testOptions("")
	a := strategy.AwardRef{StrategyID: 100001, AwardID: 101}
	b := strategy.AwardRef{StrategyID: 100001, AwardID: 102}

	e1, err := StartEmbedded(dir)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	nc1, err := e1.Connect()
	if err != nil {
		e1.Shutdown()
		t.Fatalf("Connect: %v", err)
	}
	js1, err := jetstream.New(nc1)
	if err != nil {
		t.Fatalf("jetstream.New: %v", err)
	}
	ensureStream(t, js1, opts)
	s1 := NewStockSync(js1, opts, nil)
	s1.Consumed(a, grant(10))
	s1.Consumed(b, grant(20))
	if err := s1.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	nc1.Close()
	e1.Shutdown()

	e2 := startEmbedded(t, dir)
	js2 := embeddedJS(t, e2)
	if n := streamMsgs(t, js2, opts); n != 2 {
		t.Fatalf("after restart the stream holds %d messages, want 2", n)
	}
	// The same grants flushed again (a retried flush) are dropped as duplicates.
	s2 := NewStockSync(js2, opts, nil)
	s2.Consumed(a, grant(10))
	if err := s2.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if n := streamMsgs(t, js2, opts); n != 2 {
		t.Fatalf("a duplicate was stored: %d messages, want 2", n)
	}
	store := &fakeSurplusStore{}
	background(t, NewStockSyncConsumer(js2, opts, store, nil).Run)
	testenv.Eventually(t, 30*time.Second, "restarted stream applied",
		storeEquals(store, map[strategy.AwardRef]int64{a: 10, b: 20}))
}

func BenchmarkStockSyncConsumed(b *testing.B) {
	s := NewStockSync(nil, StockOptions{}, nil)
	b.RunParallel(func(pb *testing.PB) {
		var i int64
		for pb.Next() {
			i++
			s.Consumed(strategy.AwardRef{StrategyID: 100006, AwardID: 101 + int(i%8)}, grant(1_000_000-i))
		}
	})
}

// TestStockSyncConsumerAppliesOldForm mixes messages of the old form (a remaining count,
// published before grants were numbered) with numbered ones, and a commit: the consumer
// applies each form with its own monotone update, and a committed grant is in the stream
// when Commit returns.
func TestStockSyncConsumerAppliesOldForm(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, js jetstream.JetStream, opts StockOptions) {
		ctx := context.Background()
		ensureStream(t, js, opts)
		a := strategy.AwardRef{StrategyID: 100004, AwardID: 101}
		b := strategy.AwardRef{StrategyID: 100004, AwardID: 102}
		for ref, body := range map[strategy.AwardRef]string{
			a: `{"strategyId":100004,"awardId":101,"remaining":7}`,
			b: `{"strategyId":100004,"awardId":102,"remaining":3}`,
		} {
			if _, err := js.Publish(ctx, opts.awardSubject(ref), []byte(body)); err != nil {
				t.Fatal(err)
			}
		}
		s := NewStockSync(js, opts, nil)
		s.Consumed(a, grant(9)) // above the old form's 7: the minimum stays 7
		if err := s.Commit(ctx, b, grant(1)); err != nil {
			t.Fatal(err)
		}
		if n := streamMsgs(t, js, opts); n != 3 {
			t.Fatalf("stream holds %d messages after a commit, want 3", n)
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		store := &fakeSurplusStore{}
		background(t, NewStockSyncConsumer(js, opts, store, nil).Run)
		testenv.Eventually(t, 30*time.Second, "store holds both forms",
			storeEquals(store, map[strategy.AwardRef]int64{a: 7, b: 1}))
		log := NewStockLog(js, opts)
		if got, ok, err := log.MaxIssued(ctx, a, fakeAwardCount); err != nil || !ok || got != fakeAwardCount-7 {
			t.Errorf("max issued of a: %d %v %v, want the old form's %d", got, ok, err, fakeAwardCount-7)
		}
	})
}
