package bench

import (
	"math"
	"math/bits"
	"time"
)

// The histogram is log-linear, in the manner of HdrHistogram: values below
// 2·subCount nanoseconds get one bucket each, and every power of two above
// that is split into subCount equal buckets. A bucket is therefore at most
// 1/subCount = 0.8% wide relative to its lower bound, and reporting its
// midpoint is within 0.4% of any value it holds.
const (
	subBits  = 7
	subCount = 1 << subBits

	// maxLatency is the largest latency told apart; longer ones land in the
	// top bucket (the exact maximum is still kept).
	maxLatency = 60 * time.Second

	// maxShift is bucketShift(maxLatency): bits.Len64(60e9) = 36, less subBits+1.
	maxShift   = 28
	numBuckets = (maxShift + 2) * subCount
)

// histogram counts latencies in nanoseconds. It is not safe for concurrent
// use: each worker owns one, and Run merges them at the end, so that the hot
// path takes no lock and touches no shared cache line.
type histogram struct {
	counts [numBuckets]uint64
	n      uint64
	sum    float64 // nanoseconds; float so that hours of load cannot overflow
	min    int64
	max    int64
}

// bucketShift is how many low bits of v a bucket ignores.
func bucketShift(v uint64) int {
	s := bits.Len64(v) - (subBits + 1)
	if s < 0 {
		return 0
	}
	return s
}

// bucketIndex is the bucket that holds v; indexes grow with v without gaps.
func bucketIndex(v uint64) int {
	s := bucketShift(v)
	return s*subCount + int(v>>s)
}

// bucketMid is the value reported for bucket i: the middle of its range,
// or the exact value for the one-wide buckets at the bottom.
func bucketMid(i int) int64 {
	if i < 2*subCount {
		return int64(i)
	}
	s := i/subCount - 1
	mantissa := int64(i - s*subCount)
	lo := mantissa << s
	return lo + (int64(1)<<s)/2
}

// record adds one latency.
func (h *histogram) record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
	c := v
	if c > int64(maxLatency) {
		c = int64(maxLatency)
	}
	h.counts[bucketIndex(uint64(c))]++
}

// merge adds o's counts to h.
func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

// quantile is the latency below or at which a fraction q of the recorded
// values lie (nearest rank), to within the bucket precision and clamped to
// the exact minimum and maximum. It is 0 for an empty histogram.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	if rank >= h.n {
		return time.Duration(h.max)
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := bucketMid(i)
			v = max(v, h.min)
			v = min(v, h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

// mean is the exact average of the recorded values.
func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}
