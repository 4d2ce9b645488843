package raffle

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/outbox"
	bmredis "github.com/bigmarket/bigmarket/redis"
	"github.com/bigmarket/bigmarket/strategy"
	goredis "github.com/redis/go-redis/v9"
)

type fakeActivities struct {
	p       activity.Participation // Participate's answer; an empty order id means a new order
	q       activity.Quota
	noQuota bool // ParticipateNew finds the quota exhausted
}

func (f *fakeActivities) Activity(context.Context, int64) (activity.Activity, error) {
	return f.p.Activity, nil
}
func (f *fakeActivities) Armory(context.Context, int64) (activity.Activity, error) {
	return f.p.Activity, nil
}
func (f *fakeActivities) Participate(_ context.Context, _ string, _ int64, newOrderID string) (activity.Participation, error) {
	p := f.p
	if p.Order.OrderID == "" {
		p.Order.OrderID = newOrderID
	}
	return p, nil
}
func (f *fakeActivities) ParticipateNew(_ context.Context, _ string, _ int64, newOrderID string) (activity.Participation, error) {
	if f.noQuota {
		return activity.Participation{}, activity.ErrDayQuotaExhausted
	}
	p := f.p
	p.Order.OrderID = newOrderID
	return p, nil
}
func (f *fakeActivities) Stage(context.Context, int64) (activity.Stage, error) {
	return activity.Stage{}, activity.ErrStageNotFound
}
func (f *fakeActivities) ActivateStage(context.Context, int64) error {
	return activity.ErrStageNotFound
}
func (f *fakeActivities) Quota(context.Context, string, int64) (activity.Quota, error) {
	return f.q, nil
}

type fakeStrategies struct {
	in     strategy.Input
	DrawFn func(strategy.Input) (strategy.Result, error)
	a      *strategy.Assembled
}

func (f *fakeStrategies) Armory(context.Context, int64) (*strategy.Assembled, error) { return f.a, nil }
func (f *fakeStrategies) Assembled(context.Context, int64) (*strategy.Assembled, error) {
	return f.a, nil
}
func (f *fakeStrategies) Draw(_ context.Context, in strategy.Input) (strategy.Result, error) {
	f.in = in
	return f.DrawFn(in)
}

type fakeRecords struct {
	recs     []award.Record
	tasks    []outbox.Task
	RecordFn func(award.Record) error
}

func (f *fakeRecords) RecordAward(_ context.Context, rec award.Record, task outbox.Task) error {
	if f.RecordFn != nil {
		if err := f.RecordFn(rec); err != nil {
			return err
		}
	}
	f.recs, f.tasks = append(f.recs, rec), append(f.tasks, task)
	return nil
}

type fakeClaims struct {
	held     map[string]string
	released []string
}

func (f *fakeClaims) Claim(_ context.Context, id string, _ time.Duration) (string, bool, error) {
	if _, ok := f.held[id]; ok {
		return "", false, nil
	}
	f.held[id] = "tok-" + id
	return f.held[id], true, nil
}

func (f *fakeClaims) Extend(_ context.Context, id, token string, _ time.Duration) (bool, error) {
	return f.held[id] == token, nil
}

func (f *fakeClaims) Release(_ context.Context, id, token string) error {
	if f.held[id] == token {
		delete(f.held, id)
		f.released = append(f.released, id)
	}
	return nil
}

func newFixture() (*Service, *fakeActivities, *fakeStrategies, *fakeRecords, *fakeClaims) {
	acts := &fakeActivities{p: activity.Participation{
		Activity: activity.Activity{ID: 100301, StrategyID: 100006},
		Order:    activity.RaffleOrder{OrderID: "o1", OrderTime: time.Now()},
		Quota:    activity.Quota{Account: &activity.Account{Total: 10, TotalSurplus: 6}},
	}}
	strats := &fakeStrategies{DrawFn: func(strategy.Input) (strategy.Result, error) {
		return strategy.Result{AwardID: 101, Title: "随机积分", Sort: 1, RuleValue: "1,100"}, nil
	}}
	recs, claims := &fakeRecords{}, &fakeClaims{held: map[string]string{}}
	s := NewService(Options{Activities: acts, Strategies: strats, Records: recs, Claims: claims})
	return s, acts, strats, recs, claims
}

