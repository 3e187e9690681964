//go:build linux

package rawsock

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Socket is a connection whose reads and writes are raw system calls.
type Socket struct {
	net.Conn
	rc syscall.RawConn

	// The operands and results of the read and of the write under way.
	// rmu and wmu let one of each run at a time, as net.Conn's own locks
	// do, since net.Conn lets several goroutines read or write at once.
	rmu  sync.Mutex
	wmu  sync.Mutex
	rbuf []byte
	rn   int
	rerr error
	wbuf []byte
	wn   int
	werr error
	// The functions handed to rc, made once so that a call allocates nothing.
	readFD, writeFD, exchangeFD func(fd uintptr) bool
}

func wrap(c net.Conn) net.Conn {
	if _, ok := c.(*Socket); ok {
		return c
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	s := &Socket{Conn: c, rc: rc}
	s.readFD = s.readOnce
	s.writeFD = s.writeAll
	s.exchangeFD = s.exchangeOnce
	return s
}

func exchange(c net.Conn, w, r []byte) (int, error) {
	if s, ok := c.(*Socket); ok {
		return s.exchange(w, r)
	}
	return exchangeInTurn(c, w, r)
}

// exchange is Exchange on a Socket: it writes w from inside the read of the
// answer, after rc has cleared the socket's readiness, so the answer's
// arrival wakes the read, and the first read is the one that finds it.
// When the socket's buffer has no room for all of w, it finishes the write
// as Write does, still holding the write lock, and then reads.
func (s *Socket) exchange(w, r []byte) (int, error) {
	if len(w) == 0 {
		return s.Read(r)
	}
	if len(r) == 0 {
		_, err := s.Write(w)
		return 0, err
	}
	releaseIO()
	s.wmu.Lock()
	s.rmu.Lock()
	s.wbuf, s.wn, s.werr = w, 0, nil
	s.rbuf = r
	err := s.rc.Read(s.exchangeFD)
	n, rerr := s.rn, s.rerr
	s.rbuf, s.rn, s.rerr = nil, 0, nil
	s.rmu.Unlock()
	var werr error
	full := err == nil && s.werr == nil && s.wn < len(w)
	switch {
	case s.werr != nil:
		werr = s.opError("write", s.werr)
	case full:
		werr = s.finishWrite()
	}
	s.wbuf, s.wn, s.werr = nil, 0, nil
	s.wmu.Unlock()
	switch {
	case werr != nil:
		return 0, werr
	case full:
		return s.Read(r)
	}
	return s.readResult(n, err, rerr)
}

// exchangeOnce writes wbuf until it is all out, and then reads the answer
// (readOnce). When all of it went out it asks rc to park until the answer
// comes; a write that fails or finds the buffer full ends the exchange,
// for exchange to finish.
func (s *Socket) exchangeOnce(fd uintptr) bool {
	if s.wn == len(s.wbuf) {
		return s.readOnce(fd)
	}
	s.writeAll(fd)
	return s.werr != nil || s.wn < len(s.wbuf)
}

// SyscallConn returns the connection's descriptor, for code that polls it
// (internal/busypoll) or sets options on it.
func (s *Socket) SyscallConn() (syscall.RawConn, error) { return s.rc, nil }

// Read reads as net.Conn's Read does: up to len(b) bytes, io.EOF once the
// peer has closed, and the net package's errors for deadlines and closing.
func (s *Socket) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	s.rmu.Lock()
	s.rbuf = b
	err := s.rc.Read(s.readFD)
	n, rerr := s.rn, s.rerr
	s.rbuf, s.rn, s.rerr = nil, 0, nil
	s.rmu.Unlock()
	return s.readResult(n, err, rerr)
}

