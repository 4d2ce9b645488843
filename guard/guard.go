package guard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"
)

// Outcomes of a guarded call other than its own.
var (
	// ErrDegraded answers every guarded call while the degrade switch is open.
	ErrDegraded = errors.New("degraded")
	// ErrRateLimited is a user over the limit.
	ErrRateLimited = errors.New("rate limited")
	// ErrBlacklisted is a user blacklisted for being rate limited too often; it is also an
	// ErrRateLimited.
	ErrBlacklisted = fmt.Errorf("blacklisted: %w", ErrRateLimited)
	// ErrTimeout is a call that did not finish within its time budget.
	ErrTimeout = errors.New("time budget exceeded")
	// ErrBreakerOpen is a call refused while the breaker is open (or probing); it is also
	// an ErrTimeout for callers, as big-market's Hystrix answers both alike. The error a
	// refused call gets also says, through RetryAfter, how long the breaker stays open.
	ErrBreakerOpen = fmt.Errorf("circuit breaker open: %w", ErrTimeout)
	// ErrOutcomeUnknown is a call that passed its commit point and did not finish within
	// the commit timeout: it may yet take effect or not, so the caller may only be told to
	// try again later. It is not an ErrTimeout, which promises that nothing was taken.
	ErrOutcomeUnknown = errors.New("outcome unknown: the call committed and did not finish within the commit timeout")
)

// ClusterLimiter is the cluster-wide per-user limit behind the local one.
type ClusterLimiter interface {
	Allow(ctx context.Context, userID string, perSecond float64, burst int) (bool, error)
}

// BlacklistStore shares a blacklisting with every node; each node learns of entries
// through Guard.Blacklist, its own included.
type BlacklistStore interface {
	AddBlacklist(ctx context.Context, userID string, until time.Time) error
}

// BreakerSettings tune the circuit breaker around guarded calls.
type BreakerSettings struct {
	// MinRequests is how many calls a window needs before its failure ratio counts.
	MinRequests uint32
	// FailureRatio opens the breaker once this share of a window's calls failed.
	FailureRatio float64
	// Window is how long closed-state counts are kept before they start afresh.
	Window time.Duration
	// OpenFor is how long the breaker stays open before it lets probes through.
	OpenFor time.Duration
	// Probes is how many calls the half-open breaker lets through; all must succeed for
	// it to close.
	Probes uint32
}

// DefaultBreaker opens on half of at least 20 calls failing within 10 s and probes after
// 5 s.
func DefaultBreaker() BreakerSettings {
	return BreakerSettings{MinRequests: 20, FailureRatio: 0.5, Window: 10 * time.Second, OpenFor: 5 * time.Second, Probes: 5}
}

// Options configure a Guard.
type Options struct {
	Defaults Settings
	Breaker  BreakerSettings
	// Cluster is the cluster-wide limit; nil limits per node only.
	Cluster ClusterLimiter
	// Blacklist shares blacklistings; nil keeps them on this node.
	Blacklist BlacklistStore
	// IPBlacklist shares IP blacklistings; nil keeps them on this node.
	IPBlacklist IPBlacklistStore
	// IsFailure tells the breaker which errors of a guarded call are failures of the
	// system (a store that is down) rather than answers (a quota exhausted); nil counts
	// every error. Timeouts always count, rate limits never.
	IsFailure func(error) bool
	// MaxUsers bounds the per-user limiter state kept in memory (default 100,000); the
	// least recently seen user is forgotten first.
	MaxUsers int
	// MaxIPs bounds the per-IP buckets kept in memory, least recently seen forgotten
	// first, and the IP blacklist (default 100,000).
	MaxIPs int
	// UserIdle is how long a user's limiter state lives without requests (default 1 min);
	// a user's rejections count towards the blacklist until the user idles that long.
	UserIdle time.Duration
	// CommitTimeout is how long a call that passed its commit point (see Commit) may take
	// from there before it is answered ErrOutcomeUnknown (default 5 s). It should be well
	// above the time budget: it bounds the wait for an outcome that is already certain.
	CommitTimeout time.Duration
	Now           func() time.Time
	Logger        *slog.Logger
}

