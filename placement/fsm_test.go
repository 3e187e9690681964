package placement

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/granaryhq/granary/placement/table"
)

func member(id, inc string, types ...string) table.Member {
	return table.Member{ID: id, Incarnation: inc, InternalAddr: id + ":9000", HTTPAddr: id + ":3500", Types: types}
}

// applyTo encodes cmd and applies it to f as Raft would.
func applyTo(t *testing.T, f *FSM, cmd Command) Result {
	t.Helper()
	data, err := EncodeCommand(cmd)
	if err != nil {
		t.Fatalf("encoding %#v: %v", cmd, err)
	}
	return applyRaw(t, f, data)
}

func applyRaw(t *testing.T, f *FSM, data []byte) Result {
	t.Helper()
	res, ok := f.Apply(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: data}).(Result)
	if !ok {
		t.Fatalf("Apply returned %T, want Result", res)
	}
	return res
}

func mustApply(t *testing.T, f *FSM, cmd Command) *table.Table {
	t.Helper()
	res := applyTo(t, f, cmd)
	if res.Err != nil {
		t.Fatalf("applying %#v: %v", cmd, res.Err)
	}
	if res.Table != f.Table() {
		t.Fatalf("applying %#v returned a table other than the FSM's current one", cmd)
	}
	return res.Table
}

func newTestFSM() *FSM { return NewFSM(slog.New(slog.DiscardHandler)) }

// stateOf returns f's whole state as its snapshot encodes it.
func stateOf(t *testing.T, f *FSM) snapshotData {
	t.Helper()
	var sink bufferSink
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	var d snapshotData
	if err := json.Unmarshal(sink.Bytes(), &d); err != nil {
		t.Fatalf("decoding the snapshot: %v", err)
	}
	return d
}

// bufferSink is a raft.SnapshotSink in memory.
type bufferSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *bufferSink) ID() string    { return "test" }
func (s *bufferSink) Cancel() error { s.cancelled = true; return nil }
func (s *bufferSink) Close() error  { s.closed = true; return nil }

func TestCommandRoundTrip(t *testing.T) {
	for _, cmd := range []Command{
		SetClusterID{ID: "c1"},
		Batch{Joins: []table.Member{member("s1", "i1", "counter")}, Removes: []MemberRef{{ID: "s2", Incarnation: "i2"}}},
		Batch{},
		JumpVersion{Past: math.MaxUint64 - 1},
		SetNodeAddr{RaftID: "p1", GRPCAddr: "127.0.0.1:7100"},
	} {
		data, err := EncodeCommand(cmd)
		if err != nil {
			t.Fatalf("encode %#v: %v", cmd, err)
		}
		if !bytes.HasPrefix(data, []byte(`{"v":1,"op":"`+cmd.op()+`"`)) {
			t.Errorf("encoding of %#v is %s, want the versioned envelope first", cmd, data)
		}
		got, err := DecodeCommand(data)
		if err != nil {
			t.Fatalf("decode %s: %v", data, err)
		}
		if !reflect.DeepEqual(got, cmd) {
			t.Errorf("round trip of %#v gave %#v", cmd, got)
		}
	}
	if _, err := EncodeCommand(nil); err == nil {
		t.Error("encoding a nil command succeeded")
	}
}

func TestFSMSetClusterID(t *testing.T) {
	f := newTestFSM()
	var seen []string
	f.onClusterID = func(id string) { seen = append(seen, id) }
	if got := f.ClusterID(); got != "" {
		t.Fatalf("a new FSM has cluster ID %q", got)
	}
	if res := applyTo(t, f, SetClusterID{}); res.Err == nil {
		t.Fatal("an empty cluster ID was accepted")
	}
	tb := mustApply(t, f, SetClusterID{ID: "alpha"})
	if tb.ClusterID != "alpha" || f.ClusterID() != "alpha" {
		t.Fatalf("cluster ID %q / %q after setting alpha", tb.ClusterID, f.ClusterID())
	}
	before := f.Table()
	if tb := mustApply(t, f, SetClusterID{ID: "alpha"}); tb != before {
		t.Error("setting the same cluster ID again made a new table")
	}
	res := applyTo(t, f, SetClusterID{ID: "beta"})
	if res.Err == nil || !strings.Contains(res.Err.Error(), "alpha") || !strings.Contains(res.Err.Error(), "beta") {
		t.Fatalf("setting another cluster ID: err %v, want an error naming both", res.Err)
	}
	if f.ClusterID() != "alpha" || f.Table() != before {
		t.Fatalf("a refused SetClusterID changed the state: %q", f.ClusterID())
	}
	if tb.Version != 0 {
		t.Errorf("SetClusterID bumped the version to %d", tb.Version)
	}
	if !reflect.DeepEqual(seen, []string{"alpha", "alpha"}) {
		t.Errorf("the cluster ID hook saw %q, want alpha for each accepted command", seen)
	}
}

