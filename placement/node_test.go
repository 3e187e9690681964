package placement

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/granaryhq/granary/internal/testutil"
	"github.com/granaryhq/granary/placement/table"
)

// testLogger logs to the test log until the test ends.
func testLogger(tb testing.TB) *slog.Logger {
	w := &testLogWriter{tb: tb}
	tb.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testLogWriter struct {
	tb      testing.TB
	mu      sync.Mutex
	stopped bool
}

func (w *testLogWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.tb.Logf("%s", strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

func (w *testLogWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// cluster is a set of node configurations on loopback ports.
type cluster struct {
	tb      testing.TB
	logger  *slog.Logger
	configs map[string]Config
	peers   []Peer
}

func newCluster(tb testing.TB, logger *slog.Logger, ids ...string) *cluster {
	c := &cluster{tb: tb, logger: logger, configs: map[string]Config{}}
	for _, id := range ids {
		c.peers = append(c.peers, Peer{ID: id, RaftAddr: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(tb))})
	}
	root := tb.TempDir()
	for _, p := range c.peers {
		c.configs[p.ID] = Config{
			ID:       p.ID,
			RaftAddr: p.RaftAddr,
			GRPCAddr: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(tb)),
			DataDir:  filepath.Join(root, p.ID),
			Peers:    c.peers,
			Logger:   logger,
		}
	}
	return c
}

// open opens node id with its configuration changed by change, if given;
// the node is closed when the test ends.
func (c *cluster) open(id string, change func(*Config)) *Node {
	c.tb.Helper()
	cfg := c.configs[id]
	if change != nil {
		change(&cfg)
	}
	n, err := Open(cfg)
	if err != nil {
		c.tb.Fatalf("opening node %s: %v", id, err)
	}
	c.tb.Cleanup(func() { _ = n.Close() })
	return n
}

// waitLeader waits until exactly one of nodes reports leadership.
func waitLeader(tb testing.TB, nodes ...*Node) *Node {
	tb.Helper()
	var leader *Node
	testutil.Eventually(tb, 15*time.Second, "a leader", func() error {
		leader = nil
		for _, n := range nodes {
			if n.IsLeader() {
				if leader != nil {
					return fmt.Errorf("both %s and %s lead", leader.cfg.ID, n.cfg.ID)
				}
				leader = n
			}
		}
		if leader == nil {
			return errors.New("no node leads")
		}
		return nil
	})
	return leader
}

// applyOn applies cmd on n, retrying while leadership settles.
func applyOn(tb testing.TB, n *Node, cmd Command) *table.Table {
	tb.Helper()
	var t *table.Table
	testutil.Eventually(tb, 10*time.Second, fmt.Sprintf("%s to apply %T", n.cfg.ID, cmd), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		t, err = n.Apply(ctx, cmd)
		return err
	})
	return t
}

func joinOf(id, inc string, types ...string) Batch {
	return Batch{Joins: []table.Member{member(id, inc, types...)}}
}

var hexClusterID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestNodeSingleBootstrapAndReopen(t *testing.T) {
	c := newCluster(t, testLogger(t), "a")
	n := c.open("a", nil)
	events, cancel := n.SubscribeLeadership()
	defer cancel()
	waitLeader(t, n)

	id := n.ClusterID()
	if !hexClusterID.MatchString(id) {
		t.Fatalf("cluster ID %q, want 16 random bytes in hex", id)
	}
	if got := n.Table().ClusterID; got != id {
		t.Fatalf("the table's cluster ID %q differs from the node's %q", got, id)
	}
	if stored, err := readClusterID(c.configs["a"].DataDir); err != nil || stored != id {
		t.Fatalf("cluster-id file holds %q (%v), want %q", stored, err, id)
	}
	ev := nextLeaderEvent(t, events, true)
	if ev.Term == 0 || ev.Since.IsZero() {
		t.Errorf("leadership event %+v lacks its term or time", ev)
	}
	if lid, addr := n.Leader(); lid != "a" || addr != c.configs["a"].GRPCAddr {
		t.Errorf("Leader() = %q, %q", lid, addr)
	}
	if got := n.NodeAddr("a"); got != c.configs["a"].GRPCAddr {
		t.Errorf("committed gRPC address %q, want %q", got, c.configs["a"].GRPCAddr)
	}
	if err := n.VerifyLeader(context.Background()); err != nil {
		t.Errorf("VerifyLeader on the only node: %v", err)
	}

	tb, err := n.Apply(context.Background(), joinOf("s1", "i1", "counter"))
	if err != nil {
		t.Fatal(err)
	}
	if tb.Version != 1 || tb.ClusterID != id {
		t.Fatalf("table after the join: %q v%d", tb.ClusterID, tb.Version)
	}
	if _, ok := n.Table().Member("s1"); !ok || n.Table().Version != 1 {
		t.Fatalf("Table() after the join: v%d %+v", n.Table().Version, n.Table().Members)
	}
	st := n.Status()
	if st.ID != "a" || st.State != "Leader" || !st.Leading || st.LeaderID != "a" || st.ClusterID != id ||
		st.TableVersion != 1 || st.Members != 1 || st.Term == 0 || st.LastIndex < 3 || st.LeaderChanges == 0 ||
		FormatPeers(st.Servers) != FormatPeers(c.peers) {
		t.Errorf("Status() = %+v", st)
	}

	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	if ev, ok := <-events; !ok || ev.Leader {
		t.Fatalf("after Close the subscription gave %+v, %v; want a loss", ev, ok)
	}
	if _, ok := <-events; ok {
		t.Fatal("the subscription stays open after Close")
	}
	if _, err := n.Apply(context.Background(), joinOf("s2", "i2")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply after Close: %v, want ErrClosed", err)
	}
	select {
	case <-n.Done():
	default:
		t.Fatal("Done is open after Close")
	}

	// Reopened on the same data, without peers: it leads again with its state.
	n2 := c.open("a", func(cfg *Config) { cfg.Peers = nil })
	waitLeader(t, n2)
	if got := n2.ClusterID(); got != id {
		t.Fatalf("cluster ID after reopening %q, want %q", got, id)
	}
	testutil.Eventually(t, 5*time.Second, "the join to be replayed", func() error {
		tb := n2.Table()
		if _, ok := tb.Member("s1"); !ok || tb.Version != 1 || tb.ClusterID != id {
			return fmt.Errorf("table %q v%d %+v", tb.ClusterID, tb.Version, tb.Members)
		}
		return nil
	})
	tb, err = n2.Apply(context.Background(), joinOf("s2", "i2"))
	if err != nil || tb.Version != 2 {
		t.Fatalf("Apply after reopening: %v, %v", tb, err)
	}
	n2.Close()

	// The same peers as stored are accepted on a restart, as is the same cluster ID.
	n3 := c.open("a", func(cfg *Config) { cfg.ClusterID = id })
	waitLeader(t, n3)
}

// nextLeaderEvent waits for an event with Leader equal to leader.
func nextLeaderEvent(tb testing.TB, events <-chan LeaderEvent, leader bool) LeaderEvent {
	tb.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				tb.Fatal("the leadership subscription closed")
			}
			if ev.Leader == leader {
				return ev
			}
		case <-deadline:
			tb.Fatalf("no leadership event with Leader %v", leader)
		}
	}
}

