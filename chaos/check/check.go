// Package check judges chaos-run histories: register linearizability,
// counter durability, reminder delivery and single activation. It relies
// only on what the history records and on its own reading of the design,
// never on the runtime's code, so a bug there cannot hide itself here.
package check

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Result is one checker's verdict.
type Result struct {
	Name  string
	Valid bool
	// Counts are the checker's tallies; each checker documents its own.
	Counts map[string]int
	// Violations break the property; any makes Valid false.
	Violations []Violation
	// Notes are rows worth reading that break nothing: turns in flight when
	// their silo lost the shard, keys whose check timed out.
	Notes []Violation
}

// Violation is one finding: what rule, about which key, when, and the
// evidence.
type Violation struct {
	What   string
	Detail string
	Key    string
	At     int64
}

func newResult(name string) Result {
	return Result{Name: name, Valid: true, Counts: map[string]int{}}
}

func (r *Result) violate(what, key string, at int64, format string, args ...any) {
	r.Valid = false
	r.Violations = append(r.Violations, Violation{What: what, Key: key, At: at, Detail: fmt.Sprintf(format, args...)})
}

func (r *Result) note(what, key string, at int64, format string, args ...any) {
	r.Notes = append(r.Notes, Violation{What: what, Key: key, At: at, Detail: fmt.Sprintf(format, args...)})
}

// String is a report of a few lines: the verdict, the counts, and each
// violation and note.
func (r Result) String() string {
	var b strings.Builder
	verdict := "valid"
	if !r.Valid {
		verdict = "INVALID"
	}
	fmt.Fprintf(&b, "%s: %s", r.Name, verdict)
	for _, k := range slices.Sorted(maps.Keys(r.Counts)) {
		fmt.Fprintf(&b, " %s=%d", k, r.Counts[k])
	}
	b.WriteByte('\n')
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "  violation: %s [%s at %d]: %s\n", v.What, v.Key, v.At, v.Detail)
	}
	for _, v := range r.Notes {
		fmt.Fprintf(&b, "  note: %s [%s at %d]: %s\n", v.What, v.Key, v.At, v.Detail)
	}
	return b.String()
}

// config holds the checkers' tunables.
type config struct {
	keyTimeout  time.Duration
	grace       time.Duration
	tolerance   time.Duration
	maxLateness time.Duration
	admitSlack  time.Duration
	// leaseHorizon, when set, is the last moment the lease records speak
	// for (Unix ns).
	leaseHorizon int64
	freezes      map[string][][2]int64 // silo → [from, until] of each freeze
	resumeSlack  time.Duration
}

func newConfig(opts []Option) config {
	c := config{
		keyTimeout:  10 * time.Second,
		grace:       5 * time.Second,
		tolerance:   10 * time.Millisecond,
		admitSlack:  100 * time.Millisecond,
		resumeSlack: time.Second,
	}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// Option tunes a checker.
type Option func(*config)

// KeyTimeout bounds the linearizability search for one key (Register);
// a key whose search runs out is reported unknown, neither valid nor
// illegal. Default 10 s; 0 means no bound.
func KeyTimeout(d time.Duration) Option { return func(c *config) { c.keyTimeout = d } }

// Grace exempts reminder ticks due in the last d of the run from having
// fired (Reminders). Default 5 s.
func Grace(d time.Duration) Option { return func(c *config) { c.grace = d } }

// Tolerance is how far a tick may fire before its due time, and how far a
// tick's recorded due time may be from the schedule's (Reminders).
// Default 10 ms.
func Tolerance(d time.Duration) Option { return func(c *config) { c.tolerance = d } }

// MaxLateness makes a tick that fired more than d after its due time a
// violation (Reminders). Default 0: lateness is only reported.
func MaxLateness(d time.Duration) Option { return func(c *config) { c.maxLateness = d } }

// AdmitSlack is the longest a turn may take from its admission by the silo
// to the start the app logged (SingleActivation): a turn is held to the
// claims and leases of any instant within d before its logged start.
// Default 100 ms.
func AdmitSlack(d time.Duration) Option { return func(c *config) { c.admitSlack = d } }

// LeaseHorizon says the lease records speak only up to t (Unix ns): the
// moment the harness last read the silos' leases. A turn starting later is
// not judged against them (SingleActivation counts it in
// turns_lease_unchecked): a lease extended after that reading was never
// recorded, so its absence proves nothing. Every other rule still applies.
func LeaseHorizon(t int64) Option { return func(c *config) { c.leaseHorizon = t } }

// Freeze is a span over which the harness held a silo's process stopped
// (SIGSTOP), in Unix ns: From is no later than the stop and Until no
// earlier than the resumption.
type Freeze struct {
	Silo        string
	From, Until int64
}

// Freezes tells SingleActivation when the harness froze which silo. A turn
// the app logged outside its silo's lease, but whose call the silo confirmed
// under the lease and claim (Turn.Confirmed) before a freeze of that silo
// that ended at most ResumeSlack before the turn's start, was held up by
// the freeze: it is judged as admitted when it was confirmed, and noted
// (late_after_freeze). Its writes are still judged when they committed.
func Freezes(fs []Freeze) Option {
	return func(c *config) {
		c.freezes = map[string][][2]int64{}
		for _, f := range fs {
			c.freezes[f.Silo] = append(c.freezes[f.Silo], [2]int64{f.From, f.Until})
		}
	}
}

// ResumeSlack is the longest a silo may take, once resumed after a freeze,
// to deliver a call it held (see Freezes). Default 1 s.
func ResumeSlack(d time.Duration) Option { return func(c *config) { c.resumeSlack = d } }

// ShardBits is how many top bits of an actor's hash name its shard.
const ShardBits = 12

// ShardOf is the shard of actor (actorType, id): the top ShardBits bits of
// xxhash64("<type>/<id>"), as the design specifies.
func ShardOf(actorType, id string) int {
	return int(xxhash.Sum64String(actorType+"/"+id) >> (64 - ShardBits))
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted by the
// nearest-rank method.
func percentile(sorted []int64, p int) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}
