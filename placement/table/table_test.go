package table_test

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/granaryhq/granary/placement/ring"
	"github.com/granaryhq/granary/placement/table"
)

// silo is a valid member hosting types.
func silo(id, incarnation string, types ...string) table.Member {
	return table.Member{
		ID:           id,
		Incarnation:  incarnation,
		InternalAddr: id + ":7000",
		HTTPAddr:     id + ":8080",
		Types:        types,
	}
}

func mustNew(t *testing.T, version uint64, members ...table.Member) *table.Table {
	t.Helper()
	tb, err := table.New("cluster-1", version, members, 0)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tb
}

func ids(ms []table.Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func TestNewSortsAndNormalizesMembers(t *testing.T) {
	in := []table.Member{
		{ID: "c", Incarnation: "3", InternalAddr: "c:1", Types: []string{"timer", "cart", "timer"}, AppIDs: []string{"y", "x", "x"}},
		{ID: "a", Incarnation: "1", InternalAddr: "a:1"},
		{ID: "b", Incarnation: "2", InternalAddr: "b:1", Types: []string{}, AppIDs: []string{}},
	}
	tb, err := table.New("cluster-1", 7, in, 0)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if tb.ClusterID != "cluster-1" || tb.Version != 7 {
		t.Errorf("ClusterID, Version = %q, %d", tb.ClusterID, tb.Version)
	}
	if got := ids(tb.Members); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("member order = %v, want [a b c]", got)
	}
	c := tb.Members[2]
	if !slices.Equal(c.Types, []string{"cart", "timer"}) || !slices.Equal(c.AppIDs, []string{"x", "y"}) {
		t.Errorf("c: Types %v, AppIDs %v; want sorted sets", c.Types, c.AppIDs)
	}
	if b := tb.Members[1]; b.Types != nil || b.AppIDs != nil {
		t.Errorf("b: empty lists should normalize to nil, got Types %#v, AppIDs %#v", b.Types, b.AppIDs)
	}
	if !slices.Equal(in[0].Types, []string{"timer", "cart", "timer"}) || in[0].ID != "c" {
		t.Errorf("New changed the caller's members: %+v", in[0])
	}
	if got := tb.Types(); !slices.Equal(got, []string{"cart", "timer"}) {
		t.Errorf("Types = %v", got)
	}
}

func TestNewRejectsDuplicateIDs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members []table.Member
	}{
		{"same member twice", []table.Member{silo("s1", "i1", "counter"), silo("s1", "i1", "counter")}},
		{"two incarnations of one silo", []table.Member{silo("s2", "i1"), silo("s1", "i1"), silo("s2", "i2")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb, err := table.New("cluster-1", 3, tc.members, 0)
			if err == nil {
				t.Fatalf("New accepted duplicate IDs: %v", ids(tb.Members))
			}
			if tb != nil {
				t.Error("New returned a table with its error")
			}
			if !strings.Contains(err.Error(), "listed twice") {
				t.Errorf("error %q does not say what is wrong", err)
			}
		})
	}
}

