// Package placementclient is a silo's side of the placement protocol: one
// gRPC stream to the placement leader, a heartbeat every interval, the lease
// those heartbeats earn, and the delivery of dissemination rounds to the silo.
//
// The lease runs from the send time of the last acknowledged heartbeat for
// the lease period, measured on the boot-time clock (which keeps counting
// through a suspend). Without a fresh lease the silo must start no turn and
// fire no reminder; Lease tells it whether it has one.
package placementclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/granaryhq/granary/internal/clock"
	"github.com/granaryhq/granary/placement/membership"
	"github.com/granaryhq/granary/placement/table"
	"github.com/granaryhq/granary/placement/wire"
	pb "github.com/granaryhq/granary/proto/placement"
)

// Handler receives what the leader tells the silo. Calls are made one at a
// time, in order, from a goroutine of the client's; Phase may take as long as
// it needs (heartbeats keep flowing meanwhile).
type Handler interface {
	// Phase applies phase p of round for t; the client acknowledges the
	// phase when Phase returns nil.
	Phase(ctx context.Context, round uint64, p membership.Phase, t *table.Table) error
	// LeaderLost says the stream to the leader broke: locks taken in the
	// leader's rounds are dropped (a lock never outlives its leader).
	LeaderLost()
	// Removed says this process was removed from the cluster.
	Removed(reason string)
	// Rejected says placement refuses this process (it never became a member).
	Rejected(reason string)
}

// Config configures a Client.
type Config struct {
	// Addrs are the gRPC addresses of the placement nodes.
	Addrs []string
	// NodeAddrs, optional, maps a placement node's ID to the address to
	// reach it at; a follower's pointer to the leader is followed there
	// instead of to the address the leader advertises (a NAT, a proxy).
	NodeAddrs map[string]string
	// Member describes this silo process now; called for every heartbeat.
	Member func() table.Member
	// Load is the number of active actors, reported in heartbeats; optional.
	Load func() int64
	// TableVersion is the newest table the silo adopted; optional.
	TableVersion func() uint64
	Handler      Handler
	// ProbeTimeout bounds the wait for a placement node's first answer on
	// a new stream (a leader's acknowledgement, a follower's pointer to the
	// leader): a node that is frozen, or whose link holds every byte,
	// accepts the connection and says nothing. Default DefaultProbeTimeout.
	ProbeTimeout time.Duration
	// HeartbeatInterval defaults to 250 ms; LeasePeriod to 2 s.
	HeartbeatInterval time.Duration
	LeasePeriod       time.Duration
	// Points is the ring's virtual points per silo (0: the default).
	Points int
	Logger *slog.Logger
	// Now is the lease clock; nil means clock.Boottime.
	Now func() time.Duration
	// Credentials secure the connections to placement (mutual TLS); nil
	// means plaintext.
	Credentials credentials.TransportCredentials
}

// Client keeps the stream to the leader. Make one with New and call Run.
type Client struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex
	leaseUntil time.Duration // on cfg.Now's clock
	leaseLog   []leaseSpan   // the latest spans over which the lease held, oldest first
	sent       map[uint64]time.Duration
	seq        uint64
	lastAck    uint64
	leader     string
	connected  bool
	lastErr    string
	refusals   chan *pb.ClaimRefused
}

// DefaultProbeTimeout is the default ProbeTimeout: well under the
// faulty-host timeout, so that a silo whose leader froze tries every other
// node in time to reach the new leader before it removes the silo.
const DefaultProbeTimeout = time.Second

// New makes a client.
func New(cfg Config) *Client {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 250 * time.Millisecond
	}
	if cfg.LeasePeriod <= 0 {
		cfg.LeasePeriod = membership.DefaultLeasePeriod
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = DefaultProbeTimeout
	}
	if cfg.Now == nil {
		cfg.Now = clock.Boottime
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Client{cfg: cfg, log: cfg.Logger, sent: map[uint64]time.Duration{}, refusals: make(chan *pb.ClaimRefused, 16)}
}

