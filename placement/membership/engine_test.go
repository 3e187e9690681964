package membership

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/placement/table"
)

// harness drives an Engine the way the placement node does, with a fake
// Raft that commits proposals at once and made-up times.
type harness struct {
	t      *testing.T
	e      *Engine
	now    time.Time
	tbl    *table.Table
	msgs   []Message
	props  []Proposal
	rounds []RoundStatus // finished rounds Ready reported
	verify bool          // a leadership check is outstanding
	// hold, when set, keeps proposals uncommitted.
	hold bool
	// verifyOK decides the outcome of leadership checks.
	verifyOK bool
}

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func newHarness(t *testing.T, cfg Config, members ...table.Member) *harness {
	t.Helper()
	var version uint64
	if len(members) > 0 {
		version = 1
	}
	tbl, err := table.New("c1", version, members, 0)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, now: t0, tbl: tbl, verifyOK: true}
	h.e = New(cfg, t0, tbl)
	return h
}

func member(id, inc string) table.Member {
	return table.Member{ID: id, Incarnation: inc, InternalAddr: id + ":7000", HTTPAddr: id + ":3500", Types: []string{"Counter"}}
}

func owner(id, inc string) table.Owner { return table.Owner{ID: id, Incarnation: inc} }

// drain collects Ready and plays the fake Raft.
func (h *harness) drain() {
	for range 100 {
		r := h.e.Ready()
		h.msgs = append(h.msgs, r.Messages...)
		h.rounds = append(h.rounds, r.Rounds...)
		if r.VerifyLeader {
			h.verify = true
		}
		if len(r.Proposals) == 0 {
			return
		}
		h.props = append(h.props, r.Proposals...)
		if h.hold {
			return
		}
		for _, p := range r.Proposals {
			h.commit(p)
		}
	}
	h.t.Fatal("engine never settled")
}

