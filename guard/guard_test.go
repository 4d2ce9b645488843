package guard

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
)

func newClock() *testenv.Clock {
	return testenv.NewClock(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC))
}

// fakeCluster is a ClusterLimiter whose answer the test sets.
type fakeCluster struct {
	calls atomic.Int64
	allow atomic.Bool
	err   error
}

func (f *fakeCluster) Allow(context.Context, string, float64, int) (bool, error) {
	f.calls.Add(1)
	return f.allow.Load(), f.err
}

// fanout is a BlacklistStore that tells every guard, as the shared bucket's watch does.
type fanout struct {
	mu     sync.Mutex
	guards []*Guard
	adds   []string
}

func (f *fanout) AddBlacklist(_ context.Context, userID string, until time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adds = append(f.adds, userID)
	for _, g := range f.guards {
		g.Blacklist(userID, until)
	}
	return nil
}

func (f *fanout) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.adds)
}

func ok(context.Context) error { return nil }

func settings(mod func(*Settings)) Settings {
	s := DefaultSettings()
	s.PermitsPerSecond, s.Burst, s.BlacklistCount = 1, 2, 3
	if mod != nil {
		mod(&s)
	}
	return s
}

func TestDegradeAnswersWithoutCalling(t *testing.T) {
	cluster := &fakeCluster{}
	cluster.allow.Store(true)
	g := New(Options{Defaults: settings(func(s *Settings) { s.Degrade = true }), Cluster: cluster})
	called := false
	err := g.Do(context.Background(), "u1", func(context.Context) error { called = true; return nil })
	if !errors.Is(err, ErrDegraded) || called || cluster.calls.Load() != 0 {
		t.Fatalf("Do = %v, called %v, cluster calls %d; want ErrDegraded with nothing touched", err, called, cluster.calls.Load())
	}
	g.Override(KeyDegradeSwitch, Close)
	if err := g.Do(context.Background(), "u1", ok); err != nil {
		t.Fatalf("after close: %v", err)
	}
	if g.Stats().Degraded != 1 {
		t.Fatalf("degraded count %d, want 1", g.Stats().Degraded)
	}
}

func TestLocalBucketRefillsWithClock(t *testing.T) {
	c := newClock()
	g := New(Options{Defaults: settings(nil), Now: c.Now})
	for i := range 2 {
		if err := g.Do(context.Background(), "u1", ok); err != nil {
			t.Fatalf("draw %d within burst: %v", i, err)
		}
	}
	err := g.Do(context.Background(), "u1", ok)
	if !errors.Is(err, ErrRateLimited) {
		t.Fatalf("third draw at once = %v, want ErrRateLimited", err)
	}
	// One permit a second and an empty bucket: the refusal says a second.
	if d := retryAfter(err); d != time.Second {
		t.Fatalf("refusal's RetryAfter %v, want 1s", d)
	}
	c.Advance(400 * time.Millisecond)
	if d := retryAfter(g.Do(context.Background(), "u1", ok)); d != 600*time.Millisecond {
		t.Fatalf("0.4 s later the refusal's RetryAfter is %v, want 600ms", d)
	}
	c.Advance(600 * time.Millisecond)
	if err := g.Do(context.Background(), "u2", ok); err != nil {
		t.Fatalf("another user is not limited: %v", err)
	}
	if err := g.Do(context.Background(), "u1", ok); err != nil {
		t.Fatalf("after a second: %v", err)
	}
	g.Override(KeyRateLimiterSwitch, Close)
	for range 10 {
		if err := g.Do(context.Background(), "u1", ok); err != nil {
			t.Fatalf("limiter switched off: %v", err)
		}
	}
}