// Lease reports whether the silo holds a lease now, and how long it has left.
func (c *Client) Lease() (valid bool, left time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	left = c.leaseUntil - c.cfg.Now()
	return left > 0, max(left, 0)
}

// ReportClaimRefused tells the leader a shard claim was refused by a record
// of this cluster at a newer version.
func (c *Client) ReportClaimRefused(newer uint64, fenceKey string) {
	select {
	case c.refusals <- &pb.ClaimRefused{NewerVersion: newer, FenceKey: fenceKey}:
	default: // one report is enough; the leader jumps past the newest it hears
	}
}

// leaseSpan is one unbroken span of the lease on the lease clock: from the
// acknowledgement that gave a lapsed (or never held) lease back, to the
// expiry the latest acknowledgement set.
type leaseSpan struct{ from, until time.Duration }

// leaseLogLength bounds the spans the client remembers.
const leaseLogLength = 64

// LeaseSpan is one unbroken span of the lease in wall-clock Unix
// nanoseconds. Until is when the lease ran or runs out: in the future while
// it holds.
type LeaseSpan struct {
	From  int64 `json:"from"`
	Until int64 `json:"until"`
}

// Status is the client's state for the metadata endpoint.
type Status struct {
	Leader    string        `json:"leader"`
	Connected bool          `json:"connected"`
	Lease     bool          `json:"lease"`
	LeaseLeft time.Duration `json:"leaseLeftNanos"`
	LastError string        `json:"lastError,omitempty"`
	// LeaseSpans are the latest spans over which the lease held, oldest
	// first, converted from the lease clock to the wall clock as of now (a
	// wall-clock step since moves them with it).
	LeaseSpans []LeaseSpan `json:"leaseSpans,omitempty"`
}

// Status reports the client's state.
func (c *Client) Status() Status {
	valid, left := c.Lease()
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{Leader: c.leader, Connected: c.connected, Lease: valid, LeaseLeft: left, LastError: c.lastErr}
	if len(c.leaseLog) > 0 {
		offset := time.Now().UnixNano() - int64(c.cfg.Now())
		st.LeaseSpans = make([]LeaseSpan, len(c.leaseLog))
		for i, sp := range c.leaseLog {
			st.LeaseSpans[i] = LeaseSpan{From: offset + int64(sp.from), Until: offset + int64(sp.until)}
		}
	}
	return st
}

// Run keeps a stream to the leader until ctx is done, moving to the leader a
// follower names and probing every node when the leader stops answering.
func (c *Client) Run(ctx context.Context) error {
	if len(c.cfg.Addrs) == 0 {
		return errors.New("placementclient: no placement addresses")
	}
	next := 0
	var hint string
	waiting := false
	for ctx.Err() == nil {
		addr := hint
		if addr == "" {
			addr = c.cfg.Addrs[next%len(c.cfg.Addrs)]
			next++
		}
		hint = ""
		redirect, connected, err := c.session(ctx, addr)
		if ctx.Err() != nil {
			return nil
		}
		if connected {
			// Each outage is reported once, at its start.
			waiting = false
		}
		if redirect != "" {
			hint = redirect
			continue
		}
		c.mu.Lock()
		c.lastErr = fmt.Sprintf("%s: %v", addr, err)
		c.mu.Unlock()
		if connected {
			c.log.Warn("lost the placement leader; looking for it", "addr", addr, "err", err)
			waiting = true
		} else if !waiting {
			c.log.Warn("placement unreachable; waiting for it (no turns start without a lease)", "addr", addr, "err", err)
			waiting = true
		} else {
			c.log.Debug("placement node did not serve", "addr", addr, "err", err)
		}
		if next%len(c.cfg.Addrs) == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(c.cfg.HeartbeatInterval):
			}
		}
	}
	return nil
}

// session runs one stream to addr. It returns the leader's address when addr
// is a follower that knows it, and whether it served as the leader.
func (c *Client) session(ctx context.Context, addr string) (redirect string, connected bool, err error) {
	redirect, err = c.stream(ctx, addr, &connected)
	return redirect, connected, err
}

