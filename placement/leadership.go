package placement

// Leadership: taking it up (the node leads only once its address and the
// cluster ID are committed), reporting it to subscribers, and checking it.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// NotLeaderError is the error of a call that only the leader serves, made
// on a node that is not the leader.
type NotLeaderError struct {
	// LeaderID and LeaderGRPCAddr name the leader as this node knows it;
	// either is empty when it is not known (an election may be under way,
	// or the new leader's address is not committed yet).
	LeaderID       string
	LeaderGRPCAddr string
	// Cause is Raft's error, if any. raft.ErrLeadershipLost means the
	// command may or may not have been committed.
	Cause error
}

func (e *NotLeaderError) Error() string {
	var b strings.Builder
	b.WriteString(ErrNotLeader.Error())
	switch {
	case e.LeaderID == "":
		b.WriteString(": no leader is known")
	case e.LeaderGRPCAddr == "":
		b.WriteString(": the leader is " + e.LeaderID + ", its gRPC address is not known yet")
	default:
		b.WriteString(": the leader is " + e.LeaderID + " at " + e.LeaderGRPCAddr)
	}
	if e.Cause != nil {
		b.WriteString(" (" + e.Cause.Error() + ")")
	}
	return b.String()
}

func (e *NotLeaderError) Unwrap() []error {
	if e.Cause == nil {
		return []error{ErrNotLeader}
	}
	return []error{ErrNotLeader, e.Cause}
}

// LeaderEvent reports that this node gained or lost leadership.
type LeaderEvent struct {
	// Leader is true when the node has become the leader, and has
	// committed its gRPC address and the cluster ID; false when it is not
	// the leader (any more).
	Leader bool
	// Term is the Raft term of the leadership gained or lost; 0 before the
	// node has led.
	Term uint64
	// Since is when Raft made the node leader (Leader true), or when the
	// node saw it was no longer the leader; zero before the node has led.
	Since time.Time
}

// watchLeadership follows Raft's leadership changes: on gaining leadership
// it commits the node's gRPC address and the cluster ID, then reports it.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	leaderCh := n.raft.LeaderCh()
	for {
		select {
		case <-n.stop:
			return
		case gained := <-leaderCh:
			// Raft keeps only the latest change for us, so a loss may
			// hide between two gains: a new gain ends any earlier one.
			n.setLeading(false, 0, time.Time{})
			if !gained {
				continue
			}
			since := n.cfg.Clock.Now()
			term := n.raft.CurrentTerm()
			if n.takeUpLeadership(term) {
				n.setLeading(true, term, since)
			}
		}
	}
}

// takeUpLeadership prepares this new leader of term, retrying while it
// leads that term; it reports whether leadership may be reported.
func (n *Node) takeUpLeadership(term uint64) bool {
	for {
		if n.raft.State() != raft.Leader || n.raft.CurrentTerm() != term {
			return false
		}
		err := n.prepareLeadership()
		if err == nil {
			return true
		}
		if n.Err() != nil {
			return false
		}
		n.logger.Warn("placement: taking up leadership", "term", term, "error", err)
		t := n.cfg.Clock.NewTimer(leaderSetupRetry)
		select {
		case <-n.stop:
			t.Stop()
			return false
		case <-t.C():
		}
	}
}

// prepareLeadership waits until the FSM holds every earlier entry, then
// commits this node's gRPC address and the cluster ID where needed.
func (n *Node) prepareLeadership() error {
	if err := n.raft.Barrier(leaderSetupTimeout).Error(); err != nil {
		return fmt.Errorf("waiting for earlier entries: %w", err)
	}
	if n.fsm.NodeAddr(n.cfg.ID) != n.cfg.GRPCAddr {
		if _, err := n.commit(SetNodeAddr{RaftID: n.cfg.ID, GRPCAddr: n.cfg.GRPCAddr}, leaderSetupTimeout); err != nil {
			return err
		}
	}
	if n.fsm.ClusterID() == "" {
		n.mu.Lock()
		id := n.clusterID
		if id == "" {
			id = n.proposal
		}
		n.mu.Unlock()
		if _, err := n.commit(SetClusterID{ID: id}, leaderSetupTimeout); err != nil {
			return err
		}
		n.logger.Info("placement: committed the cluster ID", "clusterID", id)
	}
	return nil
}

// setLeading records and reports a leadership change; it does nothing when
// leading is what was last reported.
func (n *Node) setLeading(leading bool, term uint64, since time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.leading == leading {
		return
	}
	n.leading = leading
	if leading {
		n.event = LeaderEvent{Leader: true, Term: term, Since: since}
		n.logger.Info("placement: leading", "term", term)
	} else {
		n.event = LeaderEvent{Term: n.event.Term, Since: n.cfg.Clock.Now()}
		n.logger.Info("placement: no longer leading", "term", n.event.Term)
	}
	for ch := range n.subs {
		sendLatest(ch, n.event)
	}
}

// sendLatest puts ev in ch (capacity 1), replacing an event not yet taken.
// Only one goroutine at a time sends on ch.
func sendLatest(ch chan LeaderEvent, ev LeaderEvent) {
	select {
	case ch <- ev:
		return
	default:
	}
	select {
	case <-ch:
	default:
	}
	ch <- ev
}

// SubscribeLeadership returns a channel that first holds the node's current
// leadership and then each change. A subscriber that falls behind finds
// only the latest event: a gain with a Term other than the one it acts on
// means leadership ended and began again. The channel is closed by cancel,
// and when the node closes, after an event with Leader false if it led.
func (n *Node) SubscribeLeadership() (events <-chan LeaderEvent, cancel func()) {
	ch := make(chan LeaderEvent, 1)
	n.mu.Lock()
	defer n.mu.Unlock()
	ch <- n.event
	if n.closed {
		close(ch)
		return ch, func() {}
	}
	n.subs[ch] = struct{}{}
	return ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if _, ok := n.subs[ch]; ok {
			delete(n.subs, ch)
			close(ch)
		}
	}
}

// IsLeader reports whether this node leads and has committed its gRPC
// address and the cluster ID as leader.
func (n *Node) IsLeader() bool {
	n.mu.Lock()
	leading := n.leading
	n.mu.Unlock()
	return leading && n.raft.State() == raft.Leader
}

// Leader returns the leader's Raft ID and gRPC address as this node knows
// them; either is empty when unknown.
func (n *Node) Leader() (id, grpcAddr string) {
	_, lid := n.raft.LeaderWithID()
	id = string(lid)
	switch id {
	case "":
		return "", ""
	case n.cfg.ID:
		return id, n.cfg.GRPCAddr
	}
	return id, n.fsm.NodeAddr(id)
}

func (n *Node) notLeader(cause error) error {
	id, addr := n.Leader()
	return &NotLeaderError{LeaderID: id, LeaderGRPCAddr: addr, Cause: cause}
}

// VerifyLeader confirms with a quorum that this node still leads.
func (n *Node) VerifyLeader(ctx context.Context) error {
	if err := n.usable(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- n.raft.VerifyLeader().Error() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("placement: verify leadership: %w", n.raftError(err))
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("placement: verify leadership: %w", ctx.Err())
	}
}
