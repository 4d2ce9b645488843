package rebuild

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestDoRunsOncePerKeyAndBoundsTheWait(t *testing.T) {
	var g Group
	var runs atomic.Int32
	release := make(chan struct{})
	slow := func(ctx context.Context) error {
		runs.Add(1)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// Many waiters, one rebuild; each gives up after its wait while the rebuild goes on.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := g.Do(t.Context(), "k", time.Minute, 20*time.Millisecond, slow, nil); !errors.Is(err, ErrStillRunning) {
				t.Errorf("wait past its bound: %v, want ErrStillRunning", err)
			}
		})
	}
	wg.Wait()
	// A waiter whose request is cancelled does not stop the rebuild either.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := g.Do(ctx, "k", time.Minute, time.Minute, slow, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Do(t.Context(), "k", time.Minute, time.Minute, slow, nil) }()
	time.Sleep(10 * time.Millisecond)
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("waiter of the finished rebuild: %v", err)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("%d rebuilds for one key, want 1", n)
	}
	// The rebuild's error reaches its waiter and the failure hook, once; its timeout
	// bounds it.
	var failed []error
	err := g.Do(t.Context(), "k2", 10*time.Millisecond, time.Minute, func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}, func(err error) { failed = append(failed, err) })
	if !errors.Is(err, context.DeadlineExceeded) || len(failed) != 1 {
		t.Fatalf("bounded rebuild: %v, failures %v", err, failed)
	}
}