func TestBlacklistAfterRepeatedRejectionsOnEveryNodeFor24Hours(t *testing.T) {
	c := newClock()
	store := &fanout{}
	a := New(Options{Defaults: settings(nil), Now: c.Now, Blacklist: store})
	b := New(Options{Defaults: settings(nil), Now: c.Now, Blacklist: store})
	store.guards = []*Guard{a, b}
	ctx := context.Background()
	for range 2 {
		if err := a.Do(ctx, "flood", ok); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 { // BlacklistCount rejections are only limits
		if err := a.Do(ctx, "flood", ok); !errors.Is(err, ErrRateLimited) || errors.Is(err, ErrBlacklisted) {
			t.Fatalf("rejection %d = %v, want rate limited, not yet blacklisted", i+1, err)
		}
	}
	err := a.Do(ctx, "flood", ok)
	if !errors.Is(err, ErrBlacklisted) {
		t.Fatalf("rejection 4 = %v, want ErrBlacklisted", err)
	}
	if d := retryAfter(err); d != 24*time.Hour {
		t.Fatalf("blacklisting's RetryAfter %v, want 24h", d)
	}
	testenv.Eventually(t, 10*time.Second, "blacklisting shared", func() bool { return store.count() == 1 })
	c.Advance(time.Hour) // buckets refilled; the blacklist still holds on both nodes
	for name, g := range map[string]*Guard{"a": a, "b": b} {
		if err := g.Do(ctx, "flood", ok); !errors.Is(err, ErrBlacklisted) {
			t.Fatalf("node %s an hour later = %v, want ErrBlacklisted", name, err)
		}
	}
	c.Advance(23*time.Hour - time.Second)
	if err := b.Do(ctx, "flood", ok); !errors.Is(err, ErrBlacklisted) || retryAfter(err) != time.Second {
		t.Fatalf("a second before 24h = %v (RetryAfter %v), want ErrBlacklisted for 1s more", err, retryAfter(err))
	}
	c.Advance(time.Second)
	for name, g := range map[string]*Guard{"a": a, "b": b} {
		if err := g.Do(ctx, "flood", ok); err != nil {
			t.Fatalf("node %s after 24h = %v, want let back in", name, err)
		}
	}
	if n := a.Stats().BlacklistSize; n != 0 {
		t.Fatalf("expired entry kept: blacklist size %d", n)
	}
}

func TestClusterLimitCountsAndFailsOpen(t *testing.T) {
	cluster := &fakeCluster{}
	g := New(Options{Defaults: settings(func(s *Settings) { s.Burst = 100 }), Cluster: cluster})
	ctx := context.Background()
	if err := g.Do(ctx, "u1", ok); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("cluster says no: %v", err)
	}
	cluster.allow.Store(true)
	if err := g.Do(ctx, "u1", ok); err != nil {
		t.Fatalf("cluster says yes: %v", err)
	}
	down := &fakeCluster{err: errors.New("redis down")}
	g = New(Options{Defaults: settings(nil), Cluster: down})
	if err := g.Do(ctx, "u1", ok); err != nil {
		t.Fatalf("cluster unreachable must let the call through: %v", err)
	}
	if st := g.Stats(); st.ClusterErrors != 1 {
		t.Fatalf("cluster errors %d, want 1", st.ClusterErrors)
	}
}

func TestBlacklistedUserCostsNoClusterCall(t *testing.T) {
	c := newClock()
	cluster := &fakeCluster{}
	cluster.allow.Store(true)
	g := New(Options{Defaults: settings(nil), Now: c.Now, Cluster: cluster})
	g.Blacklist("u1", c.Now().Add(time.Hour))
	for range 100 {
		if err := g.Do(context.Background(), "u1", ok); !errors.Is(err, ErrBlacklisted) {
			t.Fatal(err)
		}
	}
	if n := cluster.calls.Load(); n != 0 {
		t.Fatalf("blacklisted user reached the cluster limit %d times", n)
	}
}

func TestTimeBudgetAnswersBeforeTheCallReturns(t *testing.T) {
	g := New(Options{Defaults: settings(func(s *Settings) { s.DrawTimeout = 20 * time.Millisecond; s.RateLimit = false })})
	release := make(chan struct{})
	sawCancel := make(chan bool, 1)
	err := g.Do(context.Background(), "u1", func(ctx context.Context) error {
		<-ctx.Done()
		<-release // the call outlives its answer
		sawCancel <- ctx.Err() != nil
		return ctx.Err()
	})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Do = %v, want ErrTimeout", err)
	}
	close(release)
	if !<-sawCancel {
		t.Fatal("the late call's context was not cancelled")
	}
	if g.Stats().Timeouts != 1 {
		t.Fatalf("timeouts %d, want 1", g.Stats().Timeouts)
	}
}

func TestBreakerOpensOnFailuresAndClosesAfterProbes(t *testing.T) {
	errStore := errors.New("store down")
	business := errors.New("quota exhausted")
	g := New(Options{
		Defaults:  settings(func(s *Settings) { s.RateLimit = false }),
		Breaker:   BreakerSettings{MinRequests: 4, FailureRatio: 0.5, Window: time.Minute, OpenFor: 50 * time.Millisecond, Probes: 2},
		IsFailure: func(err error) bool { return !errors.Is(err, business) },
	})
	ctx := context.Background()
	for range 10 { // answers, however many, never open it
		if err := g.Do(ctx, "u", func(context.Context) error { return business }); !errors.Is(err, business) {
			t.Fatal(err)
		}
	}
	for range 10 {
		_ = g.Do(ctx, "u", func(context.Context) error { return errStore })
	}
	if st := g.Stats().BreakerState; st != "open" {
		t.Fatalf("breaker %s after failures, want open", st)
	}
	called := false
	if err := g.Do(ctx, "u", func(context.Context) error { called = true; return nil }); !errors.Is(err, ErrBreakerOpen) || !errors.Is(err, ErrTimeout) || called {
		t.Fatalf("open breaker: Do = %v, called %v", err, called)
	}
	testenv.Eventually(t, 10*time.Second, "half-open", func() bool { return g.Stats().BreakerState == "half-open" })
	for range 2 {
		if err := g.Do(ctx, "u", ok); err != nil {
			t.Fatalf("probe: %v", err)
		}
	}
	if st := g.Stats().BreakerState; st != "closed" {
		t.Fatalf("breaker %s after good probes, want closed", st)
	}
}