// Guard applies the front line to calls. It is safe for concurrent use.
type Guard struct {
	opts     Options
	settings atomic.Pointer[Settings]
	mu       sync.Mutex // guards overrides and serializes settings changes
	// overrides are the shared store's values by key, applied over Defaults.
	overrides map[string]string
	gen       atomic.Uint64 // bumped when limits change, so limiter state is rebuilt
	users     *lru.Cache[string, *userState]
	blMu      sync.RWMutex
	blacklist map[string]time.Time
	blPruned  int // live entries after the last prune of expired ones
	ips       ipLimits
	breaker   *gobreaker.CircuitBreaker[struct{}]
	openUntil atomic.Int64 // when the breaker's last open state ends, in Unix nanoseconds
	stats     counters
}

type userState struct {
	mu         sync.Mutex
	limiter    *rate.Limiter
	seen       time.Time
	rejections int
	gen        uint64
	// systemFailed is whether the user's last admitted call that has ended failed for the
	// system's reasons (see Guard.systemFailure); refusals then do not count towards the
	// blacklist. The state itself lives only as long as the user is active (UserIdle).
	systemFailed bool
}

// strike counts a refusal towards the blacklist: excused (not counted) when the caller's
// last call failed for the system's reasons; otherwise n is the refusals so far and over
// is whether they passed count (0: never), which starts the count afresh.
func (u *userState) strike(count int) (excused bool, n int, over bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.systemFailed {
		return true, 0, false
	}
	u.rejections++
	n = u.rejections
	over = count > 0 && n > count
	if over {
		u.rejections = 0 // counted afresh after this blacklisting ends
	}
	return false, n, over
}

type counters struct {
	degraded, limitedLocal, limitedCluster, blacklisted, timeouts, breakerOpen, clusterErrors,
	outcomeUnknown, excused atomic.Int64
	ipLimited, ipBlacklisted, ipExcused, ipBlacklistFull atomic.Int64
}

// Stats are counters since start.
type Stats struct {
	Degraded       int64 // answered at once by the degrade switch
	LimitedLocal   int64 // rejected by the local token bucket
	LimitedCluster int64 // rejected by the cluster-wide limit
	Blacklisted    int64 // rejected by the blacklist
	Timeouts       int64 // over the time budget before the commit point
	BreakerOpen    int64 // refused by the open breaker
	ClusterErrors  int64 // cluster limit unreachable (the call was let through)
	OutcomeUnknown int64 // committed and over the commit timeout
	// Excused counts rate-limit refusals not counted towards the blacklist because the
	// user's last call failed for the system's reasons.
	Excused       int64
	BlacklistSize int
	BreakerState  string
	// The per-IP limit: refusals by the IP's bucket and by the IP blacklist, refusals
	// excused from counting (the IP's last call got a system answer), blacklistings not
	// made because the IP blacklist was full, and the IPs blacklisted on this node.
	IPLimited, IPBlacklisted, IPExcused, IPBlacklistFull int64
	IPBlacklistSize                                      int
}

// New returns a Guard; it panics on invalid Defaults, which the caller validated.
func New(opts Options) *Guard {
	if err := opts.Defaults.Validate(); err != nil {
		panic(err)
	}
	if opts.MaxUsers <= 0 {
		opts.MaxUsers = 100_000
	}
	if opts.MaxIPs <= 0 {
		opts.MaxIPs = 100_000
	}
	if opts.UserIdle <= 0 {
		opts.UserIdle = time.Minute
	}
	if opts.CommitTimeout <= 0 {
		opts.CommitTimeout = DefaultCommitTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	b := opts.Breaker
	if b.MinRequests == 0 || b.FailureRatio <= 0 || b.Window <= 0 || b.OpenFor <= 0 || b.Probes == 0 {
		b = DefaultBreaker()
	}
	users, _ := lru.New[string, *userState](opts.MaxUsers) // size > 0 never fails
	g := &Guard{opts: opts, overrides: map[string]string{}, users: users, blacklist: map[string]time.Time{}, blPruned: 64}
	g.ips.states, _ = lru.New[netip.Addr, *ipState](opts.MaxIPs)
	g.ips.blacklist, g.ips.blPruned = map[netip.Addr]time.Time{}, 64
	s := opts.Defaults
	g.settings.Store(&s)
	g.breaker = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "draw",
		MaxRequests: b.Probes,
		Interval:    b.Window,
		Timeout:     b.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.Requests >= b.MinRequests && float64(c.TotalFailures) >= b.FailureRatio*float64(c.Requests)
		},
		IsSuccessful: func(err error) bool { return !g.failure(err) },
		IsExcluded:   func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			// gobreaker does not tell when an open state ends; it is OpenFor after it
			// began, on gobreaker's own clock (time.Now).
			if to == gobreaker.StateOpen {
				g.openUntil.Store(time.Now().Add(b.OpenFor).UnixNano())
			}
			g.opts.Logger.Warn("circuit breaker", "from", from.String(), "to", to.String())
		},
	})
	return g
}

