package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/rain"
)

// rainT0 is the start of the test sessions.
var rainT0 = time.Date(2026, 12, 2, 20, 0, 0, 0, time.UTC)

// quotaVersion is version seq of a session, every field derived from seq, so that a reader
// can tell a version read whole from one mixing two.
func quotaVersion(sessionID, seq int64) rain.Quota {
	n := int(seq)
	w := make([]int, 1+n%5)
	for i := range w {
		w[i] = n
	}
	return rain.Quota{SessionID: sessionID, SeqNo: seq, Start: rainT0, End: rainT0.Add(time.Duration(n) * time.Second),
		Total: 100 + n, Burst: n % 100, Weights: w, UserCap: 1 + n%10}
}

// wholeVersion returns what is wrong with q as a version of quotaVersion, or "".
func wholeVersion(q *rain.Quota) string {
	n := int(q.SeqNo)
	if q.Total != 100+n || q.Burst != n%100 || q.UserCap != 1+n%10 || len(q.Weights) != 1+n%5 ||
		q.End.Sub(q.Start) != time.Duration(n)*time.Second {
		return fmt.Sprintf("version %d read with mixed fields: %+v", n, *q)
	}
	for _, w := range q.Weights {
		if w != n {
			return fmt.Sprintf("version %d has weight %d", n, w)
		}
	}
	// The derived tables are the standby buffer's: the plan releases everything at the end.
	if got := q.Allowed(q.End); got != q.Total {
		return fmt.Sprintf("version %d allows %d at its end, want %d", n, got, q.Total)
	}
	return ""
}

// rainNode is one node: its agent fed by its own watch of the shared bucket.
type rainNode struct {
	bus   *RainQuota
	agent *rain.Agent
	id    string
}

// seq returns the SeqNo the node has in force for the session, 0 for none.
func (n rainNode) seq(sessionID int64) int64 {
	if q := n.agent.Quota(sessionID); q != nil {
		return q.SeqNo
	}
	return 0
}

// startRainNode opens the bus for a new agent and watches until the test ends; onSwap,
// when set, is the agent's hook before the bus wires its own.
func startRainNode(t *testing.T, js jetstream.JetStream, prefix, id string, onSwap func(*rain.Quota)) rainNode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	agent := &rain.Agent{OnSwap: onSwap}
	bus, err := OpenRainQuota(ctx, js, prefix, 1, id, agent, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(context.Background())
	wait, err := bus.Watch(wctx)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(); wait() })
	return rainNode{bus: bus, agent: agent, id: id}
}

// eachKVBackend runs fn against two connections to an embedded server and two to the
// real one, under a unique prefix whose buckets are deleted when the test ends.
func eachKVBackend(t *testing.T, fn func(t *testing.T, jsA, jsB jetstream.JetStream, prefix string)) {
	for name, connect := range map[string]func(t *testing.T) (jetstream.JetStream, jetstream.JetStream){
		"embedded": func(t *testing.T) (jetstream.JetStream, jetstream.JetStream) {
			e := startEmbedded(t, t.TempDir())
			return embeddedJS(t, e), embeddedJS(t, e)
		},
		"server": func(t *testing.T) (jetstream.JetStream, jetstream.JetStream) { return serverJS(t), serverJS(t) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			jsA, jsB := connect(t)
			prefix := testenv.Unique("r")
			deleteBucketsAtEnd(t, jsA, prefix)
			fn(t, jsA, jsB, prefix)
		})
	}
}

// swapTimes records when an agent swapped in each SeqNo of a session.
type swapTimes struct {
	mu sync.Mutex
	at map[int64]time.Time
}

func (s *swapTimes) onSwap(q *rain.Quota) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.at == nil {
		s.at = make(map[int64]time.Time)
	}
	s.at[q.SeqNo] = time.Now()
}

func (s *swapTimes) get(seq int64) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.at[seq]
	return at, ok
}

