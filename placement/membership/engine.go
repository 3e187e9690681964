// Package membership is the placement leader's view of the silos: it acknowledges
// heartbeats (which gives silos their leases), decides when a silo is removed,
// proposes membership changes for Raft to commit, and disseminates every
// committed table in lock → update → unlock rounds.
//
// The Engine is a deterministic state machine. It does no I/O, starts no
// goroutines and reads no clock: every input carries the leader's time, and
// the driver (the placement node's gRPC service) collects what the engine
// wants done with Ready — messages to silos, proposals to commit, a leadership
// check to issue — in the style of etcd's raft. So every timeline below can be
// tested with made-up times and no sleeping.
//
// # Leases
//
// A silo's lease runs from the send time of heartbeat k, on the silo's own
// clock, for LeasePeriod, once the leader has acknowledged k. The engine
// acknowledges k only after a leadership check (Raft's VerifyLeader) issued
// after k arrived has succeeded, so a deposed or paused leader cannot extend a
// lease. Checks are batched: at most one per VerifyInterval.
//
// Acknowledging a silo and deciding to remove it are steps of this one state
// machine, so they are serialized: once removal is decided the silo is never
// acknowledged again and is told it was removed. The unlock that lets other
// silos claim a removed silo's shards waits until the removed silo's lease has
// surely run out on the leader's clock: its last acknowledged receipt +
// LeasePeriod × (1 + DriftBound) + StopLatency.
//
// # A new leader
//
// A new Engine takes its election time as every member's last acknowledged
// receipt, removes nobody for one FaultyHostTimeout, and re-runs a round for
// the committed table once every member has reconnected (or once that
// timeout has passed), which finishes any round the old leader left open.
// Silos drop the locks of a leader whose stream they lose, so no lock
// outlives its leader.
package membership

import (
	"fmt"
	"slices"
	"time"

	"github.com/granaryhq/granary/placement/table"
)

// ProtocolVersion is the version of the silo↔placement protocol this engine speaks.
const ProtocolVersion = 1

// Config holds the engine's timeouts. Zero fields take the defaults below.
type Config struct {
	// FaultyHostTimeout: a member not heard from for this long is removed.
	FaultyHostTimeout time.Duration
	// LeasePeriod is how long an acknowledged heartbeat keeps a silo's lease,
	// from the heartbeat's send time. It must be shorter than FaultyHostTimeout.
	LeasePeriod time.Duration
	// DriftBound is how far apart two clocks may run over one lease period,
	// as a fraction (0.05 = 5 %).
	DriftBound float64
	// StopLatency is how long a silo may take, once its lease has run out, to
	// have stopped: the longest gap between a turn's lease check and its last
	// store write.
	StopLatency time.Duration
	// PhaseTimeout: a member that does not acknowledge a phase of a round
	// within this long is removed instead of stalling the cluster.
	PhaseTimeout time.Duration
	// CoalesceWindow is how long the engine gathers membership changes before
	// proposing them as one batch, so ten silos starting together make one or
	// two rounds, not ten.
	CoalesceWindow time.Duration
	// VerifyInterval is the least time between two leadership checks.
	VerifyInterval time.Duration
}

// Defaults of Config.
const (
	DefaultFaultyHostTimeout = 3 * time.Second
	DefaultLeasePeriod       = 2 * time.Second
	DefaultDriftBound        = 0.05
	DefaultStopLatency       = 250 * time.Millisecond
	DefaultPhaseTimeout      = 2 * time.Second
	DefaultCoalesceWindow    = 100 * time.Millisecond
	DefaultVerifyInterval    = 100 * time.Millisecond
)

func (c Config) withDefaults() Config {
	if c.FaultyHostTimeout <= 0 {
		c.FaultyHostTimeout = DefaultFaultyHostTimeout
	}
	if c.LeasePeriod <= 0 {
		c.LeasePeriod = DefaultLeasePeriod
	}
	if c.DriftBound <= 0 {
		c.DriftBound = DefaultDriftBound
	}
	if c.StopLatency <= 0 {
		c.StopLatency = DefaultStopLatency
	}
	if c.PhaseTimeout <= 0 {
		c.PhaseTimeout = DefaultPhaseTimeout
	}
	if c.CoalesceWindow <= 0 {
		c.CoalesceWindow = DefaultCoalesceWindow
	}
	if c.VerifyInterval <= 0 {
		c.VerifyInterval = DefaultVerifyInterval
	}
	return c
}

