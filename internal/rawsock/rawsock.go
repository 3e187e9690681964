// Package rawsock reads and writes sockets with system calls that Go's
// scheduler does not see.
//
// Go wraps each read and write of a socket in a note to its scheduler that
// the thread is in a system call. When such a call lasts past a tick of the
// runtime's monitor thread, as one does whenever the kernel preempts the
// thread inside it, the monitor hands the thread's processor to another
// thread, and then keeps waking every 20µs for a millisecond. On two cores
// that several busy processes share, that happened about 200 times a second
// in a silo at full load, and held the monitor at 3,400 wake-ups a second:
// a third of the silo's context switches. Socket reads and writes never
// block (Go's sockets are non-blocking; a call that would wait returns
// EAGAIN, and the goroutine parks in the network poller as usual), so there
// is nothing to hand over: a Socket makes them as raw system calls, which
// the scheduler treats as ordinary code that holds its processor for the
// few microseconds the kernel takes. Everything else (deadlines, closing,
// parking until the socket is ready) is the net package's own.
package rawsock

import (
	"net"
	"time"
)

// Wrap returns c with its reads and writes made as raw system calls, or c
// itself when it does not expose a descriptor (TLS, pipes) or the platform
// is not Linux.
func Wrap(c net.Conn) net.Conn { return wrap(c) }

// Exchange writes all of w to c, then reads into r as c.Read does: a
// request, and the start of its answer. On a Socket (see Wrap) it waits for
// the answer without reading first: the answer to a request cannot come
// before the request, and the read that would find nothing is a system
// call. Any other connection writes, then reads. A failed write is the
// error, and nothing is read.
func Exchange(c net.Conn, w, r []byte) (int, error) { return exchange(c, w, r) }

func exchangeInTurn(c net.Conn, w, r []byte) (int, error) {
	if _, err := c.Write(w); err != nil {
		return 0, err
	}
	return c.Read(r)
}

// Listener returns l, handing out its connections wrapped (see Wrap). With
// userTimeout above zero, each also gets that TCP user timeout (see
// SetUserTimeout) before it is handed out.
func Listener(l net.Listener, userTimeout time.Duration) net.Listener {
	return listener{l, userTimeout}
}

type listener struct {
	net.Listener
	userTimeout time.Duration
}

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.userTimeout > 0 {
		if err := SetUserTimeout(c, l.userTimeout); err != nil {
			c.Close()
			return nil, err
		}
	}
	return Wrap(c), nil
}

// SetUserTimeout sets TCP_USER_TIMEOUT on c: how long data sent may stay
// unacknowledged before the kernel closes the connection. grpc-go sets it
// to its keepalive timeout, but only on a *net.TCPConn, so a connection
// wrapped before grpc-go sees it needs it set here. It does nothing where
// the platform has no such option or c is not TCP.
func SetUserTimeout(c net.Conn, d time.Duration) error { return setUserTimeout(c, d) }

// UserTimeout returns c's TCP_USER_TIMEOUT, 0 when it has none or the
// platform has no such option.
func UserTimeout(c net.Conn) (time.Duration, error) { return userTimeout(c) }
