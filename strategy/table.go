package strategy

import (
	"fmt"
	"math/rand/v2"
)

// Rand is the randomness a table needs. *rand.Rand satisfies it (tests seed one with
// rand.NewPCG); GlobalRand is safe for concurrent use and is the production default.
type Rand interface {
	Uint64N(n uint64) uint64
}

// GlobalRand draws from math/rand/v2's per-goroutine-safe global source.
type GlobalRand struct{}

// Uint64N returns a uniform value in [0, n).
func (GlobalRand) Uint64N(n uint64) uint64 { return rand.Uint64N(n) }

// Entry is one award's weight in a table.
type Entry struct {
	AwardID int
	Rate    Rate
}

// Table is an exact, constant-time probability table: an award's chance is its rate
// divided by the sum of the rates, with no rounding. It is built like big-market's search
// table — range 10^k where k is the largest number of decimals among the rates (for the
// seeded strategies that is the smallest rate's, as in big-market), each award holding
// rate × range slots — but stored as Vose's alias table over the integer slot counts, so
// it takes O(awards) memory and one random number per pick whatever the range.
type Table struct {
	awards []int   // award id of each column
	slots  []int64 // big-market slots of each column
	size   int64   // total slots: big-market's table size
	keep   []int64 // column i keeps its own award when u < keep[i], u in [0, size)
	alias  []int32 // otherwise the pick is the award of column alias[i]
}

// NewTable builds the table of entries. Entries with a zero rate never win; a table with
// no positive rate is refused.
func NewTable(entries []Entry) (*Table, error) {
	decimals := 0
	for _, e := range entries {
		if e.Rate < 0 {
			return nil, fmt.Errorf("award %d: negative rate %s: %w", e.AwardID, e.Rate, ErrInvalidConfig)
		}
		if e.Rate > 0 && e.Rate.Decimals() > decimals {
			decimals = e.Rate.Decimals()
		}
	}
	// A rate of r units (1/RateScale) is r × 10^decimals / RateScale slots, always whole
	// because no rate has more than `decimals` decimals.
	divisor := int64(RateScale)
	for range decimals {
		divisor /= 10
	}
	t := &Table{}
	for _, e := range entries {
		if e.Rate == 0 {
			continue
		}
		s := int64(e.Rate) / divisor
		t.awards = append(t.awards, e.AwardID)
		t.slots = append(t.slots, s)
		t.size += s
	}
	if t.size == 0 {
		return nil, fmt.Errorf("no award with a positive rate: %w", ErrInvalidConfig)
	}
	t.buildAlias()
	return t, nil
}

// buildAlias runs Vose's method in integers: column weights are slots × n against a
// threshold of size, so every probability stays exact.
func (t *Table) buildAlias() {
	n := int64(len(t.slots))
	t.keep = make([]int64, n)
	t.alias = make([]int32, n)
	scaled := make([]int64, n)
	var small, large []int32
	for i, s := range t.slots {
		scaled[i] = s * n
		if scaled[i] < t.size {
			small = append(small, int32(i))
		} else {
			large = append(large, int32(i))
		}
	}
	for len(small) > 0 && len(large) > 0 {
		l := small[len(small)-1]
		small = small[:len(small)-1]
		g := large[len(large)-1]
		large = large[:len(large)-1]
		t.keep[l] = scaled[l]
		t.alias[l] = g
		scaled[g] -= t.size - scaled[l]
		if scaled[g] < t.size {
			small = append(small, g)
		} else {
			large = append(large, g)
		}
	}
	for _, i := range large {
		t.keep[i] = t.size
		t.alias[i] = i
	}
	for _, i := range small { // only reachable through arithmetic slack; cannot happen in integers
		t.keep[i] = t.size
		t.alias[i] = i
	}
}

// Pick returns an award id drawn with the table's exact probabilities.
func (t *Table) Pick(rng Rand) int {
	n := uint64(len(t.awards))
	r := rng.Uint64N(n * uint64(t.size))
	col := r / uint64(t.size)
	if int64(r%uint64(t.size)) < t.keep[col] {
		return t.awards[col]
	}
	return t.awards[t.alias[col]]
}

// Size is the number of slots of big-market's equivalent search table.
func (t *Table) Size() int64 { return t.size }

// Slots returns each award's slot count; its share of Size is its exact probability.
func (t *Table) Slots() map[int]int64 {
	m := make(map[int]int64, len(t.awards))
	for i, a := range t.awards {
		m[a] += t.slots[i]
	}
	return m
}

// mass returns, per award, the alias table's probability mass in units of
// 1/(columns × Size); tests compare it with Slots to prove the alias table exact.
func (t *Table) mass() map[int]int64 {
	m := make(map[int]int64, len(t.awards))
	for i := range t.awards {
		m[t.awards[i]] += t.keep[i]
		m[t.awards[t.alias[i]]] += t.size - t.keep[i]
	}
	return m
}
