package membership

// Rounds: proposing gathered changes, and disseminating each committed table
// as lock, update, unlock, with phase timeouts and the unlock's lease wait.

import (
	"fmt"
	"time"

	"github.com/granaryhq/granary/placement/table"
)

// PhaseAck handles o's acknowledgement of phase p of round id.
func (e *Engine) PhaseAck(now time.Time, o table.Owner, id uint64, p Phase) {
	e.advance(now)
	r := e.round
	if r == nil || r.id != id || r.phase != p {
		return
	}
	delete(r.awaiting, o)
	e.step()
}

// Tick moves the engine's time forward: it removes silent members, times out
// round phases, proposes gathered changes and starts or advances rounds.
func (e *Engine) Tick(now time.Time) {
	e.advance(now)
	// New counts the election as every member's last receipt, so nobody is
	// removed for silence within one faulty-host timeout of the election.
	for _, s := range e.sortedSilos() {
		if _, member := e.committed.Member(s.member.ID); !member {
			// A process that never made it into a table is forgotten once
			// it goes silent.
			if _, joining := e.pending.joins[s.member.ID]; !joining && e.now.Sub(s.lastReceipt) > e.cfg.FaultyHostTimeout {
				delete(e.silos, s.member.ID)
			}
			continue
		}
		if silent := e.now.Sub(s.lastReceipt); silent > e.cfg.FaultyHostTimeout {
			e.remove(table.Owner{ID: s.member.ID, Incarnation: s.member.Incarnation},
				fmt.Sprintf("not heard from for %v (faulty-host timeout %v)", silent.Round(time.Millisecond), e.cfg.FaultyHostTimeout))
		}
	}
	for o, r := range e.removed {
		if e.now.Sub(r.at) > removedMemory {
			delete(e.removed, o)
		}
	}
	if r := e.round; r != nil && r.phase != 0 && !e.now.Before(r.deadline) && len(r.awaiting) > 0 {
		for _, o := range sortedOwners(r.awaiting) {
			e.remove(o, fmt.Sprintf("did not acknowledge the %s of round %d within %v", r.phase, r.id, e.cfg.PhaseTimeout))
		}
	}
	e.step()
}

// step proposes gathered changes and moves rounds along.
func (e *Engine) step() {
	if !e.proposing && !e.pending.empty() && !e.now.Before(e.pending.since.Add(e.cfg.CoalesceWindow)) {
		p := Proposal{JumpPast: e.pending.jump}
		for _, id := range sortedKeys(e.pending.joins) {
			p.Joins = append(p.Joins, e.pending.joins[id])
		}
		p.Removes = sortedOwners(e.pending.removes)
		e.pending = proposalBuffer{joins: map[string]table.Member{}, removes: map[table.Owner]bool{}}
		e.proposing = true
		e.inflight = p
		e.out.Proposals = append(e.out.Proposals, p)
	}
	if e.round == nil {
		e.maybeStartRound()
		return
	}
	r := e.round
	if len(r.awaiting) > 0 {
		return
	}
	switch r.phase {
	case PhaseLock:
		e.enterPhase(PhaseUpdate)
	case PhaseUpdate:
		r.phase = 0 // waiting to unlock
		e.maybeUnlock()
	case 0:
		e.maybeUnlock()
	case PhaseUnlock:
		e.disseminated = r.table.Version
		e.lastRound = RoundStatus{ID: r.id, Version: r.table.Version, Started: r.started, Duration: e.now.Sub(r.started)}
		e.out.Rounds = append(e.out.Rounds, e.lastRound)
		e.round = nil
		e.maybeStartRound()
	}
}

func (e *Engine) maybeUnlock() {
	// Removals decided during the round count too: the unlock waits for
	// every removed silo's lease, whenever it was removed.
	if e.now.Before(e.maxUnlockWait) {
		return
	}
	e.enterPhase(PhaseUnlock)
}

func (e *Engine) maybeStartRound() {
	t := e.committed
	if t.Version == 0 || t.Version <= e.disseminated {
		return
	}
	// A new leader waits for the members to reconnect before its first
	// round, so a silo still looking for the leader is not removed for
	// missing a phase; the faulty-host timeout bounds the wait.
	if e.disseminated == 0 && e.now.Before(e.firstRoundBy) {
		for _, m := range t.Members {
			s := e.silos[m.ID]
			if s == nil || !s.connected || s.member.Incarnation != m.Incarnation {
				return
			}
		}
	}
	e.roundCounter++
	e.round = &round{id: e.roundCounter, table: t, started: e.now}
	e.enterPhase(PhaseLock)
}

func (e *Engine) enterPhase(p Phase) {
	r := e.round
	r.phase = p
	r.deadline = e.now.Add(e.cfg.PhaseTimeout)
	r.awaiting = map[table.Owner]bool{}
	for _, m := range r.table.Members {
		o := table.Owner{ID: m.ID, Incarnation: m.Incarnation}
		if _, gone := e.removed[o]; gone {
			continue
		}
		r.awaiting[o] = true
		if s := e.silos[m.ID]; s != nil && s.connected && s.member.Incarnation == m.Incarnation {
			e.send(Message{To: o, Kind: MsgPhase, Round: r.id, Phase: p, Table: r.table})
		}
	}
	if len(r.awaiting) == 0 {
		e.step()
	}
}
