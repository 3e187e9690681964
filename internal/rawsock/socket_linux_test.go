//go:build linux

package rawsock

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/testutil"
)

// pair returns the two ends of a loopback TCP connection, the client's
// wrapped.
func pair(t testing.TB) (wrapped, peer net.Conn) {
	t.Helper()
	c, peer := testutil.TCPPair(t)
	wrapped = Wrap(c)
	if _, ok := wrapped.(*Socket); !ok {
		t.Fatalf("Wrap(%T) = %T, want a *Socket", c, wrapped)
	}
	return wrapped, peer
}

func TestReadWrite(t *testing.T) {
	s, peer := pair(t)
	if n, err := s.Write([]byte("ping")); n != 4 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	buf := make([]byte, 16)
	if _, err := io.ReadFull(peer, buf[:4]); err != nil || string(buf[:4]) != "ping" {
		t.Fatalf("peer read %q, %v", buf[:4], err)
	}
	// The read parks until the peer writes.
	go func() {
		time.Sleep(20 * time.Millisecond)
		peer.Write([]byte("pong"))
	}()
	n, err := s.Read(buf)
	if err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if n, err := s.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read of nothing = %d, %v", n, err)
	}
	if n, err := s.Write(nil); n != 0 || err != nil {
		t.Fatalf("Write of nothing = %d, %v", n, err)
	}
}

// A write larger than the socket's buffers waits for room, as net.Conn's
// does, and sends every byte in order.
func TestWriteWaitsForRoom(t *testing.T) {
	s, peer := pair(t)
	msg := bytes.Repeat([]byte("0123456789abcdef"), 2<<20) // 32 MiB: more than loopback's buffers hold
	const readerLate = 50 * time.Millisecond
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(readerLate) // the writer fills the buffers first
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(msg))))
		got <- b
	}()
	start := time.Now()
	if n, err := s.Write(msg); n != len(msg) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(msg))
	}
	if d := time.Since(start); d < readerLate/2 {
		t.Fatalf("Write returned after %v, before the peer read: it never waited for room", d)
	}
	if b := <-got; !bytes.Equal(b, msg) {
		t.Fatalf("peer got %d bytes, not the %d written", len(b), len(msg))
	}
}

func TestEndOfStream(t *testing.T) {
	s, peer := pair(t)
	peer.Write([]byte("last"))
	peer.Close()
	buf := make([]byte, 16)
	n, err := s.Read(buf)
	if err != nil || string(buf[:n]) != "last" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if n, err := s.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after the peer closed = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestDeadlines(t *testing.T) {
	s, _ := pair(t)
	s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	start := time.Now()
	_, err := s.Read(make([]byte, 16))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past its deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past its deadline: %v is not a net.Error that times out", err)
	}
	if op, ok := err.(*net.OpError); !ok || op.Op != "read" {
		t.Fatalf("Read past its deadline: %v, want a *net.OpError of a read, as net.Conn's", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Read returned %v after its deadline", d)
	}
	// A write into full buffers ends at its deadline too. The deadline is
	// far enough off that the first chunk goes out before it on a loaded
	// machine, so the count of what was written can be checked.
	s.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	n, err := s.Write(make([]byte, 64<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past its deadline: %d, %v; want os.ErrDeadlineExceeded", n, err)
	}
	if n <= 0 || n >= 64<<20 {
		t.Fatalf("Write past its deadline reported %d bytes written; want part of them", n)
	}
}

func TestCloseEndsRead(t *testing.T) {
	s, _ := pair(t)
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 16))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed connection: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still waiting after Close")
	}
	_, err := s.Write([]byte("x"))
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write on a closed connection: %v, want net.ErrClosed", err)
	}
	if op, ok := err.(*net.OpError); !ok || op.Op != "write" {
		t.Fatalf("Write on a closed connection: %v, want a *net.OpError of a write, as net.Conn's", err)
	}
}

func TestResetIsAnError(t *testing.T) {
	s, peer := pair(t)
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close() // sends RST
	time.Sleep(20 * time.Millisecond)
	_, err := s.Read(make([]byte, 16))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read after a reset: %v, want ECONNRESET", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "read" {
		t.Fatalf("Read after a reset: %v, want a *net.OpError of a read", err)
	}
}

// The descriptor stays reachable for code that polls it or sets options.
func TestSyscallConn(t *testing.T) {
	s, _ := pair(t)
	sc, ok := s.(syscall.Conn)
	if !ok {
		t.Fatal("a Socket is not a syscall.Conn")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var sotype int
	rc.Control(func(fd uintptr) { sotype, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TYPE) })
	if err != nil || sotype != syscall.SOCK_STREAM {
		t.Fatalf("SO_TYPE = %d, %v", sotype, err)
	}
}