func (c *Client) stream(ctx context.Context, addr string, connected *bool) (redirect string, err error) {
	creds := c.cfg.Credentials
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return "", fmt.Errorf("dialing: %w", err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Until the node first answers, the stream lives ProbeTimeout at most.
	var silent atomic.Bool
	probe := time.AfterFunc(c.cfg.ProbeTimeout, func() { silent.Store(true); cancel() })
	defer probe.Stop()
	noAnswer := func(err error) error {
		if silent.Load() && ctx.Err() == nil {
			return fmt.Errorf("no answer within %v", c.cfg.ProbeTimeout)
		}
		return err
	}
	stream, err := pb.NewPlacementClient(conn).Connect(sctx)
	if err != nil {
		return "", noAnswer(fmt.Errorf("opening the stream: %w", err))
	}
	var sendMu sync.Mutex
	send := func(m *pb.SiloMessage) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	if err := send(c.heartbeat()); err != nil {
		return "", noAnswer(fmt.Errorf("sending: %w", err))
	}
	phases := make(chan *pb.RoundPhase, 64)
	phaseDone := make(chan struct{})
	recvDone := make(chan struct{})
	defer func() {
		// The receiver sends on phases: it must be gone before phases
		// is closed.
		cancel()
		<-recvDone
		close(phases)
		<-phaseDone
	}()
	go c.applyPhases(sctx, phases, send, phaseDone)

	recvErr := make(chan error, 1)
	first := make(chan struct{})
	var redirectTo string
	go func() {
		defer close(recvDone)
		once := sync.OnceFunc(func() { close(first) })
		defer once()
		for {
			msg, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if nl, ok := msg.Msg.(*pb.PlacementMessage_NotLeader); ok {
				// Written before first is closed (deferred), so the
				// session reads it safely after either channel.
				redirectTo = nl.NotLeader.GetLeaderAddr()
				if addr, ok := c.cfg.NodeAddrs[nl.NotLeader.GetLeaderId()]; ok {
					redirectTo = addr
				}
				recvErr <- errNotLeader
				return
			}
			once()
			switch m := msg.Msg.(type) {
			case *pb.PlacementMessage_Ack:
				c.acked(m.Ack.GetSeq())
			case *pb.PlacementMessage_Phase:
				select {
				case phases <- m.Phase:
				case <-sctx.Done():
					recvErr <- sctx.Err()
					return
				}
			case *pb.PlacementMessage_Removed:
				c.log.Error("placement removed this silo from the cluster", "reason", m.Removed.GetReason())
				c.cfg.Handler.Removed(m.Removed.GetReason())
			case *pb.PlacementMessage_Rejected:
				c.log.Error("placement rejected this silo", "reason", m.Rejected.GetReason())
				c.cfg.Handler.Rejected(m.Rejected.GetReason())
			}
		}
	}()

	select {
	case <-first:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if !probe.Stop() {
		return "", noAnswer(errors.New("the stream ended"))
	}
	// A stream that ended at once (a follower's NotLeader) has already
	// reported why: the error is sent before first is closed.
	select {
	case err := <-recvErr:
		if errors.Is(err, errNotLeader) {
			return notLeader(addr, redirectTo)
		}
		return "", err
	default:
	}
	c.mu.Lock()
	c.leader, c.connected, c.lastErr = addr, true, ""
	c.mu.Unlock()
	*connected = true
	defer func() {
		c.mu.Lock()
		c.connected = false
		c.mu.Unlock()
		c.cfg.Handler.LeaderLost()
	}()
	c.log.Info("connected to the placement leader", "addr", addr)

	tick := time.NewTicker(c.cfg.HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case err := <-recvErr:
			if errors.Is(err, errNotLeader) {
				return notLeader(addr, redirectTo)
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("the leader closed the stream")
			}
			return "", err
		case r := <-c.refusals:
			if err := send(&pb.SiloMessage{Msg: &pb.SiloMessage_ClaimRefused{ClaimRefused: r}}); err != nil {
				return "", err
			}
		case <-tick.C:
			if c.missedAcks() > 2 {
				return "", errors.New("two heartbeats went unacknowledged; looking for the leader")
			}
			if err := send(c.heartbeat()); err != nil {
				return "", fmt.Errorf("sending: %w", err)
			}
		}
	}
}

var errNotLeader = errors.New("not the leader")

// notLeader is a session's outcome when addr is a follower: the leader it
// names, or an error when it knows none yet (an election is under way).
func notLeader(addr, leader string) (string, error) {
	if leader == "" || leader == addr {
		return "", fmt.Errorf("%s is not the leader and knows no leader yet", addr)
	}
	return leader, nil
}

func (c *Client) applyPhases(ctx context.Context, phases <-chan *pb.RoundPhase, send func(*pb.SiloMessage) error, done chan<- struct{}) {
	defer close(done)
	var last *table.Table
	for rp := range phases {
		if ctx.Err() != nil {
			continue // drain
		}
		p, err := wire.PhaseFromProto(rp.GetPhase())
		if err != nil {
			c.log.Warn("placement sent a bad round phase", "err", err)
			continue
		}
		// The three phases of a round carry one table: convert it once.
		pt := rp.GetTable()
		if last == nil || last.Version != pt.GetVersion() || last.ClusterID != pt.GetClusterId() {
			t, err := wire.TableFromProto(pt, c.cfg.Points)
			if err != nil {
				c.log.Warn("placement sent a bad table", "err", err)
				continue
			}
			last = t
		}
		t := last
		if err := c.cfg.Handler.Phase(ctx, rp.GetRound(), p, t); err != nil {
			c.log.Warn("applying a round phase failed; not acknowledging it", "round", rp.GetRound(), "phase", p, "err", err)
			continue
		}
		_ = send(&pb.SiloMessage{Msg: &pb.SiloMessage_PhaseAck{PhaseAck: &pb.PhaseAck{
			Round: rp.GetRound(), Phase: rp.GetPhase(), TableVersion: t.Version}}})
	}
}

func (c *Client) heartbeat() *pb.SiloMessage {
	m := c.cfg.Member()
	var load int64
	if c.cfg.Load != nil {
		load = c.cfg.Load()
	}
	var tv uint64
	if c.cfg.TableVersion != nil {
		tv = c.cfg.TableVersion()
	}
	c.mu.Lock()
	c.seq++
	seq := c.seq
	now := c.cfg.Now()
	c.sent[seq] = now
	// Keep the send times of the heartbeats that may still be acknowledged.
	delete(c.sent, seq-64)
	c.mu.Unlock()
	return &pb.SiloMessage{Msg: &pb.SiloMessage_Heartbeat{Heartbeat: &pb.Heartbeat{
		Member: wire.MemberToProto(m), Seq: seq, ProtocolVersion: membership.ProtocolVersion,
		TableVersion: tv, Load: load, SentNanos: int64(now)}}}
}

func (c *Client) acked(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sentAt, ok := c.sent[seq]
	if !ok {
		return
	}
	if seq > c.lastAck {
		c.lastAck = seq
	}
	until := sentAt + c.cfg.LeasePeriod
	if until <= c.leaseUntil {
		return
	}
	now := c.cfg.Now()
	lapsed := c.leaseUntil <= now
	c.leaseUntil = until
	if until <= now {
		return // acknowledged too late to give a lease
	}
	if lapsed { // the lease starts again
		if len(c.leaseLog) == leaseLogLength {
			c.leaseLog = append(c.leaseLog[:0], c.leaseLog[1:]...)
		}
		c.leaseLog = append(c.leaseLog, leaseSpan{from: now})
	}
	c.leaseLog[len(c.leaseLog)-1].until = until
}

func (c *Client) missedAcks() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq - c.lastAck
}
