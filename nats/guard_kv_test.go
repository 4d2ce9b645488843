package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/guard"
	"github.com/bigmarket/bigmarket/internal/testenv"
)

// guardNode is one node's guard fed by its own watch of the shared buckets.
type guardNode struct {
	kv    *GuardKV
	guard *guard.Guard
}

func startGuardNode(t *testing.T, js jetstream.JetStream, prefix string, defaults guard.Settings, now func() time.Time) guardNode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	kv, err := OpenGuardKV(ctx, js, prefix, 1, log)
	if err != nil {
		t.Fatal(err)
	}
	g := guard.New(guard.Options{Defaults: defaults, Blacklist: kv, IPBlacklist: kv, Now: now, Logger: log})
	wctx, stop := context.WithCancel(context.Background())
	wait, err := kv.Watch(wctx, g)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(); wait() })
	return guardNode{kv: kv, guard: g}
}

func deleteBucketsAtEnd(t *testing.T, js jetstream.JetStream, prefix string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, b := range KVBuckets(prefix) {
			if err := js.DeleteKeyValue(ctx, b); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
				t.Errorf("delete bucket %s: %v", b, err)
			}
		}
	})
}

// TestGuardKVReachesEveryNode runs two nodes, each with its own connection and watch:
// a setting written through one and a blacklisting made by the other reach both, the
// blacklist expiry is judged by the injected clock, and a node started later sees both.
func TestGuardKVReachesEveryNode(t *testing.T) {
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
			prefix := testenv.Unique("g")
			deleteBucketsAtEnd(t, jsA, prefix)
			clock := testenv.NewClock(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC))
			defaults := guard.DefaultSettings()
			defaults.PermitsPerSecond, defaults.Burst, defaults.BlacklistCount = 1, 1, 2
			a := startGuardNode(t, jsA, prefix, defaults, clock.Now)
			b := startGuardNode(t, jsB, prefix, defaults, clock.Now)
			ctx := context.Background()

			if err := a.kv.PutSetting(ctx, guard.KeyDegradeSwitch, guard.Open); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 30*time.Second, "degrade reaches node b", func() (bool, string) {
				return b.guard.Settings().Degrade, fmt.Sprint(b.guard.Settings())
			})
			if err := b.kv.DeleteSetting(ctx, guard.KeyDegradeSwitch); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 30*time.Second, "default back on both nodes", func() (bool, string) {
				return !a.guard.Settings().Degrade && !b.guard.Settings().Degrade, fmt.Sprint(a.guard.Settings(), b.guard.Settings())
			})

			// Burst 1, blacklisted after 2 rejections: the fourth call on b blacklists.
			var last error
			for range 4 {
				last = b.guard.Do(ctx, "user:é/1", func(context.Context) error { return nil })
			}
			if !errors.Is(last, guard.ErrBlacklisted) {
				t.Fatalf("fourth call = %v, want blacklisted", last)
			}
			testenv.Eventually(t, 30*time.Second, "blacklisting reaches node a", func() (bool, string) {
				_, ok := a.guard.BlacklistedUntil("user:é/1")
				return ok, fmt.Sprint(a.guard.Stats())
			})
			c := startGuardNode(t, jsA, prefix, defaults, clock.Now)
			if _, ok := c.guard.BlacklistedUntil("user:é/1"); !ok {
				t.Fatal("a node started later does not see the blacklisting")
			}
			clock.Advance(24 * time.Hour)
			for name, n := range map[string]guardNode{"a": a, "b": b, "c": c} {
				if err := n.guard.Do(ctx, "user:é/1", func(context.Context) error { return nil }); err != nil {
					t.Fatalf("node %s 24h later: %v, want let back in", name, err)
				}
			}
		})
	}
}

