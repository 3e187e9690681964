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
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
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
// polls only connections that expose their descriptor (syscall.Conn);
// others are read as they are.
func (p *Poller) Read(c net.Conn, b []byte, own int64) (int, error) {
	if p == nil || len(b) == 0 || p.inFlight.Load() > own {
		return c.Read(b)
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c.Read(b)
	}
	rc, err := sc.SyscallConn()
	if err != nil || !p.polling.CompareAndSwap(false, true) {
		return c.Read(b)
	}
	var (
		n       int
		rerr    error
		polling = true
		polled  = false // at least one read found nothing
		until   = time.Now().Add(p.budget)
	)
	stopPolling := func() {
		if polling {
			polling = false
			p.polling.Store(false)
		}
	}
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), b)
			switch {
			case rerr == syscall.EINTR:
				continue
			case rerr != syscall.EAGAIN:
				if polled && polling {
					p.hits.Add(1)
				}
				return true
			}
			polled = true
			if !polling {
				return false // woken without data: park again
			}
			if p.inFlight.Load() > own || !time.Now().Before(until) {
				p.misses.Add(1)
				stopPolling()
				return false // park until the socket is readable
			}
			// Let the kernel run another task waiting for this CPU, such
			// as the peer that is to send the data: the poll must not
			// delay what it waits for.
			syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
		}
	})
	stopPolling()
	if err != nil {
		return 0, err // closed, or the read deadline passed
	}
	if rerr != nil {
		return 0, &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}
