package rain

import (
	"fmt"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of a quota version.
const (
	// MaxDuration is the longest session.
	MaxDuration = 24 * time.Hour
	// MaxPrizes bounds a session's armed prizes.
	MaxPrizes = 1_000_000
	// MaxSlices bounds a plan's weights; MaxWeight bounds each weight.
	MaxSlices = 1000
	MaxWeight = 1_000_000
	// MaxUserCap bounds the wins of one user in one session.
	MaxUserCap = 1000
)

// Quota is one version of a session's quota, named by its SeqNo: the release plan and the
// per-user cap. Every node holds the version in force for each session and swaps in a
// newer one only when it is complete (see Agent); a request reads one version for all it
// needs, so all its fields come from one SeqNo.
//
// The plan: Q = Total prizes, T = End − Start, t = now − Start. Burst prizes may go at
// t = 0; the rest are released linearly over T, or, with Weights, over len(Weights) equal
// slices of T, slice i releasing its share Weights[i]/ΣWeights linearly within it. The
// allowance is cumulative, so quota nobody used in a slice carries into later ones:
//
//	allowed(t) = min(Q, Burst + ⌊Q · W(t) / ΣW⌋), W(t) the weight released by t.
type Quota struct {
	SessionID int64     `json:"sessionId"`
	SeqNo     int64     `json:"seqNo"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	Total     int       `json:"total"`
	Burst     int       `json:"burst"`
	Weights   []int     `json:"weights,omitempty"`
	UserCap   int       `json:"userCap"`

	// prefix[i] is the sum of the weights before slice i; sum the total. Built by ready.
	prefix []uint64
	sum    uint64
}

// DefaultBurst is the burst of a plan that names none: 1% of total, rounded up.
func DefaultBurst(total int) int { return (total + 99) / 100 }

// Validate checks the version on its own: times, counts, weights, cap.
func (q Quota) Validate() error {
	switch {
	case q.SessionID <= 0:
		return fmt.Errorf("session id %d: %w", q.SessionID, ErrInvalid)
	case q.SeqNo <= 0:
		return fmt.Errorf("seqNo %d: want at least 1: %w", q.SeqNo, ErrInvalid)
	case q.Start.IsZero() || q.End.IsZero() || !q.End.After(q.Start):
		return fmt.Errorf("start %s and end %s: the end must follow the start: %w", q.Start, q.End, ErrInvalid)
	case q.End.Sub(q.Start) > MaxDuration:
		return fmt.Errorf("session of %s: at most %s: %w", q.End.Sub(q.Start), MaxDuration, ErrInvalid)
	case q.Total < 1 || q.Total > MaxPrizes:
		return fmt.Errorf("total %d: want 1 to %d: %w", q.Total, MaxPrizes, ErrInvalid)
	case q.Burst < 0 || q.Burst > q.Total:
		return fmt.Errorf("burst %d: want 0 to the total %d: %w", q.Burst, q.Total, ErrInvalid)
	case q.UserCap < 1 || q.UserCap > MaxUserCap:
		return fmt.Errorf("userCap %d: want 1 to %d: %w", q.UserCap, MaxUserCap, ErrInvalid)
	case len(q.Weights) > MaxSlices:
		return fmt.Errorf("%d weights: at most %d: %w", len(q.Weights), MaxSlices, ErrInvalid)
	}
	sum := 0
	for _, w := range q.Weights {
		if w < 0 || w > MaxWeight {
			return fmt.Errorf("weight %d: want 0 to %d: %w", w, MaxWeight, ErrInvalid)
		}
		sum += w
	}
	if len(q.Weights) > 0 && sum == 0 {
		return fmt.Errorf("weights all zero: %w", ErrInvalid)
	}
	return nil
}

// ready returns a copy of q with its derived tables built: the standby buffer a node
// fills before it swaps the version in. q must be valid.
func (q Quota) ready() *Quota {
	w := q.Weights
	if len(w) == 0 {
		w = []int{1}
	}
	r := q
	r.Weights = slices.Clone(q.Weights)
	r.prefix = make([]uint64, len(w)+1)
	for i, x := range w {
		r.prefix[i+1] = r.prefix[i] + uint64(x)
	}
	r.sum = r.prefix[len(w)]
	return &r
}

// slices is the number of slices of the plan (1 when linear).
func (q *Quota) slices() int { return len(q.prefix) - 1 }

// Allowed is allowed(t): how many prizes the plan allows to have been issued by now
// (Burst included). Before the start it is 0; from the end on it is Total.
func (q *Quota) Allowed(now time.Time) int {
	if q.prefix == nil {
		q = q.ready()
	}
	if now.Before(q.Start) {
		return 0
	}
	T := uint64(q.End.Sub(q.Start).Milliseconds())
	t := uint64(now.Sub(q.Start).Milliseconds())
	if t >= T {
		return q.Total
	}
	n := uint64(q.slices())
	// Slice i covers [i·T/n, (i+1)·T/n); in units of 1/n ms, u = t·n and the slice's
	// start is i·T. The weight released by t, times T: prefix[i]·T + w_i·(u − i·T).
	u := t * n
	i := u / T
	wT := q.prefix[i]*T + (q.prefix[i+1]-q.prefix[i])*(u-i*T)
	// Q·wT / (ΣW·T) in 128 bits: Q ≤ 10^6, ΣW ≤ 10^9, T ≤ 8.64·10^7 overflow 64.
	hi, lo := bits.Mul64(uint64(q.Total), wT)
	den := q.sum * T
	var released uint64
	if hi >= den {
		released = uint64(q.Total)
	} else {
		released, _ = bits.Div64(hi, lo, den)
	}
	return int(min(uint64(q.Total), uint64(q.Burst)+released))
}

// NextRelease is the first instant after now at which allowed exceeds issued: when a node
// that found the pool paced out (issued ≥ allowed) should try again. It is the zero time
// when no instant does (issued ≥ Total).
func (q *Quota) NextRelease(now time.Time, issued int) time.Time {
	if q.prefix == nil {
		q = q.ready()
	}
	if issued >= q.Total {
		return time.Time{}
	}
	if now.Before(q.Start) {
		now = q.Start
		if q.Allowed(now) > issued {
			return now
		}
	}
	// allowed is non-decreasing and reaches Total at End: search the milliseconds.
	lo, hi := now.Sub(q.Start).Milliseconds(), q.End.Sub(q.Start).Milliseconds()
	for lo < hi {
		mid := lo + (hi-lo)/2
		if q.Allowed(q.Start.Add(time.Duration(mid)*time.Millisecond)) > issued {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return q.Start.Add(time.Duration(lo) * time.Millisecond)
}

// Agent holds the quota version in force for each session on this node. A new version is
// built and validated beside the active one (the standby buffer) and swapped in with one
// atomic store only when it is complete and its SeqNo is higher than the active one's; a
// request loads one pointer and reads all its fields from that version, so it never sees
// a half-updated quota and never waits for an update.
type Agent struct {
	mu       sync.Mutex // serialises Offer; readers never take it
	sessions sync.Map   // int64 → *atomic.Pointer[Quota]
	// OnSwap, when set, is called after a version is swapped in (outside any lock the
	// readers take), e.g. to report the SeqNo in force.
	OnSwap func(q *Quota)
}

// Quota returns the version in force for the session, or nil when this node has none.
// The returned version must not be modified.
func (a *Agent) Quota(sessionID int64) *Quota {
	p, ok := a.sessions.Load(sessionID)
	if !ok {
		return nil
	}
	return p.(*atomic.Pointer[Quota]).Load()
}

// Offer builds q in the standby buffer and swaps it in if it is valid and newer than the
// version in force. It returns whether q was swapped in; a stale or repeated SeqNo returns
// false and no error, an invalid version an error wrapping ErrInvalid.
func (a *Agent) Offer(q Quota) (bool, error) {
	if err := q.Validate(); err != nil {
		return false, err
	}
	standby := q.ready()
	a.mu.Lock()
	v, _ := a.sessions.LoadOrStore(q.SessionID, new(atomic.Pointer[Quota]))
	p := v.(*atomic.Pointer[Quota])
	if cur := p.Load(); cur != nil && cur.SeqNo >= q.SeqNo {
		a.mu.Unlock()
		return false, nil
	}
	p.Store(standby)
	a.mu.Unlock()
	if a.OnSwap != nil {
		a.OnSwap(standby)
	}
	return true, nil
}

// Forget drops a session's version (the session ended and its key was deleted).
func (a *Agent) Forget(sessionID int64) { a.sessions.Delete(sessionID) }
