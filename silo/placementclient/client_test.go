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