func (g *Guard) failure(err error) bool {
	switch {
	case err == nil, errors.Is(err, ErrRateLimited):
		return false
	case errors.Is(err, ErrTimeout), errors.Is(err, ErrOutcomeUnknown), g.opts.IsFailure == nil:
		return true
	}
	return g.opts.IsFailure(err)
}

// systemFailure reports whether a call ended in a failure of the system (a timeout, the
// open breaker, an unknown outcome, a failure IsFailure names), which must not count
// against the user. A caller who went away is not one.
func (g *Guard) systemFailure(err error) bool {
	return !errors.Is(err, context.Canceled) && g.failure(err)
}

// Settings returns the settings in force.
func (g *Guard) Settings() Settings { return *g.settings.Load() }

// Defaults returns the settings of the node's config, in force where no override is.
func (g *Guard) Defaults() Settings { return g.opts.Defaults }

// Override applies a value from the shared store over the defaults; an empty value
// removes the override. A value the node cannot apply is logged and ignored, so one bad
// write cannot take the front line down.
func (g *Guard) Override(key, value string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if value == "" {
		delete(g.overrides, key)
	} else {
		g.overrides[key] = value
	}
	s := g.opts.Defaults
	for _, k := range Keys {
		v, ok := g.overrides[k]
		if !ok {
			continue
		}
		next, err := s.With(k, v)
		if err != nil {
			g.opts.Logger.Error("ignoring dynamic setting", "key", k, "err", err)
			continue
		}
		s = next
	}
	old := g.settings.Load()
	if old.PermitsPerSecond != s.PermitsPerSecond || old.Burst != s.Burst {
		g.gen.Add(1)
	}
	if old.IPPermitsPerSecond != s.IPPermitsPerSecond || old.IPBurstInForce() != s.IPBurstInForce() {
		g.ips.gen.Add(1)
	}
	g.settings.Store(&s)
	if *old != s {
		g.opts.Logger.Info("dynamic settings changed", "settings", s.Map())
	}
}

// Blacklist records that userID is blacklisted until the given time; the shared store
// calls it on every node. A zero until lifts the entry.
func (g *Guard) Blacklist(userID string, until time.Time) {
	g.blMu.Lock()
	defer g.blMu.Unlock()
	if until.IsZero() {
		delete(g.blacklist, userID)
		return
	}
	if cur, ok := g.blacklist[userID]; !ok || until.After(cur) {
		g.blacklist[userID] = until
	}
	// Entries lapse by time, not by deletion: drop the expired ones whenever the map
	// has doubled since the last pass, so its size stays proportional to the live ones.
	if len(g.blacklist) >= 2*g.blPruned {
		now := g.opts.Now()
		for u, t := range g.blacklist {
			if !now.Before(t) {
				delete(g.blacklist, u)
			}
		}
		g.blPruned = max(len(g.blacklist), 64)
	}
}

