// Package history defines what a chaos run records, one JSON object per
// line: client operations, the app's turns and reminder ticks, the nemesis's
// faults, the silos' lease intervals and the store's committed writes. The
// harness writes it while the run goes on; the checkers read it afterwards.
//
// Times are Unix nanoseconds on the clock of the machine the run happens on.
package history

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Kind names a client operation.
type Kind string

// The operations of the workloads: a register (read, write, compare-and-set)
// and a counter (increment, get).
const (
	KindRead  Kind = "read"
	KindWrite Kind = "write"
	KindCAS   Kind = "cas"
	KindIncr  Kind = "incr"
	KindGet   Kind = "get"
)

// Outcome is what the client learnt of an operation.
type Outcome string

const (
	// OK: the operation happened and its result is known.
	OK Outcome = "ok"
	// Fail: the operation certainly did not happen.
	Fail Outcome = "fail"
	// Info: the client does not know (a timeout, a lost connection); the
	// operation may have happened, at any time after its invocation.
	Info Outcome = "info"
)

// Op is one client operation.
//
// Value is the value a write or a compare-and-set writes, and the amount an
// increment adds (0 means 1). Expect is the value a compare-and-set expects;
// a compare-and-set whose expectation was not met is a Fail (it did not
// happen). Result is what an OK read or get returned, nil when the key held
// no value; for an OK increment it is the counter's value after the
// increment when the workload records it, nil otherwise. Fail and Info
// operations carry no Result.
type Op struct {
	Process   int     `json:"process"`
	Kind      Kind    `json:"kind"`
	Key       string  `json:"key"`
	Value     int64   `json:"value,omitempty"`
	Expect    int64   `json:"expect,omitempty"`
	Result    *int64  `json:"result,omitempty"`
	RequestID string  `json:"requestId,omitempty"`
	Invoke    int64   `json:"invoke"`
	Complete  int64   `json:"complete,omitempty"` // 0 for an Info that never returned
	Outcome   Outcome `json:"outcome"`
	Error     string  `json:"error,omitempty"`
}

// Delta is the amount an increment adds.
func (o Op) Delta() int64 {
	if o.Value == 0 {
		return 1
	}
	return o.Value
}

// MethodDeactivate is the Method of a Turn that records a deactivation.
const MethodDeactivate = "deactivate"

// Turn is one turn of an actor as the app logged it: the call's
// Granary-Activation header, when the app started and ended it, and whether
// the state write it made was acknowledged.
//
// Version and Incarnation are parsed from Activation; Silo is the silo the
// app runs beside (the activation's silo when the log does not say).
// CommitAt is when the app sent the acknowledged state write, so the write
// committed no earlier; it is Start when the app did not record it.
type Turn struct {
	Type        string `json:"actorType,omitempty"`
	Actor       string `json:"actor"`
	Silo        string `json:"silo"`
	Activation  string `json:"activation"`
	Version     uint64 `json:"version"`
	Incarnation string `json:"incarnation"`
	Method      string `json:"method,omitempty"`
	Start       int64  `json:"start"`
	End         int64  `json:"end"`
	Committed   bool   `json:"committed,omitempty"`
	CommitAt    int64  `json:"commitAt,omitempty"`
	// Confirmed is when the silo last confirmed the turn's claim and lease
	// before sending the call (its Granary-Claim-Confirmed header, Unix ns
	// on the silo's clock); 0 when the call did not say.
	Confirmed int64 `json:"confirmed,omitempty"`
}

// Claim returns the claim the turn ran under.
func (t Turn) Claim() (Claim, error) { return ParseClaim(t.Activation) }

// Tick is one fire of a reminder as the app saw it. Due is the due time the
// fire was for, 0 when the app was not told.
type Tick struct {
	Type       string `json:"actorType,omitempty"`
	Actor      string `json:"actor"`
	Reminder   string `json:"reminder"`
	Silo       string `json:"silo,omitempty"`
	Activation string `json:"activation,omitempty"`
	Due        int64  `json:"due,omitempty"`
	At         int64  `json:"at"`
}

