// Package soldout keeps a node's in-process flags of the stocks it saw run out.
package soldout

import (
	"sync"
	"sync/atomic"
	"time"
)

// Flags remembers, per key, that a stock ran out, so that a node answers its next requests
// without a cache round trip. A flag is a hint, never the truth: it lapses after the TTL
// (so a node that missed the news of a top-up finds the stock again within it), and Reset
// drops every flag and starts a new epoch, so that a deduction that began before the
// reset (and saw the old count) cannot set a flag after it. The strategy service flags
// awards with it, the activity service SKUs; it lives here because neither imports the
// other.
type Flags[K comparable] struct {
	ttl   time.Duration
	now   func() time.Time
	epoch atomic.Int64
	m     sync.Map // K → flag
}

type flag struct {
	epoch int64
	until time.Time
}

// New returns Flags whose flags lapse after ttl by the clock now.
func New[K comparable](ttl time.Duration, now func() time.Time) *Flags[K] {
	if now == nil {
		now = time.Now
	}
	return &Flags[K]{ttl: ttl, now: now}
}

// Epoch returns the current epoch; a deduction reads it before it asks the stock and
// passes it to Mark.
func (f *Flags[K]) Epoch() int64 { return f.epoch.Load() }

// Out reports whether k is flagged sold out: by a deduction of the current epoch, less
// than the TTL ago. A stale flag is dropped.
func (f *Flags[K]) Out(k K) bool {
	v, ok := f.m.Load(k)
	if !ok {
		return false
	}
	fl := v.(flag)
	if fl.epoch == f.epoch.Load() && f.now().Before(fl.until) {
		return true
	}
	f.m.CompareAndDelete(k, v)
	return false
}

// Mark flags k sold out, unless a Reset started a new epoch since epoch (read by the
// deduction before it asked the stock): stock may have come back in between.
func (f *Flags[K]) Mark(k K, epoch int64) {
	if f.epoch.Load() != epoch {
		return
	}
	f.m.Store(k, flag{epoch: epoch, until: f.now().Add(f.ttl)})
	// A Reset between the check and the store leaves a flag of the old epoch, which Out
	// ignores.
}

// Reset drops every flag: stock came back (an armory, a top-up). It starts a new epoch
// first, so that a deduction still running from before cannot flag its key again.
func (f *Flags[K]) Reset() {
	f.epoch.Add(1)
	f.m.Range(func(k, _ any) bool {
		f.m.Delete(k)
		return true
	})
}
