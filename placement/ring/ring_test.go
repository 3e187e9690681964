package ring_test

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/granaryhq/granary/placement/ring"
	"github.com/granaryhq/granary/statestore"
)

// siloNames returns n member names "silo-0" … "silo-<n-1>".
func siloNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "silo-" + strconv.Itoa(i)
	}
	return out
}

// owners is the owner of every shard of r, "" where there is none.
func owners(r *ring.Ring) []string {
	out := make([]string, ring.Shards)
	for s := range ring.Shards {
		out[s], _ = r.Owner(ring.Shard(s))
	}
	return out
}

func TestShardArithmetic(t *testing.T) {
	if ring.Shards != 4096 || ring.ShardBits != 12 {
		t.Fatalf("Shards = %d, ShardBits = %d; want 4096 and 12", ring.Shards, ring.ShardBits)
	}
	for _, tc := range []struct {
		hash  uint64
		shard ring.Shard
	}{
		{0, 0},
		{1<<52 - 1, 0},
		{1 << 52, 1},
		{0x8000_0000_0000_0000, 2048},
		{0xfff0_0000_0000_0000, 4095},
		{math.MaxUint64, 4095},
	} {
		if got := ring.ShardOfHash(tc.hash); got != tc.shard {
			t.Errorf("ShardOfHash(%#x) = %d, want %d", tc.hash, got, tc.shard)
		}
	}
	for _, tc := range []struct {
		shard ring.Shard
		pos   uint64
	}{
		{0, 0},
		{1, 1 << 52},
		{2048, 0x8000_0000_0000_0000},
		{4095, 0xfff0_0000_0000_0000},
	} {
		if got := tc.shard.Position(); got != tc.pos {
			t.Errorf("Shard(%d).Position() = %#x, want %#x", tc.shard, got, tc.pos)
		}
		if got := ring.ShardOfHash(tc.shard.Position()); got != tc.shard {
			t.Errorf("ShardOfHash(Shard(%d).Position()) = %d", tc.shard, got)
		}
	}
}

func TestShardOfIsTopBitsOfTypeSlashID(t *testing.T) {
	for _, tc := range []struct{ typ, id string }{
		{"counter", "42"},
		{"counter", ""},
		{"", "x"},
		{"cart", "user:7/é"},
	} {
		want := ring.Shard(xxhash.Sum64String(tc.typ+"/"+tc.id) >> 52)
		if got := ring.ShardOf(tc.typ, tc.id); got != want {
			t.Errorf("ShardOf(%q, %q) = %d, want %d", tc.typ, tc.id, got, want)
		}
	}
}

// TestShardOfMatchesReminderBucket: the reminder index is bucketed by the
// same shards as placement, so a silo loads exactly the buckets it owns.
func TestShardOfMatchesReminderBucket(t *testing.T) {
	types := []string{"counter", "cart", "a", "x-y_z.v2"}
	seen := map[ring.Shard]bool{}
	for _, typ := range types {
		for i := range 20000 {
			id := "actor-" + strconv.Itoa(i)
			got := ring.ShardOf(typ, id)
			want := statestore.ReminderBucket(typ, id)
			if int(got) != want {
				t.Fatalf("ShardOf(%q, %q) = %d, ReminderBucket = %d", typ, id, got, want)
			}
			seen[got] = true
		}
	}
	if len(seen) != ring.Shards {
		t.Errorf("the IDs covered %d shards of %d; the comparison did not reach every shard", len(seen), ring.Shards)
	}
	if ring.Shards != statestore.ReminderBuckets {
		t.Errorf("Shards = %d, ReminderBuckets = %d", ring.Shards, statestore.ReminderBuckets)
	}
}

