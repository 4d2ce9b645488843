package raffle

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/strategy"
)

type fakeActivities struct {
	p     activity.Participation
	q     activity.Quota
	fresh *activity.Participation // ParticipateNew's answer; nil: quota exhausted
}

func (f *fakeActivities) Activity(context.Context, int64) (activity.Activity, error) {
	return f.p.Activity, nil
}
func (f *fakeActivities) Armory(context.Context, int64) (activity.Activity, error) {
	return f.p.Activity, nil
}
func (f *fakeActivities) Participate(context.Context, string, int64) (activity.Participation, error) {
	return f.p, nil
}
func (f *fakeActivities) ParticipateNew(context.Context, string, int64) (activity.Participation, error) {
	if f.fresh == nil {
		return activity.Participation{}, activity.ErrDayQuotaExhausted
	}
	return *f.fresh, nil
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
	tasks    []award.Task
	RecordFn func(award.Record) error
}

func (f *fakeRecords) RecordAward(_ context.Context, rec award.Record, task award.Task) error {
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
	// No quota left for a fresh order: the quota error comes back, nothing is recorded.
	if _, err := s.Draw(context.Background(), "u1", 100301); !errors.Is(err, activity.ErrDayQuotaExhausted) {
		t.Fatalf("draw on a claimed order without quota: %v", err)
	}
	if len(recs.recs) != 0 {
		t.Error("a refused draw recorded an award")
	}
	fresh := acts.p
	fresh.Order.OrderID = "o2"
	acts.fresh = &fresh
	if _, err := s.Draw(context.Background(), "u1", 100301); err != nil || len(recs.recs) != 1 || recs.recs[0].OrderID != "o2" {
		t.Fatalf("draw on a claimed order with quota: %v %+v", err, recs.recs)
	}
	// The fresh order lost its race too: ERR_BIZ_009.
	claims.held["o2"] = "someone-else"
	if _, err := s.Draw(context.Background(), "u1", 100301); !errors.Is(err, activity.ErrOrderUsed) {
		t.Fatalf("both orders held: %v, want ErrOrderUsed", err)
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
		if len(claims.released) != 1 || len(claims.held) != 0 {
			t.Errorf("%s: claim not released: held %v released %v", name, claims.held, claims.released)
		}
	}
}