// BlacklistedUntil reports when userID's blacklisting ends, if it is blacklisted now.
// The expiry is data judged by the injected clock, not a store's TTL.
func (g *Guard) BlacklistedUntil(userID string) (time.Time, bool) {
	now := g.opts.Now()
	g.blMu.RLock()
	until, ok := g.blacklist[userID]
	g.blMu.RUnlock()
	if !ok {
		return time.Time{}, false
	}
	if !now.Before(until) {
		g.blMu.Lock()
		if cur, ok := g.blacklist[userID]; ok && !now.Before(cur) {
			delete(g.blacklist, userID)
		}
		g.blMu.Unlock()
		return time.Time{}, false
	}
	return until, true
}

// Degraded reports whether the degrade switch is open, counting the request it answers.
func (g *Guard) Degraded() bool {
	if g.settings.Load().Degrade {
		g.stats.degraded.Add(1)
		return true
	}
	return false
}

// Do runs fn for userID behind the front line: the degrade switch, the blacklist, the
// local token bucket, then, within the time budget and behind the breaker, the cluster
// limit and fn itself.
//
// A call over its budget before its commit point (see Commit) answers ErrTimeout at once
// while fn, its context cancelled, winds down on its own and can no longer commit, so it
// took nothing it cannot give back. A call past its commit point is waited for, up to
// CommitTimeout from the commit, and answers fn's own outcome, or ErrOutcomeUnknown when
// even that limit passed.
//
// A refusal by the limits counts towards the blacklist only when the user's last
// admitted call that has ended did not fail for the system's reasons: a client that
// retries through an outage is not punished for it.
func (g *Guard) Do(ctx context.Context, userID string, fn func(ctx context.Context) error) error {
	s := g.settings.Load()
	if s.Degrade {
		g.stats.degraded.Add(1)
		return ErrDegraded
	}
	var u *userState
	if s.RateLimit {
		var err error
		if u, err = g.admitLocal(ctx, userID, s); err != nil {
			return err
		}
	}
	err := g.run(ctx, s, func(ctx context.Context) error {
		if s.RateLimit && g.opts.Cluster != nil {
			if err := g.admitCluster(ctx, userID, s); err != nil {
				return err
			}
		}
		return fn(ctx)
	})
	if u != nil && !errors.Is(err, ErrRateLimited) {
		failed := g.systemFailure(err)
		u.mu.Lock()
		u.systemFailed = failed
		u.mu.Unlock()
	}
	return err
}

// DoSystem runs fn, a call no user makes (an operator's test draw), behind the degrade
// switch, the time budget and the breaker, with the commit point of Do; it has no
// per-user limits.
func (g *Guard) DoSystem(ctx context.Context, fn func(ctx context.Context) error) error {
	s := g.settings.Load()
	if s.Degrade {
		g.stats.degraded.Add(1)
		return ErrDegraded
	}
	return g.run(ctx, s, fn)
}

