package actor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/granaryhq/granary/internal/clock"
	"github.com/granaryhq/granary/statestore"
)

// Config configures a Runtime.
type Config struct {
	// Store keeps actor state and fences. Required.
	Store statestore.Store
	// Placement decides ownership; nil means SingleSilo.
	Placement Placement
	// Clock drives timers and idle collection; nil means clock.Real.
	Clock clock.Clock
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// TurnWait bounds how long a call waits for an actor's turn (default 60s).
	TurnWait time.Duration
	// ActivationTimeout bounds fencing and creating an activation (default 10s).
	ActivationTimeout time.Duration
	// DeactivationTimeout bounds telling one actor it is deactivated (default 10s).
	DeactivationTimeout time.Duration
	// DeactivationConcurrency bounds deactivations running at once (default 64).
	DeactivationConcurrency int
}

// Runtime hosts the virtual actors of this silo.
type Runtime struct {
	store      statestore.Store
	placement  Placement
	clock      clock.Clock
	log        *slog.Logger
	turnWait   time.Duration
	actTimeout time.Duration
	deaTimeout time.Duration
	deaSem     chan struct{}

	typesMu sync.Mutex // serialises writers of types
	types   atomic.Pointer[map[string]*typeEntry]

	shards [shardCount]shard
	idle   idleQueue

	calls    atomic.Int64 // calls inside the runtime
	closed   atomic.Bool
	drained  chan struct{} // signalled when calls reach 0 after closing
	abort    chan struct{} // closed when in-flight work must give up
	stopOnce sync.Once
	bg       sync.WaitGroup
	chainSeq atomic.Uint64
	chainPfx string

	watchers  []TypeWatcher // guarded by typesMu
	reminders atomic.Pointer[Reminders]
}

// typeEntry is a registered actor type. Its fields are fixed; re-registering a
// type installs a new entry used by new activations.
type typeEntry struct {
	name   string
	typ    Type
	cfg    TypeConfig
	native bool                   // a native Go type: turns always carry a call chain
	down   atomic.Pointer[string] // reason the type is unavailable, or nil
	active atomic.Int64
}

const shardCount = 64

type shard struct {
	mu sync.Mutex
	m  map[ID]*activation
}

// New returns a runtime; call Close to drain and stop it.
func New(cfg Config) (*Runtime, error) {
	if cfg.Store == nil {
		return nil, errors.New("actor: Config.Store is required")
	}
	rt := &Runtime{
		store:      cfg.Store,
		placement:  cfg.Placement,
		clock:      cfg.Clock,
		log:        cfg.Logger,
		turnWait:   cfg.TurnWait,
		actTimeout: cfg.ActivationTimeout,
		deaTimeout: cfg.DeactivationTimeout,
		drained:    make(chan struct{}, 1),
		abort:      make(chan struct{}),
	}
	if rt.placement == nil {
		rt.placement = SingleSilo{}
	}
	if rt.clock == nil {
		rt.clock = clock.Real
	}
	if rt.log == nil {
		rt.log = slog.Default()
	}
	if rt.turnWait <= 0 {
		rt.turnWait = 60 * time.Second
	}
	if rt.actTimeout <= 0 {
		rt.actTimeout = 10 * time.Second
	}
	if rt.deaTimeout <= 0 {
		rt.deaTimeout = 10 * time.Second
	}
	n := cfg.DeactivationConcurrency
	if n <= 0 {
		n = 64
	}
	rt.deaSem = make(chan struct{}, n)
	empty := map[string]*typeEntry{}
	rt.types.Store(&empty)
	for i := range rt.shards {
		rt.shards[i].m = map[ID]*activation{}
	}
	rt.chainPfx = "granary-" + strconv.FormatInt(rt.clock.Now().UnixNano(), 36) + "-"
	rt.idle.init(rt)
	rt.bg.Add(1)
	go func() {
		defer rt.bg.Done()
		rt.idle.run()
	}()
	return rt, nil
}

