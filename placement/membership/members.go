package membership

// Heartbeats, leases and membership changes: what the engine learns from
// silos and from Raft, and the removals it decides.

import (
	"fmt"
	"time"

	"github.com/granaryhq/granary/placement/table"
)

// Connected records that silo process o opened a stream.
func (e *Engine) Connected(now time.Time, o table.Owner) {
	e.advance(now)
	if s := e.silos[o.ID]; s != nil && s.member.Incarnation == o.Incarnation {
		s.connected = true
		// A member that reconnects mid-round gets the round's current phase.
		if r := e.round; r != nil && r.awaiting[o] {
			e.send(Message{To: o, Kind: MsgPhase, Round: r.id, Phase: r.phase, Table: r.table})
		}
	}
}

// Disconnected records that silo process o's stream closed.
func (e *Engine) Disconnected(now time.Time, o table.Owner) {
	e.advance(now)
	if s := e.silos[o.ID]; s != nil && s.member.Incarnation == o.Incarnation {
		s.connected = false
		s.pending = nil
	}
}

// Heartbeat handles a heartbeat that arrived at now.
func (e *Engine) Heartbeat(now time.Time, hb Heartbeat) {
	e.advance(now)
	m := hb.Member.Normalize()
	o := table.Owner{ID: m.ID, Incarnation: m.Incarnation}
	if hb.ProtocolVersion != ProtocolVersion {
		e.send(Message{To: o, Kind: MsgRejected, Reason: fmt.Sprintf(
			"silo speaks placement protocol version %d; this placement service speaks %d", hb.ProtocolVersion, ProtocolVersion)})
		return
	}
	if err := m.Validate(); err != nil {
		e.send(Message{To: o, Kind: MsgRejected, Reason: err.Error()})
		return
	}
	if r, gone := e.removed[o]; gone {
		e.send(Message{To: o, Kind: MsgRemoved, Reason: r.reason})
		return
	}
	s := e.silos[m.ID]
	if s != nil && s.member.Incarnation != m.Incarnation {
		// Another process with this ID. If the one we know is alive, the
		// newcomer is a misconfigured duplicate; otherwise it is a restart.
		if s.connected && now.Sub(s.lastReceipt) < e.cfg.FaultyHostTimeout {
			e.send(Message{To: o, Kind: MsgRejected, Reason: fmt.Sprintf(
				"silo ID %q is in use by a live silo (incarnation %s at %s, heard %v ago)",
				m.ID, s.member.Incarnation, s.member.InternalAddr, now.Sub(s.lastReceipt).Round(time.Millisecond))})
			return
		}
		e.remove(table.Owner{ID: s.member.ID, Incarnation: s.member.Incarnation}, "replaced by a new process with the same ID")
		s = nil
	}
	if s == nil {
		s = &silo{member: m}
		e.silos[m.ID] = s
	}
	s.connected = true
	s.member = m
	s.lastReceipt = now
	// A member that has adopted a newer table than the committed one has
	// outlived a loss of placement's data: the next table must be past
	// what it has seen, or it would ignore it (versions never go back).
	e.ClaimRefused(now, hb.TableVersion)
	if len(s.pending) == maxPending {
		s.pending = append(s.pending[:0], s.pending[1:]...)
	}
	s.pending = append(s.pending, pendingHeartbeat{seq: hb.Seq, arrival: now})
	if cm, ok := e.committed.Member(m.ID); !ok || !cm.Equal(m) {
		e.queueJoin(m)
	}
}

func (e *Engine) queueJoin(m table.Member) {
	if prev, ok := e.pending.joins[m.ID]; ok && prev.Equal(m) {
		return
	}
	for _, j := range e.inflight.Joins {
		if j.Equal(m) {
			return
		}
	}
	if e.pending.empty() {
		e.pending.since = e.now
	}
	e.pending.joins[m.ID] = m
}