func TestDrawRecordsAwardWithTask(t *testing.T) {
	t.Parallel()
	s, _, strats, recs, _ := newFixture()
	res, err := s.Draw(context.Background(), "u1", 100301)
	if err != nil || res != (Result{AwardID: 101, AwardTitle: "随机积分", AwardIndex: 1}) {
		t.Fatalf("draw: %+v %v", res, err)
	}
	if strats.in != (strategy.Input{UserID: "u1", StrategyID: 100006, Score: 3}) {
		t.Errorf("strategy input %+v; want score 3 (4 used, this one excluded)", strats.in)
	}
	if len(recs.recs) != 1 || recs.recs[0].OrderID != "o1" || recs.tasks[0].Topic != award.TopicSendAward ||
		recs.tasks[0].MessageID != "o1" || recs.tasks[0].Message == "" {
		t.Errorf("recorded %+v %+v", recs.recs, recs.tasks)
	}
}

func TestDrawOnAClaimedOrderTakesAFreshOne(t *testing.T) {
	t.Parallel()
	s, acts, _, recs, claims := newFixture()
	claims.held["o1"] = "someone-else"
	acts.noQuota = true
	// No quota left for a fresh order: the quota error comes back, nothing is recorded,
	// and the pre-claimed fresh id is released.
	if _, err := s.Draw(context.Background(), "u1", 100301); !errors.Is(err, activity.ErrDayQuotaExhausted) {
		t.Fatalf("draw on a claimed order without quota: %v", err)
	}
	if len(recs.recs) != 0 || len(claims.held) != 1 {
		t.Errorf("refused draw: records %v, claims held %v", recs.recs, claims.held)
	}
	acts.noQuota = false
	if _, err := s.Draw(context.Background(), "u1", 100301); err != nil || len(recs.recs) != 1 || recs.recs[0].OrderID == "o1" {
		t.Fatalf("draw on a claimed order with quota: %v %+v", err, recs.recs)
	}
	if _, held := claims.held[recs.recs[0].OrderID]; !held {
		t.Error("the fresh order was drawn without being claimed first")
	}
}

func TestNewOrderIsClaimedBeforeItExists(t *testing.T) {
	t.Parallel()
	s, acts, _, recs, claims := newFixture()
	acts.p.Order.OrderID = "" // no unused order: Participate creates one with the given id
	if _, err := s.Draw(context.Background(), "u1", 100301); err != nil || len(recs.recs) != 1 {
		t.Fatalf("draw: %v %+v", err, recs.recs)
	}
	if _, held := claims.held[recs.recs[0].OrderID]; !held || len(claims.released) != 0 {
		t.Errorf("new order %s not claimed by its creator: held %v released %v", recs.recs[0].OrderID, claims.held, claims.released)
	}
}

func TestFailedDrawReleasesTheOrder(t *testing.T) {
	t.Parallel()
	for name, fail := range map[string]func(*fakeStrategies, *fakeRecords){
		"strategy error": func(f *fakeStrategies, _ *fakeRecords) {
			f.DrawFn = func(strategy.Input) (strategy.Result, error) { return strategy.Result{}, errors.New("redis down") }
		},
		"record error": func(_ *fakeStrategies, r *fakeRecords) {
			r.RecordFn = func(award.Record) error { return errors.New("mysql down") }
		},
	} {
		s, _, strats, recs, claims := newFixture()
		fail(strats, recs)
		if _, err := s.Draw(context.Background(), "u1", 100301); err == nil {
			t.Errorf("%s: draw succeeded", name)
		}
		if len(claims.held) != 0 {
			t.Errorf("%s: claims not released: held %v released %v", name, claims.held, claims.released)
		}
	}
}