func TestEmptyRingOwnsNothing(t *testing.T) {
	var nilRing *ring.Ring
	for _, tc := range []struct {
		name string
		r    *ring.Ring
	}{
		{"nil members", ring.New(nil, 0)},
		{"empty members", ring.New([]string{}, 128)},
		{"zero Ring", &ring.Ring{}},
		{"nil *Ring", nilRing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := tc.r.Len(); n != 0 {
				t.Errorf("Len = %d", n)
			}
			if m := tc.r.Members(); len(m) != 0 {
				t.Errorf("Members = %v", m)
			}
			for _, s := range []ring.Shard{0, 1, 2048, 4095} {
				if m, ok := tc.r.Owner(s); ok || m != "" {
					t.Errorf("Owner(%d) = %q, %v; want nobody", s, m, ok)
				}
			}
			if m, ok := tc.r.OwnerOf("counter", "1"); ok || m != "" {
				t.Errorf("OwnerOf = %q, %v; want nobody", m, ok)
			}
		})
	}
}

func TestOneMemberOwnsEveryShard(t *testing.T) {
	for _, points := range []int{1, 2, 128} {
		r := ring.New([]string{"only"}, points)
		for s := range ring.Shards {
			if m, ok := r.Owner(ring.Shard(s)); !ok || m != "only" {
				t.Fatalf("points %d: Owner(%d) = %q, %v", points, s, m, ok)
			}
		}
	}
}

func TestOrderAndDuplicatesDoNotMatter(t *testing.T) {
	want := owners(ring.New([]string{"a", "b", "c", "d"}, 0))
	for _, ms := range [][]string{
		{"d", "c", "b", "a"},
		{"b", "d", "a", "c"},
		{"a", "a", "b", "c", "d", "d", "d"},
		{"c", "b", "c", "a", "d", "a"},
	} {
		r := ring.New(ms, 0)
		if got := r.Members(); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
			t.Errorf("New(%v).Members() = %v", ms, got)
		}
		if r.Len() != 4 {
			t.Errorf("New(%v).Len() = %d", ms, r.Len())
		}
		if got := owners(r); !slices.Equal(got, want) {
			t.Errorf("New(%v) assigns shards differently from New([a b c d])", ms)
		}
	}
}

func TestNewDoesNotKeepTheCallersSlice(t *testing.T) {
	ms := []string{"b", "a"}
	r := ring.New(ms, 8)
	before := owners(r)
	ms[0], ms[1] = "x", "y"
	if got := r.Members(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Members after the caller changed its slice = %v", got)
	}
	if !slices.Equal(owners(r), before) {
		t.Error("the owners changed after the caller changed its slice")
	}
	if ms[0] != "x" {
		t.Error("New reordered the caller's slice")
	}
}

func TestNonPositivePointsMeanDefault(t *testing.T) {
	ms := siloNames(5)
	want := owners(ring.New(ms, ring.DefaultPoints))
	for _, points := range []int{0, -1} {
		if got := owners(ring.New(ms, points)); !slices.Equal(got, want) {
			t.Errorf("New(points=%d) differs from New(points=%d)", points, ring.DefaultPoints)
		}
	}
	if ring.DefaultPoints != 128 {
		t.Errorf("DefaultPoints = %d, want 128", ring.DefaultPoints)
	}
}

// refPoint is one virtual point as the test computes it, apart from ring.New.
type refPoint struct {
	hash   uint64
	member string
}

func refPoints(members []string, points int) []refPoint {
	var pts []refPoint
	for _, m := range members {
		for i := 0; i < points; i++ {
			pts = append(pts, refPoint{xxhash.Sum64String(fmt.Sprintf("%s#%d", m, i)), m})
		}
	}
	return pts
}

// refOwner finds the owner of the shard whose range starts at pos by looking
// at every point: the lowest point at or after pos, else the lowest point of
// all (wrap-around); a tie goes to the member named first.
func refOwner(pts []refPoint, pos uint64) (owner string, wrapped bool) {
	better := func(a, b refPoint) bool {
		return a.hash < b.hash || a.hash == b.hash && a.member < b.member
	}
	var after, lowest *refPoint
	for i := range pts {
		p := &pts[i]
		if lowest == nil || better(*p, *lowest) {
			lowest = p
		}
		if p.hash >= pos && (after == nil || better(*p, *after)) {
			after = p
		}
	}
	if after == nil {
		return lowest.member, true
	}
	return after.member, false
}

