// Package reminders keeps durable reminders. It stores each registration in
// the state store beside the actor's state, schedules the reminders of the
// actors this silo owns in one in-memory heap, fires them as turns on their
// actors with bounded concurrency, and records each reminder's next due time
// after its fire. Delivery is at least once: a fire whose record was not yet
// updated when the process died is delivered again after restart.
package reminders

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/internal/clock"
	"github.com/granaryhq/granary/reminders/schedule"
	"github.com/granaryhq/granary/statestore"
)

// Actors is the actor runtime as the service uses it; *actor.Runtime is one.
type Actors interface {
	Remind(ctx context.Context, id actor.ID, call *actor.ReminderCall) (cancel bool, err error)
	ActivationClaim(id actor.ID) (claim statestore.Claim, active bool)
	Hosts(actorType string) bool
	WatchTypes(w actor.TypeWatcher)
	Placement() actor.Placement
}

// Config configures a Service. Store and Actors are required.
type Config struct {
	Store  statestore.Store
	Actors Actors
	// Placement decides which reminders this silo fires and grants the
	// claims their writes are fenced with; nil means the runtime's
	// (Actors.Placement), which it should be.
	Placement actor.Placement
	Clock     clock.Clock
	Logger    *slog.Logger

	// Workers bounds the fires running at once (default 256). A fire holds
	// its worker until its turn returns, so a slow actor holds one worker
	// per fire of it in flight and the others go on.
	Workers int
	// WorkersPerType bounds the workers the fires of one actor type hold at
	// once (default Workers*3/4, so 192 of 256; at most Workers). A type
	// whose app hangs thus leaves the other types at least a quarter of
	// the workers. Due fires of a type at its bound wait, in due order,
	// without holding a worker, and proceed as its fires finish.
	WorkersPerType int
	// MaxDataSize bounds the data of a reminder, in bytes (default 4 MiB,
	// the gateway's default body limit). Data of up to 1 KiB is kept in the
	// reminder's record and in memory; larger data is stored under a key of
	// its own and read from the store when the reminder fires.
	MaxDataSize int
	// FlushInterval is how often the next due times of fired reminders are
	// written, several fires of one reminder in between making one write
	// (default 50ms).
	FlushInterval time.Duration
	// FlushConcurrency bounds the writes in flight while flushing (default 256).
	FlushConcurrency int
	// RetryBackoff is the delay before the first retry of a failed fire; it
	// doubles on every retry up to MaxRetryBackoff (defaults 1s and 30s).
	RetryBackoff, MaxRetryBackoff time.Duration
	// MaxRetries is how often a failed fire is retried before a periodic
	// reminder waits for its next due time (default 5). A one-shot reminder
	// is then retried every MaxRetryBackoff until it is delivered or deleted.
	MaxRetries int
	// LoadConcurrency bounds the index scans run at once when loading (default 8).
	LoadConcurrency int
	// StopTimeout bounds how long Stop waits for fires in flight (default 10s).
	StopTimeout time.Duration
	// Observe, when set, is called after every fire attempt (for metrics).
	Observe func(Fire)
	// ObserveCreate, when set, is called after a reminder of id was
	// created or replaced (for metrics).
	ObserveCreate func(id actor.ID)
	// ByShard, for a silo of a cluster: a newly hosted type's reminders are
	// not scanned at once; each shard's are loaded when ShardsGained says
	// the silo claimed it, and dropped when ShardsLost says it lost it.
	ByShard bool
}

// Fire describes one fire attempt, for Config.Observe.
type Fire struct {
	ID       actor.ID
	Name     string
	Due      time.Time // when the reminder was due
	Started  time.Time
	Finished time.Time
	Err      error
}

