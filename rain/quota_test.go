package rain

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 2, 20, 0, 0, 0, time.UTC)

func quota(total, burst int, weights ...int) Quota {
	return Quota{SessionID: 1, SeqNo: 1, Start: t0, End: t0.Add(10 * time.Second), Total: total, Burst: burst, Weights: weights, UserCap: 1}
}

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func TestAllowedLinear(t *testing.T) {
	q := quota(1000, 10)
	for _, c := range []struct{ ms, want int }{
		{-1, 0}, {0, 10}, {1, 10}, {10, 11}, {5000, 510}, {9999, 1000}, {10000, 1000}, {20000, 1000},
	} {
		if got := q.Allowed(at(c.ms)); got != c.want {
			t.Errorf("allowed(%d ms) = %d, want %d", c.ms, got, c.want)
		}
	}
	// Without a burst, allowed is Q·t/T rounded down.
	q = quota(7, 0)
	if got := q.Allowed(at(5000)); got != 3 {
		t.Errorf("7 prizes at half time = %d, want 3", got)
	}
}

func TestAllowedWeights(t *testing.T) {
	// Two slices of 5 s; the first releases 1 part, the second 3 parts of 400.
	q := quota(400, 0, 1, 3)
	for _, c := range []struct{ ms, want int }{
		{0, 0}, {2500, 50}, {5000, 100}, {7500, 250}, {9999, 399}, {10000, 400},
	} {
		if got := q.Allowed(at(c.ms)); got != c.want {
			t.Errorf("allowed(%d ms) = %d, want %d", c.ms, got, c.want)
		}
	}
	// A zero-weight slice releases nothing: the allowance stays where the last slice left it.
	q = quota(100, 5, 1, 0, 1)
	a, b := q.Allowed(at(3400)), q.Allowed(at(6600))
	if a != b || a != 55 {
		t.Errorf("across a zero slice: %d then %d, want 55 both", a, b)
	}
}

func TestAllowedMonotoneAndNextRelease(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		total := 1 + rng.IntN(5000)
		var w []int
		for range rng.IntN(6) {
			w = append(w, rng.IntN(10))
		}
		if len(w) > 0 {
			w[0]++
		}
		q := quota(total, rng.IntN(total+1), w...).ready()
		prev := 0
		for ms := -5; ms <= 10005; ms += 1 + rng.IntN(40) {
			a := q.Allowed(at(ms))
			if a < prev || a > total {
				t.Fatalf("%+v: allowed(%d) = %d after %d", q, ms, a, prev)
			}
			prev = a
			next := q.NextRelease(at(ms), a)
			if a == total {
				if !next.IsZero() {
					t.Fatalf("next release after all released = %s", next)
				}
				continue
			}
			if !next.After(at(ms)) || q.Allowed(next) <= a || q.Allowed(next.Add(-time.Millisecond)) > a && next.Add(-time.Millisecond).After(at(ms)) {
				t.Fatalf("%+v: next release after %d ms with %d issued = %s", q, ms, a, next.Sub(t0))
			}
		}
	}
}

func TestAllowedLargeNumbersDoNotOverflow(t *testing.T) {
	w := make([]int, MaxSlices)
	for i := range w {
		w[i] = MaxWeight
	}
	q := Quota{SessionID: 1, SeqNo: 1, Start: t0, End: t0.Add(MaxDuration), Total: MaxPrizes, Weights: w, UserCap: 1}
	if err := q.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := q.Allowed(t0.Add(MaxDuration / 2)); got != MaxPrizes/2 {
		t.Fatalf("half way = %d, want %d", got, MaxPrizes/2)
	}
}