func TestFSMBatch(t *testing.T) {
	f := newTestFSM()
	mustApply(t, f, SetClusterID{ID: "c"})
	s1 := member("s1", "i1", "b", "a", "a")
	s2 := member("s2", "i2", "a")
	join := Batch{Joins: []table.Member{s1, s2}}

	tb := mustApply(t, f, join)
	if tb.Version != 1 || len(tb.Members) != 2 {
		t.Fatalf("after the first join: version %d, %d members; want 1, 2", tb.Version, len(tb.Members))
	}
	got, _ := tb.Member("s1")
	if !got.Equal(s1.Normalize()) || !reflect.DeepEqual(got.Types, []string{"a", "b"}) {
		t.Errorf("stored s1 = %+v, want the normalized join", got)
	}
	if tb.ClusterID != "c" || !tb.Hosted("a") || !tb.Hosted("b") {
		t.Errorf("table %q hosts a: %v, b: %v", tb.ClusterID, tb.Hosted("a"), tb.Hosted("b"))
	}

	// The same batch again, as after a lost leadership: nothing changes.
	if tb := mustApply(t, f, join); tb.Version != 1 {
		t.Errorf("a repeated batch moved the version to %d", tb.Version)
	}
	// A join equal to the stored member except for list order is the same.
	if tb := mustApply(t, f, Batch{Joins: []table.Member{member("s1", "i1", "a", "b")}}); tb.Version != 1 {
		t.Errorf("a join identical after normalizing moved the version to %d", tb.Version)
	}
	// A changed member is replaced.
	tb = mustApply(t, f, Batch{Joins: []table.Member{member("s2", "i2", "a", "c")}})
	if m, _ := tb.Member("s2"); tb.Version != 2 || !tb.Hosted("c") || len(m.Types) != 2 {
		t.Errorf("after changing s2's types: version %d, s2 %+v", tb.Version, m)
	}
	// A remove naming another incarnation is a no-op.
	if tb := mustApply(t, f, Batch{Removes: []MemberRef{{ID: "s1", Incarnation: "old"}, {ID: "nobody", Incarnation: "x"}}}); tb.Version != 2 || len(tb.Members) != 2 {
		t.Errorf("removes of other incarnations: version %d, %d members", tb.Version, len(tb.Members))
	}
	// A restart: the old incarnation leaves and the new one joins, once.
	restart := Batch{Removes: []MemberRef{{ID: "s1", Incarnation: "i1"}}, Joins: []table.Member{member("s1", "i1b", "a")}}
	tb = mustApply(t, f, restart)
	if m, _ := tb.Member("s1"); tb.Version != 3 || m.Incarnation != "i1b" {
		t.Errorf("after the restart batch: version %d, s1 %+v", tb.Version, m)
	}
	if tb := mustApply(t, f, restart); tb.Version != 3 {
		t.Errorf("the repeated restart batch moved the version to %d", tb.Version)
	}
	// A remove with the right incarnation removes.
	tb = mustApply(t, f, Batch{Removes: []MemberRef{{ID: "s2", Incarnation: "i2"}}})
	if _, ok := tb.Member("s2"); ok || tb.Version != 4 || tb.Hosted("c") {
		t.Errorf("after removing s2: version %d, still there %v", tb.Version, ok)
	}
	// An empty batch changes nothing.
	if tb := mustApply(t, f, Batch{}); tb.Version != 4 {
		t.Errorf("an empty batch moved the version to %d", tb.Version)
	}
}