// TestRainQuotaReachesEveryNode runs two nodes on their own connections: a version Put on
// one is in force there when Put returns and reaches the other (the measured propagation
// is logged); a stale Put changes neither the bucket nor any agent; each node reports its
// SeqNo in force; a node started later serves every version from its first request; a
// deleted session is forgotten everywhere.
func TestRainQuotaReachesEveryNode(t *testing.T) {
	eachKVBackend(t, func(t *testing.T, jsA, jsB jetstream.JetStream, prefix string) {
		var bSwaps swapTimes
		a := startRainNode(t, jsA, prefix, "10.0.0.1:8080", nil)
		b := startRainNode(t, jsB, prefix, "node-b/é", bSwaps.onSwap)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		const sid = 41

		var lat []time.Duration
		for seq := int64(1); seq <= 20; seq++ {
			put := time.Now()
			if err := a.bus.Put(ctx, quotaVersion(sid, seq)); err != nil {
				t.Fatalf("Put %d: %v", seq, err)
			}
			if got := a.seq(sid); got != seq {
				t.Fatalf("writing node has %d in force when Put %d returned", got, seq)
			}
			testenv.Eventually(t, 30*time.Second, fmt.Sprintf("seqNo %d reaches node b", seq), func() (bool, string) {
				return b.seq(sid) == seq, fmt.Sprintf("node b has %d", b.seq(sid))
			})
			at, ok := bSwaps.get(seq)
			if !ok {
				t.Fatalf("node b has %d in force but never swapped it in", seq)
			}
			lat = append(lat, at.Sub(put))
		}
		slices.Sort(lat)
		t.Logf("quota propagation, Put on node a → swap on node b, 20 versions: min %v, median %v, max %v",
			lat[0], lat[len(lat)/2], lat[len(lat)-1])

		// A stale version written late, through either node, is ignored everywhere.
		for _, n := range []rainNode{a, b} {
			if err := n.bus.Put(ctx, quotaVersion(sid, 7)); err != nil {
				t.Fatalf("stale Put through %s: %v", n.id, err)
			}
		}
		e, err := a.bus.kv.Get(ctx, quotaKey(sid))
		if err != nil {
			t.Fatal(err)
		}
		var stored rain.Quota
		if err := json.Unmarshal(e.Value(), &stored); err != nil || stored.SeqNo != 20 || !stored.Start.Equal(rainT0) {
			t.Fatalf("bucket holds %s (%v), want version 20", e.Value(), err)
		}
		if a.seq(sid) != 20 || b.seq(sid) != 20 {
			t.Fatalf("after a stale Put: node a has %d, node b %d, want 20", a.seq(sid), b.seq(sid))
		}

		// An invalid version is refused where it is written.
		bad := quotaVersion(sid, 21)
		bad.Burst = bad.Total + 1
		if err := a.bus.Put(ctx, bad); !errors.Is(err, rain.ErrInvalid) {
			t.Fatalf("Put of an invalid version = %v, want ErrInvalid", err)
		}

		// A node started now serves session 41 and a second session from its first request.
		if err := b.bus.Put(ctx, quotaVersion(42, 3)); err != nil {
			t.Fatal(err)
		}
		c := startRainNode(t, jsB, prefix, "c", nil)
		if c.seq(sid) != 20 || c.seq(42) != 3 {
			t.Fatalf("late node has %d and %d in force when Watch returned, want 20 and 3", c.seq(sid), c.seq(42))
		}

		want := []rain.NodeSeq{{NodeID: "10.0.0.1:8080", SeqNo: 20}, {NodeID: "c", SeqNo: 20}, {NodeID: "node-b/é", SeqNo: 20}}
		testenv.Eventually(t, 30*time.Second, "every node reports seqNo 20", func() (bool, string) {
			got, err := b.bus.Nodes(ctx, sid)
			return err == nil && slices.Equal(got, want), fmt.Sprintf("%v %v", got, err)
		})
		testenv.Eventually(t, 30*time.Second, "every node reports session 42", func() (bool, string) {
			got, err := a.bus.Nodes(ctx, 42)
			return err == nil && len(got) == 3, fmt.Sprintf("%v %v", got, err)
		})

		if err := a.bus.Delete(ctx, sid); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if a.agent.Quota(sid) != nil {
			t.Fatal("the deleting node still has the session when Delete returned")
		}
		testenv.Eventually(t, 30*time.Second, "every node forgets session 41", func() (bool, string) {
			return b.seq(sid) == 0 && c.seq(sid) == 0, fmt.Sprintf("b %d, c %d", b.seq(sid), c.seq(sid))
		})
		if got, err := c.bus.Nodes(ctx, sid); err != nil || len(got) != 0 {
			t.Fatalf("reports of a deleted session: %v %v", got, err)
		}
		if b.seq(42) != 3 || c.seq(42) != 3 {
			t.Fatalf("session 42 after deleting 41: b %d, c %d, want 3", b.seq(42), c.seq(42))
		}
		// An ended session's version may be written again (a retried end), and is served.
		if err := a.bus.Put(ctx, quotaVersion(sid, 21)); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, "a version after the delete reaches node b", func() (bool, string) {
			return b.seq(sid) == 21, fmt.Sprintf("node b has %d", b.seq(sid))
		})
	})
}

