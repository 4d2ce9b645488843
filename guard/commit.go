package guard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// DefaultCommitTimeout is how long a committed call may take when Options say nothing.
const DefaultCommitTimeout = 5 * time.Second

// callKey is the context key of a guarded call's commit state.
type callKey struct{}

// call is the commit state of one guarded call: running until either the call commits
// (Commit) or its answer is given up on (the budget ran out, or the caller went away);
// the first of the two wins and the other can no longer happen.
type call struct {
	commitTimeout time.Duration
	// budgetEnd is when the budget runs out; the call can commit no later.
	budgetEnd time.Time

	mu        sync.Mutex
	committed bool
	expired   bool
	// commitCtx is the context the call goes on with after Commit, and cancel ends it
	// once the call returns. It lives exactly as long as the call.
	commitCtx context.Context
	cancel    context.CancelFunc
}

// Commit declares that the guarded call whose context ctx is (or derives from) is about
// to take something it cannot hand back: a unit of stock, a payment. It is the call's
// commit point.
//
// Before the commit point, a call over its time budget is answered ErrTimeout at once
// and must take nothing. From the commit point on, the answer waits for the call's own
// outcome, up to the guard's CommitTimeout; past that it is ErrOutcomeUnknown (retry
// later), never ErrTimeout.
//
// Commit decides atomically which of the two the call is: it returns an error wrapping
// ErrTimeout when the budget already ran out (the caller was or will be answered
// ErrTimeout, and the call must give up without taking anything), the context's error
// when the caller went away, and otherwise the context the call must go on with: it
// keeps ctx's values, is no longer cancelled by the budget or the caller, and ends
// CommitTimeout from now. Committing again, with either context, returns that same
// context. Outside a guarded call Commit returns ctx unchanged and nil, so code that
// commits runs the same without a guard.
func Commit(ctx context.Context) (context.Context, error) {
	c, ok := ctx.Value(callKey{}).(*call)
	if !ok {
		return ctx, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.committed:
		return c.commitCtx, nil
	case c.expired:
		return ctx, fmt.Errorf("commit: %w", ErrTimeout)
	}
	if err := ctx.Err(); err != nil {
		// The budget or the caller ended the call before the guard noticed: it is over.
		c.expired = true
		if errors.Is(err, context.DeadlineExceeded) {
			return ctx, fmt.Errorf("commit: %w", ErrTimeout)
		}
		return ctx, fmt.Errorf("commit: %w", err)
	}
	c.committed = true
	c.commitCtx, c.cancel = context.WithTimeout(context.WithoutCancel(ctx), c.commitTimeout)
	return c.commitCtx, nil
}

// Deadline returns the latest time a context of the guarded call whose context ctx is (or
// derives from) can still be live, so that what the call holds (a raffle order's claim)
// can be made to outlast it: before the call commits, the end of its budget plus the
// commit timeout, since a call that commits at the budget's last moment goes on that
// long; once it has committed, the end of its commit context. Past it, the call's stores
// have given up. Outside a guarded call there is no such time and ok is false.
func Deadline(ctx context.Context) (deadline time.Time, ok bool) {
	c, ok := ctx.Value(callKey{}).(*call)
	if !ok {
		return time.Time{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.committed {
		d, _ := c.commitCtx.Deadline()
		return d, true
	}
	return c.budgetEnd.Add(c.commitTimeout), true
}

// expire gives up on the answer of a call that has not committed, so that it never
// will; for a committed call it reports the end of its commit context instead.
func (c *call) expire() (committed bool, commitDone <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.committed {
		return true, c.commitCtx.Done()
	}
	c.expired = true
	return false, nil
}

// overran reports whether the call committed and its commit context ran out of time.
func (c *call) overran() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.committed && errors.Is(c.commitCtx.Err(), context.DeadlineExceeded)
}

// finish releases the commit context once the call has returned.
func (c *call) finish() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		c.cancel()
	}
}