// Validate reports a configuration that cannot keep its promises.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.LeasePeriod >= c.FaultyHostTimeout {
		return fmt.Errorf("membership: lease period %v must be shorter than the faulty-host timeout %v", c.LeasePeriod, c.FaultyHostTimeout)
	}
	if c.DriftBound >= 1 {
		return fmt.Errorf("membership: drift bound %v must be below 1", c.DriftBound)
	}
	return nil
}

// LeaseBound is how long after a silo's last acknowledged receipt the leader
// must wait before its lease has surely run out.
func (c Config) LeaseBound() time.Duration {
	c = c.withDefaults()
	return time.Duration(float64(c.LeasePeriod)*(1+c.DriftBound)) + c.StopLatency
}

// Heartbeat is what a silo sends every heartbeat interval.
type Heartbeat struct {
	Member          table.Member
	Seq             uint64
	ProtocolVersion uint32
	// TableVersion is the newest table the silo has adopted.
	TableVersion uint64
	Load         int64
}

// Phase is a step of a dissemination round.
type Phase uint8

// The phases of a round, in order.
const (
	PhaseLock Phase = iota + 1
	PhaseUpdate
	PhaseUnlock
)

func (p Phase) String() string {
	switch p {
	case PhaseLock:
		return "lock"
	case PhaseUpdate:
		return "update"
	case PhaseUnlock:
		return "unlock"
	}
	return fmt.Sprintf("Phase(%d)", uint8(p))
}

// MessageKind says what a Message tells a silo.
type MessageKind uint8

// Kinds of Message.
const (
	// MsgAck acknowledges heartbeat Seq: the silo's lease runs from its send time.
	MsgAck MessageKind = iota + 1
	// MsgPhase carries phase Phase of round Round for Table.
	MsgPhase
	// MsgRemoved tells the silo it was removed from the cluster (Reason says why).
	MsgRemoved
	// MsgRejected refuses the silo's heartbeats (Reason says why); it is not a member.
	MsgRejected
)

// Message is one message for one silo process.
type Message struct {
	To     table.Owner
	Kind   MessageKind
	Seq    uint64
	Round  uint64
	Phase  Phase
	Table  *table.Table
	Reason string
}

// Proposal is one command the driver commits through Raft: a batch of joins
// and removals and, optionally, a version jump. Committing it twice changes
// nothing the second time.
type Proposal struct {
	Joins   []table.Member
	Removes []table.Owner
	// JumpPast, when not zero, asks for a table version above it.
	JumpPast uint64
}

// Ready is what the engine wants done. The driver sends the messages to the
// connected silos they name, commits the proposals (reporting back with
// CommittedTable or ProposalFailed), and, when VerifyLeader is set, issues one
// leadership check and reports it with Verified.
type Ready struct {
	Messages     []Message
	Proposals    []Proposal
	VerifyLeader bool
}

// Engine is the leader-side membership state machine. It is not safe for
// concurrent use; the driver serializes every call.
type Engine struct {
	cfg       Config
	electedAt time.Time
	now       time.Time

	committed    *table.Table
	disseminated uint64 // version of the last table a finished round carried
	// firstRoundBy is when a new leader starts its first round even if some
	// member has not reconnected.
	firstRoundBy time.Time

	silos   map[string]*silo
	removed map[table.Owner]removal // decided removals, kept so late heartbeats get MsgRemoved

	pending       proposalBuffer
	proposing     bool
	inflight      Proposal
	round         *round
	lastRound     RoundStatus
	roundCounter  uint64
	verifying     bool
	verifyIssued  time.Time
	lastVerifyAt  time.Time
	out           Ready
	maxUnlockWait time.Time
}

type silo struct {
	member    table.Member
	connected bool
	// lastReceipt is when the last heartbeat of this incarnation arrived.
	lastReceipt time.Time
	// lastAckedReceipt is the arrival time of the last acknowledged heartbeat.
	lastAckedReceipt time.Time
	// pending are the heartbeats awaiting a leadership check, oldest first.
	pending []pendingHeartbeat
}

type pendingHeartbeat struct {
	seq     uint64
	arrival time.Time
}

// maxPending bounds the heartbeats kept per silo while checks are slow; the
// newest matter, since acknowledging one covers every earlier one.
const maxPending = 8

// removedMemory is how long a removed process is remembered, so that its
// late heartbeats are answered MsgRemoved rather than taken for a join. A
// silo process leaves when told it was removed; one silent for longer
// (frozen, cut off) that comes back joins again as a new member.
const removedMemory = 10 * time.Minute

type removal struct {
	at     time.Time
	reason string
}

