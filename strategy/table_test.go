package strategy

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func TestParseRate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Rate
		dec  int
		bad  bool
	}{
		{in: "0.0003", want: 3, dec: 4}, {in: "0.3000", want: 3000, dec: 1}, {in: "1", want: 10000, dec: 0},
		{in: "1.0000", want: 10000}, {in: "0.0099", want: 99, dec: 4}, {in: "1.0E-4", want: 1, dec: 4},
		{in: "0.03", want: 300, dec: 2}, {in: ".5", want: 5000, dec: 1},
		{in: "0.00001", bad: true}, {in: "-0.1", bad: true}, {in: "abc", bad: true}, {in: "0.1x", bad: true},
		{in: "15e-4", want: 15, dec: 4}, {in: "1.5E+1", want: 150000, dec: 0}, {in: "0.0000000000001e9", want: 1, dec: 4},
		{in: "", bad: true}, {in: ".", bad: true}, {in: "1e-400", bad: true}, {in: "1.00000000000000001e-4", bad: true},
		{in: "0x1Ep0", bad: true}, {in: "+1e-4", bad: true}, {in: "-1e-4", bad: true}, {in: "1e", bad: true}, {in: "e4", bad: true},
	} {
		got, err := ParseRate(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseRate(%q) = %v, want error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want || (tc.dec != 0 && got.Decimals() != tc.dec) {
			t.Errorf("ParseRate(%q) = %v (%d decimals), %v; want %v (%d)", tc.in, got, got.Decimals(), err, tc.want, tc.dec)
		}
	}
}

// TestTableSizes checks DESIGN.md's reference table sizes and that each award's share of
// the alias table is exactly its slots: rate over the sum of rates, no rounding.
func TestTableSizes(t *testing.T) {
	t.Parallel()
	s := NewService(Options{})
	for _, tc := range []struct {
		strategy int64
		size     int64
		slots    map[int]int64
	}{
		{100001, 10000, map[int]int64{101: 3000, 102: 2000, 103: 2000, 104: 1000, 105: 1000, 106: 500, 107: 400, 108: 99, 109: 1}},
		{100002, 61, map[int]int64{101: 50, 102: 10, 106: 1}},
		{100005, 121, map[int]int64{101: 30, 102: 30, 103: 30, 104: 30, 105: 1}},
		{100006, 9703, map[int]int64{101: 7900, 102: 300, 103: 300, 104: 300, 105: 300, 106: 300, 107: 300, 108: 3}},
	} {
		a, err := s.build(seedConfig(tc.strategy))
		if err != nil {
			t.Fatalf("build %d: %v", tc.strategy, err)
		}
		if a.Table.Size() != tc.size {
			t.Errorf("strategy %d: size %d, want %d", tc.strategy, a.Table.Size(), tc.size)
		}
		checkSlots(t, a.Table, tc.slots)
	}
	a, err := s.build(seedConfig(100006))
	if err != nil {
		t.Fatal(err)
	}
	wantTiers := []struct {
		threshold int64
		size      int64
		slots     map[int]int64
	}{
		{10, 6, map[int]int64{102: 3, 103: 3}},
		{70, 6, map[int]int64{106: 3, 107: 3}},
		{1000, 6, map[int]int64{104: 3, 105: 3}},
	}
	if len(a.Tiers) != len(wantTiers) {
		t.Fatalf("100006 has %d tiers, want 3", len(a.Tiers))
	}
	for i, w := range wantTiers {
		if a.Tiers[i].Threshold != w.threshold || a.Tiers[i].Table().Size() != w.size {
			t.Errorf("tier %d: threshold %d size %d, want %d %d", i, a.Tiers[i].Threshold, a.Tiers[i].Table().Size(), w.threshold, w.size)
		}
		checkSlots(t, a.Tiers[i].Table(), w.slots)
	}
}

