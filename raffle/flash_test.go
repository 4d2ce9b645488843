package raffle

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	goredis "github.com/redis/go-redis/v9"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/flash"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/nats"
	"github.com/bigmarket/bigmarket/outbox"
	bmredis "github.com/bigmarket/bigmarket/redis"
	"github.com/bigmarket/bigmarket/strategy"
)

// flashActs is the activity side of the flash draw: an open activity and the user's SQL
// quota the hot copy loads from (the SQL store has its own tests).
type flashActs struct {
	a  activity.Activity
	mu sync.Mutex
	q  activity.Quota
}

func (f *flashActs) Open(context.Context, int64) (activity.Activity, error)     { return f.a, nil }
func (f *flashActs) Activity(context.Context, int64) (activity.Activity, error) { return f.a, nil }
func (f *flashActs) Periods(t time.Time) (string, string) {
	return t.UTC().Format(time.DateOnly), t.UTC().Format("2006-01")
}
func (f *flashActs) StoredQuota(context.Context, string, int64, string, string) (activity.Quota, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.q, nil
}

// countingStrategies picks award 101, 102, … in turn, so that each pick is told apart.
type countingStrategies struct {
	fakeStrategies
	mu    sync.Mutex
	picks int
}

func (c *countingStrategies) Draw(_ context.Context, in strategy.Input) (strategy.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.picks++
	id := 100 + c.picks
	return strategy.Result{AwardID: id, Title: "award", Sort: c.picks, RuleValue: "1,100"}, nil
}

func (c *countingStrategies) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.picks
}

type flashFixture struct {
	svc    *Service
	hot    *bmredis.DrawQuota
	acts   *flashActs
	strats *countingStrategies
	broker *testenv.NATSServer
	js     jetstream.JetStream
	opts   nats.EventOptions
}

