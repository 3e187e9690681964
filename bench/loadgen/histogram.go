package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// Histogram layout: values below 2^subBits nanoseconds get a bucket each;
// above, every power of two is split into 2^(subBits-1) equal buckets, so a
// bucket is at most 1/64 of its lower bound wide and the reported midpoint is
// within 0.8 % of any value in it. Every non-negative time.Duration fits in
// numBuckets counters (29 KiB), however long the run.
const (
	subBits    = 7
	subCount   = 1 << subBits // 128
	subHalf    = subCount / 2 // 64
	numBuckets = (63-subBits)*subHalf + subCount
)

// Histogram counts latencies in log-linear buckets. The zero value is empty
// and ready to use. It is not safe for concurrent use: give each goroutine
// its own and Merge them.
type Histogram struct {
	counts   [numBuckets]uint64
	total    uint64
	sum      float64 // nanoseconds
	min, max time.Duration
}

func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits
	return shift*subHalf + int(v>>shift)
}

// bucketRange returns the lowest value of bucket i and the bucket's width.
func bucketRange(i int) (low, width uint64) {
	if i < subCount {
		return uint64(i), 1
	}
	shift := i/subHalf - 1
	return uint64(i%subHalf+subHalf) << shift, 1 << shift
}

// Record adds one latency; negative values count as zero.
func (h *Histogram) Record(d time.Duration) {
	d = max(d, 0)
	h.counts[bucketOf(uint64(d))]++
	if h.total == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.total++
	h.sum += float64(d)
}

// Merge adds every value recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.total += o.total
	h.sum += o.sum
}

// Count returns the number of values recorded.
func (h *Histogram) Count() uint64 { return h.total }

// Min returns the smallest value recorded, exactly.
func (h *Histogram) Min() time.Duration { return h.min }

// Max returns the largest value recorded, exactly.
func (h *Histogram) Max() time.Duration { return h.max }

// Mean returns the average of the values recorded.
func (h *Histogram) Mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(math.Round(h.sum / float64(h.total)))
}

// Quantile returns the value below or at which a fraction q (0..1) of the
// recorded values lie, to within 0.8 %; 0 when the histogram is empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	if q <= 0 {
		return h.min
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			low, width := bucketRange(i)
			mid := time.Duration(low + width/2)
			return min(max(mid, h.min), h.max)
		}
	}
	return h.max
}