// TestGuardKVIPBlacklist: an IP blacklisted on one node reaches the other (IPv4 and an
// IPv6 /64), an operator's removal lifts it on both, a node started later sees what is
// left, and an IP entry never reads as a user's.
func TestGuardKVIPBlacklist(t *testing.T) {
	t.Parallel()
	e := startEmbedded(t, t.TempDir())
	jsA, jsB := embeddedJS(t, e), embeddedJS(t, e)
	prefix := testenv.Unique("gip")
	deleteBucketsAtEnd(t, jsA, prefix)
	clock := testenv.NewClock(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC))
	defaults := guard.DefaultSettings()
	defaults.IPPermitsPerSecond, defaults.IPBurst, defaults.BlacklistCount = 0.001, 1, 2
	a := startGuardNode(t, jsA, prefix, defaults, clock.Now)
	b := startGuardNode(t, jsB, prefix, defaults, clock.Now)
	ctx := context.Background()

	v4, v6 := netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("2001:db8:5:6::1")
	for _, ip := range []netip.Addr{v4, v6} {
		var last error
		for range 4 { // burst 1, blacklisted after 2 refusals: the fourth call blacklists
			_, last = b.guard.AdmitIP(ip)
		}
		if !errors.Is(last, guard.ErrIPBlacklisted) {
			t.Fatalf("%s: fourth call = %v, want blacklisted", ip, last)
		}
	}
	other := netip.MustParseAddr("2001:db8:5:6:ffff::2") // the same /64 as v6
	testenv.Eventually(t, 30*time.Second, "IP blacklistings reach node a", func() (bool, string) {
		_, ok4 := a.guard.IPBlacklistedUntil(v4)
		_, ok6 := a.guard.IPBlacklistedUntil(other)
		return ok4 && ok6, fmt.Sprint(a.guard.Stats())
	})
	if _, ok := a.guard.BlacklistedUntil("203.0.113.9"); ok {
		t.Fatal("an IP entry read as a user's")
	}
	if err := a.kv.RemoveIPBlacklist(ctx, guard.IPKey(v6)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the lift reaches both nodes", func() (bool, string) {
		_, onA := a.guard.IPBlacklistedUntil(v6)
		_, onB := b.guard.IPBlacklistedUntil(v6)
		return !onA && !onB, fmt.Sprint(a.guard.Stats(), b.guard.Stats())
	})
	c := startGuardNode(t, jsA, prefix, defaults, clock.Now)
	if _, ok := c.guard.IPBlacklistedUntil(v4); !ok {
		t.Fatal("a node started later does not see the IPv4 blacklisting")
	}
	if _, ok := c.guard.IPBlacklistedUntil(v6); ok {
		t.Fatal("a node started later sees the lifted IPv6 blacklisting")
	}
	if st := c.guard.Stats(); st.IPBlacklistSize != 1 || st.BlacklistSize != 0 {
		t.Fatalf("node c: %+v, want one IP and no user blacklisted", st)
	}
}

// TestGuardKVReadYourWrites: a node that writes or removes a setting has applied it when
// the write returns, so an operator's next call to that node sees it (the other nodes
// follow within milliseconds); a GuardKV without a watch does not wait.
func TestGuardKVReadYourWrites(t *testing.T) {
	t.Parallel()
	js := embeddedJS(t, startEmbedded(t, t.TempDir()))
	prefix := testenv.Unique("g")
	n := startGuardNode(t, js, prefix, guard.DefaultSettings(), time.Now)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 50 {
		if err := n.kv.PutSetting(ctx, guard.KeyDegradeSwitch, guard.Open); err != nil {
			t.Fatal(err)
		}
		if !n.guard.Settings().Degrade {
			t.Fatalf("round %d: degrade not in force on the writing node when PutSetting returned", i)
		}
		if err := n.kv.DeleteSetting(ctx, guard.KeyDegradeSwitch); err != nil {
			t.Fatal(err)
		}
		if n.guard.Settings().Degrade {
			t.Fatalf("round %d: degrade still in force on the writing node when DeleteSetting returned", i)
		}
	}
	unwatched, err := OpenGuardKV(ctx, js, prefix, 1, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := unwatched.PutSetting(ctx, guard.KeyDegradeSwitch, guard.Open); err != nil {
		t.Fatalf("PutSetting without a watch: %v", err)
	}
	if err := unwatched.DeleteSetting(ctx, guard.KeyDegradeSwitch); err != nil {
		t.Fatalf("DeleteSetting without a watch: %v", err)
	}
}

// TestGuardKVSurvivesNATSRestart: after the broker restarts, a setting, a blacklisting and
// its lift written through one node reach the other. Each node opens its watches again
// as soon as its connection is back (without that, a watch resumes only once its
// consumer has missed enough heartbeats, some 20 seconds later); the latency is logged.
func TestGuardKVSurvivesNATSRestart(t *testing.T) {
	t.Parallel()
	s := testenv.StartNATSServer(t)
	clock := testenv.NewClock(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC))
	defaults := guard.DefaultSettings()
	a := startGuardNode(t, connectChild(t, s), "", defaults, clock.Now)
	b := startGuardNode(t, connectChild(t, s), "", defaults, clock.Now)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := a.kv.PutSetting(ctx, guard.KeyDegradeSwitch, guard.Open); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "degrade reaches node b before the restart", func() (bool, string) {
		return b.guard.Settings().Degrade, fmt.Sprint(b.guard.Settings())
	})

	s.Stop()
	s.Start()
	t0 := time.Now()
	if err := a.kv.PutSetting(ctx, guard.KeyDegradeSwitch, guard.Close); err != nil {
		t.Fatal(err)
	}
	until := clock.Now().Add(time.Hour)
	if err := a.kv.AddBlacklist(ctx, "after-restart", until); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "the setting and the blacklisting reach node b after the restart", func() (bool, string) {
		got, ok := b.guard.BlacklistedUntil("after-restart")
		return !b.guard.Settings().Degrade && ok && got.Equal(until), fmt.Sprint(b.guard.Settings(), got, ok)
	})
	t.Logf("after the broker came back: a setting and a blacklisting reached the other node in %v", time.Since(t0).Round(time.Millisecond))

	t1 := time.Now()
	if err := a.kv.RemoveBlacklist(ctx, "after-restart"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "the lift reaches node b", func() (bool, string) {
		_, ok := b.guard.BlacklistedUntil("after-restart")
		return !ok, fmt.Sprint(b.guard.Stats())
	})
	t.Logf("the lift reached the other node in %v", time.Since(t1).Round(time.Millisecond))
}