// Register hosts an actor type. Registering a name again replaces its Type and
// configuration for activations created afterwards.
func (rt *Runtime) Register(name string, t Type, cfg TypeConfig) error {
	if name == "" || t == nil {
		return errors.New("actor: Register needs a type name and a Type")
	}
	def := DefaultTypeConfig()
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = def.IdleTimeout
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = def.DrainTimeout
	}
	if cfg.MaxStackDepth <= 0 {
		cfg.MaxStackDepth = def.MaxStackDepth
	}
	rt.typesMu.Lock()
	defer rt.typesMu.Unlock()
	next := maps.Clone(*rt.types.Load())
	_, native := t.(*nativeType)
	te := &typeEntry{name: name, typ: t, cfg: cfg, native: native}
	if old := next[name]; old != nil {
		te.active.Store(old.active.Load())
		te.down.Store(old.down.Load())
	}
	_, existed := next[name]
	next[name] = te
	rt.types.Store(&next)
	if !existed {
		rt.notifyLocked(name, true)
	}
	rt.log.Info("actor type registered", "type", name, "idleTimeout", cfg.IdleTimeout, "reentrancy", cfg.Reentrancy)
	return nil
}

// Unregister stops hosting an actor type and deactivates its actors.
func (rt *Runtime) Unregister(ctx context.Context, name string) {
	rt.typesMu.Lock()
	next := maps.Clone(*rt.types.Load())
	_, ok := next[name]
	delete(next, name)
	rt.types.Store(&next)
	if ok {
		rt.notifyLocked(name, false)
	}
	rt.typesMu.Unlock()
	if !ok {
		return
	}
	rt.log.Info("actor type unregistered", "type", name)
	rt.deactivateWhere(ctx, "type unregistered", func(a *activation) bool { return a.id.Type == name })
}

// SetAvailable marks a hosted type as able to serve (reason == "") or not (the
// reason is reported to callers, e.g. that its app is unhealthy).
func (rt *Runtime) SetAvailable(name, reason string) {
	te := (*rt.types.Load())[name]
	if te == nil {
		return
	}
	if reason == "" {
		te.down.Store(nil)
	} else {
		te.down.Store(&reason)
	}
}

// Hosts reports whether the type is registered (available or not).
func (rt *Runtime) Hosts(name string) bool {
	_, ok := (*rt.types.Load())[name]
	return ok
}

// TypeStats describes one hosted type.
type TypeStats struct {
	Type      string
	Active    int
	Available bool
	Reason    string // why the type is unavailable
}