func (c *Config) setDefaults() {
	if c.Placement == nil {
		c.Placement = c.Actors.Placement()
	}
	if c.Clock == nil {
		c.Clock = clock.Real
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Workers <= 0 {
		c.Workers = 256
	}
	if c.WorkersPerType <= 0 {
		c.WorkersPerType = max(1, c.Workers*3/4)
	}
	c.WorkersPerType = min(c.WorkersPerType, c.Workers)
	if c.MaxDataSize <= 0 {
		c.MaxDataSize = 4 << 20
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 50 * time.Millisecond
	}
	if c.FlushConcurrency <= 0 {
		c.FlushConcurrency = 256
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = time.Second
	}
	if c.MaxRetryBackoff <= 0 {
		c.MaxRetryBackoff = 30 * time.Second
	}
	if c.MaxRetryBackoff < c.RetryBackoff {
		c.MaxRetryBackoff = c.RetryBackoff
	}
	if c.MaxRetries <= 0 {
		c.MaxRetries = 5
	}
	if c.LoadConcurrency <= 0 {
		c.LoadConcurrency = 8
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 10 * time.Second
	}
}

// Service schedules and fires the reminders of one silo.
type Service struct {
	cfg    Config
	store  statestore.Store
	actors Actors
	clock  clock.Clock
	log    *slog.Logger

	mu      sync.Mutex
	entries map[string]*entry // by record key
	due     dueHeap
	dirty   map[string]pendingWrite
	loading map[string]map[string]bool // type being loaded → keys written meanwhile
	events  []typeEvent                // type changes for the loader, in order
	hosted  map[string]bool            // types loaded or being loaded; the loader's own
	busy    map[string]*typeWorkers    // by actor type; kept once a type has fired
	stopped bool

	// writeLocks order the store writes of one reminder key: a write takes
	// the lock of its key, then checks under mu that it is still current.
	writeLocks [256]sync.Mutex

	wake     chan struct{} // a new earliest entry, or stop
	loadWake chan struct{}
	work     chan *entry
	stop     chan struct{}
	ctx      context.Context // fires run under it; cancelled when Stop gives up waiting
	cancel   context.CancelFunc
	sched    sync.WaitGroup // the scheduler, flusher and loader
	workers  sync.WaitGroup
	stopOnce sync.Once
}

// typeWorkers counts the workers the fires of one actor type hold, and
// queues its due entries while that count is at Config.WorkersPerType.
type typeWorkers struct {
	held    int
	waiting []*entry // out of the heap, in due order
}

type pendingWrite struct {
	e      *entry
	delete bool
}

// typeEvent is work for the loader, queued in the order the changes happened.
type typeEvent struct {
	kind eventKind
	name string // the actor type; empty for placementChanged
}

// eventKind says what changed.
type eventKind uint8

const (
	// typeHosted: the runtime started hosting the type; load its reminders.
	typeHosted eventKind = iota + 1
	// typeUnhosted: the runtime stopped hosting the type; forget its reminders.
	typeUnhosted
	// placementChanged: the placement table changed; drop the reminders of
	// actors owned elsewhere now and load those of actors that moved here.
	placementChanged
)

// New starts a service; it loads the reminders of every type the runtime
// hosts now or later. Call Stop to end it.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Actors == nil {
		return nil, errors.New("reminders: Config.Store and Config.Actors are required")
	}
	cfg.setDefaults()
	s := &Service{
		cfg: cfg, store: cfg.Store, actors: cfg.Actors, clock: cfg.Clock, log: cfg.Logger,
		entries:  map[string]*entry{},
		dirty:    map[string]pendingWrite{},
		loading:  map[string]map[string]bool{},
		hosted:   map[string]bool{},
		busy:     map[string]*typeWorkers{},
		wake:     make(chan struct{}, 1),
		loadWake: make(chan struct{}, 1),
		work:     make(chan *entry),
		stop:     make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for range cfg.Workers {
		s.workers.Add(1)
		go s.worker()
	}
	s.sched.Add(3)
	go s.schedule()
	go s.flushLoop()
	go s.loadLoop()
	cfg.Actors.WatchTypes(s.typeChanged)
	return s, nil
}

