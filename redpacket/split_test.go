package redpacket

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/bigmarket/bigmarket/money"
)

// checkSplit fails t unless items are count items of at least one cent summing to total.
func checkSplit(t testing.TB, items []money.Cents, total money.Cents, count int) {
	t.Helper()
	if len(items) != count {
		t.Fatalf("split %s into %d: got %d items", total, count, len(items))
	}
	var sum money.Cents
	for i, c := range items {
		if c < 1 {
			t.Fatalf("split %s into %d: item %d is %s, want at least 0.01", total, count, i, c)
		}
		sum += c
	}
	if sum != total {
		t.Fatalf("split %s into %d: items sum to %s", total, count, sum)
	}
}

func TestSplitCases(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		total money.Cents
		count int
		mode  Mode
		each  money.Cents // when not 0, every item must be exactly this
		bad   bool
	}{
		{name: "one random item takes the total", total: 10000, count: 1, mode: ModeRandom, each: 10000},
		{name: "one fixed item takes the total", total: 1019, count: 1, mode: ModeFixed, each: 1019},
		{name: "total equal to count is all cents", total: 10, count: 10, mode: ModeRandom, each: 1},
		{name: "10,000 items of 100.00 are all cents", total: 10000, count: 10000, mode: ModeRandom, each: 1},
		{name: "two items of 0.03", total: 3, count: 2, mode: ModeRandom},
		{name: "random 100.00 into 10", total: 10000, count: 10, mode: ModeRandom},
		{name: "random near the int64 limit", total: math.MaxInt64, count: 3, mode: ModeRandom},
		{name: "random near the int64 limit into many", total: math.MaxInt64, count: 1000, mode: ModeRandom},
		{name: "fixed divisible", total: 10000, count: 10, mode: ModeFixed, each: 1000},
		{name: "fixed one cent each", total: 7, count: 7, mode: ModeFixed, each: 1},
		{name: "fixed not divisible", total: 10000, count: 3, mode: ModeFixed, bad: true},
		{name: "fixed below a cent each", total: 5, count: 10, mode: ModeFixed, bad: true},
		{name: "count zero", total: 10000, count: 0, mode: ModeRandom, bad: true},
		{name: "count negative", total: 10000, count: -1, mode: ModeRandom, bad: true},
		{name: "count negative fixed", total: 10000, count: -5, mode: ModeFixed, bad: true},
		{name: "total below count", total: 9, count: 10, mode: ModeRandom, bad: true},
		{name: "total zero", total: 0, count: 1, mode: ModeRandom, bad: true},
		{name: "total negative", total: -100, count: 1, mode: ModeRandom, bad: true},
		{name: "empty mode", total: 10000, count: 10, mode: "", bad: true},
		{name: "mode in upper case", total: 10000, count: 10, mode: "RANDOM", bad: true},
		{name: "unknown mode", total: 10000, count: 10, mode: "equal", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			items, err := Split(tc.total, tc.count, tc.mode, rand.New(rand.NewPCG(1, 2)))
			if tc.bad {
				if !errors.Is(err, ErrInvalid) || items != nil {
					t.Fatalf("Split(%s, %d, %q) = %v, %v; want nil, ErrInvalid", tc.total, tc.count, tc.mode, items, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Split(%s, %d, %q): %v", tc.total, tc.count, tc.mode, err)
			}
			checkSplit(t, items, tc.total, tc.count)
			for i, c := range items {
				if tc.each != 0 && c != tc.each {
					t.Fatalf("item %d is %s, want %s", i, c, tc.each)
				}
			}
		})
	}
}

func TestModeValid(t *testing.T) {
	t.Parallel()
	for m, want := range map[Mode]bool{ModeRandom: true, ModeFixed: true, "": false, "Random": false, "equal": false} {
		if m.Valid() != want {
			t.Errorf("Mode(%q).Valid() = %v, want %v", m, !want, want)
		}
	}
}

