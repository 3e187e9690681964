// Package busypoll reads sockets by polling them for a short while before
// the reading goroutine parks, when the process has no other call in flight.
//
// A read that finds no data parks its goroutine, and when the thread under
// it has nothing else to run, that thread sleeps in the kernel. The data's
// arrival then costs a wake-up of the thread, and on a virtual machine often
// of a halted virtual CPU: tens of microseconds on each hop of a call. While
// a silo serves one call at a time, these wake-ups are most of what it adds
// to the call. A Poller lets one reader at a time poll its socket with
// non-blocking reads for up to a budget before it parks, and only while the
// calls in flight are no more than the reader's own. Under load no reader
// polls: data is usually waiting already, and the CPU is better spent on
// another call. Nor does a kind of read whose polls have mostly run out,
// for a while: it would spend the CPU for nothing.
package busypoll

import (
	"net"
	"sync/atomic"
	"time"
)

// MaxBudget bounds a Poller's budget: polling longer than this is a waste
// of CPU for any wake-up it could save.
const MaxBudget = time.Millisecond

// Polls that mostly run out are not worth their CPU: a connection among
// many that each send a request now and then waits far longer than any
// budget. So the polls of each kind of read (by own, see Read) are judged
// in windows of windowPolls: when fewer than one in minHitShare of a
// window's polls found data, that kind of read does not poll for a pause,
// and then tries again. The pause doubles, from firstPause up to
// maxPause, while windows keep failing, and is reset by one that does not.
const (
	windowPolls = 64
	minHitShare = 4
	firstPause  = 100 * time.Millisecond
	maxPause    = 5 * time.Second
	readKinds   = 3 // own of 0, 1, and 2 or more
)

// A Poller decides which reads poll. A nil Poller never polls.
type Poller struct {
	budget   time.Duration
	now      func() time.Time // time.Now, or a test's clock
	polling  atomic.Bool      // a reader is polling
	inFlight atomic.Int64     // calls begun and not ended
	hits     atomic.Int64     // polls that found data
	misses   atomic.Int64     // polls that ran out and parked
	paused   atomic.Int64     // reads that did not poll: their kind was paused

	// Written only by the reader that holds polling.
	kinds [readKinds]readKind
}

// readKind is the current window of one kind of read.
type readKind struct {
	hits, misses int
	lastPause    time.Duration // of the window before, if it failed
	pausedUntil  atomic.Int64  // Unix nanoseconds; no polling before
}

// record counts a poll's outcome in its kind's window, and pauses the kind
// when the window is full and too few of its polls found data.
func (k *readKind) record(found bool, now time.Time) {
	if found {
		k.hits++
	} else {
		k.misses++
	}
	n := k.hits + k.misses
	if n < windowPolls {
		return
	}
	if k.hits*minHitShare < n {
		k.lastPause = min(max(2*k.lastPause, firstPause), maxPause)
		k.pausedUntil.Store(now.Add(k.lastPause).UnixNano())
	} else {
		k.lastPause = 0
	}
	k.hits, k.misses = 0, 0
}

// kind returns the window of the reads that stand for own calls.
func (p *Poller) kind(own int64) *readKind { return &p.kinds[min(max(own, 0), readKinds-1)] }

// New returns a Poller whose readers poll for up to budget, at most
// MaxBudget; a budget of 0 or less gives nil, which never polls.
func New(budget time.Duration) *Poller {
	if budget <= 0 {
		return nil
	}
	return &Poller{budget: min(budget, MaxBudget), now: time.Now}
}

// Begin counts a call in flight, and End counts it done: a request being
// served, or a call out to an app. Both accept a nil Poller.
func (p *Poller) Begin() {
	if p != nil {
		p.inFlight.Add(1)
	}
}

func (p *Poller) End() {
	if p != nil {
		p.inFlight.Add(-1)
	}
}

// InFlight returns the calls begun and not ended.
func (p *Poller) InFlight() int64 {
	if p == nil {
		return 0
	}
	return p.inFlight.Load()
}

// Stats returns how many polls found data, how many ran out of budget and
// parked, and how many reads did not poll because polls of their kind had
// mostly run out just before.
func (p *Poller) Stats() (hits, misses, paused int64) {
	if p == nil {
		return 0, 0, 0
	}
	return p.hits.Load(), p.misses.Load(), p.paused.Load()
}

// Polls reports whether a read standing for own calls may poll now: the
// Poller is not nil, and no more calls than own are in flight. Read may
// still not poll (another reader polls, or reads of its kind are paused).
func (p *Poller) Polls(own int64) bool { return p != nil && p.inFlight.Load() <= own }

// Read reads from c into b, as c.Read does. own is how many of the calls in
// flight the reader itself stands for: 0 for a connection waiting for its
// next request, 1 or 2 for one waiting for the answer to a call out (the
// call, and the request it serves). When no more calls than that are in
// flight and no other reader polls, Read polls c before it parks. Read
// polls only on Linux, and only connections that expose their descriptor
// (syscall.Conn); others are read as they are.
func (p *Poller) Read(c net.Conn, b []byte, own int64) (int, error) {
	if len(b) == 0 || !p.Polls(own) {
		return c.Read(b)
	}
	return p.poll(c, b, own)
}