func TestMemberValidate(t *testing.T) {
	good := silo("s1", "inc", "counter", "cart")
	with := func(f func(*table.Member)) table.Member {
		m := good
		m.Types = slices.Clone(good.Types)
		f(&m)
		return m
	}
	for _, tc := range []struct {
		name    string
		m       table.Member
		wantErr string // "" means valid
	}{
		{"valid", good, ""},
		{"no types", with(func(m *table.Member) { m.Types = nil }), ""},
		{"no HTTP address", with(func(m *table.Member) { m.HTTPAddr = "" }), ""},
		{"empty ID", with(func(m *table.Member) { m.ID = "" }), "empty ID"},
		{"ID with slash", with(func(m *table.Member) { m.ID = "a/b" }), "ID contains"},
		{"ID with hash", with(func(m *table.Member) { m.ID = "a#1" }), "ID contains"},
		{"ID with space", with(func(m *table.Member) { m.ID = "a b" }), "ID contains"},
		{"ID with tab", with(func(m *table.Member) { m.ID = "a\tb" }), "ID contains"},
		{"ID with newline", with(func(m *table.Member) { m.ID = "a\n" }), "ID contains"},
		{"empty incarnation", with(func(m *table.Member) { m.Incarnation = "" }), "empty incarnation"},
		{"empty internal address", with(func(m *table.Member) { m.InternalAddr = "" }), "empty internal address"},
		{"empty type", with(func(m *table.Member) { m.Types = append(m.Types, "") }), "bad actor type"},
		{"type with slash", with(func(m *table.Member) { m.Types[0] = "a/b" }), "bad actor type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("Validate() = nil, want an error containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("Validate() = %q, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestMemberEqual(t *testing.T) {
	a := silo("s1", "i1", "cart", "counter")
	for _, tc := range []struct {
		name  string
		other func(table.Member) table.Member
		equal bool
	}{
		{"same", func(m table.Member) table.Member { return m }, true},
		{"same types, fresh slice", func(m table.Member) table.Member { m.Types = []string{"cart", "counter"}; return m }, true},
		{"other incarnation", func(m table.Member) table.Member { m.Incarnation = "i2"; return m }, false},
		{"other internal address", func(m table.Member) table.Member { m.InternalAddr = "x:1"; return m }, false},
		{"other HTTP address", func(m table.Member) table.Member { m.HTTPAddr = "x:2"; return m }, false},
		{"fewer types", func(m table.Member) table.Member { m.Types = []string{"cart"}; return m }, false},
		{"app IDs", func(m table.Member) table.Member { m.AppIDs = []string{"app"}; return m }, false},
	} {
		if got := a.Equal(tc.other(a)); got != tc.equal {
			t.Errorf("%s: Equal = %v, want %v", tc.name, got, tc.equal)
		}
	}
}

// threeSilos hosts counter on s1 and s2, cart on s1 and s3, timer on s3.
func threeSilos() []table.Member {
	return []table.Member{
		silo("s3", "i3", "timer", "cart"),
		silo("s1", "i1", "counter", "cart"),
		silo("s2", "i2", "counter"),
	}
}

func TestOwnersFollowTheRingOfEachType(t *testing.T) {
	const points = 16
	tb, err := table.New("cluster-1", 1, threeSilos(), points)
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string][]string{"counter": {"s1", "s2"}, "cart": {"s1", "s3"}, "timer": {"s3"}}
	for typ, hs := range hosts {
		want := ring.New(hs, points)
		for i := range 3000 {
			id := "actor-" + strconv.Itoa(i)
			m, ok := tb.Owner(typ, id)
			if !ok {
				t.Fatalf("Owner(%s, %s): no owner", typ, id)
			}
			wantID, _ := want.OwnerOf(typ, id)
			if m.ID != wantID {
				t.Fatalf("Owner(%s, %s) = %s, want %s", typ, id, m.ID, wantID)
			}
			if !slices.Contains(m.Types, typ) {
				t.Fatalf("Owner(%s, %s) = %s, which does not host %s", typ, id, m.ID, typ)
			}
			if m.Incarnation != "i"+m.ID[1:] || m.InternalAddr != m.ID+":7000" {
				t.Fatalf("Owner returned an incomplete member: %+v", m)
			}
			if sm, ok := tb.ShardOwner(typ, ring.ShardOf(typ, id)); !ok || !sm.Equal(m) {
				t.Fatalf("ShardOwner(%s, ShardOf(%s)) = %+v, %v; Owner = %+v", typ, id, sm, ok, m)
			}
		}
		if r := tb.Ring(typ); !slices.Equal(r.Members(), hs) {
			t.Errorf("Ring(%s).Members() = %v, want %v", typ, r.Members(), hs)
		}
	}
	if m, ok := tb.Owner("unknown", "1"); ok {
		t.Errorf("Owner of an unhosted type = %+v", m)
	}
	if m, ok := tb.ShardOwner("unknown", 0); ok {
		t.Errorf("ShardOwner of an unhosted type = %+v", m)
	}
	if r := tb.Ring("unknown"); r != nil {
		t.Errorf("Ring of an unhosted type = %v", r.Members())
	}
}

func TestTypesHostedAndMember(t *testing.T) {
	tb := mustNew(t, 1, threeSilos()...)
	if got := tb.Types(); !slices.Equal(got, []string{"cart", "counter", "timer"}) {
		t.Errorf("Types = %v", got)
	}
	for typ, want := range map[string]bool{"cart": true, "counter": true, "timer": true, "unknown": false, "": false} {
		if got := tb.Hosted(typ); got != want {
			t.Errorf("Hosted(%q) = %v, want %v", typ, got, want)
		}
	}
	if m, ok := tb.Member("s2"); !ok || !m.Equal(silo("s2", "i2", "counter")) {
		t.Errorf("Member(s2) = %+v, %v", m, ok)
	}
	if m, ok := tb.Member("s9"); ok {
		t.Errorf("Member(s9) = %+v", m)
	}

	empty := mustNew(t, 1)
	var none *table.Table
	for name, tb := range map[string]*table.Table{"no members": empty, "nil table": none} {
		if got := tb.Types(); len(got) != 0 {
			t.Errorf("%s: Types = %v", name, got)
		}
		if tb.Hosted("counter") {
			t.Errorf("%s: Hosted(counter)", name)
		}
		if _, ok := tb.Member("s1"); ok {
			t.Errorf("%s: Member(s1) found", name)
		}
		if _, ok := tb.Owner("counter", "1"); ok {
			t.Errorf("%s: Owner found", name)
		}
		if tb.Ring("counter") != nil {
			t.Errorf("%s: Ring(counter) not nil", name)
		}
	}
}

func TestOwnerString(t *testing.T) {
	for _, tc := range []struct {
		o    table.Owner
		want string
	}{
		{table.Owner{}, "nobody"},
		{table.Owner{ID: "s1", Incarnation: "abc"}, "s1/abc"},
	} {
		if got := tc.o.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.o, got, tc.want)
		}
	}
}

