// Package rebuild runs the rebuild of lost hot state once per key on a node, however many
// requests ask for it, and lets each request wait for it only so long.
package rebuild

import (
	"context"
	"errors"
	"time"

	"golang.org/x/sync/singleflight"
)

// ErrStillRunning is a wait that ended before the rebuild did; the rebuild goes on.
var ErrStillRunning = errors.New("rebuild still running")

// Group runs one rebuild per key at a time. The zero value is ready.
type Group struct{ g singleflight.Group }

// Do runs rebuild for key unless one is running, bounded by timeout and detached from
// ctx's cancellation (a request that gives up does not stop the rebuild others wait
// for), and waits for it at most wait: past it Do returns ErrStillRunning, and the
// request's retry finds the state back once it is done. The rebuild's own error is
// logged by failed, when set, once per run.
func (g *Group) Do(ctx context.Context, key string, timeout, wait time.Duration, rebuild func(context.Context) error, failed func(error)) error {
	ch := g.g.DoChan(key, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		err := rebuild(ctx)
		if err != nil && failed != nil {
			failed(err)
		}
		return nil, err
	})
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case r := <-ch:
		return r.Err
	case <-timer.C:
		return ErrStillRunning
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Settle waits grace, so that the requests in flight when the state was lost finish (they
// publish their events or fail), and then for drain: once it returns, every event those
// requests published is applied to the durable records a rebuild reads.
func Settle(ctx context.Context, grace time.Duration, drain func(context.Context) error) error {
	select {
	case <-time.After(grace):
	case <-ctx.Done():
		return ctx.Err()
	}
	return drain(ctx)
}

// Timing fills in the timing of a rebuild after a loss of hot state: publish, how long a
// request waits for the broker (default 2s); grace, how long a rebuild waits for the
// requests in flight (at least publish plus a second); timeout, the bound of a rebuild
// (at least grace plus 12s).
func Timing(publish, grace, timeout time.Duration) (time.Duration, time.Duration, time.Duration) {
	if publish <= 0 {
		publish = 2 * time.Second
	}
	if grace < publish+time.Second {
		grace = publish + time.Second
	}
	if timeout <= grace {
		timeout = grace + 12*time.Second
	}
	return publish, grace, timeout
}