// remove decides o's removal: o is never acknowledged again, is told so if
// connected, and its removal is proposed.
func (e *Engine) remove(o table.Owner, reason string) {
	if _, done := e.removed[o]; done {
		return
	}
	s := e.silos[o.ID]
	lastAcked := e.electedAt
	if s != nil && s.member.Incarnation == o.Incarnation {
		lastAcked = s.lastAckedReceipt
		if s.connected {
			e.send(Message{To: o, Kind: MsgRemoved, Reason: reason})
		}
		delete(e.silos, o.ID)
	}
	e.removed[o] = removal{at: e.now, reason: reason}
	if until := lastAcked.Add(e.cfg.LeaseBound()); until.After(e.maxUnlockWait) {
		e.maxUnlockWait = until
	}
	if pj, ok := e.pending.joins[o.ID]; ok && pj.Incarnation == o.Incarnation {
		delete(e.pending.joins, o.ID)
	}
	if _, inTable := e.committed.Member(o.ID); inTable {
		if e.pending.empty() {
			e.pending.since = e.now
		}
		e.pending.removes[o] = true
	}
	if r := e.round; r != nil {
		delete(r.awaiting, o)
	}
}

// ClaimRefused handles a silo's report that a shard claim of its was refused
// by a record of this cluster at version newer: when that is past the
// committed table (placement data was lost), the next table must be past it.
func (e *Engine) ClaimRefused(now time.Time, newer uint64) {
	e.advance(now)
	// A record at a version the table has reached is no sign of lost
	// placement data: the claimant was behind (a claim of an older table
	// racing a newer owner), not the table.
	if newer <= e.committed.Version || newer <= e.pending.jump {
		return
	}
	if e.pending.empty() {
		e.pending.since = e.now
	}
	e.pending.jump = newer
}

// Verified reports that a leadership check issued at issuedAt succeeded.
// Every heartbeat that arrived before issuedAt is acknowledged.
func (e *Engine) Verified(now, issuedAt time.Time) {
	e.advance(now)
	e.verifying = false
	for _, s := range e.silos {
		covered := 0
		for covered < len(s.pending) && !s.pending[covered].arrival.After(issuedAt) {
			covered++
		}
		if covered == 0 {
			continue
		}
		hb := s.pending[covered-1]
		s.pending = append(s.pending[:0], s.pending[covered:]...)
		s.lastAckedReceipt = hb.arrival
		e.send(Message{To: table.Owner{ID: s.member.ID, Incarnation: s.member.Incarnation}, Kind: MsgAck, Seq: hb.seq})
	}
}

// VerifyFailed reports that a leadership check failed: this node is no
// longer leader and the driver should discard the engine.
func (e *Engine) VerifyFailed(now time.Time) {
	e.advance(now)
	e.verifying = false
}

// CommittedTable reports that Raft committed t (from a proposal of this engine or
// not).
func (e *Engine) CommittedTable(now time.Time, t *table.Table) {
	e.advance(now)
	if t.Version <= e.committed.Version && t.ClusterID == e.committed.ClusterID {
		// The proposal changed nothing (a retried or redundant batch).
		e.proposing = false
		e.inflight = Proposal{}
		e.step()
		return
	}
	e.committed = t
	e.proposing = false
	e.inflight = Proposal{}
	// A member committed without our seeing it (by an earlier leader) is
	// tracked from now, so silence removes it like any other.
	for _, m := range t.Members {
		o := table.Owner{ID: m.ID, Incarnation: m.Incarnation}
		if _, gone := e.removed[o]; gone {
			continue
		}
		if _, ok := e.silos[m.ID]; !ok {
			e.silos[m.ID] = &silo{member: m, lastReceipt: e.now, lastAckedReceipt: e.now}
		}
	}
	e.step()
}

// ProposalFailed reports that the last proposal did not commit; its changes
// are proposed again.
func (e *Engine) ProposalFailed(now time.Time, p Proposal) {
	e.advance(now)
	e.proposing = false
	e.inflight = Proposal{}
	for _, m := range p.Joins {
		if _, newer := e.pending.joins[m.ID]; !newer {
			if _, gone := e.removed[table.Owner{ID: m.ID, Incarnation: m.Incarnation}]; !gone {
				e.queueJoin(m)
			}
		}
	}
	for _, o := range p.Removes {
		if e.pending.empty() {
			e.pending.since = e.now
		}
		e.pending.removes[o] = true
	}
	if p.JumpPast > e.pending.jump {
		e.pending.jump = p.JumpPast
	}
}
