package check

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/granaryhq/granary/chaos/history"
)

// turnInfo is a turn with its claim and the groups it belongs to.
type turnInfo struct {
	history.Turn
	claim   history.Claim
	actor   string // "<type>/<id>", or the id when the type is not known
	shard   string
	leaseOK bool  // started under a lease, or no lease data to say otherwise
	admit   int64 // when the silo admitted it: Start, or Confirmed for a call held by a freeze
}

// claimSeen is a claim of a shard and the earliest moment the history shows
// it in force: the start of a turn under it or the commit of a write fenced
// with it. The claim was made no later.
type claimSeen struct {
	claim history.Claim
	first int64
}

// shardClaims are the claims seen on one shard, in order of first sight,
// with the newest version seen up to each.
type shardClaims struct {
	byName map[string]*claimSeen
	order  []*claimSeen
	newest []*claimSeen // newest[i]: highest version among order[:i+1]
}

func (s *shardClaims) see(c history.Claim, at int64) {
	name := c.String()
	if cs, ok := s.byName[name]; ok {
		cs.first = min(cs.first, at)
		return
	}
	s.byName[name] = &claimSeen{claim: c, first: at}
}

func (s *shardClaims) index() {
	s.order = slices.SortedFunc(maps.Values(s.byName), func(a, b *claimSeen) int {
		return cmp.Or(cmp.Compare(a.first, b.first), cmp.Compare(a.claim.String(), b.claim.String()))
	})
	s.newest = make([]*claimSeen, len(s.order))
	for i, cs := range s.order {
		s.newest[i] = cs
		if i > 0 && s.newest[i-1].claim.Version >= cs.claim.Version {
			s.newest[i] = s.newest[i-1]
		}
	}
}

// newestBefore returns the claim of the highest version seen strictly
// before t.
func (s *shardClaims) newestBefore(t int64) (*claimSeen, bool) {
	i, _ := slices.BinarySearchFunc(s.order, t, func(cs *claimSeen, t int64) int {
		if cs.first < t {
			return -1
		}
		return 1
	})
	if i == 0 {
		return nil, false
	}
	return s.newest[i-1], true
}

// leaseBook holds each silo process's lease intervals, merged.
type leaseBook struct {
	silos     map[string]bool
	intervals map[[2]string][][2]int64 // (silo, incarnation or "") → sorted disjoint [from, until]
}

func newLeaseBook(leases []history.Lease) leaseBook {
	b := leaseBook{silos: map[string]bool{}, intervals: map[[2]string][][2]int64{}}
	for _, l := range leases {
		b.silos[l.Silo] = true
		k := [2]string{l.Silo, l.Incarnation}
		b.intervals[k] = append(b.intervals[k], [2]int64{l.From, l.Until})
	}
	for k, iv := range b.intervals {
		slices.SortFunc(iv, func(a, b [2]int64) int { return cmp.Compare(a[0], b[0]) })
		merged := iv[:1]
		for _, x := range iv[1:] {
			last := &merged[len(merged)-1]
			if x[0] <= last[1] {
				last[1] = max(last[1], x[1])
				continue
			}
			merged = append(merged, x)
		}
		b.intervals[k] = merged
	}
	return b
}

// held reports whether c's process held a lease at some instant of
// [from, to], and until when its latest lease that began by to ran.
func (b leaseBook) held(c history.Claim, from, to int64) (bool, int64) {
	ok, until := false, int64(-1)
	for _, inc := range []string{c.Incarnation, ""} {
		iv := b.intervals[[2]string{c.Silo, inc}]
		i, _ := slices.BinarySearchFunc(iv, to, func(x [2]int64, t int64) int {
			if x[0] <= t {
				return -1
			}
			return 1
		})
		if i > 0 {
			until = max(until, iv[i-1][1])
			ok = ok || iv[i-1][1] >= from
		}
	}
	return ok, until
}

func actorName(actorType, id string) string {
	if actorType == "" {
		return id
	}
	return actorType + "/" + id
}

// shardName is the shard an actor belongs to; without its type, each actor
// is taken as a shard of its own, which checks less but never wrongly.
func shardName(actorType, id string) string {
	if actorType == "" {
		return "actor " + id
	}
	return fmt.Sprintf("%s#%d", actorType, ShardOf(actorType, id))
}