// Stop stops firing, waits for the fires in flight (up to StopTimeout) and
// writes the pending next due times. Reminders stay stored.
func (s *Service) Stop() {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		close(s.stop)
		s.sched.Wait()
		close(s.work)
		done := make(chan struct{})
		go func() { s.workers.Wait(); close(done) }()
		t := s.clock.NewTimer(s.cfg.StopTimeout)
		select {
		case <-done:
			t.Stop()
		case <-t.C():
			s.log.Warn("reminder fires still running at stop; cancelling them", "timeout", s.cfg.StopTimeout)
			s.cancel()
			// An actor may ignore the cancellation (an app call runs to its
			// own timeout, until the runtime's drain aborts it). Stop does
			// not wait for it: such a fire's due time stays as stored, so it
			// is delivered again after a restart, as at-least-once allows.
			g := s.clock.NewTimer(stopGrace)
			select {
			case <-done:
			case <-g.C():
				s.log.Warn("reminder fires ignored their cancellation; stopping without them: they fire again after a restart", "grace", stopGrace)
			}
			g.Stop()
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StopTimeout)
		defer cancel()
		s.flush(ctx)
		s.cancel()
	})
}

// stopGrace is how long Stop waits for cancelled fires to return.
const stopGrace = 500 * time.Millisecond

// Len returns how many reminders this silo has scheduled.
func (s *Service) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

func (s *Service) writeLock(key string) *sync.Mutex {
	return &s.writeLocks[s.writeLockIndex(key)]
}

func (s *Service) writeLockIndex(key string) int {
	var h uint32 = 2166136261
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return int(h % uint32(len(s.writeLocks)))
}

// InputError reports a registration that cannot be accepted as given.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// checkActor refuses reminders on types this silo does not host and on
// actors it does not own, and returns the fence check for writes.
func (s *Service) checkActor(ctx context.Context, id actor.ID) (*statestore.FenceCheck, error) {
	if !s.actors.Hosts(id.Type) {
		return nil, &actor.TypeError{Type: id.Type, Err: actor.ErrTypeNotHosted, Reason: "reminders need a hosted type"}
	}
	return s.fence(ctx, id)
}

// fence is the fence check for writes of the actor's records: the claim of
// its activation if it is active here (so that an activation of an older
// claim cannot write past a newer one), else the placement's claim of its
// shard. It fails with an error wrapping actor.ErrNotOwner when this silo
// may not serve the actor.
func (s *Service) fence(ctx context.Context, id actor.ID) (*statestore.FenceCheck, error) {
	claim, active := s.actors.ActivationClaim(id)
	if !active {
		var err error
		if claim, err = s.cfg.Placement.Claim(ctx, id); err != nil {
			return nil, fmt.Errorf("actor %s: %w", id, err)
		}
	}
	return &statestore.FenceCheck{
		Key:    statestore.ShardFenceKey(id.Type, statestore.ShardOf(id.Type, id.ID)),
		Record: claim.HeldRecord(),
	}, nil
}

// owned reports whether this silo may serve the actor now; err is set when
// the placement cannot tell (a store failure while claiming).
func (s *Service) owned(ctx context.Context, id actor.ID) (bool, error) {
	_, err := s.cfg.Placement.Claim(ctx, id)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, actor.ErrSuspended):
		// Suspended, not moved: keep the schedule, retry the fire.
		return false, err
	case errors.Is(err, actor.ErrNotOwner):
		return false, nil
	}
	return false, err
}

func indexOf(id actor.ID) string {
	return statestore.ReminderIndex(id.Type, statestore.ReminderBucket(id.Type, id.ID))
}

