// Package actor is Granary's actor runtime: it activates virtual actors on first
// call, runs their turns one at a time in arrival order, allows reentrancy only
// along one call chain, fires timers as turns, deactivates idle actors, fences
// every state write with the claim of the actor's shard, and drains on shutdown.
//
// Actor types come in two kinds behind one interface (Type): HTTP-callback types
// served by an app (package actor/callback) and native Go types (NativeType).
package actor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/granaryhq/granary/statestore"
)

// ID names one virtual actor.
type ID struct {
	Type string
	ID   string
}

func (id ID) String() string { return id.Type + "/" + id.ID }

// Type activates the actors of one actor type.
type Type interface {
	// Activate creates the instance for id, running under claim (the claim of
	// id's shard the activation was created under; it stays the same for the
	// activation's life). The runtime calls it once per activation, before
	// the first turn, and only after the claim was granted.
	Activate(ctx context.Context, id ID, claim statestore.Claim) (Instance, error)
}

// CallAborter is an optional capability of a Type whose calls do not end
// with their context (an app's: its HTTP calls run to their timeout). When
// the type's drain timeout passes with turns still running, the runtime
// calls AbortCalls, and the calls in flight must fail at once.
type CallAborter interface {
	AbortCalls()
}

// Instance is one activation of an actor. The runtime never calls two of its
// methods at once, except for reentrant calls along the turn's own call chain.
type Instance interface {
	// Invoke runs a method call.
	Invoke(ctx context.Context, req *Request) (*Response, error)
	// Remind delivers a reminder. Returning cancel deletes the reminder.
	Remind(ctx context.Context, r *ReminderCall) (cancel bool, err error)
	// Timer delivers a timer.
	Timer(ctx context.Context, t *TimerCall) error
	// Deactivate tells the actor that its activation ends.
	Deactivate(ctx context.Context) error
}

// Request is a method call. Its byte slices are valid only until the call returns.
type Request struct {
	Method string
	Body   []byte
	// ContentType of Body, if known.
	ContentType []byte
	// Query is the raw query string of the client's request, without "?".
	Query []byte
	// Header holds the client's headers to pass on to an HTTP-callback actor.
	Header []HeaderField
	// ReentrancyID is the call chain's ID when the actor type allows
	// reentrancy; the runtime sets it.
	ReentrancyID string
}

// HeaderField is one header line.
type HeaderField struct {
	Name, Value []byte
}

// DropHeaders removes, in place, the fields whose name drop reports, and
// returns what is left.
func DropHeaders(h []HeaderField, drop func(name []byte) bool) []HeaderField {
	kept := h[:0]
	for _, f := range h {
		if !drop(f.Name) {
			kept = append(kept, f)
		}
	}
	return kept
}

// Response is a method's result.
type Response struct {
	// Status is the HTTP status the actor answered with; native actors answer 200.
	Status      int
	Body        []byte
	ContentType []byte
	Header      []HeaderField
	release     func()
}

// SetRelease makes Release call f, for responses that borrow pooled buffers.
func (r *Response) SetRelease(f func()) { r.release = f }

// Release returns borrowed buffers; the response must not be used afterwards.
func (r *Response) Release() {
	if r != nil && r.release != nil {
		f := r.release
		r.release = nil
		f()
	}
}

// ReminderCall is one firing of a reminder.
type ReminderCall struct {
	Name    string
	Data    []byte // raw JSON, or nil
	DueTime string // as registered
	Period  string // as registered
}

// TimerCall is one firing of a timer.
type TimerCall struct {
	Name     string
	Callback string
	Data     []byte // raw JSON, or nil
	DueTime  string
	Period   string
}

