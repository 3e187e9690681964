package service_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/granaryhq/granary/internal/testutil"
	"github.com/granaryhq/granary/placement"
	"github.com/granaryhq/granary/placement/membership"
	"github.com/granaryhq/granary/placement/service"
	"github.com/granaryhq/granary/placement/table"
	pb "github.com/granaryhq/granary/proto/placement"
	"github.com/granaryhq/granary/silo/placementclient"
)

// node is one placement node with its gRPC service on loopback.
type node struct {
	id, raftAddr, grpcAddr, dir string
	n                           *placement.Node
	svc                         *service.Service
	srv                         *grpc.Server
}

func (nd *node) start(t testing.TB, peers []placement.Peer) {
	t.Helper()
	n, err := placement.Open(placement.Config{ID: nd.id, RaftAddr: nd.raftAddr, GRPCAddr: nd.grpcAddr,
		DataDir: nd.dir, Peers: peers, Logger: quiet()})
	if err != nil {
		t.Fatalf("opening %s: %v", nd.id, err)
	}
	nd.n = n
	nd.svc = service.New(n, membership.Config{}, quiet())
	lis, err := net.Listen("tcp", nd.grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	nd.srv = grpc.NewServer()
	pb.RegisterPlacementServer(nd.srv, nd.svc)
	go nd.srv.Serve(lis)
}

func (nd *node) stop() {
	if nd.n == nil {
		return
	}
	nd.srv.Stop()
	nd.svc.Close()
	nd.n.Close()
	nd.n = nil
}

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{}

func (testWriter) Write(p []byte) (int, error) { return len(p), nil }

func startCluster(t testing.TB, size int) []*node {
	t.Helper()
	var nodes []*node
	var peers []placement.Peer
	for i := range size {
		nd := &node{id: fmt.Sprintf("p%d", i),
			raftAddr: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)),
			grpcAddr: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)),
			dir:      t.TempDir()}
		nodes = append(nodes, nd)
		peers = append(peers, placement.Peer{ID: nd.id, RaftAddr: nd.raftAddr})
	}
	for _, nd := range nodes {
		nd.start(t, peers)
	}
	t.Cleanup(func() {
		for _, nd := range nodes {
			nd.stop()
		}
	})
	return nodes
}

// recorder is a silo's Handler that records what it is told.
type recorder struct {
	mu      sync.Mutex
	phases  []string
	version uint64
	lost    int
	removed string
}

func (r *recorder) Phase(_ context.Context, round uint64, p membership.Phase, t *table.Table) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.phases = append(r.phases, fmt.Sprintf("%d:%s:v%d", round, p, t.Version))
	if p == membership.PhaseUnlock {
		r.version = t.Version
	}
	return nil
}
func (r *recorder) LeaderLost() { r.mu.Lock(); r.lost++; r.mu.Unlock() }
func (r *recorder) Removed(reason string) {
	r.mu.Lock()
	r.removed = reason
	r.mu.Unlock()
}
func (r *recorder) Rejected(reason string) { r.Removed(reason) }

func (r *recorder) unlocked() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.version
}

type siloProc struct {
	c   *placementclient.Client
	rec *recorder
	m   table.Member
}

func startSilo(t testing.TB, ctx context.Context, id string, nodes []*node) *siloProc {
	var addrs []string
	for _, nd := range nodes {
		addrs = append(addrs, nd.grpcAddr)
	}
	s := &siloProc{rec: &recorder{}, m: table.Member{ID: id, Incarnation: "i-" + id,
		InternalAddr: "127.0.0.1:1" + id, HTTPAddr: "127.0.0.1:2" + id, Types: []string{"Counter"}}}
	s.c = placementclient.New(placementclient.Config{Addrs: addrs, Member: func() table.Member { return s.m },
		Handler: s.rec, Logger: quiet()})
	go s.c.Run(ctx)
	return s
}