// TestRainQuotaSkipsBadEntries puts values no node can use into the bucket: a node starts
// and serves the good sessions, and its watch goes on after bad values arrive; Put
// replaces a value it cannot read.
func TestRainQuotaSkipsBadEntries(t *testing.T) {
	t.Parallel()
	js := embeddedJS(t, startEmbedded(t, t.TempDir()))
	prefix := testenv.Unique("r")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	raw, err := OpenRainQuota(ctx, js, prefix, 1, "writer", &rain.Agent{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, v any) {
		t.Helper()
		body, ok := v.([]byte)
		if !ok {
			if body, err = json.Marshal(v); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := raw.kv.Put(ctx, key, body); err != nil {
			t.Fatal(err)
		}
	}
	invalid := quotaVersion(6, 1)
	invalid.Total = 0
	put("q.5", []byte("{not json"))
	put("q.6", invalid)
	put("q.7", quotaVersion(8, 1)) // another session's version under 7
	put("q.abc", quotaVersion(9, 1))
	put("q.9", quotaVersion(9, 2))

	n := startRainNode(t, js, prefix, "n", nil)
	for id, want := range map[int64]int64{5: 0, 6: 0, 7: 0, 8: 0, 9: 2} {
		if got := n.seq(id); got != want {
			t.Errorf("session %d: %d in force, want %d", id, got, want)
		}
	}

	put("q.9", []byte("garbage"))
	put("q.10", quotaVersion(10, 1))
	testenv.Eventually(t, 30*time.Second, "the watch goes on past a bad value", func() (bool, string) {
		return n.seq(10) == 1, fmt.Sprintf("session 10: %d", n.seq(10))
	})
	if got := n.seq(9); got != 2 {
		t.Fatalf("session 9 after a bad value: %d in force, want 2 kept", got)
	}
	if err := raw.Put(ctx, quotaVersion(9, 3)); err != nil {
		t.Fatalf("Put over an undecodable value: %v", err)
	}
	testenv.Eventually(t, 30*time.Second, "version 3 replaces the bad value", func() (bool, string) {
		return n.seq(9) == 3, fmt.Sprintf("session 9: %d", n.seq(9))
	})
	// Session 7's key holds session 8's version: Put replaces it, and session 8 never
	// gets a version from it.
	if err := raw.Put(ctx, quotaVersion(7, 1)); err != nil {
		t.Fatalf("Put over another session's version: %v", err)
	}
	testenv.Eventually(t, 30*time.Second, "session 7 gets its version", func() (bool, string) {
		return n.seq(7) == 1, fmt.Sprintf("session 7: %d", n.seq(7))
	})
	if n.seq(8) != 0 || raw.agent.Quota(8) != nil {
		t.Fatalf("session 8 has %d in force from session 7's key", n.seq(8))
	}
}

// TestRainQuotaVersionsUnderLoad: each of two nodes Puts versions 2..N of one session as
// fast as it can, so their writes race on the key's revision, while readers on both
// agents check that each version they read is whole and never older than the one before.
// The bucket's value only ever grows, and both nodes end with N. Run it with -race.
func TestRainQuotaVersionsUnderLoad(t *testing.T) {
	eachKVBackend(t, func(t *testing.T, jsA, jsB jetstream.JetStream, prefix string) {
		const sid, last = 77, 150
		a := startRainNode(t, jsA, prefix, "a", nil)
		b := startRainNode(t, jsB, prefix, "b", nil)
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		if err := a.bus.Put(ctx, quotaVersion(sid, 1)); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, "version 1 on node b", func() bool { return b.seq(sid) == 1 })

		// Every value the key takes, in order.
		w, err := a.bus.kv.Watch(ctx, quotaKey(sid), jetstream.UpdatesOnly())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = w.Stop() }()

		var stop atomic.Bool
		var checked atomic.Int64
		var readers sync.WaitGroup
		for _, n := range []rainNode{a, b} {
			readers.Go(func() {
				var prev int64
				for !stop.Load() {
					q := n.agent.Quota(sid)
					if q == nil {
						t.Errorf("node %s: no version in force", n.id)
						return
					}
					if msg := wholeVersion(q); msg != "" {
						t.Errorf("node %s: %s", n.id, msg)
						return
					}
					if q.SeqNo < prev {
						t.Errorf("node %s went back from %d to %d", n.id, prev, q.SeqNo)
						return
					}
					prev = q.SeqNo
					checked.Add(1)
					runtime.Gosched() // two cores: leave the writers and the watches room
				}
			})
		}
		var writers sync.WaitGroup
		for _, n := range []rainNode{a, b} {
			writers.Go(func() {
				for seq := int64(2); seq <= last; seq++ {
					if err := n.bus.Put(ctx, quotaVersion(sid, seq)); err != nil {
						t.Errorf("node %s Put %d: %v", n.id, seq, err)
						return
					}
					if got := n.seq(sid); got < seq {
						t.Errorf("node %s has %d in force when Put %d returned", n.id, got, seq)
						return
					}
				}
			})
		}
		writers.Wait()
		testenv.Eventually(t, 30*time.Second, "both nodes have the last version", func() (bool, string) {
			return a.seq(sid) == last && b.seq(sid) == last, fmt.Sprintf("a %d, b %d", a.seq(sid), b.seq(sid))
		})
		stop.Store(true)
		readers.Wait()
		if checked.Load() == 0 {
			t.Fatal("no reader checked a version")
		}

		var stored []int64
		for len(stored) == 0 || stored[len(stored)-1] != last {
			select {
			case e := <-w.Updates():
				var q rain.Quota
				if err := json.Unmarshal(e.Value(), &q); err != nil {
					t.Fatalf("stored value %s: %v", e.Value(), err)
				}
				stored = append(stored, q.SeqNo)
			case <-ctx.Done():
				t.Fatalf("the bucket's values %v never reached %d", stored, last)
			}
		}
		for i := 1; i < len(stored); i++ {
			if stored[i] <= stored[i-1] {
				t.Fatalf("the bucket's value went from %d to %d: %v", stored[i-1], stored[i], stored)
			}
		}
		t.Logf("%d versions stored of %d written by two racing nodes; readers checked %d versions", len(stored), 2*(last-1), checked.Load())
	})
}

