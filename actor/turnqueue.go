package actor

import "fmt"

// turnQueue decides the turns of one activation. It is a plain state machine
// guarded by its activation's mutex: admit, release, leave and turnAway change
// the state and return what the caller must do (run now, wait, give up, whom
// to wake), and leave blocking, timing and waking goroutines to the caller, as
// etcd's raft returns a Ready. Its rules can therefore be checked without
// goroutines (turnqueue_test.go) and its invariants on every turn (check).
type turnQueue struct {
	running bool   // a turn is running
	holder  string // call chain of the running turn ("" = a call without one)
	depth   int    // levels of the running turn: 1, plus one per reentrant call
	started uint64 // turns started so far (reentrant levels not counted)
	waiters waitQueue
	// pending counts the calls admitted: the running turn's levels and the
	// waiters. A deactivation waits for it to reach zero.
	pending int
}

// verdict is admit's decision about a call.
type verdict uint8

const (
	runNow      verdict = iota // the call holds the turn now
	runNested                  // a reentrant call enters the running turn one level deeper
	mustWait                   // queued: wait until the waiter is granted or turned away
	refusedGone                // the activation is ending: retry on a new one
	refusedDeadlock
	refusedDepth
	refusedClosed // the runtime drains: only calls of a running turn's chain are admitted
)

// waiter is a call queued for the turn. Its outcome fields are guarded by the
// activation's mutex; the caller closes ready once either is set.
type waiter struct {
	chain string
	ready chan struct{}
	// granted: the turn was handed to this waiter; turnedAway: the
	// activation is ending and the waiter must retry elsewhere.
	granted, turnedAway bool
}

// admit decides about a call of chain arriving while the activation is in
// state life. onlyReentrant admits nothing but reentrant calls (the runtime
// drains). With mustWait it returns the queued waiter.
func (q *turnQueue) admit(life lifecycle, chain string, cfg *TypeConfig, onlyReentrant bool) (verdict, *waiter) {
	reentrant := chain != "" && q.running && chain == q.holder
	if life != active && !(reentrant && life == deactivating) {
		return refusedGone, nil
	}
	if reentrant {
		if !cfg.Reentrancy {
			return refusedDeadlock, nil
		}
		if q.depth >= cfg.MaxStackDepth {
			return refusedDepth, nil
		}
		q.depth++
		q.pending++
		return runNested, nil
	}
	if onlyReentrant {
		return refusedClosed, nil
	}
	q.pending++
	if !q.running {
		q.start(chain)
		return runNow, nil
	}
	w := &waiter{chain: chain, ready: make(chan struct{})}
	q.waiters.push(w)
	return mustWait, w
}

func (q *turnQueue) start(chain string) {
	q.running, q.holder, q.depth = true, chain, 1
	q.started++
}

// release ends the running turn, or one reentrant level of it. It returns the
// waiter now granted the next turn, if any; the caller closes its ready.
func (q *turnQueue) release() *waiter {
	q.pending--
	if q.depth > 1 {
		q.depth--
		return nil
	}
	if w := q.waiters.pop(); w != nil {
		q.start(w.chain)
		w.granted = true
		return w
	}
	q.running, q.holder, q.depth = false, "", 0
	return nil
}

// leave takes a waiter that gave up (timeout, cancellation) out of the queue.
// It reports whether the turn had already been granted to it: then the caller
// holds the turn and must release it.
func (q *turnQueue) leave(w *waiter) (granted bool) {
	if w.granted {
		return true
	}
	if !w.turnedAway {
		q.waiters.remove(w)
		q.pending--
	}
	return false
}

// turnAway takes every waiter out of the queue, marked turned away, and
// passes each to wake.
func (q *turnQueue) turnAway(wake func(*waiter)) {
	for w := q.waiters.pop(); w != nil; w = q.waiters.pop() {
		w.turnedAway = true
		q.pending--
		wake(w)
	}
}

// ahead reports how many waiters are queued before w (all of them when w is
// not queued).
func (q *turnQueue) ahead(w *waiter) int {
	for i := q.waiters.head; i < len(q.waiters.items); i++ {
		if q.waiters.items[i] == w {
			return i - q.waiters.head
		}
	}
	return q.waiters.len()
}

// check verifies the queue's invariants.
func (q *turnQueue) check() error {
	switch {
	case q.running != (q.depth > 0):
		return fmt.Errorf("turn queue: running=%v with depth %d", q.running, q.depth)
	case !q.running && q.holder != "":
		return fmt.Errorf("turn queue: no turn running but holder %q", q.holder)
	case !q.running && q.waiters.len() > 0:
		return fmt.Errorf("turn queue: %d waiters and no turn running", q.waiters.len())
	case q.pending != q.depth+q.waiters.len():
		return fmt.Errorf("turn queue: pending %d, want depth %d + waiters %d", q.pending, q.depth, q.waiters.len())
	}
	return nil
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
