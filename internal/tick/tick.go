// Package tick runs the periodic jobs of the domains (stock reconcile, red packet sweep).
package tick

import (
	"context"
	"time"
)

// Every runs job every interval until ctx ends, and returns ctx's error. The first run is
// one interval after the start.
func Every(ctx context.Context, interval time.Duration, job func(context.Context)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			job(ctx)
		}
	}
}

// LeaseTTL is how long a periodic job's claim on its cluster-wide lease lasts when it runs
// every interval: one run's interval and 15 s of slack. A node that dies holding it
// delays the job on the others by at most that; the jobs that take one (the red packet,
// rain and pending draw sweeps) are idempotent, so a run outliving its lease is harmless.
func LeaseTTL(interval time.Duration) time.Duration { return interval + 15*time.Second }
