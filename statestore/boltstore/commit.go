package boltstore

import (
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// committer runs the writes of concurrent callers in shared bbolt
// transactions: group commit. One goroutine commits. A write that finds it
// idle is committed at once; the writes that arrive while a commit runs wait
// and share the next one, up to maxBatch of them, so every commit carries
// all that queued during the one before. (bbolt's own Batch instead cuts a
// batch a fixed delay after its first call: when a commit takes longer than
// the delay, concurrent writers are split into small batches queued one
// behind another, and a lone writer always waits out the delay.)
type committer struct {
	db       *bolt.DB
	maxBatch int
	// delay is how long a commit that starts on an idle store waits for
	// company; 0: not at all. It is real time, not the store's clock: a
	// fake clock in a test must not hold commits back.
	delay time.Duration

	mu    sync.Mutex
	queue []*write
	wake  chan struct{} // holds a token while the queue may be non-empty
	stop  chan struct{}
	done  chan struct{}
}

// write is one caller's part of a commit. fn may run more than once: when
// another write of the batch fails, the batch is rolled back and run again
// without it.
type write struct {
	fn     func(*bolt.Tx) error
	result chan error // buffered: the committer never waits for the caller
}

func newCommitter(db *bolt.DB, maxBatch int, delay time.Duration) *committer {
	c := &committer{
		db: db, maxBatch: maxBatch, delay: delay,
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go c.run()
	return c
}

// do runs fn in a commit shared with concurrent calls and returns once that
// commit is on disk, with fn's error or the commit's.
func (c *committer) do(fn func(*bolt.Tx) error) error {
	w := &write{fn: fn, result: make(chan error, 1)}
	c.mu.Lock()
	c.queue = append(c.queue, w)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default: // the committer is already due to look at the queue
	}
	return <-w.result
}

// close stops the committer once it has committed every queued write. No
// call of do may start after close.
func (c *committer) close() {
	close(c.stop)
	<-c.done
}

func (c *committer) run() {
	defer close(c.done)
	for {
		select {
		case <-c.wake:
		case <-c.stop:
			// Callers are gone (close comes after every call returned), but
			// a write queued just before stays owed its commit.
			for c.commitQueued() {
			}
			return
		}
		if c.delay > 0 {
			time.Sleep(c.delay)
		}
		for c.commitQueued() {
		}
	}
}

// commitQueued commits up to maxBatch queued writes and reports whether it
// found any.
func (c *committer) commitQueued() bool {
	c.mu.Lock()
	n := min(len(c.queue), c.maxBatch)
	batch := c.queue[:n:n]
	c.queue = c.queue[n:]
	if len(c.queue) == 0 {
		c.queue = nil // let the backing array go once drained
	}
	c.mu.Unlock()
	if n == 0 {
		return false
	}
	c.commit(batch)
	return true
}

// commit runs batch in one transaction. A write whose fn fails is taken out
// and the rest run again, since bbolt rolled back what they did; the failed
// write is then run in a transaction of its own, so that it fails for its
// own reasons only.
func (c *committer) commit(batch []*write) {
	var alone []*write
	for len(batch) > 0 {
		failed := -1
		err := c.db.Update(func(tx *bolt.Tx) error {
			for i, w := range batch {
				if err := callSafely(w.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 || len(batch) == 1 {
			for _, w := range batch {
				w.result <- err
			}
			break
		}
		alone = append(alone, batch[failed])
		batch = append(batch[:failed:failed], batch[failed+1:]...)
	}
	for _, w := range alone {
		w.result <- c.db.Update(func(tx *bolt.Tx) error { return callSafely(w.fn, tx) })
	}
}

// errWritePanicked is wrapped by the error of a write whose function panicked.
var errWritePanicked = errors.New("write panicked")

// callSafely runs fn, turning a panic into an error: the committer serves
// every caller and must not die with one of them.
func callSafely(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", errWritePanicked, p)
		}
	}()
	return fn(tx)
}