// run runs fn within its budget behind the breaker.
func (g *Guard) run(ctx context.Context, s *Settings, fn func(ctx context.Context) error) error {
	_, err := g.breaker.Execute(func() (struct{}, error) {
		return struct{}{}, g.withinBudget(ctx, s, fn)
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		g.stats.breakerOpen.Add(1)
		return &openError{retryAfter: time.Until(time.Unix(0, g.openUntil.Load()))}
	}
	return err
}

// openError is ErrBreakerOpen with the time the breaker stays open.
type openError struct{ retryAfter time.Duration }

func (e *openError) Error() string { return ErrBreakerOpen.Error() }
func (e *openError) Unwrap() error { return ErrBreakerOpen }

// RetryAfter is the breaker's remaining open time; 0 while it is probing (half-open),
// which leaves the answer to the caller's default.
func (e *openError) RetryAfter() time.Duration { return max(e.retryAfter, 0) }

// admitLocal checks the blacklist and the user's token bucket; neither leaves memory. It
// returns the user's state, in which Do notes how the admitted call ended.
func (g *Guard) admitLocal(ctx context.Context, userID string, s *Settings) (*userState, error) {
	now := g.opts.Now()
	if until, ok := g.BlacklistedUntil(userID); ok {
		g.stats.blacklisted.Add(1)
		return nil, &limitError{err: fmt.Errorf("until %s: %w", until.UTC().Format(time.RFC3339), ErrBlacklisted),
			retryAfter: until.Sub(now)}
	}
	u := g.user(userID, now, s)
	u.mu.Lock()
	ok := u.limiter.AllowN(now, 1)
	var wait time.Duration
	if !ok {
		wait = permitWait(u.limiter.TokensAt(now), s.PermitsPerSecond)
	}
	u.mu.Unlock()
	if !ok {
		g.stats.limitedLocal.Add(1)
		return nil, g.reject(ctx, userID, u, s, wait)
	}
	return u, nil
}

// permitWait is how long a bucket holding tokens, refilled at perSecond, takes to hold a
// whole permit again: a refusal's Retry-After.
func permitWait(tokens, perSecond float64) time.Duration {
	if tokens >= 1 || perSecond <= 0 {
		return 0
	}
	return time.Duration((1 - tokens) / perSecond * float64(time.Second))
}

// admitCluster asks the cluster-wide limit. When it cannot be asked, the call goes on:
// the local bucket still holds, and a store outage must not refuse every user.
func (g *Guard) admitCluster(ctx context.Context, userID string, s *Settings) error {
	ok, err := g.opts.Cluster.Allow(ctx, userID, s.PermitsPerSecond, s.Burst)
	if err != nil {
		g.stats.clusterErrors.Add(1)
		return nil
	}
	if !ok {
		g.stats.limitedCluster.Add(1)
		// The cluster-wide bucket refills at the same rate: a permit is at most one
		// interval away.
		wait := permitWait(0, s.PermitsPerSecond)
		if u, found := g.users.Peek(userID); found {
			return g.reject(ctx, userID, u, s, wait)
		}
		return &limitError{err: ErrRateLimited, retryAfter: wait}
	}
	return nil
}

// user returns userID's limiter state, fresh when it idled out or the limits changed.
func (g *Guard) user(userID string, now time.Time, s *Settings) *userState {
	gen := g.gen.Load()
	if u, ok := g.users.Get(userID); ok {
		u.mu.Lock()
		fresh := u.gen == gen && now.Sub(u.seen) < g.opts.UserIdle
		if fresh {
			u.seen = now
		}
		u.mu.Unlock()
		if fresh {
			return u
		}
	}
	u := &userState{limiter: rate.NewLimiter(rate.Limit(s.PermitsPerSecond), s.Burst), seen: now, gen: gen}
	if prev, found, _ := g.users.PeekOrAdd(userID, u); found {
		prev.mu.Lock()
		fresh := prev.gen == gen && now.Sub(prev.seen) < g.opts.UserIdle
		prev.mu.Unlock()
		if fresh { // a concurrent first request made it: share its bucket
			return prev
		}
		g.users.Add(userID, u)
	}
	return u
}

// reject counts a rejection and blacklists the user once the count passes the threshold.
// A rejection after a call that failed for the system's reasons is not counted: the
// user is retrying what the system failed to answer.
func (g *Guard) reject(ctx context.Context, userID string, u *userState, s *Settings, wait time.Duration) error {
	refused := &limitError{err: ErrRateLimited, retryAfter: wait}
	excused, n, over := u.strike(s.BlacklistCount)
	if excused {
		g.stats.excused.Add(1)
		return refused
	}
	if !over {
		return refused
	}
	until := g.opts.Now().Add(s.BlacklistDuration)
	g.Blacklist(userID, until)
	g.opts.Logger.Warn("user blacklisted", "user_id", userID, "rejections", n, "until", until)
	if g.opts.Blacklist != nil {
		// Share it without holding up the answer; this node already refuses the user.
		go func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := g.opts.Blacklist.AddBlacklist(ctx, userID, until); err != nil {
				g.opts.Logger.Error("share blacklisting", "user_id", userID, "err", err)
			}
		}()
	}
	return &limitError{err: ErrBlacklisted, retryAfter: s.BlacklistDuration}
}