func TestOwnerMatchesHandComputedRing(t *testing.T) {
	for _, tc := range []struct {
		members []string
		points  int
	}{
		{[]string{"alpha", "beta"}, 3},
		{[]string{"alpha", "beta", "gamma"}, 2},
		{[]string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"}, 128},
	} {
		t.Run(fmt.Sprintf("%v/%d", tc.members, tc.points), func(t *testing.T) {
			pts := refPoints(tc.members, tc.points)
			r := ring.New(tc.members, tc.points)
			// The shards holding a point, and the ones just after, are
			// where an off-by-one in "at or after" would show.
			check := map[uint64]bool{0: true, 4095: true}
			for _, p := range pts {
				s := p.hash >> 52
				check[s] = true
				check[(s+1)%4096] = true
			}
			wraps := 0
			for s := range uint64(4096) {
				pos := s << 52
				want, wrapped := refOwner(pts, pos)
				if wrapped {
					wraps++
				}
				got, ok := r.Owner(ring.Shard(s))
				if !ok || got != want {
					t.Errorf("Owner(%d) = %q, %v; want %q (wrap-around %v)", s, got, ok, want, wrapped)
				}
			}
			if wraps == 0 {
				t.Fatal("no shard lies past the last point; the wrap-around case was not exercised")
			}
			// Shard 4095 is past the last point here, and must go to the
			// owner of the lowest point.
			if want, wrapped := refOwner(pts, 4095<<52); wrapped {
				if got, _ := r.Owner(4095); got != want {
					t.Errorf("wrap-around: Owner(4095) = %q, want the owner of the lowest point %q", got, want)
				}
			}
			for s := range check {
				want, _ := refOwner(pts, s<<52)
				if got, _ := r.Owner(ring.Shard(s)); got != want {
					t.Errorf("Owner(%d) near a point = %q, want %q", s, got, want)
				}
			}
		})
	}
}

func TestOwnerIgnoresBitsAboveTheShard(t *testing.T) {
	r := ring.New(siloNames(3), 0)
	for _, s := range []ring.Shard{0, 7, 4095} {
		want, _ := r.Owner(s)
		if got, _ := r.Owner(s + ring.Shards); got != want {
			t.Errorf("Owner(%d) = %q, Owner(%d) = %q", s+ring.Shards, got, s, want)
		}
	}
}

func TestEveryKeyMapsToAMember(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 20} {
		ms := siloNames(n)
		r := ring.New(ms, 0)
		for i := range 5000 {
			id := strconv.Itoa(i * 7919)
			m, ok := r.OwnerOf("counter", id)
			if !ok || !slices.Contains(ms, m) {
				t.Fatalf("n=%d: OwnerOf(counter, %s) = %q, %v", n, id, m, ok)
			}
			if s, _ := r.Owner(ring.ShardOf("counter", id)); s != m {
				t.Fatalf("n=%d: OwnerOf = %q but Owner(ShardOf) = %q", n, m, s)
			}
		}
	}
}

// actorIDs are the IDs the distribution tests place.
func actorIDs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "actor-" + strconv.Itoa(i)
	}
	return out
}

// movedFraction is the fraction of actors whose owner differs between a and b.
func movedFraction(a, b *ring.Ring, ids []string) float64 {
	moved := 0
	for _, id := range ids {
		x, _ := a.OwnerOf("counter", id)
		y, _ := b.OwnerOf("counter", id)
		if x != y {
			moved++
		}
	}
	return float64(moved) / float64(len(ids))
}

