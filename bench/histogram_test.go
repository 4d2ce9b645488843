package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exactQuantile is the nearest-rank quantile of sorted.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = max(rank, 1)
	return sorted[rank-1]
}

func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		gen  func() time.Duration
	}{
		// Log-normal around 2ms with a long tail, like a server's latencies.
		{"lognormal", func() time.Duration {
			return time.Duration(2e6 * math.Exp(rng.NormFloat64()))
		}},
		// Spread evenly over the whole range, 1µs to 60s, in log space.
		{"log-uniform 1µs-60s", func() time.Duration {
			return time.Duration(1e3 * math.Pow(6e7, rng.Float64()))
		}},
		{"uniform 1µs-100µs", func() time.Duration {
			return time.Duration(1e3 + rng.Int64N(99e3))
		}},
	}
	quantiles := []float64{0.001, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 1}
	for _, tt := range tests {
		var h histogram
		values := make([]time.Duration, 100_000)
		for i := range values {
			values[i] = tt.gen()
			h.record(values[i])
		}
		slices.Sort(values)
		for _, q := range quantiles {
			want, got := exactQuantile(values, q), h.quantile(q)
			if rel := math.Abs(float64(got-want)) / float64(want); rel > 0.01 {
				t.Errorf("%s: q%v = %v, exact %v (%.2f%% off)", tt.name, q, got, want, 100*rel)
			}
		}
		if h.min != int64(values[0]) || h.max != int64(values[len(values)-1]) {
			t.Errorf("%s: min, max = %v, %v; want %v, %v", tt.name,
				time.Duration(h.min), time.Duration(h.max), values[0], values[len(values)-1])
		}
		var sum float64
		for _, v := range values {
			sum += float64(v)
		}
		if want := time.Duration(sum / float64(len(values))); h.mean() != want {
			t.Errorf("%s: mean = %v, want %v", tt.name, h.mean(), want)
		}
	}
}

func TestHistogramMerge(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	var whole histogram
	parts := make([]histogram, 4)
	for i := range 40_000 {
		d := time.Duration(1e5 + rng.Int64N(5e7))
		whole.record(d)
		parts[i%len(parts)].record(d)
	}
	var merged histogram
	for i := range parts {
		merged.merge(&parts[i])
	}
	if merged.n != whole.n || merged.min != whole.min || merged.max != whole.max {
		t.Fatal("merging the parts differs from recording the whole")
	}
	for _, q := range []float64{0.001, 0.5, 0.9, 0.99, 0.999, 1} {
		if merged.quantile(q) != whole.quantile(q) {
			t.Errorf("q%v = %v merged, %v whole", q, merged.quantile(q), whole.quantile(q))
		}
	}
}

func TestHistogramOutOfRange(t *testing.T) {
	t.Parallel()
	// Beyond the range: counted at the top, exact max kept; negative as 0.
	var h histogram
	h.record(2 * time.Minute)
	h.record(-time.Second)
	if h.max != int64(2*time.Minute) || h.min != 0 || h.quantile(1) != 2*time.Minute {
		t.Errorf("out of range values: min %v, max %v, q1 %v", time.Duration(h.min), time.Duration(h.max), h.quantile(1))
	}
	var empty, merged histogram
	if empty.quantile(0.5) != 0 || empty.mean() != 0 {
		t.Error("empty histogram reports nonzero latency")
	}
	merged.merge(&empty)
	merged.merge(&h)
	merged.merge(&empty)
	if merged.n != 2 || merged.quantile(1) != 2*time.Minute || merged.quantile(0.5) != 0 {
		t.Errorf("merged with empty ones: n %d, q0.5 %v, q1 %v", merged.n, merged.quantile(0.5), merged.quantile(1))
	}
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	h := new(histogram)
	if n := testing.AllocsPerRun(1000, func() { h.record(1234567) }); n != 0 {
		t.Errorf("record allocates %v times", n)
	}
}