// Fault is one fault the nemesis injected: a partition, a kill, a pause, a
// clock jump. End is 0 while it lasts (a run that ended with it).
type Fault struct {
	Kind   string `json:"kind"`
	Target string `json:"target"`
	Start  int64  `json:"start"`
	End    int64  `json:"end,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Lease is one interval over which a silo process held its placement lease,
// converted to the run's clock. Incarnation, when set, names the process.
type Lease struct {
	Silo        string `json:"silo"`
	Incarnation string `json:"incarnation,omitempty"`
	From        int64  `json:"from"`
	Until       int64  `json:"until"`
}

// StoreRecord is a state write the store committed, with the claim it was
// fenced with. CommitAt is no later than the commit itself (the time the
// write was issued, or a timestamp taken inside its transaction). Version,
// Silo and Incarnation are parsed from Claim.
type StoreRecord struct {
	Type        string `json:"actorType,omitempty"`
	Actor       string `json:"actor"`
	Key         string `json:"key,omitempty"`
	Claim       string `json:"claim"`
	Version     uint64 `json:"version"`
	Silo        string `json:"silo"`
	Incarnation string `json:"incarnation"`
	CommitAt    int64  `json:"commitAt"`
}

// Claim is a shard claim as the Granary-Activation header carries it:
// "<version>/<silo>/<incarnation>".
type Claim struct {
	Version     uint64
	Silo        string
	Incarnation string
}

// ParseClaim parses "<version>/<silo>/<incarnation>".
func ParseClaim(s string) (Claim, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return Claim{}, fmt.Errorf("claim %q: want <version>/<silo>/<incarnation>", s)
	}
	v, err := strconv.ParseUint(parts[0], 10, 64)
	if err != nil {
		return Claim{}, fmt.Errorf("claim %q: version: %w", s, err)
	}
	if parts[1] == "" || parts[2] == "" {
		return Claim{}, fmt.Errorf("claim %q: empty silo or incarnation", s)
	}
	return Claim{Version: v, Silo: parts[1], Incarnation: parts[2]}, nil
}

// String is "<version>/<silo>/<incarnation>".
func (c Claim) String() string {
	return strconv.FormatUint(c.Version, 10) + "/" + c.Silo + "/" + c.Incarnation
}

// Normalize checks o and returns it unchanged.
func (o Op) Normalize() (Op, error) {
	switch o.Kind {
	case KindRead, KindWrite, KindCAS, KindIncr, KindGet:
	default:
		return o, fmt.Errorf("op: unknown kind %q", o.Kind)
	}
	if o.Key == "" {
		return o, errors.New("op: empty key")
	}
	switch o.Outcome {
	case OK, Fail:
		if o.Complete < o.Invoke {
			return o, fmt.Errorf("op: completed at %d before its invocation at %d", o.Complete, o.Invoke)
		}
	case Info:
		if o.Complete != 0 && o.Complete < o.Invoke {
			return o, fmt.Errorf("op: completed at %d before its invocation at %d", o.Complete, o.Invoke)
		}
	default:
		return o, fmt.Errorf("op: unknown outcome %q", o.Outcome)
	}
	if o.Result != nil && o.Outcome != OK {
		return o, fmt.Errorf("op: a %s operation has a result", o.Outcome)
	}
	if o.Result != nil && (o.Kind == KindWrite || o.Kind == KindCAS) {
		return o, fmt.Errorf("op: a %s has a result", o.Kind)
	}
	return o, nil
}

// Normalize checks t, fills Version, Incarnation and (when empty) Silo from
// Activation, and CommitAt from Start when a committed turn has none.
func (t Turn) Normalize() (Turn, error) {
	if t.Actor == "" {
		return t, errors.New("turn: empty actor")
	}
	c, err := t.Claim()
	if err != nil {
		return t, fmt.Errorf("turn: activation: %w", err)
	}
	if t.Version != 0 && t.Version != c.Version {
		return t, fmt.Errorf("turn: version %d disagrees with activation %q", t.Version, t.Activation)
	}
	if t.Incarnation != "" && t.Incarnation != c.Incarnation {
		return t, fmt.Errorf("turn: incarnation %q disagrees with activation %q", t.Incarnation, t.Activation)
	}
	t.Version, t.Incarnation = c.Version, c.Incarnation
	if t.Silo == "" {
		t.Silo = c.Silo
	}
	if t.End < t.Start {
		return t, fmt.Errorf("turn: ended at %d before it started at %d", t.End, t.Start)
	}
	if t.Confirmed < 0 {
		return t, fmt.Errorf("turn: negative confirmation time %d", t.Confirmed)
	}
	if !t.Committed && t.CommitAt != 0 {
		return t, errors.New("turn: commit time without a commit")
	}
	if t.Committed {
		if t.CommitAt == 0 {
			t.CommitAt = t.Start
		}
		if t.CommitAt < t.Start || t.CommitAt > t.End {
			return t, fmt.Errorf("turn: commit at %d outside the turn [%d, %d]", t.CommitAt, t.Start, t.End)
		}
	}
	return t, nil
}

// Normalize checks k and returns it unchanged.
func (k Tick) Normalize() (Tick, error) {
	if k.Actor == "" || k.Reminder == "" {
		return k, errors.New("tick: empty actor or reminder")
	}
	if k.Activation != "" {
		if _, err := ParseClaim(k.Activation); err != nil {
			return k, fmt.Errorf("tick: activation: %w", err)
		}
	}
	if k.At == 0 {
		return k, errors.New("tick: no time")
	}
	return k, nil
}

// Normalize checks f and returns it unchanged.
func (f Fault) Normalize() (Fault, error) {
	if f.Kind == "" {
		return f, errors.New("fault: empty kind")
	}
	if f.End != 0 && f.End < f.Start {
		return f, fmt.Errorf("fault: ended at %d before it started at %d", f.End, f.Start)
	}
	return f, nil
}

// Normalize checks l and returns it unchanged.
func (l Lease) Normalize() (Lease, error) {
	if l.Silo == "" {
		return l, errors.New("lease: empty silo")
	}
	if l.Until < l.From {
		return l, fmt.Errorf("lease: runs until %d, before its start at %d", l.Until, l.From)
	}
	return l, nil
}

// Normalize checks r and fills Version, Silo and Incarnation from Claim.
func (r StoreRecord) Normalize() (StoreRecord, error) {
	if r.Actor == "" {
		return r, errors.New("store record: empty actor")
	}
	c, err := ParseClaim(r.Claim)
	if err != nil {
		return r, fmt.Errorf("store record: %w", err)
	}
	if (r.Version != 0 && r.Version != c.Version) || (r.Silo != "" && r.Silo != c.Silo) || (r.Incarnation != "" && r.Incarnation != c.Incarnation) {
		return r, fmt.Errorf("store record: version, silo or incarnation disagrees with claim %q", r.Claim)
	}
	r.Version, r.Silo, r.Incarnation = c.Version, c.Silo, c.Incarnation
	return r, nil
}