// fakeWinApplier is the rain service's ApplyWins: Fn decides each win's error; the wins
// applied (nil error) are recorded once per MsgID, as the store's idempotency would.
type fakeWinApplier struct {
	Fn func(w rain.Win) error

	mu      sync.Mutex
	calls   int
	applied map[string]rain.Win
}

func (f *fakeWinApplier) ApplyWins(_ context.Context, wins []rain.Win) []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.applied == nil {
		f.applied = make(map[string]rain.Win)
	}
	errs := make([]error, len(wins))
	for i, w := range wins {
		if f.Fn != nil {
			errs[i] = f.Fn(w)
		}
		if errs[i] == nil {
			f.applied[w.MsgID()] = w
		}
	}
	return errs
}

func (f *fakeWinApplier) snapshot() map[string]rain.Win {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]rain.Win, len(f.applied))
	for k, v := range f.applied {
		out[k] = v
	}
	return out
}

func testWin(sid int64, user string, n int) rain.Win {
	return rain.Win{SessionID: sid, UserID: user, N: n, Time: time.UnixMilli(1764705600123).UTC(),
		Prize: rain.Prize{Index: n, Kind: rain.KindCash, Amount: money.Cents(100 + n)}}
}

func winEvent(t *testing.T, w rain.Win) Event {
	t.Helper()
	body, err := json.Marshal(map[string]any{"id": w.MsgID(), "timestamp": w.Time.UnixMilli(), "data": w})
	if err != nil {
		t.Fatal(err)
	}
	return Event{Topic: rain.TopicWin, MsgID: w.MsgID(), Data: body}
}

