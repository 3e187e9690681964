package proxy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/clock"
)

// ioTimeout bounds every read a test expects to succeed.
const ioTimeout = 3 * time.Second

// silence is how long a test listens to conclude that nothing arrives.
const silence = 150 * time.Millisecond

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// listen starts a TCP server on loopback that runs handle for every
// connection and closes everything at the end of the test. It returns the
// address and a counter of accepted connections.
func listen(t *testing.T, handle func(net.Conn)) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		accepted atomic.Int64
		mu       sync.Mutex
		conns    []net.Conn
		wg       sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), &accepted
}

// echoServer echoes every connection until the client half-closes it.
func echoServer(t *testing.T) (string, *atomic.Int64) {
	return listen(t, func(c net.Conn) {
		_, _ = io.Copy(c, c)
		c.Close()
	})
}

// handOffServer gives the test the server side of every connection.
func handOffServer(t *testing.T) (string, <-chan net.Conn) {
	conns := make(chan net.Conn, 16)
	addr, _ := listen(t, func(c net.Conn) { conns <- c })
	return addr, conns
}

func startProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New("127.0.0.1:0", target, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func serverSide(t *testing.T, conns <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-conns:
		return c
	case <-time.After(ioTimeout):
		t.Fatal("the target accepted no connection")
		return nil
	}
}

func send(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
}

// expect reads exactly len(want) bytes and compares them with want.
func expect(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %q: %v", want, err)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// expectSilence fails unless a read on c times out after silence.
func expectSilence(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(silence))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if !isTimeout(err) {
		t.Fatalf("read returned %q, %v; want a timeout", buf[:n], err)
	}
}

// expectEnded fails unless a read on c returns an error other than a
// timeout: the connection was closed or reset.
func expectEnded(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	buf := make([]byte, 64)
	for {
		n, err := c.Read(buf)
		if err == nil {
			t.Fatalf("read returned %q on a connection that should have ended", buf[:n])
		}
		if isTimeout(err) {
			t.Fatal("read timed out on a connection that should have ended")
		}
		return
	}
}

// expectRefused fails unless a new connection to addr fails or ends at once:
// its dial, its first write or its first read ends in an error that is not a
// timeout, depending on how soon the reset reaches the client.
func expectRefused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		if isTimeout(err) {
			t.Fatalf("dial timed out: %v", err)
		}
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte("refused?")); err != nil {
		return
	}
	expectEnded(t, c)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestForwardsBytesUnchangedBothWays(t *testing.T) {
	target, _ := echoServer(t)
	p := startProxy(t, target)
	const conns, size = 4, 1 << 20
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for range conns {
		c := dial(t, p.Addr())
		payload := make([]byte, size)
		rand.Read(payload)
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := c.Write(payload); err != nil {
				errs <- fmt.Errorf("write: %w", err)
			}
			c.CloseWrite()
		}()
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(10 * ioTimeout))
			got, err := io.ReadAll(c) // ends when the echo server's end comes through
			switch {
			case err != nil:
				errs <- fmt.Errorf("read: %w", err)
			case !bytes.Equal(got, payload):
				errs <- fmt.Errorf("echo differs: got %d bytes, sent %d", len(got), len(payload))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := p.Stats()
	if st.Accepted != conns || st.BytesUpstream != conns*size || st.BytesDownstream != conns*size {
		t.Errorf("stats = %+v, want %d accepted and %d bytes each way", st, conns, conns*size)
	}
	eventually(t, "no open connections", func() bool { return p.Stats().Open == 0 })
}