// TypeConfig is the per-type behaviour of the runtime.
type TypeConfig struct {
	// IdleTimeout deactivates an actor this long after its last turn ended.
	IdleTimeout time.Duration
	// DrainTimeout bounds how long in-flight turns may run during a drain.
	DrainTimeout time.Duration
	// DrainRebalanced lets the running turns of actors whose shard moves to
	// another silo finish, up to DrainTimeout, before they are deactivated
	// (see DeactivateShards); without it they are not waited for.
	DrainRebalanced bool
	// Reentrancy allows a call carrying the chain that holds the actor's turn
	// to enter, up to MaxStackDepth nested turns.
	Reentrancy    bool
	MaxStackDepth int
}

// Defaults of TypeConfig, as documented in docs/api.md.
const (
	DefaultIdleTimeout   = 60 * time.Minute
	DefaultDrainTimeout  = 30 * time.Second
	DefaultMaxStackDepth = 32
)

// DefaultTypeConfig returns the documented defaults.
func DefaultTypeConfig() TypeConfig {
	return TypeConfig{
		IdleTimeout:     DefaultIdleTimeout,
		DrainTimeout:    DefaultDrainTimeout,
		DrainRebalanced: true,
		MaxStackDepth:   DefaultMaxStackDepth,
	}
}

// Placement tells the runtime under which claim this silo may serve an actor
// now. It is asked at every activation, as every turn starts and before every
// state write.
type Placement interface {
	// Claim returns the claim under which this silo may run id's turns now, or an error
	// wrapping ErrNotOwner when it may not (another silo owns the shard, the shard is
	// being handed over, the claim was refused, or the silo's lease lapsed). It is called as
	// every turn starts and before every write, so it must not do I/O once the shard is claimed.
	// Other errors (the store failed while claiming) mean it cannot tell now.
	Claim(ctx context.Context, id ID) (statestore.Claim, error)
}

// Errors returned by the runtime. Callers use errors.Is.
var (
	// ErrClosed: the runtime is draining or stopped.
	ErrClosed = errors.New("actor runtime is shutting down")
	// ErrTypeNotHosted: no registered type has this name.
	ErrTypeNotHosted = errors.New("actor type is not hosted")
	// ErrTypeUnavailable: the type is registered but cannot serve now (its app is unhealthy).
	ErrTypeUnavailable = errors.New("actor type is unavailable")
	// ErrStackDepth: a reentrant chain went deeper than the type's MaxStackDepth.
	ErrStackDepth = errors.New("reentrant call chain exceeds the maximum stack depth")
	// ErrDeadlock: the call would wait for a turn held by its own call chain.
	ErrDeadlock = errors.New("call would deadlock on its own call chain")
	// ErrTurnTimeout: the call waited longer than the turn-wait bound.
	ErrTurnTimeout = errors.New("timed out waiting for the actor's turn")
	// ErrNotActive: the operation needs an active actor and the actor is not active here.
	ErrNotActive = errors.New("actor is not active")
	// ErrNotOwner: this silo does not own the actor under its placement table.
	ErrNotOwner = errors.New("this silo does not own the actor")
	// ErrAppTimeout: the app did not answer a call of the actor's turn in
	// time. The app may still be running it, so the activation is recycled:
	// the actor's next turn runs on a fresh activation, made only once the
	// app has answered this one's deactivation.
	ErrAppTimeout = errors.New("the app did not answer the actor's call in time")
	// ErrSuspended, wrapped together with ErrNotOwner: this silo may not run
	// the actor's turns just now (its placement lease lapsed, or the shard is
	// locked for a moment), but keeps its activations and reminder schedules
	// and resumes when it may again.
	ErrSuspended = errors.New("this silo is suspended from serving the actor for now")
	// ErrFenced: the claim the activation was created under no longer holds
	// its shard's fence; it may not commit and is deactivated.
	ErrFenced = errors.New("actor activation is fenced: its shard is claimed by another")
)

// TypeError names the actor type an error is about.
type TypeError struct {
	Type   string
	Err    error // one of the sentinel errors
	Reason string
}

func (e *TypeError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("actor type %q: %v: %s", e.Type, e.Err, e.Reason)
	}
	return fmt.Sprintf("actor type %q: %v", e.Type, e.Err)
}

func (e *TypeError) Unwrap() error { return e.Err }
