package actor

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// activation states
const (
	activating uint8 = iota
	active
	deactivating
	dead
)

// activation is one live actor on this silo: its instance, its fence token and
// the turn lock that serialises everything the actor does.
type activation struct {
	id ID
	te *typeEntry

	// ready is closed once activation has finished; err says whether it failed.
	ready chan struct{}
	err   error
	inst  Instance
	fence uint64

	mu      sync.Mutex
	state   uint8
	gone    chan struct{} // closed when the activation is dead
	busy    bool          // a turn is running
	holder  string        // call chain of the running turn ("" = anonymous)
	depth   int           // nested turns of the holder's chain
	waiters waitQueue
	pending int           // calls admitted: running or waiting
	lastUse time.Time     // when the last turn ended
	quiet   chan struct{} // closed when pending drops to 0, if someone waits
	timers  map[string]*actorTimer
}

// waiter is a call queued for the turn.
type waiter struct {
	chain string
	ready chan struct{}
	// outcome, under activation.mu: granted the turn, or turned away because
	// the activation is ending.
	granted, turnedAway bool
}

// waitQueue is a FIFO of waiters.
type waitQueue struct {
	items []*waiter
	head  int
}

func (q *waitQueue) push(w *waiter) { q.items = append(q.items, w) }

func (q *waitQueue) len() int { return len(q.items) - q.head }

func (q *waitQueue) pop() *waiter {
	if q.head == len(q.items) {
		return nil
	}
	w := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	return w
}

func (q *waitQueue) remove(w *waiter) {
	for i := q.head; i < len(q.items); i++ {
		if q.items[i] == w {
			copy(q.items[i:], q.items[i+1:])
			q.items[len(q.items)-1] = nil
			q.items = q.items[:len(q.items)-1]
			return
		}
	}
}

// goneError tells the caller that the activation ended before the call could
// be admitted; the caller waits on the channel and retries on a new activation.
type goneError struct{ gone <-chan struct{} }

func (goneError) Error() string { return "actor activation ended" }

// acquire admits a call to the actor's turn: at once when the actor is idle or
// the call belongs to the chain holding the turn (reentrancy), otherwise after
// every call queued before it. onlyReentrant admits nothing but reentrant calls
// (used while the runtime drains).
func (a *activation) acquire(ctx context.Context, rt *Runtime, chain string, onlyReentrant bool) error {
	a.mu.Lock()
	reentrant := chain != "" && a.busy && chain == a.holder
	if a.state != active && !(reentrant && a.state == deactivating) {
		gone := a.goneLocked()
		a.mu.Unlock()
		return goneError{gone}
	}
	if reentrant {
		cfg := &a.te.cfg
		if !cfg.Reentrancy {
			a.mu.Unlock()
			return fmt.Errorf("actor %s: call chain %s already holds its turn and the type is not reentrant: %w", a.id, chain, ErrDeadlock)
		}
		if a.depth >= cfg.MaxStackDepth {
			a.mu.Unlock()
			return fmt.Errorf("actor %s: depth %d reached: %w", a.id, cfg.MaxStackDepth, ErrStackDepth)
		}
		a.depth++
		a.pending++
		a.mu.Unlock()
		return nil
	}
	if onlyReentrant {
		a.mu.Unlock()
		return ErrClosed
	}
	a.pending++
	if !a.busy {
		a.busy, a.holder, a.depth = true, chain, 1
		a.mu.Unlock()
		return nil
	}
	w := &waiter{chain: chain, ready: make(chan struct{})}
	a.waiters.push(w)
	a.mu.Unlock()

	timer := rt.clock.NewTimer(rt.turnWait)
	var err error
	select {
	case <-w.ready:
		timer.Stop()
		a.mu.Lock()
		turnedAway := w.turnedAway
		gone := a.goneLocked()
		a.mu.Unlock()
		if turnedAway {
			return goneError{gone}
		}
		return nil
	case <-ctx.Done():
		err = fmt.Errorf("actor %s: waiting for its turn: %w", a.id, ctx.Err())
	case <-timer.C():
		err = fmt.Errorf("actor %s: waited %v with %d calls ahead: %w", a.id, rt.turnWait, a.queueLen(), ErrTurnTimeout)
	case <-rt.abort:
		err = fmt.Errorf("actor %s: %w", a.id, ErrClosed)
	}
	timer.Stop()
	a.mu.Lock()
	if w.granted {
		// The turn was handed over while we gave up: pass it on.
		a.mu.Unlock()
		a.release(rt)
		return err
	}
	if !w.turnedAway {
		a.waiters.remove(w)
		a.pending--
		a.quietLocked()
	}
	a.mu.Unlock()
	return err
}

// quietLocked wakes a deactivation waiting for the last admitted call to end.
// Requires a.mu.
func (a *activation) quietLocked() {
	if a.pending == 0 && a.quiet != nil {
		close(a.quiet)
		a.quiet = nil
	}
}

// turnAwayLocked sends every queued call to retry on a new activation.
// Requires a.mu.
func (a *activation) turnAwayLocked() {
	for w := a.waiters.pop(); w != nil; w = a.waiters.pop() {
		w.turnedAway = true
		a.pending--
		close(w.ready)
	}
	a.quietLocked()
}

func (a *activation) queueLen() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.waiters.len()
}

// release ends a turn (or one nested turn of a reentrant chain) and hands the
// turn to the next queued call.
func (a *activation) release(rt *Runtime) {
	now := rt.clock.Now()
	a.mu.Lock()
	a.pending--
	a.lastUse = now
	if a.depth > 1 {
		a.depth--
		a.mu.Unlock()
		return
	}
	if w := a.waiters.pop(); w != nil {
		a.holder, a.depth = w.chain, 1
		w.granted = true
		close(w.ready)
	} else {
		a.busy, a.holder, a.depth = false, "", 0
	}
	a.quietLocked()
	a.mu.Unlock()
}

// goneLocked returns the channel closed when the activation is dead. Requires a.mu.
func (a *activation) goneLocked() <-chan struct{} {
	if a.gone == nil {
		a.gone = make(chan struct{})
		if a.state == dead {
			close(a.gone)
		}
	}
	return a.gone
}
