package guard

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Refusals of the per-IP limit; both are ErrRateLimited (0005).
var (
	// ErrIPRateLimited is a client IP over its limit on this node.
	ErrIPRateLimited = fmt.Errorf("client IP: %w", ErrRateLimited)
	// ErrIPBlacklisted is a client IP blacklisted for being over its limit too often.
	ErrIPBlacklisted = fmt.Errorf("client IP: %w", ErrBlacklisted)
)

// IPBlacklistStore shares an IP blacklisting with every node; each node learns of
// entries through Guard.BlacklistIP, its own included.
type IPBlacklistStore interface {
	AddIPBlacklist(ctx context.Context, key netip.Addr, until time.Time) error
}

// ipState is a client IP's limiter and refusals, kept as a user's are (userState): the
// bucket, when it was last seen, its refusals towards the blacklist and whether its last
// call got a system answer (Guard.EndIP), which excuses its refusals.
type ipState = userState

// IPAdmission is a call AdmitIP let through; EndIP notes how it ended. The zero value
// (the per-IP limit off) notes nothing.
type IPAdmission struct{ st *ipState }

// limitError is a refusal with the time after which a retry may pass.
type limitError struct {
	err        error
	retryAfter time.Duration
}

func (e *limitError) Error() string { return e.err.Error() }
func (e *limitError) Unwrap() error { return e.err }

// RetryAfter is how long until the bucket holds a permit again, or the blacklisting ends.
func (e *limitError) RetryAfter() time.Duration { return e.retryAfter }

// ipLimits is the per-IP part of a Guard.
type ipLimits struct {
	gen       atomic.Uint64 // bumped when the per-IP limits change, so buckets are rebuilt
	states    *lru.Cache[netip.Addr, *ipState]
	blMu      sync.RWMutex
	blacklist map[netip.Addr]time.Time
	blPruned  int
}

// IPLimits reports whether the per-IP limit is on; while it is off AdmitIP admits at once
// and the caller need not even find the client's address.
func (g *Guard) IPLimits() bool { return g.settings.Load().IPLimits() }

// AdmitIP lets a call from addr through the IP blacklist and the IP's token bucket on this
// node, or refuses it (ErrIPBlacklisted, ErrIPRateLimited, each with a RetryAfter). It
// touches nothing outside memory. With the limit off it admits every call.
func (g *Guard) AdmitIP(addr netip.Addr) (IPAdmission, error) {
	s := g.settings.Load()
	if !s.IPLimits() {
		return IPAdmission{}, nil
	}
	key := IPKey(addr)
	now := g.opts.Now()
	if until, ok := g.IPBlacklistedUntil(key); ok {
		g.stats.ipBlacklisted.Add(1)
		return IPAdmission{}, &limitError{err: ErrIPBlacklisted, retryAfter: until.Sub(now)}
	}
	st := g.ipState(key, now, s)
	st.mu.Lock()
	ok := st.limiter.AllowN(now, 1)
	var wait time.Duration
	if !ok {
		missing := 1 - st.limiter.TokensAt(now)
		wait = time.Duration(missing / s.IPPermitsPerSecond * float64(time.Second))
	}
	st.mu.Unlock()
	if !ok {
		g.stats.ipLimited.Add(1)
		return IPAdmission{}, g.rejectIP(key, st, s, wait)
	}
	return IPAdmission{st: st}, nil
}

// EndIP notes how an admitted call ended: a system answer (a failure IsFailure names, a
// timeout, the open breaker, an unknown outcome, the degrade switch) excuses the IP's
// next refusals from counting towards its blacklisting.
func (g *Guard) EndIP(a IPAdmission, err error) {
	if a.st == nil || errors.Is(err, ErrRateLimited) {
		return
	}
	failed := errors.Is(err, ErrDegraded) || g.systemFailure(err)
	a.st.mu.Lock()
	a.st.systemFailed = failed
	a.st.mu.Unlock()
}

