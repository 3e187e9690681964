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
	// Rounds are the dissemination rounds finished since the last Ready.
	Rounds []RoundStatus
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
	verifyIssued  time.Time // when the last leadership check was asked for
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

// Ready returns what the engine wants done since the last call, and clears it.
func (e *Engine) Ready() Ready {
	if !e.verifying && !e.now.Before(e.verifyIssued.Add(e.cfg.VerifyInterval)) {
		for _, s := range e.silos {
			if len(s.pending) > 0 {
				e.verifying = true
				e.verifyIssued = e.now
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
