package actor

import (
	"container/heap"
	"sync"
	"time"

	"github.com/granaryhq/granary/internal/clock"
)

// idleQueue deactivates actors that have been idle for their type's idle
// timeout. It is a deadline queue: each activation has one entry, checked only
// when its deadline passes, so a call costs nothing here and collection never
// scans every actor.
type idleQueue struct {
	rt    *Runtime
	mu    sync.Mutex
	h     idleHeap
	wake  chan struct{}
	done  chan struct{}
	timer clock.Timer
}

type idleEntry struct {
	a        *activation
	deadline time.Time
}

func (q *idleQueue) init(rt *Runtime) {
	q.rt = rt
	q.wake = make(chan struct{}, 1)
	q.done = make(chan struct{})
}

// add schedules a check of a at deadline.
func (q *idleQueue) add(a *activation, deadline time.Time) {
	q.mu.Lock()
	first := len(q.h) == 0 || deadline.Before(q.h[0].deadline)
	heap.Push(&q.h, idleEntry{a: a, deadline: deadline})
	q.mu.Unlock()
	if first {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

func (q *idleQueue) stop() { close(q.done) }

// run is the collector's loop.
func (q *idleQueue) run() {
	const far = 24 * time.Hour
	timer := q.rt.clock.NewTimer(far)
	defer timer.Stop()
	for {
		q.mu.Lock()
		wait := far
		if len(q.h) > 0 {
			wait = q.h[0].deadline.Sub(q.rt.clock.Now())
		}
		q.mu.Unlock()
		if wait <= 0 {
			q.collect()
			continue
		}
		timer.Stop()
		timer.Reset(wait)
		select {
		case <-timer.C():
			q.collect()
		case <-q.wake:
		case <-q.done:
			return
		}
	}
}

// collect checks every entry whose deadline has passed.
func (q *idleQueue) collect() {
	now := q.rt.clock.Now()
	var due []*activation
	q.mu.Lock()
	for len(q.h) > 0 && !q.h[0].deadline.After(now) {
		due = append(due, heap.Pop(&q.h).(idleEntry).a)
	}
	q.mu.Unlock()
	for _, a := range due {
		q.check(a, now)
	}
}

// check deactivates a if it has been idle long enough, or schedules the next check.
func (q *idleQueue) check(a *activation, now time.Time) {
	idle := a.reg.cfg.IdleTimeout
	a.mu.Lock()
	switch {
	case a.life != active:
		a.mu.Unlock()
		return
	case a.turns.pending > 0:
		a.mu.Unlock()
		q.add(a, now.Add(idle))
		return
	case now.Sub(a.lastUse) < idle:
		next := a.lastUse.Add(idle)
		a.mu.Unlock()
		q.add(a, next)
		return
	}
	a.mu.Unlock()
	if _, ok := a.beginDeactivation(true); !ok {
		q.add(a, now.Add(idle))
		return
	}
	rt := q.rt
	finish := func() {
		rt.deactivationSlots <- struct{}{}
		defer func() { <-rt.deactivationSlots }()
		rt.finishDeactivation(a, "idle", time.Time{})
	}
	if !rt.goTracked(finish) {
		// Close is past its own deactivations, which skipped this one as
		// already begun: finish it here rather than leave it half done.
		finish()
	}
}

type idleHeap []idleEntry

func (h idleHeap) Len() int           { return len(h) }
func (h idleHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h idleHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *idleHeap) Push(x any)        { *h = append(*h, x.(idleEntry)) }
func (h *idleHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = idleEntry{}
	*h = old[:len(old)-1]
	return e
}