type round struct {
	id       uint64
	table    *table.Table
	phase    Phase
	started  time.Time
	deadline time.Time
	awaiting map[table.Owner]bool
}

// RoundStatus describes the last finished round.
type RoundStatus struct {
	ID       uint64
	Version  uint64
	Started  time.Time
	Duration time.Duration
}

type proposalBuffer struct {
	joins   map[string]table.Member
	removes map[table.Owner]bool
	jump    uint64
	since   time.Time
}

func (b *proposalBuffer) empty() bool {
	return len(b.joins) == 0 && len(b.removes) == 0 && b.jump == 0
}

// New makes the engine of a leader elected at electedAt, whose committed
// table is committed.
func New(cfg Config, electedAt time.Time, committed *table.Table) *Engine {
	cfg = cfg.withDefaults()
	e := &Engine{
		cfg:          cfg,
		electedAt:    electedAt,
		now:          electedAt,
		committed:    committed,
		firstRoundBy: electedAt.Add(cfg.FaultyHostTimeout),
		silos:        map[string]*silo{},
		removed:      map[table.Owner]removal{},
		// A silo of the committed table may still hold a lease the old
		// leader granted: count the election as its last acknowledged receipt.
		maxUnlockWait: electedAt.Add(cfg.LeaseBound()),
	}
	e.pending.joins = map[string]table.Member{}
	e.pending.removes = map[table.Owner]bool{}
	for _, m := range committed.Members {
		e.silos[m.ID] = &silo{member: m, lastReceipt: electedAt, lastAckedReceipt: electedAt}
	}
	return e
}

// Committed returns the newest committed table the engine knows.
func (e *Engine) Committed() *table.Table { return e.committed }

func (e *Engine) advance(now time.Time) {
	if now.After(e.now) {
		e.now = now
	}
}

func (e *Engine) send(m Message) { e.out.Messages = append(e.out.Messages, m) }

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

// Ready returns what the engine wants done since the last call, and clears it.
func (e *Engine) Ready() Ready {
	if !e.verifying && !e.now.Before(e.lastVerifyAt.Add(e.cfg.VerifyInterval)) {
		for _, s := range e.silos {
			if len(s.pending) > 0 {
				e.verifying = true
				e.verifyIssued = e.now
				e.lastVerifyAt = e.now
				e.out.VerifyLeader = true
				break
			}
		}
	}
	out := e.out
	e.out = Ready{}
	return out
}

// VerifyIssuedAt is the time to pass to Verified for the check the last Ready asked for.
func (e *Engine) VerifyIssuedAt() time.Time { return e.verifyIssued }

// Status is the engine's state for the status endpoint.
type Status struct {
	TableVersion uint64
	Disseminated uint64
	Round        *RoundStatus // the round in progress, if any
	RoundPhase   string
	LastRound    RoundStatus
	Silos        []SiloStatus
	Removed      int
}

// SiloStatus is one tracked silo.
type SiloStatus struct {
	Member           table.Member
	Connected        bool
	LastReceipt      time.Time
	LastAckedReceipt time.Time
	InTable          bool
}

// Status reports the engine's state.
func (e *Engine) Status() Status {
	st := Status{TableVersion: e.committed.Version, Disseminated: e.disseminated, LastRound: e.lastRound, Removed: len(e.removed)}
	if r := e.round; r != nil {
		st.Round = &RoundStatus{ID: r.id, Version: r.table.Version, Started: r.started, Duration: e.now.Sub(r.started)}
		st.RoundPhase = r.phase.String()
		if r.phase == 0 {
			st.RoundPhase = "waiting to unlock"
		}
	}
	for _, s := range e.sortedSilos() {
		_, in := e.committed.Member(s.member.ID)
		st.Silos = append(st.Silos, SiloStatus{Member: s.member, Connected: s.connected,
			LastReceipt: s.lastReceipt, LastAckedReceipt: s.lastAckedReceipt, InTable: in})
	}
	return st
}

func (e *Engine) sortedSilos() []*silo {
	out := make([]*silo, 0, len(e.silos))
	for _, id := range sortedKeys(e.silos) {
		out = append(out, e.silos[id])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func sortedOwners(m map[table.Owner]bool) []table.Owner {
	out := make([]table.Owner, 0, len(m))
	for o := range m {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b table.Owner) int {
		if a.ID != b.ID {
			if a.ID < b.ID {
				return -1
			}
			return 1
		}
		if a.Incarnation < b.Incarnation {
			return -1
		}
		if a.Incarnation > b.Incarnation {
			return 1
		}
		return 0
	})
	return out
}
