// Package service is a placement node's gRPC face: it serves the silos'
// streams and, while the node leads, drives the membership engine with them —
// heartbeats in, acknowledgements and rounds out, proposals into Raft and
// leadership checks before every acknowledgement. A node that does not lead
// answers a stream with the leader's address.
package service

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/granaryhq/granary/placement"
	"github.com/granaryhq/granary/placement/membership"
	"github.com/granaryhq/granary/placement/table"
	"github.com/granaryhq/granary/placement/wire"
	pb "github.com/granaryhq/granary/proto/placement"
)

// tickInterval is how often the engine's timers are looked at.
const tickInterval = 25 * time.Millisecond

// streamBuffer is how many messages may wait for a slow silo before its
// stream is closed.
const streamBuffer = 256

// Service implements the placement gRPC service on one node.
type Service struct {
	pb.UnimplementedPlacementServer

	node *placement.Node
	cfg  membership.Config
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	term    uint64
	engine  *membership.Engine // nil unless leading
	streams map[table.Owner]*siloStream
	// lastErr is the last failure to commit a change or check leadership
	// (a full disk under the Raft store shows here), for the status endpoint.
	lastErr   string
	lastErrAt time.Time
	onRound   func(membership.RoundStatus) // see ObserveRounds

	stop chan struct{}
	done chan struct{}
}

type siloStream struct {
	owner table.Owner
	out   chan *pb.PlacementMessage
	// closed is closed when the stream must end (slow, replaced or deposed).
	closed    chan struct{}
	closeOnce sync.Once
}

func (s *siloStream) close() { s.closeOnce.Do(func() { close(s.closed) }) }

// New starts the service's leadership loop on node.
func New(node *placement.Node, cfg membership.Config, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Service{node: node, cfg: cfg, log: logger, now: time.Now,
		streams: map[table.Owner]*siloStream{}, stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s
}

// ObserveRounds makes f be told of every dissemination round this node
// finishes as the leader (for metrics). f runs under the service's lock and
// must not call back into it.
func (s *Service) ObserveRounds(f func(membership.RoundStatus)) {
	s.mu.Lock()
	s.onRound = f
	s.mu.Unlock()
}

// Close stops the loop and ends every stream.
func (s *Service) Close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	s.engine = nil
	for _, st := range s.streams {
		st.close()
	}
}

func (s *Service) loop() {
	defer close(s.done)
	events, cancel := s.node.SubscribeLeadership()
	defer cancel()
	tick := time.NewTicker(tickInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			s.leadership(ev)
		case <-tick.C:
			s.mu.Lock()
			if s.engine != nil {
				s.engine.Tick(s.now())
				s.flushLocked()
			}
			s.mu.Unlock()
		}
	}
}

func (s *Service) leadership(ev placement.LeaderEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ev.Leader && (s.engine == nil || ev.Term != s.term) {
		// The election time counts as every member's last acknowledged
		// receipt. Raft's Since is on this node's clock.
		elected := ev.Since
		if elected.IsZero() || elected.After(s.now()) {
			elected = s.now()
		}
		s.term = ev.Term
		s.engine = membership.New(s.cfg, elected, s.node.Table())
		s.log.Info("leading placement: serving silos", "term", ev.Term)
		// Streams opened while this node was a follower were refused, so
		// none is open; silos find this node by probing.
		return
	}
	if !ev.Leader && s.engine != nil {
		s.log.Info("no longer the placement leader: closing silo streams", "term", ev.Term)
		s.engine = nil
		for _, st := range s.streams {
			st.close()
		}
	}
}

// flushLocked carries out what the engine wants done.
func (s *Service) flushLocked() {
	e := s.engine
	if e == nil {
		return
	}
	r := e.Ready()
	for _, m := range r.Messages {
		st := s.streams[m.To]
		if st == nil {
			continue
		}
		msg := toProto(m)
		select {
		case st.out <- msg:
		default:
			s.log.Warn("silo stream too slow; closing it", "silo", m.To.String())
			st.close()
		}
	}
	for _, p := range r.Proposals {
		go s.propose(e, p)
	}
	if s.onRound != nil {
		for _, rs := range r.Rounds {
			s.onRound(rs)
		}
	}
	if r.VerifyLeader {
		go s.verify(e, e.VerifyIssuedAt())
	}
}

func (s *Service) propose(e *membership.Engine, p membership.Proposal) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var t *table.Table
	var err error
	if len(p.Joins) > 0 || len(p.Removes) > 0 {
		b := placement.Batch{Joins: p.Joins}
		for _, o := range p.Removes {
			b.Removes = append(b.Removes, placement.MemberRef{ID: o.ID, Incarnation: o.Incarnation})
		}
		t, err = s.node.Apply(ctx, b)
	}
	if err == nil && p.JumpPast > 0 {
		t, err = s.node.Apply(ctx, placement.JumpVersion{Past: p.JumpPast})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.engine != e {
		return
	}
	if err != nil {
		s.log.Warn("committing a membership change failed; retrying", "err", err)
		s.lastErr, s.lastErrAt = "committing a membership change: "+err.Error(), s.now()
		e.ProposalFailed(s.now(), p)
	} else {
		for _, j := range p.Joins {
			s.log.Info("silo joined", "silo", j.ID, "incarnation", j.Incarnation, "types", j.Types, "version", t.Version)
		}
		for _, o := range p.Removes {
			s.log.Warn("silo removed", "silo", o.String(), "version", t.Version)
		}
		e.CommittedTable(s.now(), t)
	}
	s.flushLocked()
}