// TestDrawCommitsBeforeTheStrategyTakesStock runs draws behind a guard with a 10 ms
// budget: one over its budget before the commit point never reaches the strategy and
// gives its order back; one whose award transaction is slow is waited for.
func TestDrawCommitsBeforeTheStrategyTakesStock(t *testing.T) {
	t.Parallel()
	settings := guard.DefaultSettings()
	settings.RateLimit, settings.DrawTimeout = false, 10*time.Millisecond
	g := guard.New(guard.Options{Defaults: settings, CommitTimeout: time.Minute})

	s, _, strats, recs, claims := newFixture()
	drew := false
	strats.DrawFn = func(strategy.Input) (strategy.Result, error) {
		drew = true
		return strategy.Result{AwardID: 101}, nil
	}
	late := make(chan error, 1)
	err := g.Do(context.Background(), "u1", func(ctx context.Context) error {
		<-ctx.Done() // participation and claim were slow: the budget ran out
		_, err := s.Draw(ctx, "u1", 100301)
		late <- err
		return err
	})
	if !errors.Is(err, guard.ErrTimeout) {
		t.Fatalf("Do = %v, want ErrTimeout", err)
	}
	if err := <-late; !errors.Is(err, guard.ErrTimeout) || drew || len(recs.recs) != 0 || len(claims.held) != 0 {
		t.Fatalf("draw past its budget: %v, strategy drew %v, %d records, claims held %v; want nothing taken", err, drew, len(recs.recs), claims.held)
	}

	s, _, _, recs, _ = newFixture()
	recs.RecordFn = func(award.Record) error {
		time.Sleep(50 * time.Millisecond) // the award transaction is slow, past the budget
		return nil
	}
	var res Result
	err = g.Do(context.Background(), "u1", func(ctx context.Context) error {
		var err error
		res, err = s.Draw(ctx, "u1", 100301)
		return err
	})
	if err != nil || res.AwardID != 101 || len(recs.recs) != 1 {
		t.Fatalf("slow draw past its commit point: %v, %+v, %d records; want the award", err, res, len(recs.recs))
	}
}

