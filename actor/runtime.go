package actor

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/granaryhq/granary/internal/clock"
	"github.com/granaryhq/granary/statestore"
)

// Config configures a Runtime.
type Config struct {
	// Store keeps actor state and shard fences. Required.
	Store statestore.Store
	// Placement grants the claims turns and writes run under. Nil means a
	// SingleSilo claiming every shard at version 1 of cluster "local" with a
	// fresh incarnation: enough for one runtime on a store. A runtime that
	// starts again on the store of an earlier one (same cluster) needs a
	// higher version, so give it a SingleSilo of its own (see
	// statestore.NextVersion).
	Placement Placement
	// Clock drives timers and idle collection; nil means clock.Real.
	Clock clock.Clock
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// TurnWait bounds how long a call waits for an actor's turn (default 60s).
	TurnWait time.Duration
	// ActivationTimeout bounds claiming and creating an activation (default 10s).
	ActivationTimeout time.Duration
	// DeactivationTimeout bounds telling one actor it is deactivated (default
	// 10s); at shutdown it bounds telling all of them.
	DeactivationTimeout time.Duration
	// DeactivationConcurrency bounds deactivations running at once (default 64).
	DeactivationConcurrency int
	// Observer is told about turns and activations, for metrics; nil
	// observes nothing.
	Observer Observer
	// Tracer makes a span of every turn, a child of the span in the call's
	// context; nil traces nothing.
	Tracer trace.Tracer
}

// Runtime hosts the virtual actors of this silo.
//
// The runtime's files, by concern: registry.go (hosted types), activation.go
// (the activation table and activating), turn.go and turnqueue.go (turns),
// timers.go, idle.go (idle collection), deactivate.go, drain.go (Close),
// state.go (actor state), chain.go (call chains), native.go (Go actors).
type Runtime struct {
	store               statestore.Store
	placement           Placement
	clock               clock.Clock
	log                 *slog.Logger
	turnWait            time.Duration
	activationTimeout   time.Duration
	deactivationTimeout time.Duration
	deactivationSlots   chan struct{} // bounds deactivations running at once

	typesMu  sync.Mutex // serialises writers of types and watchers
	types    atomic.Pointer[map[string]*registration]
	watchers []TypeWatcher // guarded by typesMu

	shards [shardCount]shard
	idle   idleQueue

	calls    atomic.Int64 // calls inside the runtime
	closed   atomic.Bool
	drained  chan struct{} // signalled when calls reach 0 after closing
	abort    chan struct{} // closed when in-flight work must give up
	stopOnce sync.Once

	bgMu     sync.Mutex // guards bgClosed and Add on bg
	bg       sync.WaitGroup
	bgClosed bool

	reminders atomic.Pointer[Reminders]

	observer Observer
	tracer   trace.Tracer
	timed    bool // observer or tracer set: turns are timed
}

// New returns a runtime; call Close to drain and stop it.
func New(cfg Config) (*Runtime, error) {
	if cfg.Store == nil {
		return nil, errors.New("actor: Config.Store is required")
	}
	rt := &Runtime{
		store:               cfg.Store,
		placement:           cfg.Placement,
		clock:               cfg.Clock,
		log:                 cfg.Logger,
		turnWait:            cfg.TurnWait,
		activationTimeout:   cfg.ActivationTimeout,
		deactivationTimeout: cfg.DeactivationTimeout,
		drained:             make(chan struct{}, 1),
		abort:               make(chan struct{}),
		observer:            cfg.Observer,
		tracer:              cfg.Tracer,
		timed:               cfg.Observer != nil || cfg.Tracer != nil,
	}
	if rt.clock == nil {
		rt.clock = clock.Real
	}
	if rt.log == nil {
		rt.log = slog.Default()
	}
	if rt.placement == nil {
		rt.placement = NewSingleSilo(cfg.Store, statestore.Claim{Cluster: "local", Version: 1, Silo: "local", Incarnation: NewIncarnation()}, rt.log)
	}
	if rt.turnWait <= 0 {
		rt.turnWait = 60 * time.Second
	}
	if rt.activationTimeout <= 0 {
		rt.activationTimeout = 10 * time.Second
	}
	if rt.deactivationTimeout <= 0 {
		rt.deactivationTimeout = 10 * time.Second
	}
	n := cfg.DeactivationConcurrency
	if n <= 0 {
		n = 64
	}
	rt.deactivationSlots = make(chan struct{}, n)
	empty := map[string]*registration{}
	rt.types.Store(&empty)
	for i := range rt.shards {
		rt.shards[i].m = map[ID]*activation{}
	}
	rt.idle.init(rt)
	rt.goTracked(rt.idle.run)
	return rt, nil
}

// Invoke calls a method on an actor as one turn, activating the actor if needed.
// The call chain travels in ctx (see WithCallChain).
func (rt *Runtime) Invoke(ctx context.Context, id ID, req *Request) (*Response, error) {
	var resp *Response
	err := rt.turn(ctx, id, func(ctx context.Context, a *activation, chain string) error {
		if a.reg.cfg.Reentrancy {
			req.ReentrancyID = chain
		}
		var err error
		resp, err = a.inst.Invoke(ctx, req)
		return err
	})
	return resp, err
}

// Remind delivers a reminder to an actor as one turn. It reports whether the
// actor asked for the reminder to be cancelled.
func (rt *Runtime) Remind(ctx context.Context, id ID, call *ReminderCall) (cancel bool, err error) {
	err = rt.turn(ctx, id, func(ctx context.Context, a *activation, _ string) error {
		var err error
		cancel, err = a.inst.Remind(ctx, call)
		return err
	})
	return cancel, err
}

// Placement is the placement the runtime asks for claims.
func (rt *Runtime) Placement() Placement { return rt.placement }

// enter counts a call into the runtime; false once the runtime is closed.
func (rt *Runtime) enter() bool {
	rt.calls.Add(1)
	if rt.closed.Load() {
		rt.exit()
		return false
	}
	return true
}

func (rt *Runtime) exit() {
	if rt.calls.Add(-1) == 0 && rt.closed.Load() {
		select {
		case rt.drained <- struct{}{}:
		default:
		}
	}
}