func (s *Service) verify(e *membership.Engine, issuedAt time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.node.VerifyLeader(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.engine != e {
		return
	}
	if err != nil {
		s.log.Warn("leadership check failed; acknowledging no heartbeat", "err", err)
		s.lastErr, s.lastErrAt = "checking leadership: "+err.Error(), s.now()
		e.VerifyFailed(s.now())
	} else {
		e.Verified(s.now(), issuedAt)
	}
	s.flushLocked()
}

func toProto(m membership.Message) *pb.PlacementMessage {
	switch m.Kind {
	case membership.MsgAck:
		return &pb.PlacementMessage{Msg: &pb.PlacementMessage_Ack{Ack: &pb.HeartbeatAck{Seq: m.Seq}}}
	case membership.MsgPhase:
		return &pb.PlacementMessage{Msg: &pb.PlacementMessage_Phase{Phase: &pb.RoundPhase{
			Round: m.Round, Phase: wire.PhaseToProto(m.Phase), Table: wire.TableToProto(m.Table)}}}
	case membership.MsgRemoved:
		return &pb.PlacementMessage{Msg: &pb.PlacementMessage_Removed{Removed: &pb.Removed{Reason: m.Reason}}}
	default:
		return &pb.PlacementMessage{Msg: &pb.PlacementMessage_Rejected{Rejected: &pb.Rejected{Reason: m.Reason}}}
	}
}

func (s *Service) notLeader() *pb.PlacementMessage {
	id, addr := s.node.Leader()
	return &pb.PlacementMessage{Msg: &pb.PlacementMessage_NotLeader{NotLeader: &pb.NotLeader{LeaderId: id, LeaderAddr: addr}}}
}

// Connect serves one silo's stream.
func (s *Service) Connect(stream pb.Placement_ConnectServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hb := first.GetHeartbeat()
	if hb == nil {
		return errors.New("placement: a stream must start with a heartbeat")
	}
	m := wire.MemberFromProto(hb.GetMember())
	owner := table.Owner{ID: m.ID, Incarnation: m.Incarnation}

	s.mu.Lock()
	if s.engine == nil {
		s.mu.Unlock()
		return stream.Send(s.notLeader())
	}
	st := &siloStream{owner: owner, out: make(chan *pb.PlacementMessage, streamBuffer), closed: make(chan struct{})}
	if old := s.streams[owner]; old != nil {
		old.close()
	}
	s.streams[owner] = st
	now := s.now()
	s.engine.Connected(now, owner)
	s.engine.Heartbeat(now, heartbeatFromProto(hb))
	s.flushLocked()
	s.mu.Unlock()

	defer func() {
		s.mu.Lock()
		if s.streams[owner] == st {
			delete(s.streams, owner)
			if s.engine != nil {
				s.engine.Disconnected(s.now(), owner)
				s.flushLocked()
			}
		}
		s.mu.Unlock()
		st.close()
	}()

	recvErr := make(chan error, 1)
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			s.handle(st, msg)
		}
	}()
	for {
		select {
		case msg := <-st.out:
			if err := stream.Send(msg); err != nil {
				return err
			}
		case <-st.closed:
			// Deposed, replaced or too slow: a deposed node names the leader.
			s.mu.Lock()
			leading := s.engine != nil
			s.mu.Unlock()
			if !leading {
				_ = stream.Send(s.notLeader())
			}
			return nil
		case err := <-recvErr:
			return err
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

func (s *Service) handle(st *siloStream, msg *pb.SiloMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.engine
	if e == nil || s.streams[st.owner] != st {
		return
	}
	now := s.now()
	switch m := msg.Msg.(type) {
	case *pb.SiloMessage_Heartbeat:
		hb := heartbeatFromProto(m.Heartbeat)
		if hb.Member.ID != st.owner.ID || hb.Member.Incarnation != st.owner.Incarnation {
			s.log.Warn("a stream changed its silo identity; ignoring the heartbeat", "stream", st.owner.String())
			return
		}
		e.Heartbeat(now, hb)
	case *pb.SiloMessage_PhaseAck:
		p, err := wire.PhaseFromProto(m.PhaseAck.GetPhase())
		if err != nil {
			return
		}
		e.PhaseAck(now, st.owner, m.PhaseAck.GetRound(), p)
	case *pb.SiloMessage_ClaimRefused:
		s.log.Warn("a silo's shard claim was refused by a newer record of this cluster; jumping the table version past it",
			"silo", st.owner.String(), "newer", m.ClaimRefused.GetNewerVersion(), "fence", m.ClaimRefused.GetFenceKey())
		e.ClaimRefused(now, m.ClaimRefused.GetNewerVersion())
	}
	s.flushLocked()
}

func heartbeatFromProto(hb *pb.Heartbeat) membership.Heartbeat {
	return membership.Heartbeat{Member: wire.MemberFromProto(hb.GetMember()), Seq: hb.GetSeq(),
		ProtocolVersion: hb.GetProtocolVersion(), TableVersion: hb.GetTableVersion(), Load: hb.GetLoad()}
}

// Status is what the status endpoint shows.
type Status struct {
	Node       placement.Status   `json:"node"`
	Membership *membership.Status `json:"membership,omitempty"`
	Streams    int                `json:"streams"`
	// LastError is the last failure to commit a membership change or to
	// check leadership, with its time; empty when there was none.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
}

// Status reports the node and, on the leader, the membership engine.
func (s *Service) Status() Status {
	st := Status{Node: s.node.Status()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.engine != nil {
		ms := s.engine.Status()
		st.Membership = &ms
	}
	st.Streams = len(s.streams)
	st.LastError, st.LastErrorAt = s.lastErr, s.lastErrAt
	return st
}
