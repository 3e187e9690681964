package placementclient

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/granaryhq/granary/placement/membership"
	"github.com/granaryhq/granary/placement/table"
	pb "github.com/granaryhq/granary/proto/placement"
)

// floodingLeader acknowledges the first heartbeat, sends a burst of round
// phases and ends the stream, over and over.
type floodingLeader struct {
	pb.UnimplementedPlacementServer
	sessions atomic.Int32
}

func (l *floodingLeader) Connect(stream pb.Placement_ConnectServer) error {
	l.sessions.Add(1)
	hb, err := stream.Recv()
	if err != nil {
		return err
	}
	if err := stream.Send(&pb.PlacementMessage{Msg: &pb.PlacementMessage_Ack{Ack: &pb.HeartbeatAck{Seq: hb.GetHeartbeat().GetSeq()}}}); err != nil {
		return err
	}
	tbl := &pb.Table{ClusterId: "c", Version: 1, Members: []*pb.Member{hb.GetHeartbeat().GetMember()}}
	for range 200 {
		if err := stream.Send(&pb.PlacementMessage{Msg: &pb.PlacementMessage_Phase{Phase: &pb.RoundPhase{Round: 1, Phase: pb.Phase_PHASE_LOCK, Table: tbl}}}); err != nil {
			return err
		}
	}
	return nil // the stream ends with phases still queued at the silo
}

type slowHandler struct{ phases atomic.Int32 }

func (h *slowHandler) Phase(ctx context.Context, _ uint64, _ membership.Phase, _ *table.Table) error {
	h.phases.Add(1)
	select {
	case <-time.After(time.Millisecond):
	case <-ctx.Done():
	}
	return nil
}
func (*slowHandler) LeaderLost()     {}
func (*slowHandler) Removed(string)  {}
func (*slowHandler) Rejected(string) {}