func TestAddingASiloMovesShardsOnlyToIt(t *testing.T) {
	ids := actorIDs(20000)
	for _, n := range []int{3, 5, 10, 20} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			before := ring.New(siloNames(n), 0)
			added := "silo-" + strconv.Itoa(n)
			after := ring.New(append(siloNames(n), added), 0)
			movedShards := 0
			for s := range ring.Shards {
				x, _ := before.Owner(ring.Shard(s))
				y, _ := after.Owner(ring.Shard(s))
				if x != y {
					movedShards++
					if y != added {
						t.Errorf("shard %d moved from %s to %s, not to the added %s", s, x, y, added)
					}
				}
			}
			shardFrac := float64(movedShards) / ring.Shards
			actorFrac := movedFraction(before, after, ids)
			t.Logf("n=%d: %.3f of shards and %.3f of actors moved (ideal %.3f)", n, shardFrac, actorFrac, 1/float64(n+1))
			for what, f := range map[string]float64{"shards": shardFrac, "actors": actorFrac} {
				if f > 2/float64(n) || f < 0.5/float64(n+1) {
					t.Errorf("%.3f of %s moved; want about 1/%d (between %.3f and %.3f)", f, what, n+1, 0.5/float64(n+1), 2/float64(n))
				}
			}
		})
	}
}

func TestRemovingASiloMovesOnlyItsShards(t *testing.T) {
	ids := actorIDs(20000)
	for _, n := range []int{3, 5, 10, 20} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			all := siloNames(n)
			before := ring.New(all, 0)
			removed := all[n/2]
			after := ring.New(slices.Delete(slices.Clone(all), n/2, n/2+1), 0)
			movedShards := 0
			for s := range ring.Shards {
				x, _ := before.Owner(ring.Shard(s))
				y, _ := after.Owner(ring.Shard(s))
				if y == removed {
					t.Fatalf("shard %d still owned by the removed %s", s, removed)
				}
				if x != y {
					movedShards++
					if x != removed {
						t.Errorf("shard %d moved from %s to %s, but only %s left", s, x, y, removed)
					}
				}
			}
			shardFrac := float64(movedShards) / ring.Shards
			actorFrac := movedFraction(before, after, ids)
			t.Logf("n=%d: %.3f of shards and %.3f of actors moved (ideal %.3f)", n, shardFrac, actorFrac, 1/float64(n))
			for what, f := range map[string]float64{"shards": shardFrac, "actors": actorFrac} {
				if f > 2/float64(n) || f < 0.5/float64(n) {
					t.Errorf("%.3f of %s moved; want about 1/%d (between %.3f and %.3f)", f, what, n, 0.5/float64(n), 2/float64(n))
				}
			}
		})
	}
}

func TestBalanceOfTenSilos(t *testing.T) {
	const actors = 100000
	for _, names := range [][]string{
		siloNames(10),
		{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000", "10.0.0.4:7000", "10.0.0.5:7000",
			"10.0.0.6:7000", "10.0.0.7:7000", "10.0.0.8:7000", "10.0.0.9:7000", "10.0.0.10:7000"},
	} {
		r := ring.New(names, ring.DefaultPoints)
		count := map[string]int{}
		for _, id := range actorIDs(actors) {
			m, _ := r.Owner(ring.ShardOf("counter", id))
			count[m]++
		}
		busiest := 0
		for _, c := range count {
			busiest = max(busiest, c)
		}
		mean := float64(actors) / float64(len(names))
		ratio := float64(busiest) / mean
		t.Logf("%s…: busiest holds %d actors, %.3f× the mean", names[0], busiest, ratio)
		if len(count) != len(names) {
			t.Errorf("%d of %d silos own actors", len(count), len(names))
		}
		if ratio > 1.3 {
			t.Errorf("%s…: busiest of %d silos holds %.3f× the mean (limit 1.3): %v", names[0], len(names), ratio, count)
		}
	}
}

