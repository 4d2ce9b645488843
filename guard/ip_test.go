package guard

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// ipFanout is an IPBlacklistStore that tells every guard, as the shared bucket's watch does.
type ipFanout struct {
	mu     sync.Mutex
	guards []*Guard
	adds   []netip.Addr
}

func (f *ipFanout) AddIPBlacklist(_ context.Context, key netip.Addr, until time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adds = append(f.adds, key)
	for _, g := range f.guards {
		g.BlacklistIP(key, until)
	}
	return nil
}

func (f *ipFanout) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.adds)
}

func ipSettings(perSecond float64, burst int) Settings {
	return settings(func(s *Settings) { s.IPPermitsPerSecond, s.IPBurst = perSecond, burst })
}

func retryAfter(err error) time.Duration {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return ra.RetryAfter()
	}
	return -1
}

func TestIPLimitOffAdmitsEverything(t *testing.T) {
	g := New(Options{Defaults: settings(nil), Now: newClock().Now})
	if g.IPLimits() {
		t.Fatal("IP limits on by default")
	}
	ip := netip.MustParseAddr("203.0.113.9")
	for range 1000 {
		a, err := g.AdmitIP(ip)
		if err != nil {
			t.Fatal(err)
		}
		g.EndIP(a, nil)
	}
	if n := testing.AllocsPerRun(100, func() {
		a, _ := g.AdmitIP(ip)
		g.EndIP(a, nil)
	}); n != 0 {
		t.Errorf("the limit off allocates %v times a call, want 0", n)
	}
	if st := g.Stats(); st.IPLimited != 0 || g.ips.states.Len() != 0 {
		t.Errorf("the limit off kept state: %+v, %d buckets", st, g.ips.states.Len())
	}
}