// storeError adds context and turns a fencing refusal into the actor error.
func storeError(op string, id actor.ID, name string, err error) error {
	if errors.Is(err, statestore.ErrFenced) {
		return fmt.Errorf("%s reminder %q of %s: %w: %w", op, name, id, actor.ErrFenced, err)
	}
	return fmt.Errorf("%s reminder %q of %s: %w", op, name, id, err)
}

// Create registers a reminder, replacing one of the same name. It returns
// once the reminder is stored. Schedule errors are *InputError wrapping a
// *schedule.FieldError.
func (s *Service) Create(ctx context.Context, id actor.ID, spec actor.ReminderSpec) error {
	if err := actor.ValidateName(spec.Name); err != nil {
		return &InputError{fmt.Errorf("reminder name: %w", err)}
	}
	if len(spec.Data) > s.cfg.MaxDataSize {
		return &InputError{fmt.Errorf("reminder data is %d bytes; at most %d are allowed", len(spec.Data), s.cfg.MaxDataSize)}
	}
	if len(spec.Data) > 0 && !json.Valid(spec.Data) {
		return &InputError{errors.New("reminder data is not valid JSON")}
	}
	now := s.clock.Now()
	sp, err := schedule.Parse(now, spec.DueTime, spec.Period, spec.TTL)
	if err != nil {
		return &InputError{err}
	}
	fence, err := s.checkActor(ctx, id)
	if err != nil {
		return err
	}
	rec := record{
		DueTime: spec.DueTime, Period: spec.Period, TTL: spec.TTL,
		Registered: now.UnixNano(), Next: sp.First.UnixNano(),
	}
	if len(spec.Data) > inlineData {
		rec.DataKey = true
	} else {
		rec.Data = spec.Data
	}
	if !sp.Expires.IsZero() {
		rec.Expires = sp.Expires.UnixNano()
	}
	e, err := newEntry(statestore.ReminderKey(id.Type, id.ID, spec.Name), &rec)
	if err != nil {
		return &InputError{err}
	}
	op, err := s.putOp(id, e.key, &rec, now)
	if err != nil {
		return err
	}
	// The data key is written with the record, or deleted in case the
	// reminder this one replaces had one. It expires with the record.
	data := statestore.Op{Kind: statestore.Delete, Key: statestore.ReminderDataKey(id.Type, id.ID, spec.Name)}
	if rec.DataKey {
		data = statestore.Op{Kind: statestore.Put, Key: data.Key, Value: spec.Data, TTL: op.TTL}
	}
	lk := s.writeLock(e.key)
	lk.Lock()
	defer lk.Unlock()
	if err := s.store.Transact(ctx, statestore.Txn{Fence: fence, Ops: []statestore.Op{op, data}}); err != nil {
		return storeError("storing", id, spec.Name, err)
	}
	s.mu.Lock()
	s.touchLocked(id.Type, e.key)
	if old := s.entries[e.key]; old != nil {
		s.dropLocked(old)
	}
	delete(s.dirty, e.key)
	if !s.stopped {
		s.entries[e.key] = e
		s.pushLocked(e)
	}
	s.mu.Unlock()
	if s.cfg.ObserveCreate != nil {
		s.cfg.ObserveCreate(id)
	}
	return nil
}

// putOp is the store write of a record. The record expires from the store
// with its TTL.
func (s *Service) putOp(id actor.ID, key string, rec *record, now time.Time) (statestore.Op, error) {
	val, err := rec.encode()
	if err != nil {
		return statestore.Op{}, err
	}
	op := statestore.Op{Kind: statestore.Put, Key: key, Value: val, Index: indexOf(id)}
	if rec.Expires != 0 {
		op.TTL = time.Unix(0, rec.Expires).Sub(now)
		if op.TTL <= 0 {
			op.TTL = time.Millisecond
		}
	}
	return op, nil
}

