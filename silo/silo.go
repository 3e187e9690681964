// Package silo is the host: it composes the actor runtime, the apps that serve
// actor types, reminders and the state store behind the operations the gateway
// serves, and routes each call to the actor's owner (on a single silo, itself).
package silo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/actor/callback"
	"github.com/granaryhq/granary/internal/clock"
	"github.com/granaryhq/granary/reminders"
	"github.com/granaryhq/granary/statestore"
)

// Version is the Granary version reported in metadata.
var Version = "0.1.0-dev"

// Config assembles a silo.
type Config struct {
	// ID names this silo (the app ID in sidecar mode).
	ID      string
	Runtime *actor.Runtime
	Apps    *callback.Registry
	// Reminders is the reminder service; nil disables the reminder API.
	Reminders Reminders
	// StoreName describes the state store in metadata, e.g. "bbolt".
	StoreName string
	// Claim is the claim a single silo serves every shard under (its
	// actor.SingleSilo's), shown in metadata.
	Claim statestore.Claim
	// RoutingWindow is how long a call to an actor type nobody hosts is
	// retried while some registered app has not yet been read (default 5s).
	RoutingWindow time.Duration
	// Placement, for a silo of a cluster, reports its view of placement for
	// metadata; nil describes a single silo.
	Placement func() PlacementStatus
	// Blocks, when set, describes the building blocks for metadata: the
	// components served and the subscriptions of this silo's apps.
	Blocks func() ([]Component, []Subscription)
	// Starting, when set, makes Ready report ErrStarting until Started is
	// called: the process serves its gateway while it registers its apps
	// and reads their subscriptions, and is ready only once that is done.
	Starting bool
	// AppRegistered, when set, is called once RegisterApp has registered
	// an app and before it returns, so that what the building blocks read
	// from the app (its subscriptions) is in place when the registration
	// is answered.
	AppRegistered func(ctx context.Context, appID, url string)
	Clock         clock.Clock
	Logger        *slog.Logger
}

// Reminders is the reminder service as the silo uses it.
type Reminders interface {
	Create(ctx context.Context, id actor.ID, req ReminderRequest) error
	Get(ctx context.Context, id actor.ID, name string) (ReminderInfo, error)
	Delete(ctx context.Context, id actor.ID, name string) error
	// Len is how many reminders this silo schedules.
	Len() int
}

// Silo serves actor calls on one host.
type Silo struct {
	cfg      Config
	rt       *actor.Runtime
	log      *slog.Logger
	starting atomic.Bool
}