// Stats lists the hosted types by name.
func (rt *Runtime) Stats() []TypeStats {
	types := *rt.types.Load()
	out := make([]TypeStats, 0, len(types))
	for _, te := range types {
		s := TypeStats{Type: te.name, Active: int(te.active.Load()), Available: true}
		if r := te.down.Load(); r != nil {
			s.Available, s.Reason = false, *r
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

func (rt *Runtime) lookupType(name string) (*typeEntry, error) {
	te := (*rt.types.Load())[name]
	if te == nil {
		return nil, &TypeError{Type: name, Err: ErrTypeNotHosted}
	}
	if r := te.down.Load(); r != nil {
		return nil, &TypeError{Type: name, Err: ErrTypeUnavailable, Reason: *r}
	}
	return te, nil
}

// Invoke calls a method on an actor as one turn, activating the actor if needed.
// The call chain travels in ctx (see WithCallChain).
func (rt *Runtime) Invoke(ctx context.Context, id ID, req *Request) (*Response, error) {
	var resp *Response
	err := rt.turn(ctx, id, func(ctx context.Context, a *activation, chain string) error {
		if a.te.cfg.Reentrancy {
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

// turn runs fn as one turn of the actor.
func (rt *Runtime) turn(ctx context.Context, id ID, fn func(ctx context.Context, a *activation, chain string) error) error {
	chain := CallChain(ctx)
	onlyReentrant := !rt.enter()
	if onlyReentrant {
		if chain == "" {
			return ErrClosed
		}
		// While draining, a turn in progress may still call back into its own chain.
		rt.calls.Add(1)
	}
	defer rt.exit()

	te, err := rt.lookupType(id.Type)
	if err != nil {
		return err
	}
	for {
		a, err := rt.activation(te, id, onlyReentrant)
		if err != nil {
			return err
		}
		if chain == "" && (a.te.cfg.Reentrancy || a.te.native) {
			chain = rt.newChain()
			ctx = WithCallChain(ctx, chain)
		}
		err = a.acquire(ctx, rt, chain, onlyReentrant)
		if g, ok := err.(goneError); ok {
			select {
			case <-g.gone:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err != nil {
			return err
		}
		// Ownership is checked when the turn starts, not only at activation:
		// the placement may have moved the actor while this activation lived
		// or while the call waited for its turn.
		if _, owned := rt.placement.Owns(id); !owned {
			a.release(rt)
			return fmt.Errorf("actor %s: %w", id, ErrNotOwner)
		}
		err = fn(ctx, a, chain)
		a.release(rt)
		return err
	}
}

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

func (rt *Runtime) newChain() string {
	return rt.chainPfx + strconv.FormatUint(rt.chainSeq.Add(1), 36)
}

func (rt *Runtime) shard(id ID) *shard {
	// FNV-1a over type, a separator and id.
	h := uint32(2166136261)
	for i := 0; i < len(id.Type); i++ {
		h = (h ^ uint32(id.Type[i])) * 16777619
	}
	h = (h ^ '/') * 16777619
	for i := 0; i < len(id.ID); i++ {
		h = (h ^ uint32(id.ID[i])) * 16777619
	}
	return &rt.shards[h%shardCount]
}

// activation returns the live activation of id, activating it if needed.
func (rt *Runtime) activation(te *typeEntry, id ID, existingOnly bool) (*activation, error) {
	sh := rt.shard(id)
	sh.mu.Lock()
	a := sh.m[id]
	created := false
	if a == nil {
		if existingOnly {
			sh.mu.Unlock()
			return nil, ErrClosed
		}
		a = &activation{id: id, te: te, ready: make(chan struct{})}
		sh.m[id] = a
		created = true
	}
	sh.mu.Unlock()
	if created {
		rt.activate(a, sh)
	} else {
		<-a.ready
	}
	if a.err != nil {
		return nil, a.err
	}
	return a, nil
}

// activate fences and creates the actor's instance; on failure it removes the
// activation so the next call tries again.
func (rt *Runtime) activate(a *activation, sh *shard) {
	ctx, cancel := context.WithTimeout(context.Background(), rt.actTimeout)
	defer cancel()
	err := rt.activateInstance(ctx, a)
	a.mu.Lock()
	if err != nil {
		a.err = err
		a.state = dead
		if a.gone != nil {
			close(a.gone)
		}
	} else {
		a.state = active
		a.lastUse = rt.clock.Now()
	}
	a.mu.Unlock()
	if err != nil {
		sh.mu.Lock()
		if sh.m[a.id] == a {
			delete(sh.m, a.id)
		}
		sh.mu.Unlock()
		rt.log.Warn("actor activation failed", "actor", a.id.String(), "err", err)
	} else {
		a.te.active.Add(1)
		rt.idle.add(a, a.lastUse.Add(a.te.cfg.IdleTimeout))
	}
	close(a.ready)
}

func (rt *Runtime) activateInstance(ctx context.Context, a *activation) error {
	version, owned := rt.placement.Owns(a.id)
	if !owned {
		return fmt.Errorf("actor %s: %w", a.id, ErrNotOwner)
	}
	if err := rt.store.Fence(ctx, statestore.FenceKey(a.id.Type, a.id.ID), version); err != nil {
		if errors.Is(err, statestore.ErrFenced) {
			return fmt.Errorf("actor %s: %w: %v", a.id, ErrFenced, err)
		}
		return fmt.Errorf("actor %s: activating: %w", a.id, err)
	}
	a.fence = version
	inst, err := a.te.typ.Activate(ctx, a.id)
	if err != nil {
		return fmt.Errorf("actor %s: activating: %w", a.id, err)
	}
	a.inst = inst
	return nil
}

// lookupActive returns the activation of id if it is active here.
func (rt *Runtime) lookupActive(id ID) *activation {
	sh := rt.shard(id)
	sh.mu.Lock()
	a := sh.m[id]
	sh.mu.Unlock()
	if a == nil {
		return nil
	}
	select {
	case <-a.ready:
	default:
		return nil
	}
	if a.err != nil {
		return nil
	}
	return a
}

// IsActive reports whether the actor is active on this silo.
func (rt *Runtime) IsActive(id ID) bool {
	a := rt.lookupActive(id)
	if a == nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state == active
}

// GetState reads one state entry of an actor from the store. It needs no activation.
func (rt *Runtime) GetState(ctx context.Context, id ID, key string) (statestore.Item, error) {
	return rt.store.Get(ctx, statestore.ActorStateKey(id.Type, id.ID, key))
}

// Transact commits state operations of an active actor atomically, fenced by the
// activation's token. Op keys are the actor's state keys; Transact rewrites them
// to store keys. It fails with ErrNotActive when the actor is not active here.
func (rt *Runtime) Transact(ctx context.Context, id ID, ops []statestore.Op) error {
	a := rt.lookupActive(id)
	if a == nil {
		return fmt.Errorf("actor %s: %w on this silo", id, ErrNotActive)
	}
	if _, owned := rt.placement.Owns(id); !owned {
		return fmt.Errorf("actor %s: %w", id, ErrNotOwner)
	}
	for i := range ops {
		ops[i].Key = statestore.ActorStateKey(id.Type, id.ID, ops[i].Key)
	}
	txn := statestore.Txn{
		Fence: &statestore.FenceCheck{Key: statestore.FenceKey(id.Type, id.ID), Token: a.fence},
		Ops:   ops,
	}
	err := rt.store.Transact(ctx, txn)
	if errors.Is(err, statestore.ErrFenced) {
		rt.log.Warn("stale activation fenced; deactivating", "actor", id.String(), "token", a.fence)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), a.te.cfg.DrainTimeout)
			defer cancel()
			rt.deactivate(ctx, a, "fenced by a newer activation")
		}()
		return fmt.Errorf("actor %s: %w: %v", id, ErrFenced, err)
	}
	return err
}

// ActivationToken returns the fencing token the actor's activation holds, if
// it is active here, for writes made on its behalf (such as reminder records).
func (rt *Runtime) ActivationToken(id ID) (uint64, bool) {
	a := rt.lookupActive(id)
	if a == nil {
		return 0, false
	}
	return a.fence, true
}

// beginDeactivation marks a as deactivating and turns its queued calls away, so
// they retry on a new activation. With ifIdle it does nothing when any call is
// admitted. It returns ok=false when a is not active (or not idle), and
// otherwise a channel closed when the calls still running have ended (nil
// when none are running).
func (a *activation) beginDeactivation(ifIdle bool) (quiet <-chan struct{}, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state != active || (ifIdle && a.pending > 0) {
		return nil, false
	}
	a.state = deactivating
	a.turnAwayLocked()
	if a.pending > 0 {
		a.quiet = make(chan struct{})
		return a.quiet, true
	}
	return nil, true
}

// deactivate ends an activation: no new turn starts, running turns may finish
// until ctx ends, then its timers stop, its instance is told, and it is removed.
func (rt *Runtime) deactivate(ctx context.Context, a *activation, reason string) {
	quiet, ok := a.beginDeactivation(false)
	if !ok {
		return
	}
	if quiet != nil {
		select {
		case <-quiet:
		case <-ctx.Done():
			rt.log.Warn("deactivating actor with turns still running", "actor", a.id.String(), "reason", reason)
		}
	}
	rt.deaSem <- struct{}{}
	defer func() { <-rt.deaSem }()
	rt.finishDeactivation(a, reason)
}

// finishDeactivation stops the actor's timers, tells its instance, and removes it.
func (rt *Runtime) finishDeactivation(a *activation, reason string) {
	a.mu.Lock()
	timers := a.timers
	a.timers = nil
	a.mu.Unlock()
	for _, t := range timers {
		t.stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), rt.deaTimeout)
	if err := a.inst.Deactivate(ctx); err != nil {
		rt.log.Warn("actor deactivation callback failed", "actor", a.id.String(), "reason", reason, "err", err)
	} else {
		rt.log.Debug("actor deactivated", "actor", a.id.String(), "reason", reason)
	}
	cancel()
	sh := rt.shard(a.id)
	sh.mu.Lock()
	if sh.m[a.id] == a {
		delete(sh.m, a.id)
	}
	sh.mu.Unlock()
	a.te.active.Add(-1)
	a.mu.Lock()
	a.state = dead
	if a.gone != nil {
		close(a.gone)
	}
	a.mu.Unlock()
}

// deactivateWhere deactivates every activation matching match, letting their
// running turns finish until ctx ends.
func (rt *Runtime) deactivateWhere(ctx context.Context, reason string, match func(*activation) bool) {
	var list []*activation
	for i := range rt.shards {
		sh := &rt.shards[i]
		sh.mu.Lock()
		for _, a := range sh.m {
			if match(a) {
				list = append(list, a)
			}
		}
		sh.mu.Unlock()
	}
	var wg sync.WaitGroup
	for _, a := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-a.ready
			if a.err == nil {
				rt.deactivate(ctx, a, reason)
			}
		}()
	}
	wg.Wait()
}

// Close drains the runtime: new calls are refused with ErrClosed, calls in
// flight may finish until the longest DrainTimeout of the hosted types (or ctx)
// passes, then every actor is deactivated. Close does not close the store.
func (rt *Runtime) Close(ctx context.Context) error {
	if rt.closed.Swap(true) {
		return nil
	}
	drain := time.Duration(0)
	for _, te := range *rt.types.Load() {
		drain = max(drain, te.cfg.DrainTimeout)
	}
	if drain == 0 {
		drain = DefaultDrainTimeout
	}
	timer := rt.clock.NewTimer(drain)
	defer timer.Stop()
	start := rt.clock.Now()
	for rt.calls.Load() > 0 {
		select {
		case <-rt.drained:
		case <-timer.C():
			rt.log.Warn("drain timeout: aborting calls still in flight", "calls", rt.calls.Load(), "timeout", drain)
			rt.stop()
		case <-ctx.Done():
			rt.log.Warn("drain interrupted: aborting calls still in flight", "calls", rt.calls.Load())
			rt.stop()
		}
		if rt.isStopped() {
			break
		}
	}
	rt.stop()
	n := rt.activeCount()
	rt.log.Info("drained; deactivating actors", "actors", n, "took", rt.clock.Now().Sub(start))
	// Turns still running past the drain timeout do not delay deactivation.
	dctx, cancel := context.WithCancel(context.Background())
	if rt.calls.Load() > 0 {
		cancel()
	}
	defer cancel()
	rt.deactivateWhere(dctx, "shutdown", func(*activation) bool { return true })
	rt.bg.Wait()
	return nil
}

func (rt *Runtime) stop() {
	rt.stopOnce.Do(func() {
		close(rt.abort)
		rt.idle.stop()
	})
}

func (rt *Runtime) isStopped() bool {
	select {
	case <-rt.abort:
		return true
	default:
		return false
	}
}

func (rt *Runtime) activeCount() int {
	n := 0
	for _, te := range *rt.types.Load() {
		n += int(te.active.Load())
	}
	return n
}

type chainKey struct{}

// WithCallChain returns ctx carrying the call chain ID of a request, so that a
// nested call made from within a turn is recognised as part of that turn.
func WithCallChain(ctx context.Context, chain string) context.Context {
	if chain == "" {
		return ctx
	}
	return context.WithValue(ctx, chainKey{}, chain)
}

// CallChain returns the call chain ID carried by ctx, or "".
func CallChain(ctx context.Context) string {
	s, _ := ctx.Value(chainKey{}).(string)
	return s
}

// Closed reports whether the runtime has begun to drain.
func (rt *Runtime) Closed() bool { return rt.closed.Load() }

// QueueLength returns how many calls wait for the actor's turn (0 when it is
// not active here).
func (rt *Runtime) QueueLength(id ID) int {
	a := rt.lookupActive(id)
	if a == nil {
		return 0
	}
	return a.queueLen()
}