// ipState returns key's bucket, fresh when it idled out or the limits changed.
func (g *Guard) ipState(key netip.Addr, now time.Time, s *Settings) *ipState {
	gen := g.ips.gen.Load()
	fresh := func(st *ipState) bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		ok := st.gen == gen && now.Sub(st.seen) < g.opts.UserIdle
		if ok {
			st.seen = now
		}
		return ok
	}
	if st, ok := g.ips.states.Get(key); ok && fresh(st) {
		return st
	}
	st := &ipState{limiter: rate.NewLimiter(rate.Limit(s.IPPermitsPerSecond), s.IPBurstInForce()), seen: now, gen: gen}
	if prev, found, _ := g.ips.states.PeekOrAdd(key, st); found {
		if fresh(prev) { // a concurrent first request made it: share its bucket
			return prev
		}
		g.ips.states.Add(key, st)
	}
	return st
}

// rejectIP counts a refusal and blacklists the IP once the count passes
// rateLimiterBlacklistCount, unless its last call got a system answer. The IP blacklist
// holds at most MaxIPs entries: once it is full, an IP over its limit stays limited by its
// bucket but is not blacklisted, so that an attacker cycling addresses cannot grow it.
func (g *Guard) rejectIP(key netip.Addr, st *ipState, s *Settings, wait time.Duration) error {
	refused := &limitError{err: ErrIPRateLimited, retryAfter: wait}
	excused, n, over := st.strike(s.BlacklistCount)
	if excused {
		g.stats.ipExcused.Add(1)
		return refused
	}
	if !over {
		return refused
	}
	if g.ipBlacklistLen() >= g.opts.MaxIPs {
		g.stats.ipBlacklistFull.Add(1)
		return refused
	}
	now := g.opts.Now()
	until := now.Add(s.BlacklistDuration)
	g.BlacklistIP(key, until)
	g.opts.Logger.Warn("client IP blacklisted", "ip", FormatIPKey(key), "rejections", n, "until", until)
	if g.opts.IPBlacklist != nil {
		go func() { // share it without holding up the answer; this node already refuses it
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := g.opts.IPBlacklist.AddIPBlacklist(ctx, key, until); err != nil {
				g.opts.Logger.Error("share IP blacklisting", "ip", FormatIPKey(key), "err", err)
			}
		}()
	}
	return &limitError{err: ErrIPBlacklisted, retryAfter: s.BlacklistDuration}
}

// BlacklistIP records that the client IP key (an IPKey) is blacklisted until the given
// time; the shared store calls it on every node. A zero until lifts the entry.
func (g *Guard) BlacklistIP(key netip.Addr, until time.Time) {
	key = IPKey(key)
	l := &g.ips
	l.blMu.Lock()
	defer l.blMu.Unlock()
	if until.IsZero() {
		delete(l.blacklist, key)
		return
	}
	if cur, ok := l.blacklist[key]; !ok || until.After(cur) {
		l.blacklist[key] = until
	}
	if len(l.blacklist) >= 2*l.blPruned {
		l.pruneLocked(g.opts.Now())
	}
}

// pruneLocked drops the lapsed entries; blMu is held.
func (l *ipLimits) pruneLocked(now time.Time) {
	for k, t := range l.blacklist {
		if !now.Before(t) {
			delete(l.blacklist, k)
		}
	}
	l.blPruned = max(len(l.blacklist), 64)
}

// ipBlacklistLen is the number of live IP blacklistings, lapsed ones pruned first when
// the map is at its bound.
func (g *Guard) ipBlacklistLen() int {
	l := &g.ips
	l.blMu.RLock()
	n := len(l.blacklist)
	l.blMu.RUnlock()
	if n < g.opts.MaxIPs {
		return n
	}
	l.blMu.Lock()
	defer l.blMu.Unlock()
	l.pruneLocked(g.opts.Now())
	return len(l.blacklist)
}

// IPBlacklistedUntil reports when the blacklisting of key (an IPKey) ends, if it is
// blacklisted now, judged by the injected clock.
func (g *Guard) IPBlacklistedUntil(key netip.Addr) (time.Time, bool) {
	key = IPKey(key)
	now := g.opts.Now()
	l := &g.ips
	l.blMu.RLock()
	until, ok := l.blacklist[key]
	l.blMu.RUnlock()
	if !ok {
		return time.Time{}, false
	}
	if !now.Before(until) {
		l.blMu.Lock()
		if cur, ok := l.blacklist[key]; ok && !now.Before(cur) {
			delete(l.blacklist, key)
		}
		l.blMu.Unlock()
		return time.Time{}, false
	}
	return until, true
}