// Get returns a reminder as stored; statestore.ErrNotFound when absent.
func (s *Service) Get(ctx context.Context, id actor.ID, name string) (Info, error) {
	if !s.actors.Hosts(id.Type) {
		return Info{}, &actor.TypeError{Type: id.Type, Err: actor.ErrTypeNotHosted}
	}
	key := statestore.ReminderKey(id.Type, id.ID, name)
	item, err := s.store.Get(ctx, key)
	if err != nil {
		return Info{}, storeError("reading", id, name, err)
	}
	rec, err := decodeRecord(item.Value)
	if err != nil {
		return Info{}, storeError("reading", id, name, err)
	}
	if rec.DataKey {
		if rec, err = s.readWithData(ctx, id, name, key); err != nil {
			return Info{}, err
		}
	}
	return rec.info(id, name), nil
}

// readWithData reads a record and the data it keeps apart together, under
// the key's write lock: a replacement on this silo commits before or after
// both reads, so the data is the record's own.
func (s *Service) readWithData(ctx context.Context, id actor.ID, name, key string) (record, error) {
	lk := s.writeLock(key)
	lk.Lock()
	defer lk.Unlock()
	items, err := s.store.BulkGet(ctx, []string{key, statestore.ReminderDataKey(id.Type, id.ID, name)})
	if err != nil {
		return record{}, storeError("reading", id, name, err)
	}
	if !items[0].Exists() {
		return record{}, storeError("reading", id, name, statestore.ErrNotFound)
	}
	rec, err := decodeRecord(items[0].Value)
	if err != nil {
		return record{}, storeError("reading", id, name, err)
	}
	if rec.DataKey {
		if !items[1].Exists() {
			return record{}, storeError("reading", id, name, errDataMissing)
		}
		rec.Data = items[1].Value
	}
	return rec, nil
}

var errDataMissing = errors.New("its data is missing from the store")

// Delete removes a reminder; deleting an absent reminder succeeds.
func (s *Service) Delete(ctx context.Context, id actor.ID, name string) error {
	fence, err := s.checkActor(ctx, id)
	if err != nil {
		return err
	}
	key := statestore.ReminderKey(id.Type, id.ID, name)
	lk := s.writeLock(key)
	lk.Lock()
	defer lk.Unlock()
	ops := []statestore.Op{
		{Kind: statestore.Delete, Key: key, Index: indexOf(id)},
		{Kind: statestore.Delete, Key: statestore.ReminderDataKey(id.Type, id.ID, name)},
	}
	if err := s.store.Transact(ctx, statestore.Txn{Fence: fence, Ops: ops}); err != nil {
		return storeError("deleting", id, name, err)
	}
	s.mu.Lock()
	s.touchLocked(id.Type, key)
	if e := s.entries[key]; e != nil {
		s.dropLocked(e)
	}
	delete(s.dirty, key)
	s.mu.Unlock()
	return nil
}

// CreateReminder and DeleteReminder make the service the runtime's
// actor.Reminders, for native actors.
func (s *Service) CreateReminder(ctx context.Context, id actor.ID, spec actor.ReminderSpec) error {
	return s.Create(ctx, id, spec)
}

// DeleteReminder removes a reminder of a native actor.
func (s *Service) DeleteReminder(ctx context.Context, id actor.ID, name string) error {
	return s.Delete(ctx, id, name)
}

// touchLocked notes a key written while its type is loading, so the load
// does not bring back what was just replaced or deleted.
func (s *Service) touchLocked(actorType, key string) {
	if keys := s.loading[actorType]; keys != nil {
		keys[key] = true
	}
}

// pushLocked schedules e and wakes the scheduler if e is now the earliest.
func (s *Service) pushLocked(e *entry) {
	s.due.push(e)
	if e.idx == 0 {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// dropLocked forgets e: it leaves the heap and the map, and a fire or write
// of it in flight does nothing more.
func (s *Service) dropLocked(e *entry) {
	e.gone = true
	if e.idx >= 0 {
		s.due.remove(int(e.idx))
	}
	if s.entries[e.key] == e {
		delete(s.entries, e.key)
	}
}