func TestValidate(t *testing.T) {
	bad := []func(*Quota){
		func(q *Quota) { q.SeqNo = 0 },
		func(q *Quota) { q.End = q.Start },
		func(q *Quota) { q.End = q.Start.Add(MaxDuration + time.Second) },
		func(q *Quota) { q.Total = 0 },
		func(q *Quota) { q.Burst = q.Total + 1 },
		func(q *Quota) { q.UserCap = 0 },
		func(q *Quota) { q.Weights = []int{0, 0} },
		func(q *Quota) { q.Weights = []int{1, -1} },
	}
	for i, f := range bad {
		q := quota(10, 1)
		f(&q)
		if err := q.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("case %d: %v, want ErrInvalid", i, err)
		}
	}
}

func TestAgentSwapsOnlyNewer(t *testing.T) {
	var a Agent
	var swapped []int64
	a.OnSwap = func(q *Quota) { swapped = append(swapped, q.SeqNo) }
	if a.Quota(1) != nil {
		t.Fatal("a quota before any offer")
	}
	q := quota(100, 1)
	q.SeqNo = 2
	if ok, err := a.Offer(q); !ok || err != nil {
		t.Fatalf("first offer: %v %v", ok, err)
	}
	for _, seq := range []int64{2, 1} { // repeated, stale
		q.SeqNo, q.Total = seq, 50
		if ok, err := a.Offer(q); ok || err != nil {
			t.Fatalf("offer of seq %d: %v %v, want ignored", seq, ok, err)
		}
	}
	q.SeqNo, q.Total = 3, 0
	if ok, err := a.Offer(q); ok || !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid offer: %v %v", ok, err)
	}
	if got := a.Quota(1); got.SeqNo != 2 || got.Total != 100 {
		t.Fatalf("in force %d/%d, want seq 2 with 100", got.SeqNo, got.Total)
	}
	if len(swapped) != 1 || swapped[0] != 2 {
		t.Fatalf("swaps %v", swapped)
	}
}

// TestAgentReadersSeeWholeVersions swaps versions whose every field is derived from its
// SeqNo while readers check each version they load; run it with -race.
func TestAgentReadersSeeWholeVersions(t *testing.T) {
	var a Agent
	version := func(seq int64) Quota {
		n := int(seq)
		w := make([]int, 1+n%5)
		for i := range w {
			w[i] = n
		}
		return Quota{SessionID: 7, SeqNo: seq, Start: t0, End: t0.Add(time.Duration(n) * time.Second),
			Total: 100 + n, Burst: n % 100, Weights: w, UserCap: 1 + n%10}
	}
	if _, err := a.Offer(version(1)); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var checked atomic.Int64
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				q := a.Quota(7)
				if q == nil {
					t.Error("no version in force")
					return
				}
				_ = q.Allowed(t0.Add(time.Second)) // reads the derived tables too
				n := int(q.SeqNo)
				if q.Total != 100+n || q.Burst != n%100 || q.UserCap != 1+n%10 || len(q.Weights) != 1+n%5 ||
					q.End.Sub(q.Start) != time.Duration(n)*time.Second || q.sum != uint64(n*(1+n%5)) {
					t.Errorf("version %d read with mixed fields: %+v", n, *q)
					return
				}
				for _, w := range q.Weights {
					if w != n {
						t.Errorf("version %d has weight %d", n, w)
						return
					}
				}
				checked.Add(1)
			}
		})
	}
	// Swap at least 3000 versions, and on until the readers have checked some while
	// versions swap: on a busy machine the writer may otherwise finish first.
	var seq int64
	for seq = 2; seq <= 3000 || (checked.Load() < 100 && seq < 1_000_000); seq++ {
		if _, err := a.Offer(version(seq)); err != nil {
			t.Fatal(err)
		}
		if seq%500 == 0 { // a late, stale version is ignored
			if ok, _ := a.Offer(version(seq - 100)); ok {
				t.Fatal("stale version swapped in")
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	if got := a.Quota(7).SeqNo; got != seq-1 {
		t.Fatalf("in force %d, want %d", got, seq-1)
	}
	if checked.Load() == 0 {
		t.Fatal("no reader checked a version")
	}
}