// New returns a silo.
func New(cfg Config) (*Silo, error) {
	if cfg.Runtime == nil || cfg.Apps == nil {
		return nil, errors.New("silo: Runtime and Apps are required")
	}
	if cfg.RoutingWindow <= 0 {
		cfg.RoutingWindow = 5 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Silo{cfg: cfg, rt: cfg.Runtime, log: cfg.Logger}
	s.starting.Store(cfg.Starting)
	return s, nil
}

// ErrStarting is what Ready reports, wrapped, before Started is called on a
// silo configured as Starting.
var ErrStarting = errors.New("starting")

// Started marks the end of startup: Ready reports nil from now on, until
// the runtime closes.
func (s *Silo) Started() { s.starting.Store(false) }

// InputError marks an error caused by the content of a request (a bad
// schedule, URL or field); the gateway answers it with 400.
type InputError struct{ Err error }

func (e InputError) Error() string { return e.Err.Error() }
func (e InputError) Unwrap() error { return e.Err }

// TimerRequest asks for a timer on an actor.
type TimerRequest struct {
	Name, Callback       string
	Data                 []byte // raw JSON, or nil
	DueTime, Period, TTL string
}

// ReminderRequest asks for a reminder on an actor.
type ReminderRequest = actor.ReminderSpec

// ReminderInfo is a reminder as registered (the GET reminder body).
type ReminderInfo = reminders.Info

// Invoke calls an actor method. While an app registered with this silo has
// not had its config read yet, a call to an unknown type waits for it, up to
// the routing window, instead of failing at once.
func (s *Silo) Invoke(ctx context.Context, id actor.ID, req *actor.Request) (*actor.Response, error) {
	resp, err := s.rt.Invoke(ctx, id, req)
	if err == nil || !errors.Is(err, actor.ErrTypeNotHosted) || !s.cfg.Apps.Pending() {
		return resp, err
	}
	deadline := s.cfg.Clock.Now().Add(s.cfg.RoutingWindow)
	for errors.Is(err, actor.ErrTypeNotHosted) && s.cfg.Apps.Pending() && s.cfg.Clock.Now().Before(deadline) {
		t := s.cfg.Clock.NewTimer(100 * time.Millisecond)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		resp, err = s.rt.Invoke(ctx, id, req)
	}
	return resp, err
}

// GetState reads one state entry of an actor.
func (s *Silo) GetState(ctx context.Context, id actor.ID, key string) (statestore.Item, error) {
	return s.rt.GetState(ctx, id, key)
}

// Transact commits state operations of an active actor.
func (s *Silo) Transact(ctx context.Context, id actor.ID, ops []statestore.Op) error {
	return s.rt.Transact(ctx, id, ops)
}

// CreateTimer starts a timer on an actor.
func (s *Silo) CreateTimer(ctx context.Context, id actor.ID, req TimerRequest) error {
	spec, err := timerSpec(req, s.cfg.Clock.Now())
	if err != nil {
		return InputError{err}
	}
	return s.rt.CreateTimer(ctx, id, spec)
}

// DeleteTimer stops a timer; deleting an absent timer succeeds.
func (s *Silo) DeleteTimer(_ context.Context, id actor.ID, name string) error {
	s.rt.DeleteTimer(id, name)
	return nil
}

var errNoReminders = errors.New("reminders are not enabled on this silo")

// CreateReminder registers (or replaces) a reminder.
func (s *Silo) CreateReminder(ctx context.Context, id actor.ID, req ReminderRequest) error {
	if s.cfg.Reminders == nil {
		return errNoReminders
	}
	err := s.cfg.Reminders.Create(ctx, id, req)
	if _, ok := errors.AsType[*reminders.InputError](err); ok {
		return InputError{err}
	}
	return err
}

// GetReminder returns a reminder as registered.
func (s *Silo) GetReminder(ctx context.Context, id actor.ID, name string) (ReminderInfo, error) {
	if s.cfg.Reminders == nil {
		return ReminderInfo{}, errNoReminders
	}
	return s.cfg.Reminders.Get(ctx, id, name)
}

// DeleteReminder removes a reminder; deleting an absent reminder succeeds.
func (s *Silo) DeleteReminder(ctx context.Context, id actor.ID, name string) error {
	if s.cfg.Reminders == nil {
		return errNoReminders
	}
	return s.cfg.Reminders.Delete(ctx, id, name)
}

// RegisterApp registers an app in node mode and reads its config now.
func (s *Silo) RegisterApp(ctx context.Context, appID, url string) error {
	if _, err := callback.ParseAppURL(url); err != nil {
		return InputError{err}
	}
	err := s.cfg.Apps.Register(ctx, appID, url, true)
	if errors.Is(err, callback.ErrNotAnApp) || errors.Is(err, callback.ErrConfig) {
		// The URL answered, but not as an app: the request was wrong.
		return InputError{err}
	}
	if err == nil && s.cfg.AppRegistered != nil {
		s.cfg.AppRegistered(ctx, appID, url)
	}
	return err
}

// UnregisterApp removes an app and its actor types.
func (s *Silo) UnregisterApp(ctx context.Context, appID string) error {
	return s.cfg.Apps.Unregister(ctx, appID)
}

// Ready reports whether the silo serves calls: not while it shuts down, and
// not before Started when it was configured as Starting (the error then
// wraps ErrStarting).
func (s *Silo) Ready() error {
	if s.rt.Closed() {
		return fmt.Errorf("silo %s is shutting down", s.cfg.ID)
	}
	if s.starting.Load() {
		return fmt.Errorf("%w: silo %s is registering its apps and reading their subscriptions", ErrStarting, s.cfg.ID)
	}
	return nil
}

// Metadata describes the silo (GET /v1.0/metadata).
type Metadata struct {
	ID             string               `json:"id"`
	RuntimeVersion string               `json:"runtimeVersion"`
	Actors         []ActiveActors       `json:"actors"`
	ActorRuntime   ActorRuntime         `json:"actorRuntime"`
	Apps           []callback.AppStatus `json:"apps"`
	Placement      PlacementStatus      `json:"placement"`
	StateStore     string               `json:"stateStore"`
	// Reminders is how many reminders this silo schedules.
	Reminders     int            `json:"reminders"`
	Components    []Component    `json:"components"`
	Subscriptions []Subscription `json:"subscriptions"`
}

// Component is a state store or pub/sub the silo serves.
type Component struct {
	Name         string   `json:"name"`
	Type         string   `json:"type"`
	Version      string   `json:"version"`
	Capabilities []string `json:"capabilities,omitempty"`
}

// Subscription is one subscription of an app of this silo.
type Subscription struct {
	AppID           string            `json:"appId,omitempty"`
	PubSubName      string            `json:"pubsubname"`
	Topic           string            `json:"topic"`
	Rules           SubscriptionRules `json:"rules"`
	DeadLetterTopic string            `json:"deadLetterTopic,omitempty"`
	Metadata        map[string]string `json:"metadata,omitempty"`
	// Type is "programmatic" (from the app's /dapr/subscribe) or
	// "declarative" (from a Subscription file).
	Type string `json:"type"`
}

// SubscriptionRules are the routes of a subscription, the default last
// with an empty match.
type SubscriptionRules struct {
	Rules []SubscriptionRule `json:"rules"`
}

// SubscriptionRule routes the events Match selects to Path.
type SubscriptionRule struct {
	Match string `json:"match"`
	Path  string `json:"path"`
}

// ActiveActors counts the active actors of one type.
type ActiveActors struct {
	Type        string `json:"type"`
	Count       int    `json:"count"`
	Available   bool   `json:"available"`
	Unavailable string `json:"unavailableReason,omitempty"`
}

// ActorRuntime is the actor runtime's status.
type ActorRuntime struct {
	RuntimeStatus string         `json:"runtimeStatus"`
	HostReady     bool           `json:"hostReady"`
	Placement     string         `json:"placement"`
	ActiveActors  []ActiveActors `json:"activeActors"`
}

// PlacementStatus is the silo's view of placement.
type PlacementStatus struct {
	Mode         string   `json:"mode"`
	TableVersion uint64   `json:"tableVersion"`
	Members      []string `json:"members"`
	// Claim is the claim the silo serves its shards under, as the
	// Granary-Activation header carries it: "<version>/<silo>/<incarnation>".
	Claim string `json:"claim,omitempty"`

	// The rest describes a silo of a cluster.
	Incarnation string `json:"incarnation,omitempty"`
	Leader      string `json:"leader,omitempty"`
	// Lease says whether the silo holds a placement lease; without one it
	// starts no turn and fires no reminder.
	Lease       *bool `json:"lease,omitempty"`
	LeaseLeftMs int64 `json:"leaseLeftMs,omitempty"`
	// LeaseSpans are the latest unbroken spans of the lease, oldest first,
	// in wall-clock Unix nanoseconds; the last one's until lies ahead while
	// the lease holds.
	LeaseSpans []LeaseSpan `json:"leaseSpans,omitempty"`
	LastError  string      `json:"lastError,omitempty"`
	Removed    string      `json:"removed,omitempty"`
	// Shards counts this silo's shards per actor type and state (held,
	// gaining, losing).
	Shards map[string]map[string]int `json:"shards,omitempty"`
}

// LeaseSpan is one unbroken span over which a silo held its lease.
type LeaseSpan struct {
	From  int64 `json:"from"`
	Until int64 `json:"until"`
}

// Metadata returns the silo's metadata.
func (s *Silo) Metadata() Metadata {
	stats := s.rt.Stats()
	active := make([]ActiveActors, 0, len(stats))
	for _, st := range stats {
		active = append(active, ActiveActors{Type: st.Type, Count: st.Active, Available: st.Available, Unavailable: st.Reason})
	}
	status := "RUNNING"
	if s.rt.Closed() {
		status = "SHUTTING_DOWN"
	}
	var claim string
	if s.cfg.Claim != (statestore.Claim{}) {
		claim = s.cfg.Claim.String()
	}
	reminders := 0
	if s.cfg.Reminders != nil {
		reminders = s.cfg.Reminders.Len()
	}
	placement := PlacementStatus{Mode: "single-silo", TableVersion: s.cfg.Claim.Version, Members: []string{s.cfg.ID}, Claim: claim}
	components, subscriptions := []Component{}, []Subscription{}
	if s.cfg.Blocks != nil {
		components, subscriptions = s.cfg.Blocks()
	}
	apps := s.cfg.Apps.Apps()
	id := s.cfg.ID
	if len(apps) == 1 {
		// Sidecar mode: the silo speaks for its one app, as Dapr's does.
		id = apps[0].ID
	}
	placementText := "single silo: owns every actor"
	if s.cfg.Placement != nil {
		placement = s.cfg.Placement()
		placementText = "cluster member: owns the shards its table gives it"
	}
	return Metadata{
		ID:             id,
		RuntimeVersion: "granary/" + Version,
		Actors:         active,
		ActorRuntime: ActorRuntime{
			RuntimeStatus: status,
			HostReady:     !s.rt.Closed(),
			Placement:     placementText,
			ActiveActors:  active,
		},
		Apps:          apps,
		Placement:     placement,
		StateStore:    s.cfg.StoreName,
		Reminders:     reminders,
		Components:    components,
		Subscriptions: subscriptions,
	}
}