func checkSlots(t *testing.T, tb *Table, want map[int]int64) {
	t.Helper()
	got := tb.Slots()
	mass := tb.mass()
	n := int64(len(tb.awards))
	for id, w := range want {
		if got[id] != w {
			t.Errorf("award %d: %d slots, want %d", id, got[id], w)
		}
		if mass[id] != w*n {
			t.Errorf("award %d: alias mass %d, want %d (exact)", id, mass[id], w*n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("table has %d awards, want %d", len(got), len(want))
	}
}

// TestPickDistribution draws 200,000 times with several fixed seeds and checks each run
// against the exact probabilities with a chi-square test at p > 0.001.
func TestPickDistribution(t *testing.T) {
	t.Parallel()
	s := NewService(Options{})
	const draws = 200_000
	for _, id := range []int64{100001, 100002, 100005, 100006} {
		a, err := s.build(seedConfig(id))
		if err != nil {
			t.Fatal(err)
		}
		tables := map[string]*Table{"default": a.Table}
		for _, tier := range a.Tiers {
			tables[fmt.Sprintf("tier %d", tier.Threshold)] = tier.Table()
		}
		for name, tb := range tables {
			for seed := uint64(1); seed <= 4; seed++ {
				rng := rand.New(rand.NewPCG(seed, seed*7919))
				counts := map[int]int{}
				for range draws {
					counts[tb.Pick(rng)]++
				}
				var chi float64
				for award, slots := range tb.Slots() {
					exp := float64(draws) * float64(slots) / float64(tb.Size())
					d := float64(counts[award]) - exp
					chi += d * d / exp
					delete(counts, award)
				}
				if len(counts) != 0 {
					t.Fatalf("strategy %d %s: picked awards outside the table: %v", id, name, counts)
				}
				df := float64(len(tb.Slots()) - 1)
				if p := chiSquareSurvival(chi, df); p <= 0.001 {
					t.Errorf("strategy %d %s seed %d: chi2=%.2f df=%.0f p=%.5f", id, name, seed, chi, df, p)
				}
			}
		}
	}
}

// TestPickRareAward checks that the 0.0001 award of 100001 comes out at its rate.
func TestPickRareAward(t *testing.T) {
	t.Parallel()
	a, err := NewService(Options{}).build(seedConfig(100001))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(42, 4242))
	const draws = 2_000_000
	hits := 0
	for range draws {
		if a.Table.Pick(rng) == 109 {
			hits++
		}
	}
	// Expected 200; a Poisson(200) lies within ±4.5σ (≈ ±64) with overwhelming probability.
	if hits < 136 || hits > 264 {
		t.Errorf("award 109 picked %d times in %d draws, want about 200", hits, draws)
	}
}

func TestNewTableRefusesEmpty(t *testing.T) {
	t.Parallel()
	if _, err := NewTable([]Entry{{AwardID: 1}}); err == nil {
		t.Error("table with only zero rates was accepted")
	}
	if _, err := NewTable([]Entry{{AwardID: 1, Rate: -1}}); err == nil {
		t.Error("table with a negative rate was accepted")
	}
}

// chiSquareSurvival returns P(X >= x) for a chi-square with df degrees of freedom: the
// regularized upper incomplete gamma Q(df/2, x/2).
func chiSquareSurvival(x, df float64) float64 {
	a, z := df/2, x/2
	if z <= 0 {
		return 1
	}
	lg, _ := math.Lgamma(a)
	if z < a+1 { // series for P, then Q = 1 - P
		sum, term := 1/a, 1/a
		for n := 1; n < 500; n++ {
			term *= z / (a + float64(n))
			sum += term
			if term < sum*1e-15 {
				break
			}
		}
		return 1 - sum*math.Exp(-z+a*math.Log(z)-lg)
	}
	// Continued fraction (modified Lentz) for Q.
	b := z + 1 - a
	c := 1 / 1e-300
	d := 1 / b
	h := d
	for i := 1; i < 500; i++ {
		an := -float64(i) * (float64(i) - a)
		b += 2
		d = an*d + b
		if math.Abs(d) < 1e-300 {
			d = 1e-300
		}
		c = b + an/c
		if math.Abs(c) < 1e-300 {
			c = 1e-300
		}
		d = 1 / d
		del := d * c
		h *= del
		if math.Abs(del-1) < 1e-15 {
			break
		}
	}
	return math.Exp(-z+a*math.Log(z)-lg) * h
}

func TestChiSquareSurvival(t *testing.T) {
	t.Parallel()
	// Reference values: chi2 critical values at p = 0.05 and 0.001.
	for _, tc := range []struct{ x, df, p float64 }{{3.841, 1, 0.05}, {15.507, 8, 0.05}, {26.124, 8, 0.001}, {10.828, 1, 0.001}} {
		if got := chiSquareSurvival(tc.x, tc.df); math.Abs(got-tc.p) > tc.p*0.01 {
			t.Errorf("Q(%v, df %v) = %v, want %v", tc.x, tc.df, got, tc.p)
		}
	}
}

func BenchmarkPick(b *testing.B) {
	a, err := NewService(Options{}).build(seedConfig(100006))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("seeded", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 2))
		for b.Loop() {
			a.Table.Pick(rng)
		}
	})
	b.Run("global-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				a.Table.Pick(GlobalRand{})
			}
		})
	})
}

func BenchmarkArmoryBuild(b *testing.B) {
	s := NewService(Options{})
	cfg := seedConfig(100006)
	for b.Loop() {
		if _, err := s.build(cfg); err != nil {
			b.Fatal(err)
		}
	}
}
