// Package boltstore is Granary's embedded state store: a statestore.Store in
// one bbolt file that needs no server. Every acknowledged write has been
// fsynced; concurrent writes share one transaction and one fsync (group
// commit), so throughput is not capped at the disk's fsync rate.
package boltstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/granaryhq/granary/internal/clock"
	"github.com/granaryhq/granary/statestore"
)

// Defaults of Options, chosen for small machines (two cores, a few thousand
// fsyncs a second), where a bbolt commit costs two fdatasyncs, 1.5–3 ms.
const (
	DefaultMaxBatchSize  = 128
	DefaultSweepInterval = 30 * time.Second
	DefaultLockTimeout   = time.Second
)

// sweepChunk is how many expired keys one sweeper transaction removes at most.
const sweepChunk = 256

// maxKeySize is the longest key the store takes: bbolt's limit, less the
// expiry prefix of the exp bucket's keys.
const maxKeySize = bolt.MaxKeySize - 8

// ErrInUse is wrapped by Open's error when another process holds the file.
var ErrInUse = errors.New("in use by another process")

// Options tunes a Store. The zero value gives the defaults.
type Options struct {
	// MaxBatchSize is how many concurrent writes at most share one commit.
	// Zero means DefaultMaxBatchSize.
	MaxBatchSize int
	// MaxBatchDelay is how long a commit that starts on an idle store waits
	// for more writes to join it. Zero, the default, waits not at all: the
	// writes that arrive while a commit runs share the next one anyway, so a
	// delay only adds to every writer's latency. Tests set it to make
	// concurrent writers share a commit for certain.
	MaxBatchDelay time.Duration
	// SweepInterval is how often expired keys are deleted from the file (they
	// are invisible from their expiry on regardless). Zero means
	// DefaultSweepInterval; negative turns the sweeper off.
	SweepInterval time.Duration
	// LockTimeout is how long Open waits for another process to release the
	// file. Zero means DefaultLockTimeout.
	LockTimeout time.Duration
	// Clock tells the time for TTLs and drives the sweeper. Nil means clock.Real.
	Clock clock.Clock
	// Logger receives the sweeper's errors. Nil means slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.MaxBatchSize <= 0 {
		o.MaxBatchSize = DefaultMaxBatchSize
	}
	if o.MaxBatchDelay < 0 {
		o.MaxBatchDelay = 0
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.Clock == nil {
		o.Clock = clock.Real
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Bucket names. kv holds the records (shard fence records among them), idx
// one nested bucket per scan index (its keys are the member keys), exp the
// pending expiries (expiryKey) and meta the file's format. Files written
// before shard fences also hold a bucket "fence" of per-actor tokens, which
// nothing reads any more.
var (
	kvBucket   = []byte("kv")
	idxBucket  = []byte("idx")
	expBucket  = []byte("exp")
	metaBucket = []byte("meta")

	formatKey   = []byte("format")
	formatValue = []byte("granary-state-1")
)

// Store is a statestore.Store in one bbolt file. It is safe for concurrent use.
type Store struct {
	db      *bolt.DB
	commits *committer // every write transaction goes through it
	path    string
	opts    Options
	clock   clock.Clock
	log     *slog.Logger

	// life is held shared by every call and exclusively by Close, so Close
	// waits for calls in flight and later calls see closed.
	life   sync.RWMutex
	closed bool

	stopSweep chan struct{}
	sweepDone chan struct{}

	// Test hooks, nil outside tests: swept receives the count of every
	// timed sweep; applyHook can fail the application of an operation.
	swept     chan int
	applyHook func(op statestore.Op) error
}

var _ statestore.Store = (*Store)(nil)

// Open opens the state file at path, creating it if it does not exist. The
// directory must exist. Only one process can have the file open; Open fails
// with an error wrapping ErrInUse when another one holds it.
func Open(path string, opts Options) (*Store, error) {
	return open(path, opts, nil)
}

// open is Open with the sweeper's test hook.
func open(path string, opts Options, swept chan int) (*Store, error) {
	opts = opts.withDefaults()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, openError(path, opts.LockTimeout, err)
	}
	// Every commit is fsynced: durability of acknowledged writes is the
	// store's promise.
	db.NoSync = false
	if err := db.Update(initFile); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	s := &Store{
		db:        db,
		commits:   newCommitter(db, opts.MaxBatchSize, opts.MaxBatchDelay),
		path:      path,
		opts:      opts,
		clock:     opts.Clock,
		log:       opts.Logger,
		stopSweep: make(chan struct{}),
		sweepDone: make(chan struct{}),
		swept:     swept,
	}
	if opts.SweepInterval > 0 {
		go s.sweepLoop(s.clock.NewTimer(opts.SweepInterval))
	} else {
		close(s.sweepDone)
	}
	return s, nil
}

func openError(path string, timeout time.Duration, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("boltstore: open %s: data directory %s is %w (no lock within %v; bbolt: %w)",
			path, filepath.Dir(path), ErrInUse, timeout, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return fmt.Errorf("boltstore: open %s: not a state file, or a damaged one: %w", path, err)
	}
	return fmt.Errorf("boltstore: open %s: %w", path, err)
}

// initFile creates the buckets of a new file and checks the format of an
// existing one.
func initFile(tx *bolt.Tx) error {
	if meta := tx.Bucket(metaBucket); meta != nil {
		if got := meta.Get(formatKey); string(got) != string(formatValue) {
			return fmt.Errorf("state file format %q, want %q", got, formatValue)
		}
	} else {
		empty := true
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
		if !empty {
			return errors.New("a bbolt file, but not a Granary state file")
		}
		meta, err := tx.CreateBucket(metaBucket)
		if err != nil {
			return err
		}
		if err := meta.Put(formatKey, formatValue); err != nil {
			return err
		}
	}
	for _, name := range [][]byte{kvBucket, idxBucket, expBucket} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return nil
}

// enter starts a call: it fails when ctx is done or the store is closed, and
// otherwise holds s.life shared until the caller releases it.
func (s *Store) enter(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return s.fail(op, err)
	}
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return s.fail(op, statestore.ErrClosed)
	}
	return nil
}

// Close waits for calls in flight, stops the sweeper and the committer and
// closes the file.
// Calls after Close fail with statestore.ErrClosed; Close itself may be
// called again.
func (s *Store) Close() error {
	s.life.Lock()
	if s.closed {
		s.life.Unlock()
		return nil
	}
	s.closed = true
	s.life.Unlock()
	close(s.stopSweep)
	<-s.sweepDone
	s.commits.close()
	if err := s.db.Close(); err != nil {
		return s.fail("close", err)
	}
	return nil
}

func (s *Store) fail(op string, err error) error {
	return fmt.Errorf("boltstore %s: %s: %w", s.path, op, err)
}

func (s *Store) failKey(op, key string, err error) error {
	return fmt.Errorf("boltstore %s: %s %q: %w", s.path, op, key, err)
}
