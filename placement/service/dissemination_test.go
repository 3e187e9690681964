package service_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/granaryhq/granary/placement/membership"
	"github.com/granaryhq/granary/placement/table"
	"github.com/granaryhq/granary/silo/placementclient"
)

// timedRecorder notes when each table version was unlocked on a silo.
type timedRecorder struct {
	recorder
	mu       sync.Mutex
	unlocked map[uint64]time.Time
}

func (r *timedRecorder) Phase(ctx context.Context, round uint64, p membership.Phase, t *table.Table) error {
	if p == membership.PhaseUnlock {
		r.mu.Lock()
		if r.unlocked == nil {
			r.unlocked = map[uint64]time.Time{}
		}
		if _, seen := r.unlocked[t.Version]; !seen {
			r.unlocked[t.Version] = time.Now()
		}
		r.mu.Unlock()
	}
	return r.recorder.Phase(ctx, round, p, t)
}

func (r *timedRecorder) at(v uint64) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.unlocked[v]
	return at, ok
}

// disseminate connects n silos to a one-node placement, then starts one
// more and measures, for every silo, the time from the newcomer's start to
// that silo's unlock of the table that holds it.
func disseminate(t testing.TB, n int) (p50, p99, worst time.Duration) {
	nodes := startCluster(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	recs := make([]*timedRecorder, 0, n+1)
	start := func(id string) {
		rec := &timedRecorder{}
		m := table.Member{ID: id, Incarnation: "1", InternalAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", Types: []string{"Counter"}}
		c := placementclient.New(placementclient.Config{Addrs: []string{nodes[0].grpcAddr},
			Member: func() table.Member { return m }, Handler: rec, Logger: quiet()})
		go c.Run(ctx)
		recs = append(recs, rec)
	}
	for i := range n {
		start("s" + strconv.Itoa(i))
	}
	// What the wait saw last, reported if it gives up.
	var seenVersion uint64
	var seenMembers, seenUnlocked int
	defer func() {
		if t.Failed() {
			t.Logf("last seen: table version %d with %d of %d members, unlocked by %d silos",
				seenVersion, seenMembers, n, seenUnlocked)
		}
	}()
	waitFor(t, fmt.Sprintf("%d silos in one disseminated table", n), 60*time.Second, func() bool {
		tbl := nodes[0].n.Table()
		seenVersion, seenMembers, seenUnlocked = tbl.Version, len(tbl.Members), 0
		for _, r := range recs {
			if _, ok := r.at(tbl.Version); ok {
				seenUnlocked++
			}
		}
		return seenMembers == n && seenUnlocked == len(recs)
	})
	// Let the startup rounds settle (and the new leader's first-round lease
	// wait pass) so the change measured is one ordinary round.
	time.Sleep(membership.Config{}.LeaseBound())
	began := time.Now()
	start("newcomer")
	var version uint64
	waitFor(t, "the newcomer's table everywhere", 30*time.Second, func() bool {
		tbl := nodes[0].n.Table()
		if _, ok := tbl.Member("newcomer"); !ok {
			return false
		}
		version = tbl.Version
		for _, r := range recs {
			if _, ok := r.at(version); !ok {
				return false
			}
		}
		return true
	})
	var lat []time.Duration
	for _, r := range recs {
		at, _ := r.at(version)
		lat = append(lat, at.Sub(began))
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[(len(lat)*99)/100], lat[len(lat)-1]
}

func TestDisseminationOfOneChangeTo100Silos(t *testing.T) {
	p50, p99, worst := disseminate(t, 100)
	t.Logf("one join disseminated to 101 silos: p50 %v, p99 %v, max %v (from the newcomer's start to each silo's unlock)",
		p50.Round(time.Millisecond), p99.Round(time.Millisecond), worst.Round(time.Millisecond))
	// The target is 200 ms at p99 (BenchmarkDissemination holds it); the
	// race detector alone makes it about 500 ms here, and a loaded CI
	// machine more, so the test only catches a round that stalls. On a
	// machine busy with other test packages, a simulated silo that misses
	// the phase timeout is removed and the round runs again, as designed,
	// which delays every unlock by about that timeout (once, under make
	// test: p50 2.79 s, p99 2.80 s, all unlocks together). The bound allows
	// that once.
	if limit := membership.DefaultPhaseTimeout + 2*time.Second; p99 > limit {
		t.Fatalf("p99 %v exceeds %v", p99, limit)
	}
}

// BenchmarkDissemination reports how long one change takes to reach N silos
// (GRANARY_BENCH_SILOS, default 100) through in-process stream clients. Run
// it with -benchtime=1x: each iteration starts a cluster.
func BenchmarkDissemination(b *testing.B) {
	n := 100
	if v, err := strconv.Atoi(os.Getenv("GRANARY_BENCH_SILOS")); err == nil && v > 0 {
		n = v
	}
	var p50, p99, worst time.Duration
	for range b.N {
		p50, p99, worst = disseminate(b, n)
	}
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(worst.Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(n+1), "silos")
}