func waitFor(t testing.TB, what string, limit time.Duration, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func leader(nodes []*node) *node {
	for _, nd := range nodes {
		if nd.n != nil && nd.n.IsLeader() {
			return nd
		}
	}
	return nil
}

func TestSilosJoinGetLeasesAndRounds(t *testing.T) {
	nodes := startCluster(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := startSilo(t, ctx, "a", nodes)
	b := startSilo(t, ctx, "b", nodes)
	waitFor(t, "both silos in one disseminated table", 10*time.Second, func() bool {
		t := nodes[0].n.Table()
		return len(t.Members) == 2 && a.rec.unlocked() == t.Version && b.rec.unlocked() == t.Version
	})
	for _, s := range []*siloProc{a, b} {
		if ok, _ := s.c.Lease(); !ok {
			t.Fatalf("silo %s has no lease", s.m.ID)
		}
	}
	// Placement goes away: the lease lapses within the lease period, and
	// the silos are told the leader was lost.
	nodes[0].stop()
	stopped := time.Now()
	waitFor(t, "lease lapse", membership.DefaultLeasePeriod+time.Second, func() bool {
		ok, _ := a.c.Lease()
		return !ok
	})
	if gap := time.Since(stopped); gap > membership.DefaultLeasePeriod+300*time.Millisecond {
		t.Fatalf("lease outlived placement by %v", gap)
	}
}

func TestLeaderFailoverKeepsMembersAndLeases(t *testing.T) {
	nodes := startCluster(t, 3)
	waitFor(t, "a leader", 10*time.Second, func() bool { return leader(nodes) != nil })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	silos := []*siloProc{startSilo(t, ctx, "a", nodes), startSilo(t, ctx, "b", nodes), startSilo(t, ctx, "c", nodes)}
	var version uint64
	waitFor(t, "three silos in one disseminated table", 15*time.Second, func() bool {
		l := leader(nodes)
		if l == nil {
			return false
		}
		tbl := l.n.Table()
		for _, s := range silos {
			if s.rec.unlocked() != tbl.Version || len(tbl.Members) != 3 {
				return false
			}
		}
		version = tbl.Version
		return true
	})
	old := leader(nodes)
	old.stop()
	killed := time.Now()
	// Every silo gets a fresh acknowledgement from the new leader before
	// its lease runs out: a placement failover suspends nothing.
	gap := waitFor(t, "a new leader acknowledging every silo", 5*time.Second, func() bool {
		l := leader(nodes)
		if l == nil {
			return false
		}
		st := l.svc.Status()
		if st.Membership == nil {
			return false
		}
		acked := 0
		for _, ss := range st.Membership.Silos {
			if ss.LastAckedReceipt.After(killed) {
				acked++
			}
		}
		return acked == 3
	})
	t.Logf("placement leader failover: every silo acknowledged by the new leader %v after the old one stopped", gap.Round(time.Millisecond))
	for _, s := range silos {
		if ok, left := s.c.Lease(); !ok {
			t.Fatalf("silo %s lost its lease across the failover (left %v)", s.m.ID, left)
		}
	}
	// Nobody was removed: the table did not change.
	time.Sleep(membership.DefaultFaultyHostTimeout + 500*time.Millisecond)
	l := leader(nodes)
	if l == nil {
		t.Fatal("no leader")
	}
	if tbl := l.n.Table(); tbl.Version != version || len(tbl.Members) != 3 {
		t.Fatalf("after the failover the table is v%d with %d members, want v%d with 3", tbl.Version, len(tbl.Members), version)
	}
	for _, s := range silos {
		if ok, _ := s.c.Lease(); !ok {
			t.Fatalf("silo %s has no lease after the failover", s.m.ID)
		}
	}
}

func TestSilentSiloIsRemovedAndToldSo(t *testing.T) {
	nodes := startCluster(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := startSilo(t, ctx, "a", nodes)
	bctx, bcancel := context.WithCancel(ctx)
	startSilo(t, bctx, "b", nodes)
	waitFor(t, "two members", 10*time.Second, func() bool { return len(nodes[0].n.Table().Members) == 2 })
	bcancel() // b dies
	died := time.Now()
	waitFor(t, "b removed", membership.DefaultFaultyHostTimeout+3*time.Second, func() bool {
		_, ok := nodes[0].n.Table().Member("b")
		return !ok
	})
	// The earliest a dead member goes is a missed phase of a round under
	// way (the new leader's first round may still wait to unlock), after
	// the phase timeout; otherwise after the faulty-host timeout.
	earliest := min(membership.DefaultPhaseTimeout, membership.DefaultFaultyHostTimeout)
	if took := time.Since(died); took < earliest-500*time.Millisecond {
		t.Fatalf("b removed %v after it died, before either timeout", took)
	} else {
		t.Logf("b removed %v after it died", took.Round(time.Millisecond))
	}
	waitFor(t, "a sees the table without b", 5*time.Second, func() bool {
		return a.rec.unlocked() == nodes[0].n.Table().Version
	})
}