// userTimeoutMS reads c's TCP_USER_TIMEOUT, in milliseconds.
func userTimeoutMS(t *testing.T, c net.Conn) int {
	t.Helper()
	d, err := UserTimeout(c)
	if err != nil {
		t.Fatal(err)
	}
	return int(d / time.Millisecond)
}

func TestSetUserTimeout(t *testing.T) {
	s, _ := pair(t)
	if err := SetUserTimeout(s, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := userTimeoutMS(t, s); got != 5000 {
		t.Fatalf("TCP_USER_TIMEOUT = %dms, want 5000ms", got)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if err := SetUserTimeout(a, time.Second); err != nil {
		t.Fatalf("SetUserTimeout on a pipe: %v, want nothing done", err)
	}
}

func TestWrapLeavesOthersAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := Wrap(a); got != a {
		t.Fatalf("Wrap(pipe) = %T, want the pipe itself", got)
	}
	s, _ := pair(t)
	if got := Wrap(s); got != s {
		t.Fatal("Wrap of a Socket wrapped it again")
	}
}

func TestListenerWraps(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Listener(ln, 1500*time.Millisecond)
	defer l.Close()
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*Socket); !ok {
		t.Fatalf("Accept = %T, want a *Socket", c)
	}
	if got := userTimeoutMS(t, c); got != 1500 {
		t.Fatalf("TCP_USER_TIMEOUT of an accepted connection = %dms, want 1500ms", got)
	}
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "hi" {
		t.Fatalf("read %q, %v", b, err)
	}
}

// Reads and writes on the hot path allocate nothing.
func TestNoAllocations(t *testing.T) {
	s, peer := pair(t)
	msg, buf := []byte("0123456789"), make([]byte, 64)
	pbuf := make([]byte, 64)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := s.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, pbuf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("%v allocations per write and read, want 0", allocs)
	}
}

func BenchmarkRoundTrip(b *testing.B) {
	for _, wrap := range []bool{false, true} {
		name := "net"
		if wrap {
			name = "raw"
		}
		b.Run(name, func(b *testing.B) {
			s, peer := pair(b)
			c := s
			if !wrap {
				c = s.(*Socket).Conn
			}
			go io.Copy(peer, peer) // echo
			msg, buf := make([]byte, 100), make([]byte, 100)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// net.Conn lets several goroutines read, and several write, one connection
// at once: each write goes out whole, and each read gets bytes into its own
// buffer.
func TestConcurrentReadsAndWrites(t *testing.T) {
	s, peer := pair(t)
	const writers, each = 8, 200
	msgLen := 64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := bytes.Repeat([]byte{byte('a' + w)}, msgLen)
			for range each {
				if _, err := s.Write(msg); err != nil {
					t.Errorf("Write: %v", err)
					return
				}
			}
		}()
	}
	// Every message arrives whole: writes do not interleave.
	got := make([]byte, writers*each*msgLen)
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := io.ReadFull(peer, got); err != nil {
		t.Fatalf("the peer got %d of the %d bytes written: %v", n, len(got), err)
	}
	wg.Wait()
	for i := 0; i < len(got); i += msgLen {
		if m := got[i : i+msgLen]; !bytes.Equal(m, bytes.Repeat(m[:1], msgLen)) {
			t.Fatalf("message %d mixes writes: %q", i/msgLen, m)
		}
	}
	// Concurrent reads: each reader's bytes land in its own buffer.
	total := writers * each * msgLen
	go func() {
		msg := bytes.Repeat([]byte("z"), msgLen)
		for range writers * each {
			peer.Write(msg)
		}
	}()
	var mu sync.Mutex
	read := 0
	var rg sync.WaitGroup
	for range 4 {
		rg.Add(1)
		go func() {
			defer rg.Done()
			buf := make([]byte, 97)
			for {
				mu.Lock()
				done := read >= total
				mu.Unlock()
				if done {
					return
				}
				s.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, err := s.Read(buf)
				if err != nil {
					return
				}
				if !bytes.Equal(buf[:n], bytes.Repeat([]byte("z"), n)) {
					t.Errorf("a read got %q", buf[:n])
				}
				mu.Lock()
				read += n
				mu.Unlock()
			}
		}()
	}
	rg.Wait()
	if read != total {
		t.Fatalf("readers got %d bytes of %d", read, total)
	}
}