func TestOverridesApplyOverDefaultsAndIgnoreBadValues(t *testing.T) {
	c := newClock()
	g := New(Options{Defaults: settings(nil), Now: c.Now})
	g.Override(KeyBurst, "5")
	g.Override(KeyDrawTimeout, "not a duration")
	if s := g.Settings(); s.Burst != 5 || s.DrawTimeout != settings(nil).DrawTimeout {
		t.Fatalf("settings %+v", s)
	}
	for i := range 5 { // the new burst reaches users with state from before
		if err := g.Do(context.Background(), "u1", ok); err != nil {
			t.Fatalf("draw %d with burst 5: %v", i, err)
		}
	}
	g.Override(KeyBurst, "")
	if s := g.Settings(); s.Burst != 2 {
		t.Fatalf("removed override: burst %d, want default 2", s.Burst)
	}
}

func TestSettingsWith(t *testing.T) {
	base := DefaultSettings()
	tests := []struct {
		key, value string
		ok         bool
		check      func(Settings) bool
	}{
		{KeyDegradeSwitch, "open", true, func(s Settings) bool { return s.Degrade }},
		{KeyDegradeSwitch, "close", true, func(s Settings) bool { return !s.Degrade }},
		{KeyDegradeSwitch, "on", false, nil},
		{KeyRateLimiterSwitch, "close", true, func(s Settings) bool { return !s.RateLimit }},
		{KeyPermitsPerSecond, "0.5", true, func(s Settings) bool { return s.PermitsPerSecond == 0.5 }},
		{KeyPermitsPerSecond, "0", false, nil},
		{KeyPermitsPerSecond, "NaN", false, nil},
		{KeyPermitsPerSecond, "1e9", false, nil},
		{KeyBurst, "10", true, func(s Settings) bool { return s.Burst == 10 }},
		{KeyBurst, "0", false, nil},
		{KeyBurst, "1.5", false, nil},
		{KeyBlacklistCount, "0", true, func(s Settings) bool { return s.BlacklistCount == 0 }},
		{KeyBlacklistCount, "-1", false, nil},
		{KeyBlacklistDuration, "24h", true, func(s Settings) bool { return s.BlacklistDuration == 24*time.Hour }},
		{KeyBlacklistDuration, "720h", false, nil},
		{KeyDrawTimeout, "150ms", true, func(s Settings) bool { return s.DrawTimeout == 150*time.Millisecond }},
		{KeyDrawTimeout, "1ms", false, nil},
		{KeyDrawTimeout, "150", false, nil},
		{"unknownKey", "open", false, nil},
	}
	for _, tt := range tests {
		got, err := base.With(tt.key, tt.value)
		if tt.ok != (err == nil) {
			t.Errorf("With(%s, %s) error %v, want ok %v", tt.key, tt.value, err, tt.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrBadSetting) {
				t.Errorf("With(%s, %s) error %v does not wrap ErrBadSetting", tt.key, tt.value, err)
			}
			continue
		}
		if !tt.check(got) {
			t.Errorf("With(%s, %s) = %+v", tt.key, tt.value, got)
		}
		if v, _ := got.Value(tt.key); v != tt.value && tt.key != KeyBlacklistDuration {
			t.Errorf("Value(%s) = %q, want %q", tt.key, v, tt.value)
		}
		back, err := base.With(tt.key, mustValue(got, tt.key))
		if err != nil || back != got {
			t.Errorf("Value(%s) does not round-trip: %+v, %v", tt.key, back, err)
		}
	}
}

func mustValue(s Settings, key string) string {
	v, _ := s.Value(key)
	return v
}

func TestStoreGivingUpAtTheDeadlineIsATimeout(t *testing.T) {
	g := New(Options{Defaults: settings(func(s *Settings) { s.DrawTimeout = 20 * time.Millisecond; s.RateLimit = false })})
	store := errors.New("i/o timeout")
	for range 20 { // either select arm may see it first
		err := g.Do(context.Background(), "u1", func(ctx context.Context) error {
			<-ctx.Done()
			return store
		})
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("Do = %v, want ErrTimeout, not the store's own error", err)
		}
	}
}