func ownerIn(tb *table.Table, typ string, s ring.Shard) table.Owner {
	m, ok := tb.ShardOwner(typ, s)
	if !ok {
		return table.Owner{}
	}
	return table.Owner{ID: m.ID, Incarnation: m.Incarnation}
}

func checkSorted(t *testing.T, moves []table.Move) {
	t.Helper()
	sorted := slices.IsSortedFunc(moves, func(a, b table.Move) int {
		return cmp.Or(strings.Compare(a.Type, b.Type), cmp.Compare(a.Shard, b.Shard))
	})
	if !sorted {
		t.Error("moves are not ordered by type, then shard")
	}
}

func TestMovesFromNothing(t *testing.T) {
	tb := mustNew(t, 1, threeSilos()...)
	moves := table.Moves(nil, tb)
	if want := 3 * ring.Shards; len(moves) != want {
		t.Fatalf("%d moves, want %d (every shard of 3 types)", len(moves), want)
	}
	checkSorted(t, moves)
	for _, mv := range moves {
		if mv.From != (table.Owner{}) {
			t.Fatalf("%s/%d moves from %s, want nobody", mv.Type, mv.Shard, mv.From)
		}
		if want := ownerIn(tb, mv.Type, mv.Shard); mv.To != want || want.ID == "" {
			t.Fatalf("%s/%d moves to %s, want %s", mv.Type, mv.Shard, mv.To, want)
		}
	}
	if got := table.Moves(nil, nil); len(got) != 0 {
		t.Errorf("Moves(nil, nil) = %d moves", len(got))
	}
}

func TestMovesBetweenEqualTables(t *testing.T) {
	a := mustNew(t, 1, threeSilos()...)
	b := mustNew(t, 2, threeSilos()...)
	if got := table.Moves(a, a); len(got) != 0 {
		t.Errorf("Moves(t, t) = %d moves", len(got))
	}
	if got := table.Moves(a, b); len(got) != 0 {
		t.Errorf("Moves between two versions of one membership = %d moves", len(got))
	}
	// A new address on the same process moves nothing: the process, and so
	// its claims, are the same.
	ms := threeSilos()
	ms[0].HTTPAddr = "elsewhere:8080"
	if got := table.Moves(a, mustNew(t, 3, ms...)); len(got) != 0 {
		t.Errorf("changing an address moved %d shards", len(got))
	}
}

func TestMovesWhenASiloJoins(t *testing.T) {
	for _, n := range []int{3, 5, 10} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			var ms []table.Member
			for i := range n {
				ms = append(ms, silo("s"+strconv.Itoa(i), "i", "counter", "cart"))
			}
			before := mustNew(t, 1, ms...)
			joined := silo("s"+strconv.Itoa(n), "new", "counter", "cart")
			after := mustNew(t, 2, append(slices.Clone(ms), joined)...)
			moves := table.Moves(before, after)
			checkSorted(t, moves)
			perType := map[string]int{}
			for _, mv := range moves {
				perType[mv.Type]++
				if mv.To != (table.Owner{ID: joined.ID, Incarnation: joined.Incarnation}) {
					t.Fatalf("%s/%d moves to %s, not to the joining silo", mv.Type, mv.Shard, mv.To)
				}
				if mv.From.ID == "" || mv.From != ownerIn(before, mv.Type, mv.Shard) {
					t.Fatalf("%s/%d moves from %s, want its old owner %s", mv.Type, mv.Shard, mv.From, ownerIn(before, mv.Type, mv.Shard))
				}
			}
			// Every shard the joining silo owns afterwards is in the list.
			for _, typ := range after.Types() {
				owned := 0
				for s := range ring.Shards {
					if ownerIn(after, typ, ring.Shard(s)).ID == joined.ID {
						owned++
					}
				}
				if owned != perType[typ] {
					t.Errorf("%s: the joining silo owns %d shards but %d moved", typ, owned, perType[typ])
				}
				f := float64(perType[typ]) / ring.Shards
				if f > 2/float64(n) || f < 0.5/float64(n+1) {
					t.Errorf("%s: %.3f of shards moved, want about 1/%d", typ, f, n+1)
				}
			}
		})
	}
}