func TestSplitFixedNeedsNoRand(t *testing.T) {
	t.Parallel()
	items, err := Split(600, 3, ModeFixed, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkSplit(t, items, 600, 3)
}

// TestSplitFairPositions is the must-show: 100,000 seeded splits of 100.00 into 10
// random items. Every split is exact, and every position (the order in which grabbers take
// items) has a 10% chance, within 2 points, of holding the largest item, and a mean of
// 10.00. Ties for the largest are split: each of k tied positions counts 1/k.
func TestSplitFairPositions(t *testing.T) {
	t.Parallel()
	const (
		splits = 100_000
		count  = 10
		total  = money.Cents(10000)
	)
	rng := rand.New(rand.NewPCG(1, 2))
	var luckiest, sums [count]float64
	ties := 0
	for range splits {
		items, err := Split(total, count, ModeRandom, rng)
		if err != nil {
			t.Fatal(err)
		}
		checkSplit(t, items, total, count)
		top, k := items[0], 0
		for _, c := range items {
			top = max(top, c)
		}
		for i, c := range items {
			sums[i] += float64(c)
			if c == top {
				k++
			}
		}
		if k > 1 {
			ties++
		}
		for i, c := range items {
			if c == top {
				luckiest[i] += 1 / float64(k)
			}
		}
	}
	lo, hi := 1.0, 0.0
	for i := range count {
		share := luckiest[i] / splits
		lo, hi = min(lo, share), max(hi, share)
		if math.Abs(share-0.10) > 0.02 {
			t.Errorf("position %d is the luckiest %.2f%% of the time, want 10%% ± 2", i, 100*share)
		}
		// An item's standard deviation is about 6.50 here, so 0.10 is nearly five
		// standard errors of a mean of 100,000 items.
		if mean := sums[i] / splits / 100; math.Abs(mean-10.00) > 0.10 {
			t.Errorf("position %d has a mean of %.3f, want 10.00 ± 0.10", i, mean)
		}
	}
	t.Logf("luckiest share by position: %.2f%%–%.2f%%; %d of %d splits had a tie for the largest", 100*lo, 100*hi, ties, splits)
}

// TestSplitProperties splits many random (total, count) pairs, from one cent per item to
// decimal(10,2)'s largest amount, in both modes.
func TestSplitProperties(t *testing.T) {
	t.Parallel()
	gen := rand.New(rand.NewPCG(1, 2))
	rng := rand.New(rand.NewPCG(3, 4))
	const maxTotal = 99_999_999_99
	for range 5000 {
		count := 1 + gen.IntN(200)
		if gen.IntN(10) == 0 {
			count = 1 + gen.IntN(5000)
		}
		var total money.Cents
		switch gen.IntN(3) {
		case 0: // just above a cent each, where the caps bind
			total = money.Cents(count) + money.Cents(gen.IntN(2*count))
		case 1:
			total = money.Cents(count) + money.Cents(gen.Int64N(1_000_000))
		default:
			total = money.Cents(count) + money.Cents(gen.Int64N(maxTotal-int64(count)))
		}
		items, err := Split(total, count, ModeRandom, rng)
		if err != nil {
			t.Fatalf("Split(%s, %d, random): %v", total, count, err)
		}
		checkSplit(t, items, total, count)

		each := total / money.Cents(count)
		fixed := each * money.Cents(count)
		items, err = Split(fixed, count, ModeFixed, rng)
		if err != nil {
			t.Fatalf("Split(%s, %d, fixed): %v", fixed, count, err)
		}
		checkSplit(t, items, fixed, count)
		for _, c := range items {
			if c != each {
				t.Fatalf("Split(%s, %d, fixed) has an item of %s, want %s", fixed, count, c, each)
			}
		}
		if fixed != total {
			if _, err := Split(total, count, ModeFixed, rng); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Split(%s, %d, fixed) = %v, want ErrInvalid", total, count, err)
			}
		}
	}
}

// TestSplitSeeded checks that rng is the only randomness: one seed, one split.
func TestSplitSeeded(t *testing.T) {
	t.Parallel()
	a, err := Split(10000, 10, ModeRandom, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Split(10000, 10, ModeRandom, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different splits: %v and %v", a, b)
		}
	}
}

func BenchmarkSplit(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	for b.Loop() {
		if _, err := Split(1_000_000, 1000, ModeRandom, rng); err != nil {
			b.Fatal(err)
		}
	}
}