// newFlashFixture is a flash draw on the shared Redis and a private broker (the tests
// stop it), for a user with 10 draws.
func newFlashFixture(t *testing.T) *flashFixture {
	t.Helper()
	ctx := t.Context()
	client, err := bmredis.Open(ctx, bmredis.Options{Addrs: []string{testenv.RedisAddr(t)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	hotPrefix := testenv.Unique("flash")
	hot := bmredis.NewDrawQuota(client, hotPrefix)
	t.Cleanup(func() { dropKeys(t, client, hotPrefix) })
	if err := hot.MarkReady(ctx); err != nil {
		t.Fatal(err)
	}
	broker := testenv.StartNATSServer(t)
	nc, err := nats.Connect([]string{broker.URL}, "flash-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	opts := nats.DrawEventOptions(nats.EventOptions{Prefix: testenv.Unique("flash")})
	if err := nats.EnsureDrawStream(ctx, js, opts); err != nil {
		t.Fatal(err)
	}
	acts := &flashActs{a: activity.Activity{ID: 100301, Name: "测试活动", StrategyID: 100006, State: activity.StateOpen,
		End: time.Now().Add(24 * time.Hour)},
		q: activity.Quota{Account: &activity.Account{Total: 10, TotalSurplus: 10, Day: 10, DaySurplus: 10, Month: 10, MonthSurplus: 10}}}
	strats := &countingStrategies{}
	svc := NewService(Options{Strategies: strats, Flash: Flash{
		Activities: acts, Hot: hot, Events: nats.NewDrawEvents(nats.NewPublisher(js, opts)),
		PublishTimeout: 300 * time.Millisecond, Lease: 2 * time.Second, SweepAge: 2 * time.Second,
	}})
	return &flashFixture{svc: svc, hot: hot, acts: acts, strats: strats, broker: broker, js: js, opts: opts}
}

// published returns the draw events in the stream by order id, and how many messages.
func (f *flashFixture) published(t *testing.T) (map[string]flash.Event, int) {
	t.Helper()
	ctx := t.Context()
	s, err := f.js.Stream(ctx, f.opts.Stream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]flash.Event{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := outbox.Decode[flash.Event](m.Data)
		if err != nil {
			t.Fatal(err)
		}
		got[msg.Data.OrderID] = msg.Data
	}
	return got, int(info.State.Msgs)
}

func (f *flashFixture) surplus(t *testing.T, user string) int64 {
	t.Helper()
	day, month := f.acts.Periods(time.Now())
	q, ok, err := f.hot.Read(t.Context(), activity.QuotaKey{UserID: user, ActivityID: f.acts.a.ID, Day: day, Month: month})
	if err != nil || !ok {
		t.Fatalf("hot quota: %v %v", ok, err)
	}
	return q.Account.TotalSurplus
}

// TestFlashDrawRetryAnswersTheSameOutcome: a draw whose event the broker does not ack
// answers ErrUnavailable; the next draw answers that draw's outcome, without a new pick
// or a new unit, and publishes it once.
func TestFlashDrawRetryAnswersTheSameOutcome(t *testing.T) {
	f := newFlashFixture(t)
	ctx := t.Context()
	const user = "retry-user"
	first, err := f.svc.Draw(ctx, user, 100301)
	if err != nil || first.AwardID != 101 {
		t.Fatalf("first draw = %+v, %v", first, err)
	}
	f.broker.Stop()
	if _, err := f.svc.Draw(ctx, user, 100301); !errors.Is(err, flash.ErrUnavailable) {
		t.Fatalf("draw with the broker down = %v, want ErrUnavailable", err)
	}
	if f.strats.count() != 2 || f.surplus(t, user) != 8 {
		t.Fatalf("after the unacked draw: %d picks, surplus %d; want 2 and 8", f.strats.count(), f.surplus(t, user))
	}
	f.broker.Start()
	var again Result
	testenv.Eventually(t, 30*time.Second, "the retry answers once the broker is back", func() (bool, string) {
		again, err = f.svc.Draw(ctx, user, 100301)
		return err == nil, "last error: " + errString(err)
	})
	if again.AwardID != 102 || f.strats.count() != 2 || f.surplus(t, user) != 8 {
		t.Fatalf("retry = %+v after %d picks, surplus %d; want the unacked draw's award 102, no new pick or unit", again, f.strats.count(), f.surplus(t, user))
	}
	third, err := f.svc.Draw(ctx, user, 100301)
	if err != nil || third.AwardID != 103 || f.surplus(t, user) != 7 {
		t.Fatalf("next draw = %+v, %v, surplus %d; want a new unit and pick", third, err, f.surplus(t, user))
	}
	events, n := f.published(t)
	if len(events) != 3 || n != 3 {
		t.Fatalf("stream holds %d messages of %d draws, want 3 of 3: %+v", n, len(events), events)
	}
	awards := map[int]int{}
	for _, e := range events {
		awards[e.AwardID]++
		if e.UserID != user || e.ActivityName != "测试活动" || e.StrategyID != 100006 || e.Day == "" || e.RuleValue != "1,100" {
			t.Errorf("event %+v", e)
		}
	}
	if awards[101] != 1 || awards[102] != 1 || awards[103] != 1 {
		t.Errorf("published awards %v, want 101, 102, 103 once each", awards)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestFlashDrawResumesADrawNeverPicked: a draw that took its unit and died before its
// pick is picked and answered by the user's next draw, which takes no unit.
func TestFlashDrawResumesADrawNeverPicked(t *testing.T) {
	f := newFlashFixture(t)
	ctx := t.Context()
	const user = "crashed-user"
	day, month := f.acts.Periods(time.Now())
	key := activity.QuotaKey{UserID: user, ActivityID: 100301, Day: day, Month: month}
	// The first draw loads the hot copy; a crashed one then takes a unit with a lease
	// that has already run out.
	if _, err := f.svc.Draw(ctx, user, 100301); err != nil {
		t.Fatal(err)
	}
	crashed, _, err := f.hot.Take(ctx, key, "crashed-order", time.Now(), -time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if f.surplus(t, user) != 8 {
		t.Fatalf("surplus %d, want 8", f.surplus(t, user))
	}
	r, err := f.svc.Draw(ctx, user, 100301)
	if err != nil || r.AwardID != 102 || f.surplus(t, user) != 8 {
		t.Fatalf("draw after a crash = %+v, %v, surplus %d; want the crashed draw picked (102), no unit", r, err, f.surplus(t, user))
	}
	events, _ := f.published(t)
	if e, ok := events[crashed.OrderID]; !ok || e.AwardID != 102 {
		t.Fatalf("crashed draw's event %+v, %v", e, ok)
	}
}

// TestFlashSweepPublishesAbandonedDraws: a pending draw nobody comes back for is
// published by the sweep with its fixed outcome, and then gone.
func TestFlashSweepPublishesAbandonedDraws(t *testing.T) {
	f := newFlashFixture(t)
	ctx := t.Context()
	const user = "gone-user"
	if _, err := f.svc.Draw(ctx, user, 100301); err != nil {
		t.Fatal(err)
	}
	day, month := f.acts.Periods(time.Now())
	key := activity.QuotaKey{UserID: user, ActivityID: 100301, Day: day, Month: month}
	taken := time.Now().Add(-time.Minute)
	if _, _, err := f.hot.Take(ctx, key, "fixed-order", taken, time.Second); err != nil {
		t.Fatal(err)
	}
	o := flash.Outcome{AwardID: 107, AwardTitle: "fixed", Sort: 7, AwardTime: taken.UnixMilli()}
	if _, err := f.hot.Fix(ctx, user, 100301, "fixed-order", o, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.hot.Take(ctx, key, "unpicked-order", taken, time.Second); err != nil {
		t.Fatal(err)
	}
	n, err := f.svc.SweepPending(ctx)
	if err != nil || n != 2 {
		t.Fatalf("SweepPending = %d, %v; want 2", n, err)
	}
	events, msgs := f.published(t)
	if events["fixed-order"].AwardID != 107 || events["unpicked-order"].AwardID != 102 || msgs != 3 {
		t.Fatalf("published %+v (%d messages)", events, msgs)
	}
	if n, err := f.svc.SweepPending(ctx); err != nil || n != 0 {
		t.Fatalf("second sweep = %d, %v; want nothing left", n, err)
	}
	raw, _ := json.Marshal(events["fixed-order"])
	t.Logf("swept event: %s", raw)
}

// TestFlashDrawHealsAMissedRecharge: a recharge committed to SQL whose hot step was lost
// (a crash between the two) is found when the hot quota says exhausted: the draw raises
// the hot copy from SQL and takes the new unit, and no unit appears twice.
func TestFlashDrawHealsAMissedRecharge(t *testing.T) {
	f := newFlashFixture(t)
	ctx := t.Context()
	const user = "healed-user"
	for range 10 {
		if _, err := f.svc.Draw(ctx, user, 100301); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.svc.Draw(ctx, user, 100301); !errors.Is(err, activity.ErrTotalQuotaExhausted) {
		t.Fatalf("eleventh draw = %v, want total quota exhausted", err)
	}
	f.acts.mu.Lock()
	f.acts.q.Add(activity.Count{Total: 2, Day: 2, Month: 2})
	f.acts.mu.Unlock()
	for i := range 2 {
		if _, err := f.svc.Draw(ctx, user, 100301); err != nil {
			t.Fatalf("draw %d after the missed recharge: %v", i+1, err)
		}
	}
	if _, err := f.svc.Draw(ctx, user, 100301); !errors.Is(err, activity.ErrTotalQuotaExhausted) {
		t.Fatalf("draw past the recharge = %v, want total quota exhausted", err)
	}
}

// dropKeys deletes the keys under prefix from the shared Redis (MarkReady alone writes one
// marker per slot: 16,384 keys a test), in pipelined batches.
func dropKeys(t *testing.T, client goredis.UniversalClient, prefix string) {
	ctx := context.Background()
	var batch []string
	flush := func() {
		if len(batch) > 0 {
			if err := client.Unlink(ctx, batch...).Err(); err != nil {
				t.Logf("drop test keys: %v", err)
			}
			batch = batch[:0]
		}
	}
	iter := client.Scan(ctx, 0, prefix+":*", 2000).Iterator()
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 500 {
			flush()
		}
	}
	flush()
}

// clearFailsOnce is the hot quota whose first Clear fails (Redis out of reach right after
// the broker's ack).
type clearFailsOnce struct {
	*bmredis.DrawQuota
	failed atomic.Bool
}

func (c *clearFailsOnce) Clear(ctx context.Context, userID string, activityID int64, orderID string) error {
	if c.failed.CompareAndSwap(false, true) {
		return errors.New("redis: connection refused")
	}
	return c.DrawQuota.Clear(ctx, userID, activityID, orderID)
}

// TestFlashDrawAnswersADrawOnce: a draw whose event is durable but whose pending entry
// could not be cleared answers 0009, not 0000 — a 0000 with the entry left behind would
// be answered again by the user's next draw once the lease ran out, two wins told for one
// unit. The retry answers that outcome once; the draw after it takes a new unit.
func TestFlashDrawAnswersADrawOnce(t *testing.T) {
	f := newFlashFixture(t)
	hot := &clearFailsOnce{DrawQuota: f.hot}
	f.svc.opts.Flash.Hot = hot
	ctx := t.Context()
	const user = "clear-user"
	if _, err := f.svc.Draw(ctx, user, 100301); !errors.Is(err, flash.ErrUnavailable) {
		t.Fatalf("draw whose pending entry was not cleared = %v, want ErrUnavailable (0009)", err)
	}
	told := map[int]int{}
	for range 2 {
		r, err := f.svc.Draw(ctx, user, 100301)
		if err != nil {
			t.Fatalf("draw: %v", err)
		}
		told[r.AwardID]++
	}
	if told[101] != 1 || told[102] != 1 || f.strats.count() != 2 || f.surplus(t, user) != 8 {
		t.Fatalf("told %v after %d picks, surplus %d; want 101 (the durable draw) and 102 once each, 2 units", told, f.strats.count(), f.surplus(t, user))
	}
}