// readResult is what a read returns after rc.Read returned err and the
// read itself n and rerr: net.Conn's errors and io.EOF.
func (s *Socket) readResult(n int, err, rerr error) (int, error) {
	switch {
	case err != nil:
		return 0, plainOp(err, "read")
	case rerr != nil:
		return 0, s.opError("read", rerr)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of b, waiting for room in the socket's buffer as
// net.Conn's Write does, and returns how much it wrote before any error.
func (s *Socket) Write(b []byte) (int, error) {
	releaseIO()
	s.wmu.Lock()
	s.wbuf, s.wn, s.werr = b, 0, nil
	err := s.finishWrite()
	n := s.wn
	s.wbuf, s.wn, s.werr = nil, 0, nil
	s.wmu.Unlock()
	return n, err
}

// finishWrite writes what is left of wbuf, waiting for room; wmu is held.
func (s *Socket) finishWrite() error {
	if err := s.rc.Write(s.writeFD); err != nil {
		return plainOp(err, "write")
	}
	if s.werr != nil {
		return s.opError("write", s.werr)
	}
	return nil
}

// plainOp names the net package's error of a raw read or write (closed,
// past its deadline) after the plain read or write it stands for, as
// net.Conn's own would be.
func plainOp(err error, op string) error {
	if oe, ok := err.(*net.OpError); ok && oe.Op == "raw-"+op {
		e := *oe
		e.Op = op
		return &e
	}
	return err
}

func (s *Socket) opError(op string, err error) error {
	if err == io.ErrUnexpectedEOF {
		return err
	}
	return &net.OpError{Op: op, Net: s.LocalAddr().Network(), Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: os.NewSyscallError(op, err)}
}

// readOnce reads once into rbuf; false asks rc to park until the socket is
// readable and call again.
func (s *Socket) readOnce(fd uintptr) bool {
	for {
		n, errno := Read(fd, s.rbuf)
		switch errno {
		case 0:
			s.rn = n
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			s.rerr = errno
			return true
		}
	}
}

// writeAll writes what is left of wbuf; false asks rc to park until the
// socket is writable and call again.
func (s *Socket) writeAll(fd uintptr) bool {
	for s.wn < len(s.wbuf) {
		b := s.wbuf[s.wn:]
		r, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		switch {
		case errno == syscall.EINTR:
		case errno == syscall.EAGAIN:
			return false
		case errno != 0:
			s.werr = errno
			return true
		case r == 0:
			s.werr = io.ErrUnexpectedEOF // as the net package reports a write of nothing
			return true
		default:
			s.wn += int(r)
		}
	}
	return true
}

// Read is one raw read(2) of fd into b, for code that holds a descriptor
// from syscall.RawConn; a non-zero Errno is the failure, EAGAIN included.
func Read(fd uintptr, b []byte) (int, syscall.Errno) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	if n := int(r); n > 0 {
		acquireIO()
	}
	return int(r), 0
}

func setUserTimeout(c net.Conn, d time.Duration) error {
	_, err := tcpOption(c, func(fd int) (int, error) {
		return 0, syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, tcpUserTimeout, int(d/time.Millisecond))
	})
	if err != nil {
		return fmt.Errorf("set TCP_USER_TIMEOUT: %w", err)
	}
	return nil
}

func userTimeout(c net.Conn) (time.Duration, error) {
	ms, err := tcpOption(c, func(fd int) (int, error) {
		return syscall.GetsockoptInt(fd, syscall.IPPROTO_TCP, tcpUserTimeout)
	})
	if err != nil {
		return 0, fmt.Errorf("read TCP_USER_TIMEOUT: %w", err)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// tcpOption runs op on c's descriptor when c is a TCP connection that
// exposes one, and returns what op does; 0 and nil otherwise.
func tcpOption(c net.Conn, op func(fd int) (int, error)) (int, error) {
	sc, ok := c.(syscall.Conn)
	if _, tcp := c.LocalAddr().(*net.TCPAddr); !ok || !tcp {
		return 0, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var v int
	var oerr error
	if err := rc.Control(func(fd uintptr) { v, oerr = op(int(fd)) }); err != nil {
		return 0, err
	}
	return v, oerr
}

// tcpUserTimeout is TCP_USER_TIMEOUT (linux/tcp.h), which package syscall
// does not name.
const tcpUserTimeout = 0x12