func TestDropCutResetsConnectionsUntilHealed(t *testing.T) {
	target, accepted := echoServer(t)
	p := startProxy(t, target)
	old := dial(t, p.Addr())
	send(t, old, "before")
	expect(t, old, "before")

	p.CutWith(Drop, Both)
	expectEnded(t, old)
	expectRefused(t, p.Addr())
	if got := accepted.Load(); got != 1 {
		t.Errorf("the target accepted %d connections, want 1: a dropped one reached it", got)
	}
	if st := p.Stats(); st.Dropped != 2 {
		t.Errorf("stats = %+v, want 2 dropped", st)
	}

	p.Heal()
	healed := dial(t, p.Addr())
	send(t, healed, "after")
	expect(t, healed, "after")
}

func TestBlackholeCutHangsAndItsConnectionsStayDead(t *testing.T) {
	target, accepted := echoServer(t)
	p := startProxy(t, target)
	old := dial(t, p.Addr())
	send(t, old, "before")
	expect(t, old, "before")

	p.CutWith(Blackhole, Both)
	send(t, old, "lost")
	expectSilence(t, old)
	fresh := dial(t, p.Addr())
	send(t, fresh, "lost too")
	expectSilence(t, fresh)
	eventually(t, "the blackholed bytes counted", func() bool {
		return p.Stats().BytesDiscarded == int64(len("lost")+len("lost too"))
	})
	if got := accepted.Load(); got != 1 {
		t.Errorf("the target accepted %d connections, want 1: a blackholed one reached it", got)
	}

	p.Heal()
	healed := dial(t, p.Addr())
	send(t, healed, "after")
	expect(t, healed, "after")
	send(t, old, "still lost")
	expectSilence(t, old)
	send(t, fresh, "still lost")
	expectSilence(t, fresh)
	if st := p.Stats(); st.Open != 3 || st.Dropped != 0 {
		t.Errorf("stats = %+v, want 3 open (two dead) and none dropped", st)
	}
}

func TestHoldCutDeliversHeldBytesAfterHeal(t *testing.T) {
	target, accepted := echoServer(t)
	p := startProxy(t, target)
	old := dial(t, p.Addr())
	send(t, old, "before")
	expect(t, old, "before")

	p.Cut()
	send(t, old, "held")
	expectSilence(t, old)
	fresh := dial(t, p.Addr())
	send(t, fresh, "waiting")
	expectSilence(t, fresh)
	if got := accepted.Load(); got != 1 {
		t.Errorf("the target accepted %d connections during the cut, want 1", got)
	}

	p.Heal()
	expect(t, old, "held")
	expect(t, fresh, "waiting")
	send(t, old, "after")
	expect(t, old, "after")
	if st := p.Stats(); st.BytesDiscarded != 0 || st.Dropped != 0 {
		t.Errorf("stats = %+v, want nothing discarded or dropped", st)
	}
}

func TestOneWayCutStopsOnlyItsDirection(t *testing.T) {
	for _, mode := range []CutMode{Hold, Blackhole} {
		for _, dir := range []Direction{Upstream, Downstream} {
			t.Run(mode.String()+"/"+dir.String(), func(t *testing.T) {
				target, conns := handOffServer(t)
				p := startProxy(t, target)
				client := dial(t, p.Addr())
				server := serverSide(t, conns)
				cutFrom, cutTo, openFrom, openTo := net.Conn(client), server, server, net.Conn(client)
				if dir == Downstream {
					cutFrom, cutTo, openFrom, openTo = server, client, client, server
				}

				p.CutWith(mode, dir)
				send(t, cutFrom, "stopped")
				expectSilence(t, cutTo)
				send(t, openFrom, "flowing")
				expect(t, openTo, "flowing")

				p.Heal()
				if mode == Hold {
					expect(t, cutTo, "stopped")
				} else {
					send(t, cutFrom, "still stopped")
					expectSilence(t, cutTo)
				}
				send(t, openFrom, "flowing again")
				expect(t, openTo, "flowing again")
			})
		}
	}
}

