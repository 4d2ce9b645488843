//go:build faultinject

package app

import (
	"context"
	"log/slog"
	"time"
)

// loadFaults reads the fault settings: this build has the hooks.
func loadFaults(raw faultSettings) (faultDelays, error) { return parseFaultSettings(raw) }

// hook returns the pause of point, logging that it is on, or nil when it is not set.
// Each pause logs that it began, so that a fault test can see the process inside it; it
// ends early when ctx ends.
func (f faultDelays) hook(point faultPoint, log *slog.Logger) func(ctx context.Context) {
	d := f[point]
	if d <= 0 {
		return nil
	}
	log.Warn("fault injection on: "+faultPoints[point], "delay", d)
	return func(ctx context.Context) {
		log.Warn("fault injection: pausing", "point", string(point), "delay", d)
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}