// SingleActivation checks the turns the app logged, the silos' lease
// intervals and the store's committed writes against the single-activation
// rules:
//
//   - no turn is admitted under a claim older (of a lower table version)
//     than one already seen in force on its shard, and no two claims of one
//     version are seen on a shard;
//   - no two turns of one actor under different claims overlap in time;
//   - no turn starts on a silo process while it holds no lease (checked for
//     silos with lease records only, and, with LeaseHorizon, for turns that
//     start before the horizon only);
//   - no state write is committed under a claim older than one already seen
//     in force on its shard, whether the store's records or the turns' own
//     commits say so.
//
// Claims are seen in force from the first turn or write under them, which
// is no earlier than the claim itself, and a write commits no earlier than
// its CommitAt, so every violation reported is certain up to AdmitSlack,
// the time a turn may take from admission to its logged start. A turn that
// began under a valid lease before a newer claim appeared and overlaps the
// new owner's turns is a note, "in-flight at lease loss", provided it
// committed nothing after the newer claim appeared; otherwise the overlap
// is a violation. Deactivations need no lease and may run under an older
// claim (the old owner drains), but commit nothing after a newer one either.
//
// A turn whose call a frozen silo held (see Freezes) is judged as admitted
// when the silo confirmed it, and noted.
//
// Counts: turns, actors, shards, claims, writes, turns_lease_unchecked,
// commits_checked, writes_without_turn, overlaps_same_activation,
// in_flight_at_lease_loss, late_after_freeze, and one per kind of violation: stale_claim_turns,
// conflicting_claims, overlapping_turns, turns_without_lease, stale_commits,
// misplaced_turns.
func SingleActivation(turns []history.Turn, leases []history.Lease, writes []history.StoreRecord, opts ...Option) Result {
	cfg := newConfig(opts)
	slack := int64(cfg.admitSlack)
	res := newResult("single-activation")
	for _, k := range []string{"stale_claim_turns", "conflicting_claims", "overlapping_turns", "turns_without_lease", "stale_commits", "misplaced_turns", "in_flight_at_lease_loss"} {
		res.Counts[k] = 0
	}

	shards := map[string]*shardClaims{}
	see := func(shard string, c history.Claim, at int64) {
		s := shards[shard]
		if s == nil {
			s = &shardClaims{byName: map[string]*claimSeen{}}
			shards[shard] = s
		}
		s.see(c, at)
	}

	var ts []*turnInfo
	for _, raw := range turns {
		t, err := raw.Normalize()
		if err != nil {
			res.violate("malformed turn", raw.Actor, raw.Start, "%v", err)
			continue
		}
		c, _ := t.Claim()
		ti := &turnInfo{Turn: t, claim: c, actor: actorName(t.Type, t.Actor), shard: shardName(t.Type, t.Actor), leaseOK: true, admit: t.Start}
		ts = append(ts, ti)
		see(ti.shard, c, t.Start)
		if t.Silo != c.Silo {
			res.Counts["misplaced_turns"]++
			res.violate("turn on another silo", ti.actor, t.Start, "the app beside silo %q ran a turn of activation %s", t.Silo, t.Activation)
		}
	}
	var ws []history.StoreRecord
	for _, raw := range writes {
		w, err := raw.Normalize()
		if err != nil {
			res.violate("malformed store record", raw.Actor, raw.CommitAt, "%v", err)
			continue
		}
		ws = append(ws, w)
		see(shardName(w.Type, w.Actor), history.Claim{Version: w.Version, Silo: w.Silo, Incarnation: w.Incarnation}, w.CommitAt)
	}
	res.Counts["turns"] = len(ts)
	res.Counts["writes"] = len(ws)
	res.Counts["shards"] = len(shards)

	for _, name := range slices.Sorted(maps.Keys(shards)) {
		s := shards[name]
		s.index()
		res.Counts["claims"] += len(s.order)
		byVersion := map[uint64]*claimSeen{}
		for _, cs := range s.order {
			if other, ok := byVersion[cs.claim.Version]; ok {
				res.Counts["conflicting_claims"]++
				res.violate("two claims at one version", name, cs.first, "claims %s (seen from %d) and %s (seen from %d) share version %d",
					other.claim, other.first, cs.claim, cs.first, cs.claim.Version)
				continue
			}
			byVersion[cs.claim.Version] = cs
		}
	}

	// Admission: claims and leases.
	book := newLeaseBook(leases)
	res.Counts["late_after_freeze"] = 0
	for _, t := range ts {
		if t.Method == history.MethodDeactivate {
			continue
		}
		if f, ok := heldByFreeze(t, book, cfg, slack); ok {
			t.admit = t.Confirmed
			res.Counts["late_after_freeze"]++
			res.note("delivered after a freeze", t.actor, t.Start, "turn %s [%d, %d] under %s was confirmed by silo %s at %d under its lease, and reached the app %v later, after the silo was frozen [%d, %d]",
				t.Method, t.Start, t.End, t.Activation, t.claim.Silo, t.Confirmed, time.Duration(t.Start-t.Confirmed), f[0], f[1])
		}
		if newer, ok := shards[t.shard].newestBefore(t.admit - slack); ok && newer.claim.Version > t.claim.Version {
			res.Counts["stale_claim_turns"]++
			res.violate("turn under an older claim", t.actor, t.Start, "turn %s [%d, %d] under %s started after claim %s was in force (from %d) on %s",
				t.Method, t.Start, t.End, t.Activation, newer.claim, newer.first, t.shard)
		}
		if !book.silos[t.claim.Silo] || (cfg.leaseHorizon != 0 && t.admit > cfg.leaseHorizon) {
			res.Counts["turns_lease_unchecked"]++
			continue
		}
		held, until := book.held(t.claim, t.admit-slack, t.admit)
		if !held {
			t.leaseOK = false
			res.Counts["turns_without_lease"]++
			last := "no lease before it"
			if until >= 0 {
				last = fmt.Sprintf("its last lease ran until %d, %v before", until, time.Duration(t.Start-until))
			}
			res.violate("turn without a lease", t.actor, t.Start, "turn %s [%d, %d] under %s started while silo %s held no lease (%s)",
				t.Method, t.Start, t.End, t.Activation, t.claim.Silo, last)
		}
	}

	// Commits: the turns' own and the store's.
	claimsInTurns := map[string]bool{}
	for _, t := range ts {
		claimsInTurns[t.shard+" "+t.Activation] = true
		if !t.Committed {
			continue
		}
		res.Counts["commits_checked"]++
		if newer, ok := shards[t.shard].newestBefore(t.CommitAt); ok && newer.claim.Version > t.claim.Version {
			res.Counts["stale_commits"]++
			res.violate("stale-claim commit", t.actor, t.CommitAt, "turn %s under %s committed state at %d or later, after claim %s was in force (from %d)",
				t.Method, t.Activation, t.CommitAt, newer.claim, newer.first)
		}
	}
	for _, w := range ws {
		shard := shardName(w.Type, w.Actor)
		if !claimsInTurns[shard+" "+w.Claim] {
			res.Counts["writes_without_turn"]++
		}
		if newer, ok := shards[shard].newestBefore(w.CommitAt); ok && newer.claim.Version > w.Version {
			res.Counts["stale_commits"]++
			res.violate("stale-claim write committed", actorName(w.Type, w.Actor), w.CommitAt, "store committed %s under %s at %d or later, after claim %s was in force (from %d)",
				cmp.Or(w.Key, "a write"), w.Claim, w.CommitAt, newer.claim, newer.first)
		}
	}

	checkOverlaps(&res, ts, shards, book, slack)
	return res
}

