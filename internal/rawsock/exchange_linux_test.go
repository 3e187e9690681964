//go:build linux

package rawsock

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// answer reads a request of n bytes on peer and, after delay, writes reply.
func answer(peer net.Conn, n int, delay time.Duration, reply string) <-chan []byte {
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, n)
		_, err := io.ReadFull(peer, b)
		got <- b
		if err != nil {
			return
		}
		time.Sleep(delay)
		peer.Write([]byte(reply))
	}()
	return got
}

func TestExchange(t *testing.T) {
	s, peer := pair(t)
	got := answer(peer, 4, 20*time.Millisecond, "pong")
	buf := make([]byte, 16)
	n, err := Exchange(s, []byte("ping"), buf)
	if err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("Exchange = %q, %v; want pong", buf[:n], err)
	}
	if b := <-got; string(b) != "ping" {
		t.Fatalf("peer got %q, want ping", b)
	}

	// Nothing to write is a read; nothing to read is a write.
	go peer.Write([]byte("more"))
	if n, err := Exchange(s, nil, buf); err != nil || string(buf[:n]) != "more" {
		t.Fatalf("Exchange with nothing to write = %q, %v", buf[:n], err)
	}
	if n, err := Exchange(s, []byte("only"), nil); n != 0 || err != nil {
		t.Fatalf("Exchange with nothing to read = %d, %v", n, err)
	}
	if _, err := io.ReadFull(peer, buf[:4]); err != nil || string(buf[:4]) != "only" {
		t.Fatalf("peer read %q, %v", buf[:4], err)
	}
}

// The point of an exchange: between the write and the answer it reads
// once, where a write and then a read read twice (once to find nothing).
// The thread's own count of read system calls tells.
func TestExchangeReadsOnce(t *testing.T) {
	s, peer := pair(t)
	buf := make([]byte, 16)
	reads := func(exchange func() error) int64 {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		// Late enough that a write and then a read finds nothing at first,
		// however loaded the machine.
		got := answer(peer, 4, 100*time.Millisecond, "pong")
		base := threadReads(t) - threadReads(t) // what reading the count costs, negated
		before := threadReads(t)
		if err := exchange(); err != nil {
			t.Fatal(err)
		}
		after := threadReads(t)
		<-got
		return after - before + base
	}
	inTurn := reads(func() error { _, err := exchangeInTurn(s, []byte("ping"), buf); return err })
	if inTurn != 2 {
		t.Fatalf("a write and then a read made %d read calls on the thread, want 2: the count does not measure what the test needs", inTurn)
	}
	if n := reads(func() error { _, err := Exchange(s, []byte("ping"), buf); return err }); n != 1 {
		t.Fatalf("an exchange made %d read calls, want 1 (a write and then a read made %d)", n, inTurn)
	}
}

// threadReads returns the read system calls the calling thread has made.
func threadReads(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/thread-self/io")
	if err != nil {
		t.Fatalf("per-thread I/O counts: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("syscr %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatalf("no syscr in /proc/thread-self/io: %q", b)
	return 0
}

// A request larger than the socket's buffers goes out whole before the
// answer is read.
func TestExchangeWaitsForRoom(t *testing.T) {
	s, peer := pair(t)
	msg := bytes.Repeat([]byte("0123456789abcdef"), 2<<20) // 32 MiB
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(50 * time.Millisecond) // the writer fills the buffers first
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(msg))))
		got <- b
		peer.Write([]byte("done"))
	}()
	buf := make([]byte, 16)
	n, err := Exchange(s, msg, buf)
	if err != nil || string(buf[:n]) != "done" {
		t.Fatalf("Exchange = %q, %v; want done", buf[:n], err)
	}
	if b := <-got; !bytes.Equal(b, msg) {
		t.Fatalf("peer got %d bytes, not the %d written", len(b), len(msg))
	}
}

func TestExchangeErrors(t *testing.T) {
	t.Run("write", func(t *testing.T) {
		s, peer := pair(t)
		peer.(*net.TCPConn).SetLinger(0)
		peer.Close() // a reset, which fails the next write
		time.Sleep(20 * time.Millisecond)
		_, err := Exchange(s, []byte("ping"), make([]byte, 4))
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "write" || !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("Exchange after the peer reset the connection = %v, want the write's error", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		s, peer := pair(t)
		got := make(chan []byte, 1)
		go func() { // reads the request and never answers
			b := make([]byte, 4)
			io.ReadFull(peer, b)
			got <- b
		}()
		s.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		_, err := Exchange(s, []byte("ping"), make([]byte, 4))
		var oe *net.OpError
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &oe) || oe.Op != "read" {
			t.Fatalf("Exchange past the read deadline = %v, want a read error for the deadline", err)
		}
		if b := <-got; string(b) != "ping" {
			t.Fatalf("peer got %q, want ping: the request went out before the wait", b)
		}
	})
	t.Run("end of stream", func(t *testing.T) {
		s, peer := pair(t)
		go func() {
			io.ReadFull(peer, make([]byte, 4))
			peer.Close()
		}()
		if n, err := Exchange(s, []byte("ping"), make([]byte, 4)); n != 0 || err != io.EOF {
			t.Fatalf("Exchange answered by a close = %d, %v; want 0, io.EOF", n, err)
		}
	})
}

// Exchange on a connection that is not a Socket writes, then reads.
func TestExchangeOtherConns(t *testing.T) {
	c, peer := net.Pipe()
	defer c.Close()
	defer peer.Close()
	got := answer(peer, 4, 0, "pong")
	buf := make([]byte, 4)
	if n, err := Exchange(c, []byte("ping"), buf); err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("Exchange on a pipe = %q, %v", buf[:n], err)
	}
	<-got
}

func TestExchangeAllocatesNothing(t *testing.T) {
	s, peer := pair(t)
	msg, buf, pbuf := []byte("0123456789"), make([]byte, 64), make([]byte, 64)
	go func() {
		for {
			if _, err := io.ReadFull(peer, pbuf[:len(msg)]); err != nil {
				return
			}
			if _, err := peer.Write(pbuf[:len(msg)]); err != nil {
				return
			}
		}
	}()
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := Exchange(s, msg, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("%v allocations per exchange, want 0", allocs)
	}
}

// An exchange whose request fills the socket's buffers keeps the write
// lock until all of it is out: another goroutine's write comes after it,
// not in the middle.
func TestExchangeWriteIsWhole(t *testing.T) {
	s, peer := pair(t)
	msg := bytes.Repeat([]byte("0123456789abcdef"), 2<<20) // 32 MiB
	marker := []byte("MARKER")
	go func() {
		time.Sleep(50 * time.Millisecond) // both writers are waiting for room by now
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(msg)+len(marker))))
		if i := bytes.Index(b, marker); i != len(msg) {
			t.Errorf("the other write landed at byte %d of %d, want after the exchange's request", i, len(b))
		}
		peer.Write([]byte("done"))
	}()
	wrote := make(chan error, 1)
	go func() {
		time.Sleep(20 * time.Millisecond) // after the exchange has begun
		_, err := s.Write(marker)
		wrote <- err
	}()
	buf := make([]byte, 16)
	if n, err := Exchange(s, msg, buf); err != nil || string(buf[:n]) != "done" {
		t.Fatalf("Exchange = %q, %v; want done", buf[:n], err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}