// TestBalanceAcrossManyClusters checks that the layout is no worse than
// random points: over many sets of member names, the busiest silo's share of
// shards stays where 128 independent uniform points per silo put it (about
// 1.14× the mean at the median for 10 silos).
func TestBalanceAcrossManyClusters(t *testing.T) {
	const clusters = 200
	ratios := make([]float64, 0, clusters)
	for c := range clusters {
		names := make([]string, 10)
		for i := range names {
			names[i] = fmt.Sprintf("c%d-silo-%d", c, i)
		}
		count := map[string]int{}
		for _, m := range owners(ring.New(names, 0)) {
			count[m]++
		}
		busiest := 0
		for _, n := range count {
			busiest = max(busiest, n)
		}
		ratios = append(ratios, float64(busiest)/(ring.Shards/10.0))
	}
	slices.Sort(ratios)
	median, p90 := ratios[clusters/2], ratios[clusters*9/10]
	t.Logf("busiest/mean over %d clusters: median %.3f, p90 %.3f, worst %.3f", clusters, median, p90, ratios[clusters-1])
	if median > 1.2 || p90 > 1.3 {
		t.Errorf("busiest/mean median %.3f (limit 1.2), p90 %.3f (limit 1.3)", median, p90)
	}
}

// TestGoldenOwners pins the layout: a change of the hash, of the point names
// or of the position rule would send shards to other silos in a mixed-version
// cluster, so it must be deliberate.
func TestGoldenOwners(t *testing.T) {
	r := ring.New([]string{"silo-a", "silo-b", "silo-c"}, ring.DefaultPoints)
	for _, tc := range []struct {
		shard ring.Shard
		owner string
	}{
		{0, "silo-a"},
		{1, "silo-a"},
		{100, "silo-b"},
		{1000, "silo-b"},
		{1402, "silo-c"},
		{2048, "silo-a"},
		{3000, "silo-a"},
		{3708, "silo-c"},
		{4095, "silo-a"},
	} {
		if got, _ := r.Owner(tc.shard); got != tc.owner {
			t.Errorf("Owner(%d) = %q, want %q", tc.shard, got, tc.owner)
		}
	}
	for _, tc := range []struct {
		typ, id string
		shard   ring.Shard
		owner   string
	}{
		{"counter", "42", 1402, "silo-c"},
		{"counter", "alice", 871, "silo-b"},
		{"cart", "7", 2959, "silo-a"},
		{"cart", "user-1001", 3708, "silo-c"},
	} {
		if got := ring.ShardOf(tc.typ, tc.id); got != tc.shard {
			t.Errorf("ShardOf(%q, %q) = %d, want %d", tc.typ, tc.id, got, tc.shard)
		}
		if got, _ := r.OwnerOf(tc.typ, tc.id); got != tc.owner {
			t.Errorf("OwnerOf(%q, %q) = %q, want %q", tc.typ, tc.id, got, tc.owner)
		}
	}
	count := map[string]int{}
	for _, m := range owners(r) {
		count[m]++
	}
	want := map[string]int{"silo-a": 1285, "silo-b": 1244, "silo-c": 1567}
	for m, n := range want {
		if count[m] != n {
			t.Errorf("%s owns %d shards, want %d", m, count[m], n)
		}
	}
}

func TestOwnerOfDoesNotAllocate(t *testing.T) {
	r := ring.New(siloNames(10), 0)
	ids := actorIDs(64)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = r.OwnerOf("counter", ids[i%len(ids)])
		i++
	})
	if allocs != 0 {
		t.Errorf("OwnerOf allocates %.1f times per call, want 0", allocs)
	}
}

func BenchmarkOwnerOf(b *testing.B) {
	r := ring.New(siloNames(10), 0)
	ids := actorIDs(1024)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := r.OwnerOf("counter", ids[i&1023]); !ok {
			b.Fatal("no owner")
		}
		i++
	}
}

func BenchmarkNew(b *testing.B) {
	for _, n := range []int{10, 100} {
		ms := siloNames(n)
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r := ring.New(ms, 0); r.Len() != n {
					b.Fatal("wrong size")
				}
			}
		})
	}
}