func others(all []*Node, n *Node) []*Node {
	var out []*Node
	for _, o := range all {
		if o != n {
			out = append(out, o)
		}
	}
	return out
}

// failover closes leader and waits for one of rest to lead; it returns the
// new leader, the time until Raft made it leader, and the time until it
// reported leadership (its address and the cluster ID committed).
func failover(tb testing.TB, leader *Node, rest []*Node) (*Node, time.Duration, time.Duration) {
	tb.Helper()
	type gain struct {
		n  *Node
		ev LeaderEvent
	}
	gains := make(chan gain, len(rest))
	var cancels []func()
	for _, o := range rest {
		events, cancel := o.SubscribeLeadership()
		cancels = append(cancels, cancel)
		go func() {
			for ev := range events {
				if ev.Leader {
					gains <- gain{o, ev}
					return
				}
			}
		}()
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	start := time.Now()
	if err := leader.Close(); err != nil {
		tb.Fatalf("closing the leader: %v", err)
	}
	select {
	case g := <-gains:
		return g.n, g.ev.Since.Sub(start), time.Since(start)
	case <-time.After(15 * time.Second):
		tb.Fatal("no new leader within 15s of closing the old one")
	}
	return nil, 0, 0
}

func TestNodeThreeNodeCluster(t *testing.T) {
	c := newCluster(t, testLogger(t), "a", "b", "c")
	nodes := []*Node{c.open("a", nil), c.open("b", nil), c.open("c", nil)}
	leader := waitLeader(t, nodes...)

	// Each node made its own random cluster ID; the first leader's won.
	id := leader.ClusterID()
	testutil.Eventually(t, 10*time.Second, "every node to adopt the cluster ID", func() error {
		for _, n := range nodes {
			if got := n.ClusterID(); got != id || n.Table().ClusterID != id {
				return fmt.Errorf("%s has %q / %q, the leader %q", n.cfg.ID, got, n.Table().ClusterID, id)
			}
			if stored, _ := readClusterID(n.cfg.DataDir); stored != id {
				return fmt.Errorf("%s stored %q", n.cfg.ID, stored)
			}
		}
		return nil
	})

	applyOn(t, leader, joinOf("s1", "i1", "counter"))
	waitTable(t, nodes, 1, "s1")

	// A follower refuses, naming the leader's gRPC address.
	testutil.Eventually(t, 10*time.Second, "a follower to name the leader", func() error {
		leader := waitLeader(t, nodes...)
		for _, f := range others(nodes, leader) {
			_, err := f.Apply(context.Background(), joinOf("s9", "i9"))
			var nl *NotLeaderError
			if !errors.Is(err, ErrNotLeader) || !errors.As(err, &nl) {
				return fmt.Errorf("Apply on follower %s: %v, want ErrNotLeader", f.cfg.ID, err)
			}
			if nl.LeaderID != leader.cfg.ID || nl.LeaderGRPCAddr != leader.cfg.GRPCAddr ||
				!strings.Contains(err.Error(), leader.cfg.GRPCAddr) {
				return fmt.Errorf("follower %s: %v; the leader is %s at %s", f.cfg.ID, err, leader.cfg.ID, leader.cfg.GRPCAddr)
			}
			if lid, addr := f.Leader(); lid != leader.cfg.ID || addr != leader.cfg.GRPCAddr {
				return fmt.Errorf("follower %s: Leader() = %q, %q", f.cfg.ID, lid, addr)
			}
			if err := f.VerifyLeader(context.Background()); !errors.Is(err, ErrNotLeader) {
				return fmt.Errorf("VerifyLeader on follower %s: %v", f.cfg.ID, err)
			}
		}
		return nil
	})
	if _, ok := leader.Table().Member("s9"); ok {
		t.Fatal("a refused Apply on a follower reached the table")
	}

	// Kill the leader: another takes over and applies.
	leader = waitLeader(t, nodes...)
	old := leader
	rest := others(nodes, old)
	newLeader, raftGap, readyGap := failover(t, old, rest)
	t.Logf("failover: Raft elected %s %v after the leader closed; it reported leadership after %v", newLeader.cfg.ID, raftGap, readyGap)
	if raftGap > 5*time.Second {
		t.Errorf("failover took %v", raftGap)
	}
	if err := newLeader.VerifyLeader(context.Background()); err != nil {
		t.Fatalf("VerifyLeader on the new leader: %v", err)
	}
	if got := newLeader.NodeAddr(newLeader.cfg.ID); got != newLeader.cfg.GRPCAddr {
		t.Errorf("the new leader committed gRPC address %q, want %q", got, newLeader.cfg.GRPCAddr)
	}
	applyOn(t, newLeader, joinOf("s2", "i2", "counter"))
	waitTable(t, rest, 2, "s1", "s2")
	for _, o := range rest {
		if o != newLeader {
			if lid, addr := o.Leader(); lid != newLeader.cfg.ID || addr != newLeader.cfg.GRPCAddr {
				t.Errorf("the remaining follower %s names leader %q at %q", o.cfg.ID, lid, addr)
			}
		}
	}

	// The old leader rejoins on its data and catches up.
	back := c.open(old.cfg.ID, func(cfg *Config) { cfg.Peers = nil })
	nodes = append(rest, back)
	waitTable(t, []*Node{back}, 2, "s1", "s2")
	if back.ClusterID() != id {
		t.Errorf("the rejoined node's cluster ID %q, want %q", back.ClusterID(), id)
	}
	applyOn(t, waitLeader(t, nodes...), JumpVersion{Past: 10})
	waitTable(t, nodes, 11, "s1", "s2")
}

// waitTable waits until every node's table has the version and exactly the members.
func waitTable(tb testing.TB, nodes []*Node, version uint64, members ...string) {
	tb.Helper()
	testutil.Eventually(tb, 10*time.Second, fmt.Sprintf("table v%d with %v on every node", version, members), func() error {
		for _, n := range nodes {
			t := n.Table()
			var ids []string
			for _, m := range t.Members {
				ids = append(ids, m.ID)
			}
			if t.Version != version || strings.Join(ids, ",") != strings.Join(members, ",") {
				return fmt.Errorf("%s has v%d %v", n.cfg.ID, t.Version, ids)
			}
		}
		return nil
	})
}

func TestNodeRefusesBadStarts(t *testing.T) {
	logger := testLogger(t)
	c := newCluster(t, logger, "a")
	n := c.open("a", func(cfg *Config) { cfg.ClusterID = "alpha" })
	waitLeader(t, n)

	// A second node on the same data directory.
	second := c.configs["a"]
	second.RaftAddr = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	second.Peers = nil
	if _, err := Open(second); err == nil || !strings.Contains(err.Error(), "another placement node") {
		t.Errorf("opening a data directory in use: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	dir := c.configs["a"].DataDir
	self := c.peers[0]
	otherPeers := []Peer{self, {"b", "127.0.0.1:1"}, {"c", "127.0.0.1:2"}}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   []string
		is     error
	}{
		{"peers differ", func(cfg *Config) { cfg.Peers = otherPeers },
			[]string{FormatPeers(otherPeers), FormatPeers(c.peers), dir}, nil},
		{"cluster ID differs", func(cfg *Config) { cfg.ClusterID = "beta" },
			[]string{`"alpha"`, `"beta"`, filepath.Join(dir, clusterIDFile)}, ErrClusterIDMismatch},
		{"first start without peers", func(cfg *Config) { cfg.DataDir = filepath.Join(t.TempDir(), "fresh"); cfg.Peers = nil },
			[]string{"--peers", "no Raft state"}, nil},
		{"first start with two peers", func(cfg *Config) {
			cfg.DataDir = filepath.Join(t.TempDir(), "fresh")
			cfg.Peers = []Peer{self, {"b", "127.0.0.1:1"}}
		}, []string{"1, 3 or 5", "not 2"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := c.configs["a"]
			tc.change(&cfg)
			n, err := Open(cfg)
			if err == nil {
				n.Close()
				t.Fatal("Open succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v does not wrap %v", err, tc.is)
			}
		})
	}
	// The refusals left the node able to start, and its port free.
	n = c.open("a", func(cfg *Config) { cfg.Peers = nil })
	waitLeader(t, n)
	if n.ClusterID() != "alpha" {
		t.Errorf("cluster ID %q after the refusals", n.ClusterID())
	}
}

func TestNodeSnapshotAndReopen(t *testing.T) {
	c := newCluster(t, testLogger(t), "a")
	n := c.open("a", func(cfg *Config) { cfg.ClusterID = "snap" })
	waitLeader(t, n)
	for i := range 5 {
		applyOn(t, n, joinOf(fmt.Sprintf("s%d", i), "i", "t"))
	}
	applyOn(t, n, Batch{Removes: []MemberRef{{ID: "s0", Incarnation: "i"}}})
	if err := n.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	applyOn(t, n, joinOf("late", "i")) // in the log after the snapshot
	want := n.Table()
	if want.Version != 7 {
		t.Fatalf("version %d before the reopen, want 7", want.Version)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	// The snapshot on disk holds the state as of the snapshot.
	snaps, err := raft.NewFileSnapshotStore(c.configs["a"].DataDir, 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	list, err := snaps.List()
	if err != nil || len(list) != 1 {
		t.Fatalf("snapshots on disk: %v, %v", list, err)
	}
	_, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	fromSnap := newTestFSM()
	if err := fromSnap.Restore(rc); err != nil {
		t.Fatal(err)
	}
	if tb := fromSnap.Table(); tb.Version != 6 || len(tb.Members) != 4 || tb.ClusterID != "snap" {
		t.Errorf("the snapshot holds %q v%d with %d members, want snap v6 with 4", tb.ClusterID, tb.Version, len(tb.Members))
	}

	n = c.open("a", nil)
	waitLeader(t, n)
	testutil.Eventually(t, 5*time.Second, "the state to be restored", func() error {
		if got := n.Table(); got.Version != want.Version || !sameMembers(got, want) || got.ClusterID != "snap" {
			return fmt.Errorf("table %q v%d %+v, want v%d %+v", got.ClusterID, got.Version, got.Members, want.Version, want.Members)
		}
		return nil
	})
	if got := n.NodeAddr("a"); got != c.configs["a"].GRPCAddr {
		t.Errorf("the node's gRPC address after the reopen: %q", got)
	}
}

func sameMembers(a, b *table.Table) bool {
	if len(a.Members) != len(b.Members) {
		return false
	}
	for i := range a.Members {
		if !a.Members[i].Equal(b.Members[i]) {
			return false
		}
	}
	return true
}

func TestNodeClusterIDConflictStopsTheMisfit(t *testing.T) {
	c := newCluster(t, testLogger(t), "a", "b", "c")
	a := c.open("a", func(cfg *Config) { cfg.ClusterID = "alpha" })
	b := c.open("b", func(cfg *Config) { cfg.ClusterID = "alpha" })
	g := c.open("c", func(cfg *Config) { cfg.ClusterID = "gamma" })
	stopped := func(n *Node) bool {
		select {
		case <-n.Done():
			return true
		default:
			return false
		}
	}
	// Whichever ID the first leader commits, the nodes of the other stop.
	testutil.Eventually(t, 15*time.Second, "the nodes of the losing cluster ID to stop", func() error {
		switch {
		case stopped(g) && !stopped(a) && !stopped(b):
			return checkMismatch(g, "alpha", "gamma")
		case stopped(a) && stopped(b) && !stopped(g):
			if err := checkMismatch(a, "gamma", "alpha"); err != nil {
				return err
			}
			return checkMismatch(b, "gamma", "alpha")
		}
		return fmt.Errorf("stopped: a %v, b %v, c %v", stopped(a), stopped(b), stopped(g))
	})
	for _, n := range []*Node{a, b, g} {
		if stopped(n) {
			if _, err := n.Apply(context.Background(), joinOf("s", "i")); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrClusterIDMismatch) {
				t.Errorf("Apply on stopped %s: %v", n.cfg.ID, err)
			}
		}
	}
}

func checkMismatch(n *Node, committed, own string) error {
	err := n.Err()
	if !errors.Is(err, ErrClusterIDMismatch) || !strings.Contains(err.Error(), `"`+committed+`"`) ||
		!strings.Contains(err.Error(), `"`+own+`"`) {
		return fmt.Errorf("%s stopped with %v, want a mismatch of %s and %s", n.cfg.ID, err, committed, own)
	}
	return nil
}

func TestNodeApplyHonoursContext(t *testing.T) {
	c := newCluster(t, testLogger(t), "a")
	n := c.open("a", nil)
	waitLeader(t, n)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := n.Apply(ctx, joinOf("s", "i")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply with a cancelled context: %v", err)
	}
	if err := n.VerifyLeader(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("VerifyLeader with a cancelled context: %v", err)
	}
	if _, err := n.Apply(context.Background(), Batch{Joins: []table.Member{{ID: "bad"}}}); err == nil ||
		!strings.Contains(err.Error(), "incarnation") {
		t.Fatalf("Apply of a refused batch: %v", err)
	}
	if v := n.Table().Version; v != 0 {
		t.Fatalf("version %d after only refused commands", v)
	}
}

// BenchmarkLeaderFailover measures how long a three-node cluster is without
// a leader after the leader closes: ms-to-elected is until Raft makes
// another node leader, ms-to-ready until that node has committed its
// address and reports leadership. Each iteration reopens the closed node
// (untimed).
func BenchmarkLeaderFailover(b *testing.B) {
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("PLACEMENT_BENCH_LOG") != "" {
		logger = testLogger(b)
	}
	c := newCluster(b, logger, "a", "b", "c")
	nodes := map[string]*Node{}
	for id := range c.configs {
		nodes[id] = c.open(id, nil)
	}
	list := func() []*Node {
		var out []*Node
		for _, n := range nodes {
			out = append(out, n)
		}
		return out
	}
	var elected, ready, worst time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		leader := waitLeader(b, list()...)
		applyOn(b, leader, joinOf("s", fmt.Sprintf("i%d", i)))
		b.StartTimer()
		_, e, r := failover(b, leader, others(list(), leader))
		b.StopTimer()
		elected += e
		ready += r
		worst = max(worst, r)
		back := c.open(leader.cfg.ID, func(cfg *Config) { cfg.Peers = nil })
		nodes[leader.cfg.ID] = back
		waitTable(b, []*Node{back}, uint64(i+1), "s")
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(elected.Microseconds())/1000/float64(b.N), "ms-to-elected")
	b.ReportMetric(float64(ready.Microseconds())/1000/float64(b.N), "ms-to-ready")
	b.ReportMetric(float64(worst.Microseconds())/1000, "ms-worst-ready")
}
