package actor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync/atomic"
	"time"
)

// registration is one registration of an actor type. Its fields are fixed:
// registering the name again installs a new registration, used by the
// activations created afterwards, while existing ones keep theirs.
type registration struct {
	name   string
	typ    Type
	cfg    TypeConfig
	native bool // a native Go type: its turns always carry a call chain
	// state is shared by every registration of the name until it is
	// unregistered, so counts and availability survive re-registration.
	state *typeState
	// retired is set when the registration is replaced or unregistered; no
	// new activation is created under it after that.
	retired atomic.Bool
	// aborted is set when the drain timeout passed with its turns running:
	// a turn that fails after it was aborted, not by the app.
	aborted atomic.Bool
}

// typeState is what the runtime tracks per hosted type name.
type typeState struct {
	active atomic.Int64           // activations that finished activating and are not dead
	down   atomic.Pointer[string] // why the type is unavailable, or nil
	obs    TypeObserver
}

// typeObserver is the observer of a newly registered type.
func (rt *Runtime) typeObserver(name string) TypeObserver {
	if rt.observer == nil {
		return noTypeObserver{}
	}
	return rt.observer.Type(name)
}

// TypeRegistration names an actor type to host, for RegisterTypes.
type TypeRegistration struct {
	Name   string
	Type   Type
	Config TypeConfig
}

// Register hosts an actor type. Registering a name again replaces its Type and
// configuration for activations created afterwards.
func (rt *Runtime) Register(name string, t Type, cfg TypeConfig) error {
	return rt.RegisterTypes([]TypeRegistration{{Name: name, Type: t, Config: cfg}})
}

// RegisterTypes hosts several actor types in one step (an app's whole config):
// the cost grows with the number of types, not with its square. The batch is
// refused whole when a name is empty, listed twice, or lacks a Type.
func (rt *Runtime) RegisterTypes(regs []TypeRegistration) error {
	seen := make(map[string]bool, len(regs))
	for _, r := range regs {
		switch {
		case r.Name == "" || r.Type == nil:
			return errors.New("actor: registering a type needs a name and a Type")
		case seen[r.Name]:
			return fmt.Errorf("actor: type %q is listed twice", r.Name)
		}
		seen[r.Name] = true
	}
	if len(regs) == 0 {
		return nil
	}
	rt.typesMu.Lock()
	defer rt.typesMu.Unlock()
	next := maps.Clone(*rt.types.Load())
	var added []string
	for _, r := range regs {
		cfg := withDefaults(r.Config)
		_, native := r.Type.(*nativeType)
		reg := &registration{name: r.Name, typ: r.Type, cfg: cfg, native: native}
		if old := next[r.Name]; old != nil {
			reg.state = old.state
			old.retired.Store(true)
		} else {
			reg.state = &typeState{obs: rt.typeObserver(r.Name)}
			added = append(added, r.Name)
		}
		next[r.Name] = reg
	}
	rt.types.Store(&next)
	for _, name := range added {
		rt.notifyLocked(name, true)
	}
	if len(regs) == 1 {
		r := next[regs[0].Name]
		rt.log.Info("actor type registered", "type", r.name, "idleTimeout", r.cfg.IdleTimeout, "reentrancy", r.cfg.Reentrancy)
	} else {
		rt.log.Info("actor types registered", "types", len(regs), "new", len(added))
	}
	return nil
}

func withDefaults(cfg TypeConfig) TypeConfig {
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
	return cfg
}

// Unregister stops hosting an actor type and deactivates its actors. When it
// returns, no activation of the type exists and none is created.
func (rt *Runtime) Unregister(ctx context.Context, name string) {
	rt.UnregisterTypes(ctx, []string{name})
}

// UnregisterTypes stops hosting several types in one step and deactivates
// their actors, letting their running turns finish until ctx ends.
func (rt *Runtime) UnregisterTypes(ctx context.Context, names []string) {
	rt.typesMu.Lock()
	next := maps.Clone(*rt.types.Load())
	gone := make(map[string]bool, len(names))
	for _, name := range names {
		if reg := next[name]; reg != nil {
			// Retired before the table is scanned (see activation).
			reg.retired.Store(true)
			delete(next, name)
			gone[name] = true
		}
	}
	rt.types.Store(&next)
	for name := range gone {
		rt.notifyLocked(name, false)
	}
	rt.typesMu.Unlock()
	if len(gone) == 0 {
		return
	}
	if len(gone) == 1 {
		rt.log.Info("actor type unregistered", "type", names[0])
	} else {
		rt.log.Info("actor types unregistered", "types", len(gone))
	}
	// Only activations of retired registrations: the name may have been
	// registered anew meanwhile, and its new activations stay.
	rt.deactivateWhere(ctx, "type unregistered", func(a *activation) bool {
		return gone[a.id.Type] && a.reg.retired.Load()
	}, time.Time{})
}

// SetAvailable marks a hosted type as able to serve (reason == "") or not (the
// reason is reported to callers, e.g. that its app is unhealthy).
func (rt *Runtime) SetAvailable(name, reason string) {
	reg := (*rt.types.Load())[name]
	if reg == nil {
		return
	}
	if reason == "" {
		reg.state.down.Store(nil)
	} else {
		reg.state.down.Store(&reason)
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
	for _, reg := range types {
		s := TypeStats{Type: reg.name, Active: int(reg.state.active.Load()), Available: true}
		if r := reg.state.down.Load(); r != nil {
			s.Available, s.Reason = false, *r
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

// lookupType returns the current registration of a type that can serve.
func (rt *Runtime) lookupType(name string) (*registration, error) {
	reg := (*rt.types.Load())[name]
	if reg == nil {
		return nil, &TypeError{Type: name, Err: ErrTypeNotHosted}
	}
	if r := reg.state.down.Load(); r != nil {
		return nil, &TypeError{Type: name, Err: ErrTypeUnavailable, Reason: *r}
	}
	return reg, nil
}

func (rt *Runtime) activeCount() int {
	n := 0
	for _, reg := range *rt.types.Load() {
		n += int(reg.state.active.Load())
	}
	return n
}

// TypeWatcher is told when a type starts (hosted) or stops (!hosted) being
// hosted by this runtime. It runs with the type table locked: it must return
// quickly and must not call Register or Unregister.
type TypeWatcher func(name string, hosted bool)

// WatchTypes adds a watcher and calls it at once for every type hosted now.
func (rt *Runtime) WatchTypes(w TypeWatcher) {
	rt.typesMu.Lock()
	defer rt.typesMu.Unlock()
	rt.watchers = append(rt.watchers, w)
	for name := range *rt.types.Load() {
		w(name, true)
	}
}

// notifyLocked tells the watchers about a type change; typesMu is held.
func (rt *Runtime) notifyLocked(name string, hosted bool) {
	for _, w := range rt.watchers {
		w(name, hosted)
	}
}