func TestLatencyDelaysEveryChunkAndKeepsOrder(t *testing.T) {
	target, _ := echoServer(t)
	p := startProxy(t, target)
	c := dial(t, p.Addr())
	send(t, c, "warm")
	expect(t, c, "warm")

	const d = 50 * time.Millisecond
	p.SetLatency(d, 0)
	start := time.Now()
	send(t, c, "ping")
	expect(t, c, "ping")
	rtt := time.Since(start)
	t.Logf("round trip %v with %v each way", rtt, d)
	if rtt < 2*d || rtt > 2*d+time.Second {
		t.Errorf("round trip took %v with %v each way, want at least %v", rtt, d, 2*d)
	}

	// With jitter as large as the delay, later chunks often draw shorter
	// waits; they must still arrive in order.
	p.SetLatency(10*time.Millisecond, 10*time.Millisecond)
	var want bytes.Buffer
	for i := range 40 {
		msg := fmt.Sprintf("%03d,", i)
		want.WriteString(msg)
		send(t, c, msg)
		time.Sleep(time.Millisecond)
	}
	expect(t, c, want.String())
}

func TestLatencyHoldsChunkUntilTheClockPassesIt(t *testing.T) {
	target, conns := handOffServer(t)
	fake := clock.NewFake(time.Unix(1000, 0))
	p, err := newWithClock("127.0.0.1:0", target, testLogger(t), fake)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	client := dial(t, p.Addr())
	server := serverSide(t, conns)

	p.SetLatency(time.Second, 0)
	send(t, client, "ping")
	eventually(t, "the chunk waiting on the clock", func() bool { return fake.Pending() == 1 })
	fake.Advance(time.Second - time.Nanosecond)
	expectSilence(t, server)
	fake.Advance(time.Nanosecond)
	expect(t, server, "ping")

	p.SetLatency(time.Second, 200*time.Millisecond)
	send(t, client, "pong")
	eventually(t, "the chunk waiting on the clock", func() bool { return fake.Pending() == 1 })
	fake.Advance(800*time.Millisecond - time.Nanosecond)
	expectSilence(t, server)
	fake.Advance(400 * time.Millisecond)
	expect(t, server, "pong")
}