func (h *harness) commit(p Proposal) {
	ms := map[string]table.Member{}
	for _, m := range h.tbl.Members {
		ms[m.ID] = m
	}
	changed := false
	for _, j := range p.Joins {
		if cur, ok := ms[j.ID]; !ok || !cur.Equal(j.Normalize()) {
			ms[j.ID] = j
			changed = true
		}
	}
	for _, o := range p.Removes {
		if cur, ok := ms[o.ID]; ok && cur.Incarnation == o.Incarnation {
			delete(ms, o.ID)
			changed = true
		}
	}
	version := h.tbl.Version
	if p.JumpPast >= version {
		version = p.JumpPast
		changed = true
	}
	if changed {
		version++
	}
	list := make([]table.Member, 0, len(ms))
	for _, m := range ms {
		list = append(list, m)
	}
	tbl, err := table.New("c1", version, list, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	h.tbl = tbl
	h.e.CommittedTable(h.now, tbl)
}

func (h *harness) advance(d time.Duration) {
	h.now = h.now.Add(d)
	h.e.Tick(h.now)
	h.drain()
}

// run advances in steps of step for total, checking leadership whenever asked.
func (h *harness) run(total, step time.Duration, each func()) {
	for end := h.now.Add(total); h.now.Before(end); {
		h.advance(step)
		if each != nil {
			each()
		}
		h.answerVerify()
	}
}

func (h *harness) answerVerify() {
	if !h.verify {
		return
	}
	h.verify = false
	if h.verifyOK {
		h.e.Verified(h.now, h.e.VerifyIssuedAt())
	} else {
		h.e.VerifyFailed(h.now)
	}
	h.drain()
}

func (h *harness) heartbeat(m table.Member, seq uint64) {
	h.e.Heartbeat(h.now, Heartbeat{Member: m, Seq: seq, ProtocolVersion: ProtocolVersion})
	h.drain()
}

// ackPhases acknowledges every phase message to the given members.
func (h *harness) ackPhases(members ...table.Member) {
	for _, msg := range h.take(MsgPhase) {
		for _, m := range members {
			if msg.To == owner(m.ID, m.Incarnation) {
				h.e.PhaseAck(h.now, msg.To, msg.Round, msg.Phase)
			}
		}
	}
	h.drain()
}

// take removes and returns the collected messages of kind k.
func (h *harness) take(k MessageKind) []Message {
	var out, rest []Message
	for _, m := range h.msgs {
		if m.Kind == k {
			out = append(out, m)
		} else {
			rest = append(rest, m)
		}
	}
	h.msgs = rest
	return out
}

func (h *harness) acksFor(o table.Owner) []uint64 {
	var seqs []uint64
	for _, m := range h.take(MsgAck) {
		if m.To == o {
			seqs = append(seqs, m.Seq)
		}
	}
	return seqs
}

// cluster runs silos that heartbeat every 250 ms and acknowledge every phase.
type cluster struct {
	h     *harness
	silos map[table.Owner]*fakeSilo
	steps int
}

type fakeSilo struct {
	m      table.Member
	seq    uint64
	frozen bool // sends nothing and acknowledges nothing
	// noAck makes the silo heartbeat but never acknowledge a phase.
	noAck   bool
	acked   []uint64
	phases  []Message
	removed string
}

func newCluster(h *harness) *cluster { return &cluster{h: h, silos: map[table.Owner]*fakeSilo{}} }

func (c *cluster) add(m table.Member) *fakeSilo {
	s := &fakeSilo{m: m}
	c.silos[owner(m.ID, m.Incarnation)] = s
	c.h.e.Connected(c.h.now, owner(m.ID, m.Incarnation))
	return s
}

// run moves time in 50 ms steps: silos heartbeat every fifth step, and
// everyone answers what it was sent.
func (c *cluster) run(total time.Duration) {
	step := 50 * time.Millisecond
	c.h.run(total, step, func() {
		c.steps++
		for _, s := range c.silos {
			if s.frozen || s.removed != "" {
				continue
			}
			if c.steps%5 == 0 {
				s.seq++
				c.h.e.Heartbeat(c.h.now, Heartbeat{Member: s.m, Seq: s.seq, ProtocolVersion: ProtocolVersion})
			}
		}
		c.h.drain()
		c.deliver()
	})
	c.h.answerVerify()
	c.deliver()
}

func (c *cluster) deliver() {
	for range 20 {
		msgs := c.h.msgs
		c.h.msgs = nil
		if len(msgs) == 0 {
			return
		}
		for _, m := range msgs {
			s := c.silos[m.To]
			if s == nil || s.frozen {
				continue
			}
			switch m.Kind {
			case MsgAck:
				s.acked = append(s.acked, m.Seq)
			case MsgRemoved, MsgRejected:
				s.removed = m.Reason
			case MsgPhase:
				s.phases = append(s.phases, m)
				if !s.noAck {
					c.h.e.PhaseAck(c.h.now, m.To, m.Round, m.Phase)
				}
			}
		}
		c.h.drain()
	}
}

func TestJoinRunsOneFullRound(t *testing.T) {
	h := newHarness(t, Config{})
	c := newCluster(h)
	a := c.add(member("a", "1"))
	c.run(4 * time.Second)
	if h.tbl.Version != 1 {
		t.Fatalf("table version %d, want 1", h.tbl.Version)
	}
	if _, ok := h.tbl.Member("a"); !ok {
		t.Fatal("a was not committed")
	}
	var got []string
	for _, m := range a.phases {
		got = append(got, fmt.Sprintf("%d:%s:v%d", m.Round, m.Phase, m.Table.Version))
	}
	if want := "1:lock:v1 1:update:v1 1:unlock:v1"; strings.Join(got, " ") != want {
		t.Fatalf("phases %q, want %q", got, want)
	}
	st := h.e.Status()
	if st.Disseminated != 1 || st.Round != nil || st.LastRound.Version != 1 {
		t.Fatalf("status after the round: %+v", st)
	}
	if len(h.rounds) != 1 || h.rounds[0] != st.LastRound || h.rounds[0].Duration <= 0 {
		t.Fatalf("rounds reported by Ready: %+v, want the one finished (%+v)", h.rounds, st.LastRound)
	}
	if len(a.acked) == 0 {
		t.Fatal("a's heartbeats were never acknowledged")
	}
}

func TestHeartbeatIsAcknowledgedOnlyAfterALaterLeadershipCheck(t *testing.T) {
	m := member("a", "1")
	h := newHarness(t, Config{}, m)
	h.e.Connected(h.now, owner("a", "1"))
	h.heartbeat(m, 1)
	if !h.verify {
		t.Fatal("a pending heartbeat did not ask for a leadership check")
	}
	issued := h.e.VerifyIssuedAt()
	// A heartbeat that arrives after the check was issued is not covered by it.
	h.now = h.now.Add(10 * time.Millisecond)
	h.heartbeat(m, 2)
	h.e.Verified(h.now, issued)
	h.drain()
	if got := h.acksFor(owner("a", "1")); len(got) != 1 || got[0] != 1 {
		t.Fatalf("acks after the first check: %v, want [1]", got)
	}
	h.verify = false
	// The next check waits for the verify interval.
	h.advance(DefaultVerifyInterval / 2)
	if h.verify {
		t.Fatal("a second check was issued within the verify interval")
	}
	h.advance(DefaultVerifyInterval)
	if !h.verify {
		t.Fatal("no check for the pending heartbeat after the verify interval")
	}
	h.answerVerify()
	if got := h.acksFor(owner("a", "1")); len(got) != 1 || got[0] != 2 {
		t.Fatalf("acks after the second check: %v, want [2]", got)
	}
}

func TestDeposedLeaderCannotExtendALease(t *testing.T) {
	m := member("a", "1")
	h := newHarness(t, Config{}, m)
	h.e.Connected(h.now, owner("a", "1"))
	h.verifyOK = false
	for seq := uint64(1); seq <= 20; seq++ {
		h.heartbeat(m, seq)
		h.advance(250 * time.Millisecond)
		h.answerVerify()
	}
	if got := h.acksFor(owner("a", "1")); len(got) != 0 {
		t.Fatalf("a leader whose leadership checks fail acknowledged heartbeats %v", got)
	}
	// Paused between the arrival and the check: a check issued before the
	// heartbeat arrived never covers it, however late it succeeds.
	h.verifyOK = true
	h.verify = false
	h.advance(time.Second)
	issuedBefore := h.now
	h.now = h.now.Add(time.Millisecond)
	h.heartbeat(m, 21)
	h.now = h.now.Add(5 * time.Second) // the pause
	h.e.Verified(h.now, issuedBefore)
	h.drain()
	if got := h.acksFor(owner("a", "1")); len(got) != 0 {
		t.Fatalf("a check issued before the heartbeat arrived acknowledged it: %v", got)
	}
}

func TestSilentSiloIsRemovedAndNeverAcknowledgedAgain(t *testing.T) {
	h := newHarness(t, Config{})
	c := newCluster(h)
	a := c.add(member("a", "1"))
	b := c.add(member("b", "1"))
	c.run(4 * time.Second)
	if len(h.tbl.Members) != 2 {
		t.Fatalf("members %v", h.tbl.Members)
	}
	b.frozen = true
	frozenAt := h.now
	c.run(DefaultFaultyHostTimeout - 300*time.Millisecond)
	if _, ok := h.tbl.Member("b"); !ok {
		t.Fatal("b removed before the faulty-host timeout")
	}
	c.run(time.Second)
	if _, ok := h.tbl.Member("b"); ok {
		t.Fatalf("b still a member %v after being silent", h.now.Sub(frozenAt))
	}
	// b wakes up and heartbeats again: it is told it was removed and its
	// heartbeats are never acknowledged.
	b.frozen = false
	b.acked = nil
	c.run(2 * time.Second)
	if b.removed == "" {
		t.Fatal("b was not told it was removed")
	}
	if len(b.acked) != 0 {
		t.Fatalf("removed b was acknowledged: %v", b.acked)
	}
	if a.removed != "" {
		t.Fatalf("a removed: %s", a.removed)
	}
}

// unlockOf returns when silo s first saw the unlock of a table that satisfies ok.
func (c *cluster) runUntilUnlock(s *fakeSilo, ok func(*table.Table) bool) time.Time {
	for range 400 {
		c.run(50 * time.Millisecond)
		for _, m := range s.phases {
			if m.Phase == PhaseUnlock && ok(m.Table) {
				return c.h.now
			}
		}
	}
	c.h.t.Fatal("no matching unlock")
	return time.Time{}
}

func TestUnlockWaitsForAReplacedIncarnationsLease(t *testing.T) {
	h := newHarness(t, Config{})
	c := newCluster(h)
	a := c.add(member("a", "1"))
	c.add(member("b", "1"))
	c.run(4 * time.Second)
	// b is killed and restarted at once: the old process may still hold a
	// lease, so its shards may not go to the new process before it ran out.
	c.silos[owner("b", "1")].frozen = true
	lastAcked := h.e.silos["b"].lastAckedReceipt
	h.e.Disconnected(h.now, owner("b", "1"))
	c.add(member("b", "2"))
	unlockAt := c.runUntilUnlock(a, func(t *table.Table) bool {
		m, ok := t.Member("b")
		return ok && m.Incarnation == "2"
	})
	if bound := lastAcked.Add(Config{}.LeaseBound()); unlockAt.Before(bound) {
		t.Fatalf("unlock at %v, before the old process's lease surely ran out at %v", unlockAt.Sub(t0), bound.Sub(t0))
	}
}

func TestUnlockWaitsForTheLeaseOfASiloRemovedForAMissedPhase(t *testing.T) {
	h := newHarness(t, Config{})
	c := newCluster(h)
	a := c.add(member("a", "1"))
	b := c.add(member("b", "1"))
	c.run(4 * time.Second)
	// b keeps heartbeating (and being acknowledged) but stops answering
	// rounds; c's join starts a round b will miss.
	b.noAck = true
	c.add(member("c", "1"))
	unlockAt := c.runUntilUnlock(a, func(t *table.Table) bool {
		_, hasB := t.Member("b")
		return !hasB
	})
	removal, ok := h.e.removed[owner("b", "1")]
	if !ok {
		t.Fatal("b was not removed")
	}
	// b was acknowledged up to its removal, so its lease may run until
	// about removal + lease bound.
	if bound := removal.at.Add(Config{}.LeaseBound() - 300*time.Millisecond); unlockAt.Before(bound) {
		t.Fatalf("unlock at %v, removal at %v: b's lease may still run", unlockAt.Sub(t0), removal.at.Sub(t0))
	}
}

func TestSiloThatDoesNotAcknowledgeAPhaseIsRemoved(t *testing.T) {
	h := newHarness(t, Config{})
	c := newCluster(h)
	c.add(member("a", "1"))
	c.run(4 * time.Second)
	b := c.add(member("b", "1"))
	b.noAck = true
	c.run(DefaultPhaseTimeout + 2*time.Second)
	if b.removed == "" || !strings.Contains(b.removed, "did not acknowledge the lock") {
		t.Fatalf("b removed for %q", b.removed)
	}
	if _, ok := h.tbl.Member("b"); ok {
		t.Fatal("b still in the table")
	}
}

func TestBurstOfJoinsIsCoalesced(t *testing.T) {
	h := newHarness(t, Config{})
	c := newCluster(h)
	// Ten silos start within 250 ms of each other.
	for i := range 10 {
		c.add(member(fmt.Sprintf("s%d", i), "1"))
	}
	c.run(6 * time.Second)
	if len(h.tbl.Members) != 10 {
		t.Fatalf("%d members committed, want 10", len(h.tbl.Members))
	}
	if h.tbl.Version > 2 {
		t.Fatalf("ten joins took %d table versions, want 1 or 2", h.tbl.Version)
	}
	if rounds := h.e.Status().LastRound.ID; rounds > 2 {
		t.Fatalf("ten joins took %d rounds", rounds)
	}
}

func TestDuplicateIDOfALiveSiloIsRejected(t *testing.T) {
	h := newHarness(t, Config{})
	c := newCluster(h)
	c.add(member("a", "1"))
	c.run(2 * time.Second)
	dup := c.add(member("a", "2"))
	c.run(time.Second)
	if !strings.Contains(dup.removed, "in use by a live silo") {
		t.Fatalf("duplicate got %q", dup.removed)
	}
	if m, _ := h.tbl.Member("a"); m.Incarnation != "1" {
		t.Fatalf("the duplicate replaced the live silo: %+v", m)
	}
}

func TestRestartedSiloReplacesItsPredecessor(t *testing.T) {
	h := newHarness(t, Config{})
	c := newCluster(h)
	c.add(member("a", "1"))
	c.run(2 * time.Second)
	old := c.silos[owner("a", "1")]
	old.frozen = true
	h.e.Disconnected(h.now, owner("a", "1")) // kill -9 closes its stream
	c.add(member("a", "2"))
	c.run(4 * time.Second)
	if m, _ := h.tbl.Member("a"); m.Incarnation != "2" {
		t.Fatalf("member a is %+v, want the new incarnation", m)
	}
	if _, gone := h.e.removed[owner("a", "1")]; !gone {
		t.Fatal("the old incarnation is not recorded as removed")
	}
}

func TestProtocolVersionMismatchIsRejected(t *testing.T) {
	h := newHarness(t, Config{})
	h.e.Heartbeat(h.now, Heartbeat{Member: member("a", "1"), Seq: 1, ProtocolVersion: ProtocolVersion + 1})
	h.drain()
	rej := h.take(MsgRejected)
	if len(rej) != 1 || !strings.Contains(rej[0].Reason, "protocol version") {
		t.Fatalf("rejections %+v", rej)
	}
	h.advance(time.Second)
	if len(h.props) != 0 {
		t.Fatalf("a silo of another protocol version was proposed: %+v", h.props)
	}
}

func TestNewLeaderRemovesNobodyForAFaultyHostTimeoutAndRerunsTheRound(t *testing.T) {
	a, b := member("a", "1"), member("b", "1")
	h := newHarness(t, Config{}, a, b)
	c := newCluster(h)
	// Only a reconnects quickly; b takes 2.5 s to find the new leader.
	c.add(a)
	c.run(2500 * time.Millisecond)
	if len(c.silos[owner("a", "1")].phases) != 0 {
		t.Fatal("the new leader started a round before every member reconnected")
	}
	c.add(b)
	c.run(4 * time.Second)
	if len(h.tbl.Members) != 2 {
		t.Fatalf("the new leader removed a member: %+v", h.tbl.Members)
	}
	if h.tbl.Version != 1 {
		t.Fatalf("a leader change bumped the table to %d", h.tbl.Version)
	}
	for _, s := range c.silos {
		if n := len(s.phases); n != 3 {
			t.Fatalf("%s saw %d phase messages, want a re-run round of 3", s.m.ID, n)
		}
	}
}

func TestNewLeaderStartsItsRoundAfterTheTimeoutWhenAMemberNeverReturns(t *testing.T) {
	a, b := member("a", "1"), member("b", "1")
	h := newHarness(t, Config{}, a, b)
	c := newCluster(h)
	c.add(a)
	c.run(DefaultFaultyHostTimeout + 3*time.Second)
	if _, ok := h.tbl.Member("b"); ok {
		t.Fatal("b never came back and is still a member")
	}
	if h.e.Status().Disseminated != h.tbl.Version {
		t.Fatalf("table v%d not disseminated (status %+v)", h.tbl.Version, h.e.Status())
	}
}

func TestClaimRefusedByANewerVersionJumpsPastIt(t *testing.T) {
	h := newHarness(t, Config{})
	c := newCluster(h)
	c.add(member("a", "1"))
	c.run(2 * time.Second)
	h.e.ClaimRefused(h.now, 41)
	c.run(time.Second)
	if h.tbl.Version <= 41 {
		t.Fatalf("table version %d, want past 41", h.tbl.Version)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, ""},
		{Config{LeasePeriod: 3 * time.Second}, "shorter than the faulty-host timeout"},
		{Config{DriftBound: 1.5}, "drift bound"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

func TestClaimRefusedByAVersionTheTableHasReachedChangesNothing(t *testing.T) {
	h := newHarness(t, Config{})
	c := newCluster(h)
	c.add(member("a", "1"))
	c.run(2 * time.Second)
	v := h.tbl.Version
	h.e.ClaimRefused(h.now, v)
	c.run(time.Second)
	if h.tbl.Version != v {
		t.Fatalf("a refusal by the committed version %d bumped the table to %d", v, h.tbl.Version)
	}
}

func TestAMemberAheadOfTheCommittedTableMakesItJumpPast(t *testing.T) {
	// Placement lost its data and started again at version 0; a silo still
	// runs on version 7 of the old tables.
	h := newHarness(t, Config{})
	h.e.Connected(h.now, owner("a", "1"))
	h.e.Heartbeat(h.now, Heartbeat{Member: member("a", "1"), Seq: 1, ProtocolVersion: ProtocolVersion, TableVersion: 7})
	h.drain()
	h.advance(time.Second)
	if h.tbl.Version <= 7 {
		t.Fatalf("table version %d, want past the member's 7", h.tbl.Version)
	}
}

func TestRemovedProcessesAndSilentNewcomersAreForgotten(t *testing.T) {
	h := newHarness(t, Config{})
	c := newCluster(h)
	a := c.add(member("a", "1"))
	c.run(2 * time.Second)
	a.frozen = true
	h.e.Disconnected(h.now, owner("a", "1"))
	// A newcomer that heartbeats once and goes before it joins.
	h.e.Heartbeat(h.now, Heartbeat{Member: member("n", "1"), Seq: 1, ProtocolVersion: ProtocolVersion})
	h.e.Disconnected(h.now, owner("n", "1"))
	c.run(5 * time.Second)
	if _, gone := h.e.removed[owner("a", "1")]; !gone {
		t.Fatal("a was not removed")
	}
	for range 11 {
		c.run(time.Minute)
	}
	if len(h.e.removed) != 0 || len(h.e.silos) != 0 {
		t.Fatalf("after 11 minutes the engine still tracks %d removed and %d silos", len(h.e.removed), len(h.e.silos))
	}
}