// heldByFreeze reports whether t's call was held up by a freeze of its
// silo: the silo confirmed it at t.Confirmed while it held a lease, and a
// freeze of the silo began after that (within slack) and ended by the
// turn's start (within slack), at most ResumeSlack before it. It returns
// the freeze.
func heldByFreeze(t *turnInfo, book leaseBook, cfg config, slack int64) ([2]int64, bool) {
	if t.Confirmed == 0 || t.Start-t.Confirmed <= slack {
		return [2]int64{}, false
	}
	if held, _ := book.held(t.claim, t.Confirmed-slack, t.Confirmed); !held {
		return [2]int64{}, false
	}
	for _, f := range cfg.freezes[t.Silo] {
		if f[0] >= t.Confirmed-slack && f[0] < t.Start && f[1] <= t.Start+slack && f[1] >= t.Start-int64(cfg.resumeSlack) {
			return f, true
		}
	}
	return [2]int64{}, false
}

// checkOverlaps finds turns of one actor under different claims that
// overlap in time, and sorts each into a violation or an in-flight note.
func checkOverlaps(res *Result, ts []*turnInfo, shards map[string]*shardClaims, book leaseBook, slack int64) {
	byActor := map[string][]*turnInfo{}
	for _, t := range ts {
		byActor[t.actor] = append(byActor[t.actor], t)
	}
	res.Counts["actors"] = len(byActor)
	inFlight := map[*turnInfo]bool{}
	for _, actor := range slices.Sorted(maps.Keys(byActor)) {
		list := byActor[actor]
		slices.SortStableFunc(list, func(a, b *turnInfo) int { return cmp.Compare(a.Start, b.Start) })
		var active []*turnInfo
		for _, b := range list {
			kept := active[:0]
			for _, a := range active {
				if a.End > b.Start {
					kept = append(kept, a)
				}
			}
			active = kept
			for _, a := range active {
				if !(a.Start < b.End && b.Start < a.End) {
					continue
				}
				if a.Activation == b.Activation {
					res.Counts["overlaps_same_activation"]++
					continue
				}
				judgeOverlap(res, a, b, shards, book, slack, inFlight)
			}
			active = append(active, b)
		}
	}
	res.Counts["in_flight_at_lease_loss"] = len(inFlight)
}

