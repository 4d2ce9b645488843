package bench

import (
	"math"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

const (
	// maxLatency is the largest latency told apart; longer ones are counted
	// as maxLatency (the exact maximum is still kept).
	maxLatency = 60 * time.Second

	// sigFigs is the histogram's precision: with three significant digits a
	// reported percentile is within 0.1% of the recorded value at its rank.
	sigFigs = 3
)

// histogram counts latencies in nanoseconds in an HdrHistogram, and keeps
// the exact count, sum, minimum and maximum beside it, since HdrHistogram's
// own Min, Max and Mean are those of its buckets. It is not safe for
// concurrent use: each worker owns one, and Run merges them at the end, so
// that the hot path takes no lock and touches no shared cache line. The zero
// value is empty and ready; the first record allocates the buckets.
type histogram struct {
	h   *hdrhistogram.Histogram
	n   int64
	sum float64 // nanoseconds; float so that hours of load cannot overflow
	min int64
	max int64
}

// newHDR is the bucket array every histogram uses: 1 ns to maxLatency.
func newHDR() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(maxLatency), sigFigs)
}

// record adds one latency; a negative one counts as 0.
func (h *histogram) record(d time.Duration) {
	v := max(int64(d), 0)
	if h.h == nil {
		h.h = newHDR()
	}
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
	// In range by the clamp, so RecordValue cannot fail.
	_ = h.h.RecordValue(min(v, int64(maxLatency)))
}

// merge adds o's values to h.
func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	if h.h == nil {
		h.h = newHDR()
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
	h.h.Merge(o.h) // same range, so nothing is dropped
}

// quantile is the latency below or at which a fraction q of the recorded
// values lie (nearest rank), to within the histogram's precision and clamped
// to the exact minimum and maximum; the last rank is the exact maximum, even
// past maxLatency. It is 0 for an empty histogram.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := max(math.Ceil(q*float64(h.n)), 1)
	if rank >= float64(h.n) {
		return time.Duration(h.max)
	}
	// HdrHistogram rounds the rank q·n to the nearest; asking for the
	// percentile of the whole rank makes it the nearest rank, ⌈q·n⌉.
	v := h.h.ValueAtQuantile(100 * rank / float64(h.n))
	return time.Duration(min(max(v, h.min), h.max))
}

// mean is the exact average of the recorded values.
func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}