// TestSessionEndingWithPhasesQueuedDoesNotPanic: a stream that ends while
// round phases wait to be applied once made the receiver send on a closed
// channel.
func TestSessionEndingWithPhasesQueuedDoesNotPanic(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	leader := &floodingLeader{}
	pb.RegisterPlacementServer(srv, leader)
	go srv.Serve(lis)
	defer srv.Stop()
	h := &slowHandler{}
	c := New(Config{Addrs: []string{lis.Addr().String()}, Handler: h, HeartbeatInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Member: func() table.Member {
			return table.Member{ID: "s1", Incarnation: "i1", InternalAddr: "127.0.0.1:1", Types: []string{"T"}}
		}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.Run(ctx)
	if n := leader.sessions.Load(); n < 5 {
		t.Fatalf("only %d sessions in 2 s", n)
	}
	if h.phases.Load() == 0 {
		t.Fatal("no phase was applied")
	}
}

func TestLeaseRunsFromTheSendTimeOfTheAcknowledgedHeartbeat(t *testing.T) {
	var now atomic.Int64
	c := New(Config{Addrs: []string{"x"}, Handler: &slowHandler{}, LeasePeriod: 2 * time.Second,
		Now:    func() time.Duration { return time.Duration(now.Load()) },
		Member: func() table.Member { return table.Member{ID: "s1", Incarnation: "i1", InternalAddr: "h:1"} }})
	now.Store(int64(10 * time.Second))
	c.heartbeat() // seq 1 sent at 10 s
	now.Store(int64(11 * time.Second))
	c.heartbeat() // seq 2 sent at 11 s
	if ok, _ := c.Lease(); ok {
		t.Fatal("a lease before any acknowledgement")
	}
	c.acked(1)
	now.Store(int64(11900 * time.Millisecond))
	if ok, left := c.Lease(); !ok || left != 100*time.Millisecond {
		t.Fatalf("lease %v with %v left; want 100ms left (10 s + 2 s - 11.9 s)", ok, left)
	}
	c.acked(7) // never sent: ignored
	now.Store(int64(12100 * time.Millisecond))
	if ok, _ := c.Lease(); ok {
		t.Fatal("the lease outlived its heartbeat's send time + the lease period")
	}
	c.acked(2)
	if ok, _ := c.Lease(); !ok {
		t.Fatal("the acknowledgement of seq 2 did not extend the lease")
	}
}

func TestLeaseSpansRecordEachUnbrokenHold(t *testing.T) {
	var now atomic.Int64
	c := New(Config{Addrs: []string{"x"}, Handler: &slowHandler{}, LeasePeriod: 2 * time.Second,
		Now:    func() time.Duration { return time.Duration(now.Load()) },
		Member: func() table.Member { return table.Member{ID: "s1", Incarnation: "i1", InternalAddr: "h:1"} }})
	at := func(d time.Duration) { now.Store(int64(d)) }
	at(10 * time.Second)
	c.heartbeat() // seq 1 sent at 10 s
	at(10500 * time.Millisecond)
	c.acked(1)    // held from 10.5 s until 12 s
	c.heartbeat() // seq 2 sent at 10.5 s
	at(11 * time.Second)
	c.acked(2)    // extended until 12.5 s
	c.heartbeat() // seq 3 sent at 11 s
	at(13500 * time.Millisecond)
	c.acked(3)    // until 13 s: already over, no lease
	c.heartbeat() // seq 4 sent at 13.5 s
	at(14 * time.Second)
	c.acked(4) // held again from 14 s until 15.5 s

	spans := c.Status().LeaseSpans
	if len(spans) != 2 {
		t.Fatalf("spans %+v; want two", spans)
	}
	offset := spans[0].From - int64(10500*time.Millisecond)
	want := []LeaseSpan{{From: 10500, Until: 12500}, {From: 14000, Until: 15500}}
	for i, w := range want {
		got := LeaseSpan{From: (spans[i].From - offset) / 1e6, Until: (spans[i].Until - offset) / 1e6}
		if got != w {
			t.Errorf("span %d: %+v ms; want %+v", i, got, w)
		}
	}
	if wall := time.Now().UnixNano(); spans[1].Until < wall-int64(time.Minute) || spans[1].Until > wall+int64(time.Minute) {
		t.Errorf("span converted to %d, not near the wall clock %d", spans[1].Until, wall)
	}

	for i := range leaseLogLength + 5 { // the log stays bounded, keeping the newest
		at(time.Duration(20+3*i) * time.Second)
		c.heartbeat()
		c.acked(c.seq)
	}
	if n := len(c.Status().LeaseSpans); n != leaseLogLength {
		t.Fatalf("%d spans kept; want %d", n, leaseLogLength)
	}
}

// pointingFollower answers every stream with NotLeader naming leader p2 at
// an address that reaches nothing.
type pointingFollower struct {
	pb.UnimplementedPlacementServer
}

func (pointingFollower) Connect(stream pb.Placement_ConnectServer) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	return stream.Send(&pb.PlacementMessage{Msg: &pb.PlacementMessage_NotLeader{NotLeader: &pb.NotLeader{LeaderId: "p2", LeaderAddr: "127.0.0.1:1"}}})
}

func serve(t *testing.T, srv pb.PlacementServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	pb.RegisterPlacementServer(g, srv)
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	return ln.Addr().String()
}

// TestFollowsTheLeaderToTheAddressGivenForItsID: with NodeAddrs, a
// follower's pointer to the leader leads to the address given for the
// leader's ID, not to the one the leader advertises.
func TestFollowsTheLeaderToTheAddressGivenForItsID(t *testing.T) {
	follower := serve(t, pointingFollower{})
	leader := &floodingLeader{}
	leaderAddr := serve(t, leader)
	c := New(Config{Addrs: []string{follower}, NodeAddrs: map[string]string{"p2": leaderAddr},
		Handler: &slowHandler{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Member: func() table.Member { return table.Member{ID: "s1", Incarnation: "i1", InternalAddr: "h:1"} }})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go c.Run(ctx)
	for leader.sessions.Load() == 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if leader.sessions.Load() == 0 {
		t.Fatal("the client never reached the leader at the address given for its ID")
	}
}

// TestProbeMovesOnFromANodeThatNeverAnswers: a frozen placement node
// accepts the TCP connection (the kernel does) and then says nothing. The
// client once waited on it until it woke, long after the new leader had
// removed the silo for silence; it must give up on it within the probe
// timeout and try the next node.
func TestProbeMovesOnFromANodeThatNeverAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accept, read and never answer
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	leader := &floodingLeader{}
	c := New(Config{Addrs: []string{ln.Addr().String(), serve(t, leader)},
		Handler: &slowHandler{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Member: func() table.Member { return table.Member{ID: "s1", Incarnation: "i1", InternalAddr: "h:1"} }})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go c.Run(ctx)
	start := time.Now()
	for leader.sessions.Load() == 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if leader.sessions.Load() == 0 {
		t.Fatal("the client never left the node that does not answer")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("reached the leader after %v; the probe timeout is %v", took, time.Second)
	}
}
