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
// another call.
package busypoll

import (
	"net"
	"sync/atomic"
	"time"
)

// MaxBudget bounds a Poller's budget: polling longer than this is a waste
// of CPU for any wake-up it could save.
const MaxBudget = time.Millisecond

// A Poller decides which reads poll. A nil Poller never polls.
type Poller struct {
	budget   time.Duration
	polling  atomic.Bool  // a reader is polling
	inFlight atomic.Int64 // calls begun and not ended
	hits     atomic.Int64 // polls that found data
	misses   atomic.Int64 // polls that ran out and parked
}

// New returns a Poller whose readers poll for up to budget, at most
// MaxBudget; a budget of 0 or less gives nil, which never polls.
func New(budget time.Duration) *Poller {
	if budget <= 0 {
		return nil
	}
	return &Poller{budget: min(budget, MaxBudget)}
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

// Stats returns how many polls found data and how many ran out of budget
// and parked.
func (p *Poller) Stats() (hits, misses int64) {
	if p == nil {
		return 0, 0
	}
	return p.hits.Load(), p.misses.Load()
}

// Read reads from c into b, as c.Read does. own is how many of the calls in
// flight the reader itself stands for: 0 for a connection waiting for its
// next request, 1 or 2 for one waiting for the answer to a call out (the
// call, and the request it serves). When no more calls than that are in
// flight and no other reader polls, Read polls c before it parks. Read
// polls only on Linux, and only connections that expose their descriptor
// (syscall.Conn); others are read as they are.
func (p *Poller) Read(c net.Conn, b []byte, own int64) (int, error) {
	if p == nil || len(b) == 0 || p.inFlight.Load() > own {
		return c.Read(b)
	}
	return p.poll(c, b, own)
}
