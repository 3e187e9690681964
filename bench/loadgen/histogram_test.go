package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketLayout(t *testing.T) {
	// Buckets tile the value range with no gap or overlap, and none is wider
	// than 1/64 of its lower bound.
	var next uint64
	for i := range numBuckets {
		low, width := bucketRange(i)
		if low != next {
			t.Fatalf("bucket %d starts at %d, want %d", i, low, next)
		}
		if bucketOf(low) != i || bucketOf(low+width-1) != i {
			t.Fatalf("bucket %d [%d, %d) does not map back to itself", i, low, low+width)
		}
		if low >= subCount && width*subHalf > low {
			t.Fatalf("bucket %d [%d, +%d) is wider than 1/64 of its start", i, low, width)
		}
		next = low + width
	}
	if next != 1<<63 {
		t.Fatalf("buckets end at %d, want 2^63", next)
	}
}

func TestQuantilesMatchExact(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dists := map[string]func() time.Duration{
		"uniform 0-10ms":   func() time.Duration { return time.Duration(rng.Int64N(int64(10 * time.Millisecond))) },
		"lognormal ~300µs": func() time.Duration { return time.Duration(math.Exp(rng.NormFloat64()*0.8) * 300e3) },
		"small ns values":  func() time.Duration { return time.Duration(rng.Int64N(500)) },
		"bimodal": func() time.Duration {
			return time.Duration(100e3 + rng.Int64N(2)*int64(20*time.Millisecond) + rng.Int64N(1000))
		},
	}
	for name, draw := range dists {
		// Spread the values over several histograms to exercise Merge too.
		parts := make([]Histogram, 4)
		values := make([]time.Duration, 200_000)
		for i := range values {
			values[i] = draw()
			parts[i%len(parts)].Record(values[i])
		}
		var h Histogram
		for i := range parts {
			h.Merge(&parts[i])
		}
		slices.Sort(values)
		if h.Count() != uint64(len(values)) || h.Min() != values[0] || h.Max() != values[len(values)-1] {
			t.Errorf("%s: count/min/max %d/%v/%v, want %d/%v/%v", name, h.Count(), h.Min(), h.Max(),
				len(values), values[0], values[len(values)-1])
		}
		for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
			exact := values[int(math.Ceil(q*float64(len(values))))-1]
			got := h.Quantile(q)
			if diff := math.Abs(float64(got - exact)); diff > 0.008*float64(exact)+1 {
				t.Errorf("%s: q%.3f = %v, exact %v (off by %.2f%%)", name, q, got, exact, 100*diff/float64(exact))
			}
		}
		var sum float64
		for _, v := range values {
			sum += float64(v)
		}
		if mean := sum / float64(len(values)); math.Abs(float64(h.Mean())-mean) > 1 {
			t.Errorf("%s: mean %v, want %v", name, h.Mean(), time.Duration(mean))
		}
	}
}

func TestHistogramEdges(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Mean() != 0 || h.Count() != 0 {
		t.Fatal("empty histogram should report zeros")
	}
	h.Record(-5) // clock step backwards: counted as zero
	h.Record(time.Duration(math.MaxInt64))
	if h.Min() != 0 || h.Max() != math.MaxInt64 || h.Quantile(0) != 0 || h.Quantile(1) != math.MaxInt64 {
		t.Errorf("min %v max %v q0 %v q1 %v", h.Min(), h.Max(), h.Quantile(0), h.Quantile(1))
	}
	var one Histogram
	one.Record(1234567)
	if one.Quantile(0.5) != 1234567 || one.Quantile(0.999) != 1234567 {
		t.Errorf("single value quantiles %v %v, want 1.234567ms", one.Quantile(0.5), one.Quantile(0.999))
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	d := 123 * time.Microsecond
	for b.Loop() {
		h.Record(d)
		d += 7
	}
}

func TestResultAdd(t *testing.T) {
	a := Result{Connections: 2, Duration: time.Second, Latency: &Histogram{}, Errors: Errors{IO: 1}, FirstError: "first"}
	b := Result{Connections: 2, Duration: 3 * time.Second, Latency: &Histogram{}, Errors: Errors{Status: 2},
		StatusCodes: map[int]int64{500: 2}, FirstError: "second"}
	for range 100 {
		a.Latency.Record(time.Millisecond)
	}
	for range 300 {
		b.Latency.Record(4 * time.Millisecond)
	}
	var sum Result
	sum.Add(a)
	sum.Add(b)
	if sum.Requests != 400 || sum.Duration != 4*time.Second || sum.RPS != 100 {
		t.Fatalf("requests %d over %v at %.1f rps, want 400 over 4s at 100", sum.Requests, sum.Duration, sum.RPS)
	}
	if sum.Errors.Total() != 3 || sum.StatusCodes[500] != 2 || sum.FirstError != "first" {
		t.Fatalf("errors %+v codes %v first %q", sum.Errors, sum.StatusCodes, sum.FirstError)
	}
	if sum.P50 < 3*time.Millisecond || sum.P50 > 5*time.Millisecond {
		t.Fatalf("p50 %v, want about 4ms: three quarters of the samples are 4ms", sum.P50)
	}
	if a.Latency.Count() != 100 {
		t.Fatalf("Add changed its argument's histogram")
	}
}
