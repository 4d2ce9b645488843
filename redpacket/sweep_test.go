package redpacket

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/internal/testenv"
	"github.com/bigmarket/bigmarket/internal/tick"
)

// fakeLease is one lease shared by the "nodes" of a test: held while holder is set.
type fakeLease struct {
	mu       sync.Mutex
	holder   string
	claims   int
	released []string
	ttl      time.Duration
}

func (l *fakeLease) Claim(_ context.Context, name string, ttl time.Duration) (string, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if name != sweepLease {
		return "", false, errors.New("unexpected lease " + name)
	}
	l.claims++
	l.ttl = ttl
	if l.holder != "" {
		return "", false, nil
	}
	l.holder = "token"
	return l.holder, true, nil
}

func (l *fakeLease) Release(_ context.Context, name, token string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if token == l.holder {
		l.holder = ""
	}
	l.released = append(l.released, token)
	return nil
}

func (l *fakeLease) state() (claims int, released []string, ttl time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.claims, append([]string(nil), l.released...), l.ttl
}

// TestSweepRunsOnlyWithTheLease checks that the leased sweep refunds nothing while
// another node holds the lease, and that once it gets the lease it refunds the expired
// packet and gives the lease back.
func TestSweepRunsOnlyWithTheLease(t *testing.T) {
	t.Parallel()
	s, store, _, _ := newTestService()
	ctx := context.Background()
	p, err := s.Send(ctx, SendRequest{SenderID: "u1", Total: 3_00, Count: 3, Mode: ModeFixed})
	if err != nil {
		t.Fatal(err)
	}
	store.expire(p.ID)
	state := func() State {
		got, _, err := store.RedPacket(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.State
	}

	lease := &fakeLease{holder: "another node"}
	s.sweepOnce(ctx, lease, time.Minute)
	if st := state(); st == StateRefunded {
		t.Fatal("swept without the lease")
	}
	if _, released, _ := lease.state(); len(released) != 0 {
		t.Fatalf("released a lease it did not hold: %v", released)
	}

	lease.mu.Lock()
	lease.holder = "" // the other node's lease lapsed
	lease.mu.Unlock()
	run, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.SweepLeased(run, lease, 10*time.Millisecond) }()
	testenv.Eventually(t, 10*time.Second, "the leased sweep refunds the expired packet", func() bool {
		return state() == StateRefunded
	})
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("SweepLeased returned %v, want context.Canceled", err)
	}
	claims, released, ttl := lease.state()
	if claims < 2 || len(released) == 0 || released[0] != "token" {
		t.Fatalf("claims %d, released %v: want the lease claimed and released by its holder", claims, released)
	}
	if want := 10*time.Millisecond + 15*time.Second; ttl != want || tick.LeaseTTL(10*time.Millisecond) != want {
		t.Fatalf("lease ttl %v, want %v (interval + 15s)", ttl, want)
	}
}
