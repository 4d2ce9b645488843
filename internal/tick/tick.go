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