// TestWinHandler applies a batch of good wins and bad messages: the good ones are applied
// in one call, messages that are no win and wins refused for good are permanent, a store
// that is down is retried.
func TestWinHandler(t *testing.T) {
	t.Parallel()
	down := errors.New("user database down")
	refuse := map[string]error{
		"1:conflict:1": fmt.Errorf("win contradicts the records: %w", rain.ErrConflict),
		"1:invalid:1":  fmt.Errorf("prize kind: %w", rain.ErrInvalid),
		"1:award:1":    fmt.Errorf("grant award: %w", credit.ErrAwardNotFound),
		"1:down:1":     fmt.Errorf("record win: %w", down),
	}
	f := &fakeWinApplier{Fn: func(w rain.Win) error { return refuse[w.MsgID()] }}
	events := []Event{
		winEvent(t, testWin(1, "ok", 1)),
		{Topic: rain.TopicWin, MsgID: "junk", Data: []byte("{not json")},
		winEvent(t, testWin(1, "conflict", 1)),
		{Topic: rain.TopicWin, MsgID: "empty", Data: []byte(`{"id":"empty","timestamp":1,"data":{}}`)},
		winEvent(t, testWin(1, "invalid", 1)),
		winEvent(t, testWin(1, "award", 1)),
		winEvent(t, testWin(1, "down", 1)),
		winEvent(t, testWin(1, "ok", 2)),
	}
	errs := WinHandler(f)(context.Background(), events)
	if len(errs) != len(events) {
		t.Fatalf("%d errors for %d events", len(errs), len(events))
	}
	for i, want := range []string{"nil", "permanent", "permanent", "permanent", "permanent", "permanent", "retry", "nil"} {
		got := "retry"
		switch {
		case errs[i] == nil:
			got = "nil"
		case errors.Is(errs[i], ErrPermanent):
			got = "permanent"
		}
		if got != want {
			t.Errorf("event %d (%s): %v, want %s", i, events[i].MsgID, errs[i], want)
		}
	}
	if !errors.Is(errs[6], down) {
		t.Errorf("store down: %v, want its cause wrapped", errs[6])
	}
	applied := f.snapshot()
	if len(applied) != 2 || applied["1:ok:1"] != testWin(1, "ok", 1) || applied["1:ok:2"] != testWin(1, "ok", 2) {
		t.Errorf("applied %v", applied)
	}
	if f.calls != 1 {
		t.Errorf("ApplyWins called %d times for one batch, want 1", f.calls)
	}
	// A batch of nothing but junk does not call the service.
	if errs := WinHandler(f)(context.Background(), events[1:2]); !errors.Is(errs[0], ErrPermanent) || f.calls != 1 {
		t.Errorf("junk batch: %v, %d calls", errs, f.calls)
	}
}