func TestFSMBatchRefusedWhole(t *testing.T) {
	for _, tc := range []struct {
		name  string
		batch Batch
		want  string
	}{
		{"invalid join", Batch{Joins: []table.Member{member("ok", "i", "a"), {ID: "bad", InternalAddr: "x"}}}, "incarnation"},
		{"join twice", Batch{Joins: []table.Member{member("s", "i1"), member("s", "i2")}}, "twice"},
		{"bad type", Batch{Joins: []table.Member{member("s", "i", "a/b")}}, "actor type"},
		{"remove without incarnation", Batch{Joins: []table.Member{member("ok", "i")}, Removes: []MemberRef{{ID: "x"}}}, "incarnation"},
		{"remove without ID", Batch{Removes: []MemberRef{{Incarnation: "i"}}}, "ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newTestFSM()
			mustApply(t, f, Batch{Joins: []table.Member{member("x", "ix")}})
			before := stateOf(t, f)
			res := applyTo(t, f, tc.batch)
			if res.Err == nil || !strings.Contains(res.Err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", res.Err, tc.want)
			}
			if res.Table != nil {
				t.Error("a refused batch returned a table")
			}
			if after := stateOf(t, f); !reflect.DeepEqual(before, after) {
				t.Errorf("a refused batch changed the state:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
}

func TestFSMJumpVersion(t *testing.T) {
	f := newTestFSM()
	for i := range 3 {
		mustApply(t, f, Batch{Joins: []table.Member{member("s", "i"+string(rune('0'+i)))}})
	}
	if v := f.Table().Version; v != 3 {
		t.Fatalf("version %d after three changing batches", v)
	}
	for _, tc := range []struct {
		past, want uint64
	}{
		{0, 3},     // already past
		{2, 3},     // already past
		{3, 4},     // moves to past+1
		{3, 4},     // idempotent
		{100, 101}, // jumps
		{50, 101},  // never back
	} {
		if tb := mustApply(t, f, JumpVersion{Past: tc.past}); tb.Version != tc.want {
			t.Errorf("JumpVersion{%d}: version %d, want %d", tc.past, tb.Version, tc.want)
		}
	}
	if res := applyTo(t, f, JumpVersion{Past: math.MaxUint64}); res.Err == nil {
		t.Error("JumpVersion past the largest version succeeded")
	}
	if tb := mustApply(t, f, Batch{Joins: []table.Member{member("t", "i")}}); tb.Version != 102 {
		t.Errorf("a batch after the jump gave version %d, want 102", tb.Version)
	}
	if len(f.Table().Members) != 2 {
		t.Errorf("JumpVersion changed the members: %+v", f.Table().Members)
	}
}

func TestFSMSetNodeAddr(t *testing.T) {
	f := newTestFSM()
	if got := f.NodeAddr("p1"); got != "" {
		t.Fatalf("NodeAddr of an unknown node is %q", got)
	}
	mustApply(t, f, SetNodeAddr{RaftID: "p1", GRPCAddr: "10.0.0.1:7100"})
	mustApply(t, f, SetNodeAddr{RaftID: "p2", GRPCAddr: "10.0.0.2:7100"})
	mustApply(t, f, SetNodeAddr{RaftID: "p1", GRPCAddr: "10.0.0.9:7100"})
	if got := f.NodeAddr("p1"); got != "10.0.0.9:7100" {
		t.Errorf("NodeAddr(p1) = %q after moving it", got)
	}
	if got := f.NodeAddr("p2"); got != "10.0.0.2:7100" {
		t.Errorf("NodeAddr(p2) = %q", got)
	}
	for _, bad := range []SetNodeAddr{{RaftID: "p3"}, {GRPCAddr: "x:1"}} {
		if res := applyTo(t, f, bad); res.Err == nil {
			t.Errorf("%+v was accepted", bad)
		}
	}
	if v := f.Table().Version; v != 0 {
		t.Errorf("SetNodeAddr moved the table version to %d", v)
	}
}

func TestFSMBadCommands(t *testing.T) {
	for _, tc := range []struct {
		name, data, want string
	}{
		{"not JSON", `hello`, "envelope"},
		{"empty", ``, "envelope"},
		{"unknown version", `{"v":2,"op":"batch","body":{}}`, "version 2"},
		{"no version", `{"op":"batch","body":{}}`, "version 0"},
		{"unknown op", `{"v":1,"op":"dropTable","body":{}}`, `"dropTable"`},
		{"no body", `{"v":1,"op":"jumpVersion"}`, "no body"},
		{"unknown field", `{"v":1,"op":"jumpVersion","body":{"past":1,"future":2}}`, "future"},
		{"unknown envelope field", `{"v":1,"op":"jumpVersion","body":{"past":1},"x":1}`, `"x"`},
		{"wrong type", `{"v":1,"op":"jumpVersion","body":{"past":"one"}}`, "past"},
		{"trailing data", `{"v":1,"op":"jumpVersion","body":{"past":1}} {}`, "trailing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newTestFSM()
			mustApply(t, f, Batch{Joins: []table.Member{member("s", "i")}})
			before := stateOf(t, f)
			res := applyRaw(t, f, []byte(tc.data))
			if res.Err == nil || !strings.Contains(res.Err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %s", res.Err, tc.want)
			}
			if after := stateOf(t, f); !reflect.DeepEqual(before, after) {
				t.Errorf("a bad command changed the state")
			}
		})
	}
}

// populated returns an FSM with some of everything.
func populated(t *testing.T) *FSM {
	f := newTestFSM()
	mustApply(t, f, SetClusterID{ID: "alpha"})
	mustApply(t, f, SetNodeAddr{RaftID: "p1", GRPCAddr: "10.0.0.1:7100"})
	mustApply(t, f, Batch{Joins: []table.Member{member("s1", "i1", "a", "b"), member("s2", "i2", "b")}})
	s3 := member("s3", "i3", "a")
	s3.AppIDs = []string{"app2", "app1"}
	mustApply(t, f, Batch{Joins: []table.Member{s3}, Removes: []MemberRef{{ID: "s2", Incarnation: "i2"}}})
	mustApply(t, f, JumpVersion{Past: 40})
	return f
}

func TestFSMSnapshotRestore(t *testing.T) {
	f := populated(t)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Changes after the snapshot was taken are not in it.
	mustApply(t, f, Batch{Joins: []table.Member{member("late", "i")}})
	var sink bufferSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("Persist left the sink closed=%v cancelled=%v, want closed", sink.closed, sink.cancelled)
	}

	g := newTestFSM()
	var restoredID string
	g.onClusterID = func(id string) { restoredID = id }
	// Restore replaces what g held; it does not merge.
	mustApply(t, g, SetClusterID{ID: "other"})
	mustApply(t, g, SetNodeAddr{RaftID: "p9", GRPCAddr: "x:1"})
	mustApply(t, g, Batch{Joins: []table.Member{member("gone", "i")}})
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	want := populated(t)
	if got, w := stateOf(t, g), stateOf(t, want); !reflect.DeepEqual(got, w) {
		t.Fatalf("restored state\n%+v\nwant\n%+v", got, w)
	}
	tb := g.Table()
	if tb.ClusterID != "alpha" || tb.Version != 41 || len(tb.Members) != 2 {
		t.Fatalf("restored table %q v%d with %d members, want alpha v41 with 2", tb.ClusterID, tb.Version, len(tb.Members))
	}
	if _, ok := tb.Member("gone"); ok {
		t.Error("a member of the state before the restore survived it")
	}
	if g.NodeAddr("p9") != "" || g.NodeAddr("p1") != "10.0.0.1:7100" {
		t.Errorf("node addresses after restore: p9 %q, p1 %q", g.NodeAddr("p9"), g.NodeAddr("p1"))
	}
	if m, _ := tb.Member("s3"); !reflect.DeepEqual(m.AppIDs, []string{"app1", "app2"}) {
		t.Errorf("restored s3 = %+v", m)
	}
	if restoredID != "alpha" {
		t.Errorf("the cluster ID hook saw %q after the restore", restoredID)
	}
	// The restored FSM goes on like the original.
	if a, b := mustApply(t, g, JumpVersion{Past: 41}), mustApply(t, want, JumpVersion{Past: 41}); a.Version != b.Version {
		t.Errorf("after the restore the versions part: %d vs %d", a.Version, b.Version)
	}
}

func TestFSMRestoreRefusesBadSnapshots(t *testing.T) {
	for _, tc := range []struct{ name, data string }{
		{"not JSON", `{`},
		{"unknown version", `{"v":2,"clusterId":"c","version":1,"members":[],"nodeAddrs":{}}`},
		{"invalid member", `{"v":1,"clusterId":"c","version":1,"members":[{"id":"s"}],"nodeAddrs":{}}`},
		{"duplicate member", `{"v":1,"clusterId":"c","version":1,"members":[` +
			`{"id":"s","incarnation":"i","internalAddr":"a"},{"id":"s","incarnation":"j","internalAddr":"a"}],"nodeAddrs":{}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := populated(t)
			before := stateOf(t, f)
			if err := f.Restore(io.NopCloser(strings.NewReader(tc.data))); err == nil {
				t.Fatal("Restore succeeded")
			}
			if after := stateOf(t, f); !reflect.DeepEqual(before, after) {
				t.Error("a refused restore changed the state")
			}
		})
	}
}

func TestFSMReadsDuringApply(t *testing.T) {
	f := newTestFSM()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			var last uint64
			for {
				select {
				case <-stop:
					return
				default:
				}
				tb := f.Table()
				if tb.Version < last {
					errs <- errors.New("the version went backwards")
					return
				}
				if len(tb.Members) != 1 && tb.Version > 0 {
					errs <- errors.New("a table with other than one member")
					return
				}
				last = tb.Version
				_ = f.NodeAddr("p1")
				_ = f.ClusterID()
			}
		})
	}
	for i := range 200 {
		inc := "i" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		mustApply(t, f, Batch{Removes: []MemberRef{{ID: "s", Incarnation: f.incarnationOf("s")}}, Joins: []table.Member{member("s", inc)}})
		mustApply(t, f, SetNodeAddr{RaftID: "p1", GRPCAddr: inc})
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if v := f.Table().Version; v != 200 {
		t.Errorf("version %d after 200 changing batches", v)
	}
}

// incarnationOf returns the stored incarnation of member id, "-" if none.
func (f *FSM) incarnationOf(id string) string {
	if m, ok := f.Table().Member(id); ok {
		return m.Incarnation
	}
	return "-"
}