func TestBandwidthLimitsEachDirectionOfEachConnection(t *testing.T) {
	// The target discards what it gets and streams back as fast as it can.
	target, _ := listen(t, func(c net.Conn) {
		go io.Copy(io.Discard, c)
		chunk := make([]byte, 16<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	p := startProxy(t, target)
	const rate, conns = 200_000, 2
	p.SetBandwidth(rate)
	for range conns {
		c := dial(t, p.Addr())
		go io.Copy(io.Discard, c)
		go func() {
			chunk := make([]byte, 16<<10)
			for {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}()
	}

	time.Sleep(100 * time.Millisecond) // past the initial bursts
	s0, t0 := p.Stats(), time.Now()
	time.Sleep(500 * time.Millisecond)
	s1, elapsed := p.Stats(), time.Since(t0)
	for _, dir := range []struct {
		name  string
		bytes int64
	}{
		{"upstream", s1.BytesUpstream - s0.BytesUpstream},
		{"downstream", s1.BytesDownstream - s0.BytesDownstream},
	} {
		got := float64(dir.bytes) / elapsed.Seconds() / conns
		t.Logf("%s: %.0f B/s per connection over %v, limit %d", dir.name, got, elapsed.Round(time.Millisecond), rate)
		if got < 0.7*rate || got > 1.3*rate {
			t.Errorf("%s: %.0f B/s per connection, want %d ± 30%%", dir.name, got, rate)
		}
	}

	p.SetBandwidth(0)
	s2, t2 := p.Stats(), time.Now()
	time.Sleep(100 * time.Millisecond)
	if got := float64(p.Stats().BytesUpstream-s2.BytesUpstream) / time.Since(t2).Seconds() / conns; got < 3*rate {
		t.Errorf("unlimited: %.0f B/s per connection, want well above the former limit %d", got, rate)
	}
}

func TestCloseEndsEverythingAndIsIdempotent(t *testing.T) {
	target, _ := echoServer(t)
	p, err := New("127.0.0.1:0", target, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	forwarding := dial(t, p.Addr())
	send(t, forwarding, "hello")
	expect(t, forwarding, "hello")
	p.Cut()
	held := dial(t, p.Addr())
	eventually(t, "both connections accepted", func() bool { return p.Stats().Accepted == 2 })

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	expectEnded(t, forwarding)
	expectEnded(t, held)
	if c, err := net.DialTimeout("tcp", p.Addr(), ioTimeout); err == nil {
		c.Close()
		t.Error("the proxy still accepts connections after Close")
	}
	if st := p.Stats(); st.Open != 0 {
		t.Errorf("stats after Close = %+v, want none open", st)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestNewRejectsBadAddresses(t *testing.T) {
	for _, tc := range []struct{ listen, target string }{
		{"127.0.0.1:0", "no-port"},
		{"127.0.0.1:0", ""},
		{"not an address", "127.0.0.1:1"},
	} {
		if p, err := New(tc.listen, tc.target, nil); err == nil {
			p.Close()
			t.Errorf("New(%q, %q) succeeded", tc.listen, tc.target)
		}
	}
}

func TestCutWithPanicsOnUnknownArguments(t *testing.T) {
	p := startProxy(t, "127.0.0.1:1")
	for _, tc := range []struct {
		mode CutMode
		dir  Direction
	}{{uncut, Both}, {Drop + 1, Both}, {Hold, 0}, {Hold, Both + 1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("CutWith(%v, %v) did not panic", tc.mode, tc.dir)
				}
			}()
			p.CutWith(tc.mode, tc.dir)
		}()
	}
}

type bucketStep struct {
	at       time.Time
	n        int
	wantWait time.Duration
}

func TestTokenBucket(t *testing.T) {
	start := time.Unix(0, 0)
	ms := func(n int) time.Time { return start.Add(time.Duration(n) * time.Millisecond) }
	const rate = 1000 // bytes per second; the bucket holds 50
	for _, tc := range []struct {
		name  string
		steps []bucketStep
	}{
		{"starts full, then waits for the refill", []bucketStep{
			{ms(0), 50, 0},
			{ms(0), 10, 10 * time.Millisecond},
			{ms(10), 10, 0},
			{ms(10), 1, time.Millisecond},
		}},
		{"refills no more than the burst", []bucketStep{
			{ms(0), 50, 0},
			{ms(1000), 50, 0},
			{ms(1000), 20, 20 * time.Millisecond},
		}},
		{"a wait takes nothing", []bucketStep{
			{ms(0), 40, 0},
			{ms(0), 30, 20 * time.Millisecond},
			{ms(0), 30, 20 * time.Millisecond},
			{ms(20), 30, 0},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b tokenBucket
			for i, s := range tc.steps {
				if got := b.take(s.at, s.n, rate); got != s.wantWait {
					t.Fatalf("step %d: take(%v, %d) = %v, want %v", i, s.at.Sub(start), s.n, got, s.wantWait)
				}
			}
		})
	}
}

func TestRetargetResetsOpenConnectionsAndSendsNewOnesToTheNewTarget(t *testing.T) {
	first, firstAccepted := echoServer(t)
	second, secondAccepted := echoServer(t)
	p := startProxy(t, first)
	old := dial(t, p.Addr())
	send(t, old, "one")
	expect(t, old, "one")

	if err := p.Retarget(second); err != nil {
		t.Fatal(err)
	}
	expectEnded(t, old)
	c := dial(t, p.Addr())
	send(t, c, "two")
	expect(t, c, "two")
	if f, s := firstAccepted.Load(), secondAccepted.Load(); f != 1 || s != 1 {
		t.Errorf("first target accepted %d, second %d; want 1 and 1", f, s)
	}
	if err := p.Retarget("nowhere"); err == nil {
		t.Error("a target without a port accepted")
	}
}