// withinBudget runs fn with the time budget as its deadline. Unless fn passes its commit
// point in time, the answer comes no later than the budget, whether or not fn has
// returned by then; once fn has committed, the answer waits for it up to CommitTimeout
// from the commit.
func (g *Guard) withinBudget(ctx context.Context, s *Settings, fn func(ctx context.Context) error) error {
	c := &call{commitTimeout: g.opts.CommitTimeout}
	bctx, cancel := context.WithTimeout(context.WithValue(ctx, callKey{}, c), s.DrawTimeout)
	defer cancel()
	c.budgetEnd, _ = bctx.Deadline() // set before fn runs, read by it
	done := make(chan error, 1)
	go func() {
		done <- fn(bctx) // buffered: sent before finish ends the commit context
		c.finish()
	}()
	var err error
	select {
	case err = <-done:
		if err == nil {
			return nil
		}
		// A committed call answers its own outcome, or an unknown one when its commit
		// context ended first, whether or not the budget still runs: the commit timeout
		// may be shorter than what is left of the budget. fn has returned, so expire only
		// reads the call's state.
		if committed, _ := c.expire(); committed {
			return g.committedOutcome(err, c)
		}
		if bctx.Err() == nil {
			return err
		}
		// It failed as its budget ran out: its stores gave up at the same deadline.
	case <-bctx.Done():
		committed, commitDone := c.expire()
		if committed {
			return g.awaitCommitted(c, done, commitDone)
		}
		select {
		case err = <-done: // finished just as time ran out
			if err == nil {
				return nil
			}
		default:
		}
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr // the caller went away; not the system's failure
	}
	g.stats.timeouts.Add(1)
	if err != nil {
		return fmt.Errorf("after %s: %w (%w)", s.DrawTimeout, ErrTimeout, err)
	}
	return fmt.Errorf("after %s: %w", s.DrawTimeout, ErrTimeout)
}

// awaitCommitted waits for a committed call's outcome until its commit context ends.
func (g *Guard) awaitCommitted(c *call, done <-chan error, commitDone <-chan struct{}) error {
	select {
	case err := <-done:
		return g.committedOutcome(err, c)
	case <-commitDone:
		select {
		case err := <-done: // finished just as the commit timeout passed
			return g.committedOutcome(err, c)
		default:
		}
	}
	g.stats.outcomeUnknown.Add(1)
	return fmt.Errorf("after the commit timeout of %s: %w", g.opts.CommitTimeout, ErrOutcomeUnknown)
}

// committedOutcome is the answer of a committed call that returned err: its own, unless
// it failed once its commit context had ended, when its stores gave up without saying
// whether what it wrote took effect.
func (g *Guard) committedOutcome(err error, c *call) error {
	if err == nil || !c.overran() {
		return err
	}
	g.stats.outcomeUnknown.Add(1)
	return fmt.Errorf("after the commit timeout of %s: %w (%w)", g.opts.CommitTimeout, ErrOutcomeUnknown, err)
}

// BreakerState returns the breaker's state: "closed", "open" or "half-open".
func (g *Guard) BreakerState() string { return g.breaker.State().String() }

// Stats returns the counters.
func (g *Guard) Stats() Stats {
	g.blMu.RLock()
	n := len(g.blacklist)
	g.blMu.RUnlock()
	g.ips.blMu.RLock()
	ipn := len(g.ips.blacklist)
	g.ips.blMu.RUnlock()
	return Stats{
		Degraded: g.stats.degraded.Load(), LimitedLocal: g.stats.limitedLocal.Load(),
		LimitedCluster: g.stats.limitedCluster.Load(), Blacklisted: g.stats.blacklisted.Load(),
		Timeouts: g.stats.timeouts.Load(), BreakerOpen: g.stats.breakerOpen.Load(),
		ClusterErrors: g.stats.clusterErrors.Load(), OutcomeUnknown: g.stats.outcomeUnknown.Load(),
		Excused: g.stats.excused.Load(), BlacklistSize: n,
		BreakerState: g.BreakerState(),
		IPLimited:    g.stats.ipLimited.Load(), IPBlacklisted: g.stats.ipBlacklisted.Load(),
		IPExcused: g.stats.ipExcused.Load(), IPBlacklistFull: g.stats.ipBlacklistFull.Load(),
		IPBlacklistSize: ipn,
	}
}