// TestWinEventsEndToEnd publishes a win twice (a republish after an unacknowledged tap)
// and a win the records contradict: the stream holds the win once under its msg id, the
// consumer applies it, retries a failing one until it applies, and dead-letters the
// contradicted one at once.
func TestWinEventsEndToEnd(t *testing.T) {
	t.Parallel()
	eachEventBackend(t, func(t *testing.T, js jetstream.JetStream, opts EventOptions) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		events := NewWinEvents(NewPublisher(js, opts))
		win, flaky, bad := testWin(12, "u1", 1), testWin(12, "u2", 1), testWin(12, "u3", 1)
		for _, w := range []rain.Win{win, win, flaky, bad} {
			if err := events.PublishWin(ctx, w); err != nil {
				t.Fatalf("PublishWin %s: %v", w.MsgID(), err)
			}
		}
		if n := streamCount(t, js, opts.Stream()); n != 3 {
			t.Errorf("stream holds %d messages, want 3 (the republish dropped)", n)
		}
		s, err := js.Stream(ctx, opts.Stream())
		if err != nil {
			t.Fatal(err)
		}
		first, err := s.GetMsg(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if first.Header.Get(jetstream.MsgIDHeader) != "12:u1:1" || first.Subject != opts.Subject(rain.TopicWin) ||
			!strings.HasPrefix(string(first.Data), `{"id":"12:u1:1","timestamp":1764705600123,"data":{"sessionId":12,"userId":"u1","n":1,`) {
			t.Errorf("message on %s = %s %v", first.Subject, first.Data, first.Header)
		}

		var flakyCalls atomic.Int32
		f := &fakeWinApplier{Fn: func(w rain.Win) error {
			switch w.MsgID() {
			case flaky.MsgID():
				if flakyCalls.Add(1) == 1 {
					return errors.New("user database down")
				}
			case bad.MsgID():
				return fmt.Errorf("win contradicts the records: %w", rain.ErrConflict)
			}
			return nil
		}}
		c := NewBatchConsumer(js, opts, rain.TopicWin, WinHandler(f), nil)
		background(t, c.Run)
		testenv.Eventually(t, 30*time.Second, "wins applied and the bad one dead-lettered", func() (bool, string) {
			got, st := f.snapshot(), c.Stats()
			return len(got) == 2 && st.DeadLettered == 1, fmt.Sprintf("applied %v, stats %+v", got, st)
		})
		testenv.Eventually(t, 30*time.Second, "consumer settled", settled(t, js, opts, rain.TopicWin))
		applied := f.snapshot()
		if applied[win.MsgID()] != win || applied[flaky.MsgID()] != flaky {
			t.Errorf("applied %v", applied)
		}
		if flakyCalls.Load() != 2 {
			t.Errorf("failing win tried %d times, want 2", flakyCalls.Load())
		}
		if m := lastDLQ(t, js, opts, rain.TopicWin); !strings.Contains(m.Header.Get(HeaderReason), "contradicts") {
			t.Errorf("dead letter headers %v", m.Header)
		}
		// Applied once the events drained: what a rebuild waits for.
		if err := NewEventDrain(js, opts, rain.TopicWin).WaitApplied(ctx); err != nil {
			t.Fatalf("WaitApplied: %v", err)
		}
	})
}

// TestRainQuotaSurvivesNATSRestart stops the broker while a node swaps a version in (its
// report cannot be written then) and starts it again: the report is written once the
// broker is back, and the node's watch goes on delivering new versions (it opens a new
// watch on reconnect instead of waiting some 20 s for the old one's heartbeats to fail;
// the time is logged).
func TestRainQuotaSurvivesNATSRestart(t *testing.T) {
	t.Parallel()
	s := testenv.StartNATSServer(t)
	n := startRainNode(t, connectChild(t, s), "", "n", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const sid = 3
	if err := n.bus.Put(ctx, quotaVersion(sid, 1)); err != nil {
		t.Fatal(err)
	}
	reports := func(want int64) func() (bool, string) {
		return func() (bool, string) {
			got, err := n.bus.Nodes(ctx, sid)
			return err == nil && slices.Equal(got, []rain.NodeSeq{{NodeID: "n", SeqNo: want}}), fmt.Sprintf("%v %v", got, err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "version 1 reported", reports(1))

	s.Stop()
	// A version the node learned another way (the service seeding it from the store)
	// swaps in while the broker is down; the swap does not wait for the report.
	if ok, err := n.agent.Offer(quotaVersion(sid, 2)); !ok || err != nil {
		t.Fatalf("Offer while the broker is down: %v %v", ok, err)
	}
	s.Start()
	t0 := time.Now()
	testenv.Eventually(t, 60*time.Second, "version 2 reported after the restart", reports(2))

	other, err := OpenRainQuota(ctx, connectChild(t, s), "", 1, "writer", &rain.Agent{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Put(ctx, quotaVersion(sid, 3)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the watch delivers after the restart", func() (bool, string) {
		return n.seq(sid) == 3, fmt.Sprintf("node has %d", n.seq(sid))
	})
	t.Logf("after the broker came back: a new version reached the node in %v", time.Since(t0))
}
