//go:build linux

package busypoll

import (
	"io"
	"net"
	"os"
	"syscall"

	"github.com/granaryhq/granary/internal/rawsock"
)

// poll reads c into b, polling it first when no other reader polls.
func (p *Poller) poll(c net.Conn, b []byte, own int64) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c.Read(b)
	}
	kind := p.kind(own)
	start := p.now()
	if start.UnixNano() < kind.pausedUntil.Load() {
		p.paused.Add(1)
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
		until   = start.Add(p.budget)
	)
	stopPolling := func() {
		if polling {
			polling = false
			p.polling.Store(false)
		}
	}
	err = rc.Read(func(fd uintptr) bool {
		for {
			var errno syscall.Errno
			n, errno = rawsock.Read(fd, b)
			if errno == syscall.EINTR {
				continue
			}
			if errno != syscall.EAGAIN {
				if errno != 0 {
					rerr = errno
				}
				if polled && polling {
					p.hits.Add(1)
					kind.record(true, start)
				}
				return true
			}
			polled = true
			if !polling {
				return false // woken without data: park again
			}
			if p.inFlight.Load() > own {
				stopPolling() // another call began: the CPU is for it
				return false
			}
			if now := p.now(); !now.Before(until) {
				p.misses.Add(1)
				kind.record(false, now)
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