// judgeOverlap decides whether the overlap of a and b (b starting no
// earlier) is an old owner's turn in flight or a violation.
func judgeOverlap(res *Result, a, b *turnInfo, shards map[string]*shardClaims, book leaseBook, slack int64, inFlight map[*turnInfo]bool) {
	span := func(t *turnInfo) string {
		return fmt.Sprintf("%s %s on %s [%d, %d]", cmp.Or(t.Method, "turn"), t.Activation, t.Silo, t.Start, t.End)
	}
	if a.claim.Version == b.claim.Version {
		res.Counts["overlapping_turns"]++
		res.violate("overlapping turns", a.actor, b.Start, "%s and %s overlap under two claims of version %d", span(a), span(b), a.claim.Version)
		return
	}
	old, cur := a, b
	if old.claim.Version > cur.claim.Version {
		old, cur = b, a
	}
	newClaimAt := cur.Start
	if cs, ok := shards[cur.shard].byName[cur.Activation]; ok {
		newClaimAt = cs.first
	}
	var why []string
	if old.Method != history.MethodDeactivate && old.admit-slack >= newClaimAt {
		why = append(why, fmt.Sprintf("the older turn started after claim %s was in force (from %d)", cur.Activation, newClaimAt))
	}
	if old.Method != history.MethodDeactivate && !old.leaseOK {
		why = append(why, "the older turn started without a lease")
	}
	if old.Committed && old.CommitAt > newClaimAt {
		why = append(why, fmt.Sprintf("the older turn committed at %d, after claim %s was in force (from %d)", old.CommitAt, cur.Activation, newClaimAt))
	}
	if len(why) > 0 {
		res.Counts["overlapping_turns"]++
		res.violate("overlapping turns", a.actor, b.Start, "%s and %s overlap: %s", span(a), span(b), strings.Join(why, "; "))
		return
	}
	if inFlight[old] {
		return
	}
	inFlight[old] = true
	lease := "no lease records for its silo"
	if book.silos[old.claim.Silo] {
		if held, until := book.held(old.claim, cur.Start, cur.Start); held {
			lease = "its silo still held a lease when the new owner's turn began"
		} else {
			lease = fmt.Sprintf("its silo's lease ran until %d", until)
		}
	}
	res.note("in-flight at lease loss", old.actor, old.Start, "%s overlapped %s and committed nothing after claim %s was in force (from %d); %s",
		span(old), span(cur), cur.Activation, newClaimAt, lease)
}