func TestMovesWhenASiloRestarts(t *testing.T) {
	var ms []table.Member
	for i := range 5 {
		ms = append(ms, silo("s"+strconv.Itoa(i), "old", "counter", "cart"))
	}
	before := mustNew(t, 1, ms...)
	ms[2].Incarnation = "new"
	after := mustNew(t, 2, ms...)

	want := map[string]map[ring.Shard]bool{}
	for _, typ := range before.Types() {
		want[typ] = map[ring.Shard]bool{}
		for s := range ring.Shards {
			if ownerIn(before, typ, ring.Shard(s)).ID == "s2" {
				want[typ][ring.Shard(s)] = true
			}
		}
	}
	moves := table.Moves(before, after)
	checkSorted(t, moves)
	got := map[string]map[ring.Shard]bool{"counter": {}, "cart": {}}
	for _, mv := range moves {
		if mv.From != (table.Owner{ID: "s2", Incarnation: "old"}) || mv.To != (table.Owner{ID: "s2", Incarnation: "new"}) {
			t.Fatalf("%s/%d: %s → %s, want s2/old → s2/new", mv.Type, mv.Shard, mv.From, mv.To)
		}
		got[mv.Type][mv.Shard] = true
	}
	for typ, shards := range want {
		if len(shards) == 0 {
			t.Fatalf("%s: s2 owned no shard; the test shows nothing", typ)
		}
		if len(got[typ]) != len(shards) {
			t.Errorf("%s: %d shards moved, s2 owned %d", typ, len(got[typ]), len(shards))
		}
		for s := range shards {
			if !got[typ][s] {
				t.Errorf("%s/%d of the restarted silo did not move", typ, s)
			}
		}
	}
}

func TestMovesWhenATypeGoes(t *testing.T) {
	before := mustNew(t, 1,
		silo("s1", "i1", "counter", "cart"),
		silo("s2", "i2", "counter", "cart"),
		silo("s3", "i3", "counter", "timer"))
	// No silo hosts cart any more; s3 stops hosting timer but keeps counter.
	after := mustNew(t, 2,
		silo("s1", "i1", "counter"),
		silo("s2", "i2", "counter"),
		silo("s3", "i3", "counter"))
	moves := table.Moves(before, after)
	checkSorted(t, moves)
	perType := map[string]int{}
	for _, mv := range moves {
		perType[mv.Type]++
		if mv.To != (table.Owner{}) {
			t.Fatalf("%s/%d moves to %s, want nobody", mv.Type, mv.Shard, mv.To)
		}
		if want := ownerIn(before, mv.Type, mv.Shard); mv.From != want || want.ID == "" {
			t.Fatalf("%s/%d moves from %s, want %s", mv.Type, mv.Shard, mv.From, want)
		}
	}
	want := map[string]int{"cart": ring.Shards, "timer": ring.Shards}
	if len(perType) != len(want) || perType["cart"] != want["cart"] || perType["timer"] != want["timer"] {
		t.Errorf("moves per type = %v, want %v", perType, want)
	}
}

func TestMovesWhenOneHostDropsAType(t *testing.T) {
	before := mustNew(t, 1, silo("s1", "i1", "cart"), silo("s2", "i2", "cart"), silo("s3", "i3", "cart"))
	after := mustNew(t, 2, silo("s1", "i1", "cart"), silo("s2", "i2"), silo("s3", "i3", "cart"))
	moves := table.Moves(before, after)
	if len(moves) == 0 {
		t.Fatal("no moves")
	}
	for _, mv := range moves {
		if mv.From.ID != "s2" || mv.To.ID == "" || mv.To.ID == "s2" {
			t.Fatalf("cart/%d: %s → %s, want from s2 to another host", mv.Shard, mv.From, mv.To)
		}
	}
}