// TestIPLimitAndBlacklist: an IP over its burst is refused with a Retry-After, another IP
// is not; after rateLimiterBlacklistCount refusals it is blacklisted on every node until
// the duration passes or an operator lifts it; the user limits are not involved.
func TestIPLimitAndBlacklist(t *testing.T) {
	t.Parallel()
	clock := newClock()
	shared := &ipFanout{}
	s := ipSettings(0.5, 2) // a permit every 2 s; blacklisted after 3 refusals
	a := New(Options{Defaults: s, Now: clock.Now, IPBlacklist: shared})
	b := New(Options{Defaults: s, Now: clock.Now, IPBlacklist: shared})
	shared.guards = []*Guard{a, b}
	bad, good := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")

	for i := range 2 {
		if _, err := a.AdmitIP(bad); err != nil {
			t.Fatalf("call %d within the burst: %v", i+1, err)
		}
	}
	_, err := a.AdmitIP(bad)
	if !errors.Is(err, ErrIPRateLimited) || !errors.Is(err, ErrRateLimited) || errors.Is(err, ErrBlacklisted) {
		t.Fatalf("over the burst: %v, want ErrIPRateLimited", err)
	}
	if ra := retryAfter(err); ra != 2*time.Second {
		t.Errorf("Retry-After %s, want 2s (one permit at 0.5/s)", ra)
	}
	clock.Advance(time.Second) // half a permit back
	if _, err := a.AdmitIP(bad); retryAfter(err) != time.Second {
		t.Errorf("a second later: %v, Retry-After %s; want refused for 1s more", err, retryAfter(err))
	}
	if _, err := a.AdmitIP(good); err != nil {
		t.Fatalf("another IP: %v", err)
	}
	if _, err := b.AdmitIP(bad); err != nil {
		t.Fatalf("the bucket is node-local: node b refuses %v", err)
	}
	_, err = a.AdmitIP(bad) // third refusal: not yet
	if errors.Is(err, ErrBlacklisted) {
		t.Fatalf("third refusal blacklisted: %v", err)
	}
	_, err = a.AdmitIP(bad) // fourth: over the count
	if !errors.Is(err, ErrIPBlacklisted) || !errors.Is(err, ErrRateLimited) || retryAfter(err) != 24*time.Hour {
		t.Fatalf("fourth refusal: %v (Retry-After %s), want ErrIPBlacklisted for 24h", err, retryAfter(err))
	}
	waitFor(t, func() bool { return shared.count() == 1 })
	if _, err := b.AdmitIP(bad); !errors.Is(err, ErrIPBlacklisted) {
		t.Fatalf("node b after the blacklisting: %v", err)
	}
	if _, err := b.AdmitIP(good); err != nil {
		t.Fatalf("another IP on node b: %v", err)
	}
	if st := b.Stats(); st.IPBlacklistSize != 1 || st.IPBlacklisted != 1 {
		t.Errorf("node b stats %+v", st)
	}
	// The user path knows nothing of it: the IP's users are judged on their own.
	if err := a.Do(context.Background(), "198.51.100.1", ok); err != nil {
		t.Fatalf("a user named like the IP: %v", err)
	}
	// An operator lifts it (the watch applies the removal on every node).
	for _, g := range []*Guard{a, b} {
		g.BlacklistIP(IPKey(bad), time.Time{})
	}
	clock.Advance(time.Minute) // buckets idle out and refill
	for _, g := range []*Guard{a, b} {
		if _, err := g.AdmitIP(bad); err != nil {
			t.Fatalf("after the lift: %v", err)
		}
	}
	// A blacklisting lapses by the clock.
	a.BlacklistIP(bad, clock.Now().Add(time.Hour))
	if _, err := a.AdmitIP(bad); !errors.Is(err, ErrIPBlacklisted) || retryAfter(err) != time.Hour {
		t.Fatalf("blacklisted for an hour: %v, %s", err, retryAfter(err))
	}
	clock.Advance(time.Hour)
	if _, err := a.AdmitIP(bad); err != nil {
		t.Fatalf("an hour later: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestIPv6ByPrefix: every address of one /64 shares a bucket.
func TestIPv6ByPrefix(t *testing.T) {
	t.Parallel()
	g := New(Options{Defaults: ipSettings(0.001, 3), Now: newClock().Now})
	for i := range 3 {
		if _, err := g.AdmitIP(netip.MustParseAddr(fmt.Sprintf("2001:db8:1:2::%x", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := g.AdmitIP(netip.MustParseAddr("2001:db8:1:2:ffff::9")); !errors.Is(err, ErrIPRateLimited) {
		t.Fatalf("a fourth address of the /64: %v, want limited", err)
	}
	if _, err := g.AdmitIP(netip.MustParseAddr("2001:db8:1:3::1")); err != nil {
		t.Fatalf("another /64: %v", err)
	}
}

// TestIPSystemFailureExcuses: refusals after the IP's last call got a system answer
// (its clients retry an outage) do not blacklist it; after a healthy answer they do.
func TestIPSystemFailureExcuses(t *testing.T) {
	t.Parallel()
	clock := newClock()
	down := errors.New("store down")
	g := New(Options{Defaults: ipSettings(0.001, 1), Now: clock.Now, IsFailure: func(err error) bool { return errors.Is(err, down) }})
	ip := netip.MustParseAddr("198.51.100.7")
	for _, failure := range []error{down, ErrDegraded, fmt.Errorf("after 150ms: %w", ErrTimeout)} {
		clock.Advance(2 * time.Minute) // a fresh bucket
		a, err := g.AdmitIP(ip)
		if err != nil {
			t.Fatal(err)
		}
		g.EndIP(a, failure)
		for i := range 10 {
			if _, err := g.AdmitIP(ip); !errors.Is(err, ErrIPRateLimited) || errors.Is(err, ErrBlacklisted) {
				t.Fatalf("after %v, refusal %d: %v; want limited, never blacklisted", failure, i+1, err)
			}
		}
	}
	if st := g.Stats(); st.IPExcused != 30 || st.IPBlacklistSize != 0 {
		t.Fatalf("stats %+v, want 30 excused, none blacklisted", st)
	}
	clock.Advance(2 * time.Minute)
	a, _ := g.AdmitIP(ip)
	g.EndIP(a, errors.New("a business answer"))
	var err error
	for range 4 {
		_, err = g.AdmitIP(ip)
	}
	if !errors.Is(err, ErrIPBlacklisted) {
		t.Fatalf("after a business answer, fourth refusal: %v; want blacklisted", err)
	}
}

// TestIPSettingsViaDCC: the two keys validate, apply over the defaults on Override,
// rebuild the buckets when they change, and reset back to off.
func TestIPSettingsViaDCC(t *testing.T) {
	t.Parallel()
	clock := newClock()
	g := New(Options{Defaults: settings(nil), Now: clock.Now})
	s := g.Settings()
	for _, bad := range [][2]string{
		{KeyIPPermitsPerSecond, "-1"}, {KeyIPPermitsPerSecond, "NaN"}, {KeyIPPermitsPerSecond, "2000000"}, {KeyIPPermitsPerSecond, "x"},
		{KeyIPBurst, "-1"}, {KeyIPBurst, "1.5"}, {KeyIPBurst, "2000000"},
	} {
		if _, err := s.With(bad[0], bad[1]); !errors.Is(err, ErrBadSetting) {
			t.Errorf("%s=%s: %v, want ErrBadSetting", bad[0], bad[1], err)
		}
	}
	if v := g.Settings().Map(); v[KeyIPPermitsPerSecond] != "0" || v[KeyIPBurst] != "0" {
		t.Fatalf("defaults %v, want both 0", v)
	}
	g.Override(KeyIPPermitsPerSecond, "2.5")
	if !g.IPLimits() || g.Settings().IPBurstInForce() != 3 {
		t.Fatalf("2.5/s with burst 0: on %t, burst %d; want on, 3", g.IPLimits(), g.Settings().IPBurstInForce())
	}
	ip := netip.MustParseAddr("198.51.100.9")
	for range 3 {
		if _, err := g.AdmitIP(ip); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := g.AdmitIP(ip); !errors.Is(err, ErrIPRateLimited) {
		t.Fatalf("fourth at once: %v", err)
	}
	g.Override(KeyIPBurst, "5") // new limits: a fresh bucket of 5
	for i := range 5 {
		if _, err := g.AdmitIP(ip); err != nil {
			t.Fatalf("burst 5, call %d: %v", i+1, err)
		}
	}
	if v := g.Settings().Map(); v[KeyIPPermitsPerSecond] != "2.5" || v[KeyIPBurst] != "5" {
		t.Fatalf("in force %v", v)
	}
	g.Override(KeyIPPermitsPerSecond, "")
	if g.IPLimits() {
		t.Fatal("reset: still on")
	}
	if _, err := g.AdmitIP(ip); err != nil {
		t.Fatalf("off again: %v", err)
	}
}

// TestIPMemoryBounded: an attacker cycling addresses leaves at most MaxIPs buckets and
// MaxIPs blacklistings; once the blacklist is full an IP over its limit is still limited.
func TestIPMemoryBounded(t *testing.T) {
	t.Parallel()
	clock := newClock()
	const maxIPs = 50
	s := ipSettings(0.001, 1)
	s.BlacklistCount = 1
	g := New(Options{Defaults: s, Now: clock.Now, MaxIPs: maxIPs})
	for i := range 1000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		for range 3 { // admitted, refused, refused and blacklisted (while there is room)
			_, _ = g.AdmitIP(ip)
		}
		if _, err := g.AdmitIP(ip); !errors.Is(err, ErrRateLimited) {
			t.Fatalf("ip %s: %v, want refused", ip, err)
		}
	}
	st := g.Stats()
	if g.ips.states.Len() > maxIPs || st.IPBlacklistSize != maxIPs || st.IPBlacklistFull == 0 {
		t.Fatalf("%d buckets, stats %+v; want at most %d of each and blacklistings skipped", g.ips.states.Len(), st, maxIPs)
	}
	clock.Advance(25 * time.Hour) // the blacklistings lapse: room again
	ip := netip.MustParseAddr("192.0.2.1")
	var err error
	for range 3 {
		_, err = g.AdmitIP(ip)
	}
	if !errors.Is(err, ErrIPBlacklisted) || g.Stats().IPBlacklistSize > maxIPs {
		t.Fatalf("after the lapse: %v, %+v", err, g.Stats())
	}
}
