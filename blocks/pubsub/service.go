package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/blocks"
	"github.com/granaryhq/granary/internal/clock"
	"github.com/granaryhq/granary/statestore"
)

// Defaults of Config.
const (
	DefaultPartitions      = 8
	DefaultDeliveryTimeout = 30 * time.Second
	DefaultRefreshInterval = time.Second
	DefaultRecoveryPeriod  = 5 * time.Second
)

// DefaultRetrySchedule is the backoff before each retry of a failed
// delivery: five retries, then the message goes to the dead-letter topic or
// is dropped.
var DefaultRetrySchedule = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second}

// Config configures a Service.
type Config struct {
	// Name is the pub/sub component's name, e.g. "pubsub". Required.
	Name string
	// Runtime hosts the partition actor type, which New registers. Required.
	Runtime *actor.Runtime
	// Store is the runtime's state store: subscriptions are kept in it, and
	// partitions read messages from it in bulk. Required.
	Store statestore.Store
	// Actors calls partition actors wherever they live. Required.
	Actors blocks.Actors
	// Apps delivers messages to apps. Required.
	Apps blocks.Apps
	// Partitions per topic (default 8). Every silo of a cluster must use
	// the same number: it decides where a partitionKey's messages go.
	Partitions int
	// Subscriptions are the declarative subscriptions; those of other
	// pub/sub components are ignored.
	Subscriptions []Subscription
	// AppID is the CloudEvent source of messages published through this
	// service (sidecar mode); empty means "granary".
	AppID string
	// Clock drives retries, delivery timeouts and the subscription refresh;
	// nil means clock.Real.
	Clock  clock.Clock
	Logger *slog.Logger

	// RetrySchedule is the backoff before each retry; its length is the
	// number of retries. Nil means DefaultRetrySchedule; an empty non-nil
	// slice means no retries.
	RetrySchedule []time.Duration
	// DeliveryTimeout bounds one delivery to an app (default 30s).
	DeliveryTimeout time.Duration
	// RefreshInterval is how often the stored subscriptions are rescanned
	// (default 1s).
	RefreshInterval time.Duration
	// RecoveryPeriod is the period of the reminder that resumes an
	// unfinished partition after a crash (default 5s).
	RecoveryPeriod time.Duration
	// HTTPClient reads GET /dapr/subscribe; nil means a client with a 10s
	// timeout.
	HTTPClient *http.Client
	// TypeConfig of the partition actor type; zero means
	// actor.DefaultTypeConfig.
	TypeConfig actor.TypeConfig
}

// Service is one pub/sub component of a silo.
type Service struct {
	cfg       Config
	actorType string
	clock     clock.Clock
	log       *slog.Logger
	store     statestore.Store
	retries   []time.Duration
	http      *http.Client

	subs    *registry
	batches batcher

	streamMu sync.Mutex
	streams  map[string][]*Subscription // the open streams of this silo, by subscriber ID

	mu     sync.Mutex
	live   map[*partition]struct{} // partitions active on this silo
	closed bool

	stopRefresh chan struct{}
	refreshDone chan struct{}
	// stopped ends at Close: a scan in flight then gives up at once.
	stopped    context.Context
	endStopped context.CancelFunc
}

// TypePrefix starts the actor type of a pub/sub component's partitions.
const TypePrefix = blocks.SystemTypePrefix + "pubsub."

// ActorType is the actor type of the partitions of the pub/sub component name.
func ActorType(name string) string { return TypePrefix + name }

// New registers the partition actor type on cfg.Runtime and starts the
// subscription refresh. Call Close to stop.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.Runtime == nil:
		return nil, errors.New("pubsub: Config.Runtime is required")
	case cfg.Store == nil:
		return nil, errors.New("pubsub: Config.Store is required")
	case cfg.Actors == nil:
		return nil, errors.New("pubsub: Config.Actors is required")
	case cfg.Apps == nil:
		return nil, errors.New("pubsub: Config.Apps is required")
	}
	if err := actor.ValidateName(cfg.Name); err != nil {
		return nil, fmt.Errorf("pubsub: component name %q %v", cfg.Name, err)
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = DefaultPartitions
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AppID == "" {
		cfg.AppID = "granary"
	}
	if cfg.DeliveryTimeout <= 0 {
		cfg.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	if cfg.RecoveryPeriod <= 0 {
		cfg.RecoveryPeriod = DefaultRecoveryPeriod
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.TypeConfig == (actor.TypeConfig{}) {
		cfg.TypeConfig = actor.DefaultTypeConfig()
	}
	retries := cfg.RetrySchedule
	if retries == nil {
		retries = DefaultRetrySchedule
	}
	s := &Service{
		cfg:         cfg,
		actorType:   ActorType(cfg.Name),
		clock:       cfg.Clock,
		log:         cfg.Logger.With("pubsub", cfg.Name),
		store:       cfg.Store,
		retries:     append([]time.Duration(nil), retries...),
		http:        cfg.HTTPClient,
		live:        map[*partition]struct{}{},
		stopRefresh: make(chan struct{}),
		refreshDone: make(chan struct{}),
	}
	s.stopped, s.endStopped = context.WithCancel(context.Background())
	reg, err := newRegistry(s, cfg.Subscriptions)
	if err != nil {
		s.endStopped()
		return nil, err
	}
	s.subs = reg
	if err := cfg.Runtime.RegisterNative(s.actorType, s.newPartition, cfg.TypeConfig); err != nil {
		s.endStopped()
		return nil, fmt.Errorf("pubsub: registering actor type %s: %w", s.actorType, err)
	}
	go s.refreshLoop()
	return s, nil
}

// Name is the pub/sub component's name.
func (s *Service) Name() string { return s.cfg.Name }

// Close stops the subscription refresh and the delivery goroutines of the
// partitions active on this silo, persisting their cursors. Publishes fail
// afterwards. The partition actors stay registered until the runtime closes.
func (s *Service) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	live := make([]*partition, 0, len(s.live))
	for p := range s.live {
		live = append(live, p)
	}
	s.mu.Unlock()
	close(s.stopRefresh)
	s.endStopped()
	<-s.refreshDone
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop(ctx)
		}()
	}
	wg.Wait()
}

func (s *Service) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track records a started partition; false once the service is closed.
func (s *Service) track(p *partition) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.live[p] = struct{}{}
	return true
}

func (s *Service) untrack(p *partition) {
	s.mu.Lock()
	delete(s.live, p)
	s.mu.Unlock()
}

// refreshLoop scans the stored subscriptions at once and then every
// RefreshInterval.
func (s *Service) refreshLoop() {
	defer close(s.refreshDone)
	for {
		ctx, cancel := context.WithTimeout(s.stopped, 10*time.Second)
		if err := s.subs.reload(ctx); err != nil && s.stopped.Err() == nil {
			s.log.Warn("pubsub: scanning subscriptions failed", "err", err)
		}
		cancel()
		t := s.clock.NewTimer(s.cfg.RefreshInterval)
		select {
		case <-s.stopRefresh:
			t.Stop()
			return
		case <-t.C():
		}
	}
}