// TestCommittedDrawKeepsItsOrderClaimed stalls a guarded draw after its commit point for
// longer than the least claim (ClaimTTL, standing in for the 5 s default that a draw
// waited for up to draw_commit_timeout outlives). Its claim on the order, in Redis, lasts
// as long as the guard may let the draw run, so a second request of the same user does
// not draw on the same order meanwhile: it takes a fresh one from the quota.
func TestCommittedDrawKeepsItsOrderClaimed(t *testing.T) {
	t.Parallel()
	rdb := goredis.NewClient(&goredis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { rdb.Close() })
	prefix := testenv.Unique("raffle-claim")
	t.Cleanup(func() {
		keys, _ := rdb.Keys(context.Background(), prefix+":*").Result()
		if len(keys) > 0 {
			rdb.Del(context.Background(), keys...)
		}
	})
	const leastTTL, commitTimeout = 100 * time.Millisecond, 3 * time.Second
	settings := guard.DefaultSettings()
	settings.RateLimit, settings.DrawTimeout = false, 200*time.Millisecond
	g := guard.New(guard.Options{Defaults: settings, CommitTimeout: commitTimeout})

	s, acts, strats, recs, _ := newFixture()
	reused := testenv.Unique("o")
	acts.p.Order.OrderID = reused // the user's unused order, which both requests find
	s.opts.Claims, s.opts.ClaimTTL = bmredis.NewClaims(rdb, prefix), leastTTL
	entered, release := make(chan struct{}), make(chan struct{})
	var stalled atomic.Bool
	strats.DrawFn = func(strategy.Input) (strategy.Result, error) {
		if stalled.CompareAndSwap(false, true) {
			close(entered)
			<-release // the first draw stalls past its commit point
		}
		return strategy.Result{AwardID: 101}, nil
	}
	first := make(chan error, 1)
	go func() {
		first <- g.Do(context.Background(), "u1", func(ctx context.Context) error {
			_, err := s.Draw(ctx, "u1", 100301)
			return err
		})
	}()
	<-entered
	ttl, err := rdb.PTTL(context.Background(), prefix+":order_claim:{"+reused+"}").Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl < commitTimeout {
		t.Errorf("committed draw holds its order for %s, want at least the commit timeout %s", ttl, commitTimeout)
	}
	time.Sleep(3 * leastTTL) // the stall the test is about: past the least claim
	var second error
	if err := g.Do(context.Background(), "u1", func(ctx context.Context) error {
		_, second = s.Draw(ctx, "u1", 100301)
		return second
	}); err != nil {
		t.Fatalf("second draw while the first is stalled: %v", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("stalled draw: %v", err)
	}
	if len(recs.recs) != 2 || recs.recs[0].OrderID == recs.recs[1].OrderID {
		t.Fatalf("two concurrent draws of one user recorded %+v; want two different orders", recs.recs)
	}
}

// TestDrawCutOffInItsAwardTransactionKeepsItsClaim has the award transaction outlast the
// commit timeout: the answer is an unknown outcome, and since the transaction may still
// commit, the order stays claimed for a retry to leave alone.
func TestDrawCutOffInItsAwardTransactionKeepsItsClaim(t *testing.T) {
	t.Parallel()
	settings := guard.DefaultSettings()
	settings.RateLimit = false
	g := guard.New(guard.Options{Defaults: settings, CommitTimeout: 20 * time.Millisecond})
	s, _, _, recs, claims := newFixture()
	recs.RecordFn = func(award.Record) error {
		time.Sleep(50 * time.Millisecond) // the transaction waits on a lock past the commit timeout
		return context.DeadlineExceeded
	}
	drawn := make(chan error, 1)
	err := g.Do(context.Background(), "u1", func(ctx context.Context) error {
		_, err := s.Draw(ctx, "u1", 100301)
		drawn <- err
		return err
	})
	if !errors.Is(err, guard.ErrOutcomeUnknown) {
		t.Fatalf("Do = %v, want ErrOutcomeUnknown", err)
	}
	<-drawn
	if _, held := claims.held["o1"]; !held {
		t.Fatalf("the order of a draw whose award may yet be recorded was released: held %v", claims.held)
	}
}

// TestSlowAwardTransactionKeepsItsOrderClaimed holds a draw up in its award transaction
// (a group commit retrying, which no request's context cancels) for several times its
// claim's TTL: the claim is renewed while the draw runs, so a second request of the same
// user takes a fresh order instead of drawing on the same one.
func TestSlowAwardTransactionKeepsItsOrderClaimed(t *testing.T) {
	t.Parallel()
	rdb := goredis.NewClient(&goredis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { rdb.Close() })
	prefix := testenv.Unique("raffle-hold")
	t.Cleanup(func() {
		keys, _ := rdb.Keys(context.Background(), prefix+":*").Result()
		if len(keys) > 0 {
			rdb.Del(context.Background(), keys...)
		}
	})
	const ttl = time.Second // its renewal (every ttl/2, each with ttl/2 to answer) must hold on a loaded 2-core CI machine
	s, acts, _, recs, _ := newFixture()
	reused := testenv.Unique("o")
	acts.p.Order.OrderID = reused
	s.opts.Claims, s.opts.ClaimTTL = bmredis.NewClaims(rdb, prefix), ttl
	entered, release := make(chan struct{}), make(chan struct{})
	var stalled atomic.Bool
	recs.RecordFn = func(award.Record) error {
		if stalled.CompareAndSwap(false, true) {
			close(entered)
			<-release // the first draw's award transaction is held up
		}
		return nil
	}
	first := make(chan error, 1)
	go func() {
		_, err := s.Draw(context.Background(), "u1", 100301)
		first <- err
	}()
	<-entered
	time.Sleep(4 * ttl) // the stall the test is about: several times the claim's TTL
	if _, err := s.Draw(context.Background(), "u1", 100301); err != nil {
		t.Fatalf("second draw while the first is held up: %v", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("held-up draw: %v", err)
	}
	if len(recs.recs) != 2 || recs.recs[0].OrderID == recs.recs[1].OrderID {
		t.Fatalf("two concurrent draws of one user recorded %+v; want two different orders", recs.recs)
	}
}
