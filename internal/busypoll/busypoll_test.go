//go:build linux

package busypoll

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/testutil"
)

// pair returns the two ends of a loopback TCP connection.
func pair(t testing.TB) (client, server net.Conn) { return testutil.TCPPair(t) }

// writeAfter writes msg on c after d.
func writeAfter(t *testing.T, c net.Conn, d time.Duration, msg string) {
	go func() {
		time.Sleep(d)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Errorf("write: %v", err)
		}
	}()
}

func readString(t *testing.T, p *Poller, c net.Conn, own int64) string {
	t.Helper()
	buf := make([]byte, 64)
	n, err := p.Read(c, buf, own)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return string(buf[:n])
}

// readClock is time.Now, counting its calls: a poll reads it once when it
// begins and again after each read that found the socket empty.
type readClock struct{ calls atomic.Int64 }

func (c *readClock) now() time.Time {
	c.calls.Add(1)
	return time.Now()
}

// The moments at which TestReadPolls's peer writes.
var (
	// whilePolling waits until a poll has found the socket empty at least
	// once, so that only a later poll can find the data. (Writing as soon
	// as the poller is marked polling could put the data there before its
	// first read, which then finds it without polling.)
	whilePolling = func(p *Poller, c *readClock) bool { return p.polling.Load() && c.calls.Load() >= 2 }
	afterParking = func(p *Poller, _ *readClock) bool { _, misses, _ := p.Stats(); return misses > 0 }
)

func TestReadPolls(t *testing.T) {
	tests := []struct {
		name       string
		budget     time.Duration
		inFlight   int64 // calls begun before the read
		own        int64
		write      func(*Poller, *readClock) bool // the peer writes once this holds; nil: before the read
		hits, miss int64
	}{
		{name: "data that comes while polling is found by polling", budget: time.Minute, write: whilePolling, hits: 1},
		{name: "data after the budget is read after parking", budget: 20 * time.Microsecond, write: afterParking, miss: 1},
		{name: "data already there is read at once", budget: time.Minute},
		{name: "another call in flight: no polling", budget: time.Minute, inFlight: 1, write: after(time.Millisecond)},
		{name: "only the reader's own calls in flight: polling", budget: time.Minute, inFlight: 2, own: 2, write: whilePolling, hits: 1},
		{name: "more calls than the reader's own: no polling", budget: time.Minute, inFlight: 3, own: 2, write: after(time.Millisecond)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := pair(t)
			clk := &readClock{}
			p := &Poller{budget: tt.budget, now: clk.now}
			for range tt.inFlight {
				p.Begin()
			}
			if tt.write == nil {
				if _, err := client.Write([]byte("ping")); err != nil {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Millisecond) // the bytes are in the socket before the read
			} else {
				go func() {
					for !tt.write(p, clk) {
						time.Sleep(10 * time.Microsecond)
					}
					if _, err := client.Write([]byte("ping")); err != nil {
						t.Errorf("write: %v", err)
					}
				}()
			}
			if got := readString(t, p, server, tt.own); got != "ping" {
				t.Fatalf("read %q, want ping", got)
			}
			if hits, misses, _ := p.Stats(); hits != tt.hits || misses != tt.miss {
				t.Fatalf("hits %d misses %d, want %d and %d", hits, misses, tt.hits, tt.miss)
			}
			if p.polling.Load() {
				t.Fatal("the poller is still marked polling after the read")
			}
		})
	}
}

// after returns a moment d from its first call.
func after(d time.Duration) func(*Poller, *readClock) bool {
	var at time.Time
	return func(*Poller, *readClock) bool {
		if at.IsZero() {
			at = time.Now().Add(d)
		}
		return !time.Now().Before(at)
	}
}

func TestOnlyOneReaderPolls(t *testing.T) {
	p := New(MaxBudget)
	_, a := pair(t)
	_, b := pair(t)
	p.polling.Store(true) // another reader polls
	b.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
	if _, err := p.Read(b, make([]byte, 8), 0); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read on a silent connection: %v, want the deadline", err)
	}
	if hits, misses, _ := p.Stats(); hits != 0 || misses != 0 {
		t.Fatalf("a second reader polled: hits %d misses %d", hits, misses)
	}
	p.polling.Store(false)
	a.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
	if _, err := p.Read(a, make([]byte, 8), 0); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read on a silent connection: %v, want the deadline", err)
	}
	if _, misses, _ := p.Stats(); misses != 1 {
		t.Fatalf("misses %d, want 1: the reader should have polled once it was alone", misses)
	}
}

func TestReadEnds(t *testing.T) {
	t.Run("EOF", func(t *testing.T) {
		client, server := pair(t)
		go func() { time.Sleep(50 * time.Microsecond); client.Close() }()
		if _, err := New(MaxBudget).Read(server, make([]byte, 8), 0); err != io.EOF {
			t.Fatalf("Read after the peer closed: %v, want io.EOF", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		_, server := pair(t)
		server.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		start := time.Now()
		_, err := New(MaxBudget).Read(server, make([]byte, 8), 0)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read past the deadline: %v, want a timeout", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Read took %v to time out", d)
		}
	})
	t.Run("closed while parked", func(t *testing.T) {
		_, server := pair(t)
		go func() { time.Sleep(20 * time.Millisecond); server.Close() }()
		if _, err := New(MaxBudget).Read(server, make([]byte, 8), 0); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed connection: %v, want net.ErrClosed", err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		client, server := pair(t)
		client.(*net.TCPConn).SetLinger(0) // Close sends RST
		go func() { time.Sleep(50 * time.Microsecond); client.Close() }()
		_, err := New(MaxBudget).Read(server, make([]byte, 8), 0)
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "read" {
			t.Fatalf("Read after a reset: %v, want a read OpError", err)
		}
	})
}

func TestNilPollerReads(t *testing.T) {
	var p *Poller
	if New(0) != nil || New(-time.Second) != nil {
		t.Fatal("New of a budget ≤ 0 should give nil")
	}
	p.Begin()
	p.End()
	client, server := pair(t)
	writeAfter(t, client, time.Millisecond, "ping")
	if got := readString(t, p, server, 0); got != "ping" {
		t.Fatalf("read %q", got)
	}
}

func TestBudgetIsBounded(t *testing.T) {
	if got := New(time.Hour).budget; got != MaxBudget {
		t.Fatalf("budget %v, want %v", got, MaxBudget)
	}
}

// pipeConn hides the descriptor of a connection.
type pipeConn struct{ net.Conn }

func TestConnWithoutDescriptorIsReadPlainly(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	p := New(MaxBudget)
	go a.Write([]byte("ping"))
	if got := readString(t, p, pipeConn{b}, 0); got != "ping" {
		t.Fatalf("read %q", got)
	}
	if hits, misses, _ := p.Stats(); hits != 0 || misses != 0 {
		t.Fatalf("polled a pipe: hits %d misses %d", hits, misses)
	}
}

func TestReadKindPausesAfterWindowsOfMisses(t *testing.T) {
	at := time.Unix(1000, 0)
	window := func(k *readKind, hits int) {
		for i := range windowPolls {
			k.record(i < hits, at)
		}
	}
	var k readKind
	pausedFor := func() time.Duration { return time.Duration(k.pausedUntil.Load() - at.UnixNano()) }
	steps := []struct {
		name string
		hits int
		want time.Duration // pause after the window; ≤ 0 means none from it
	}{
		{"a window that mostly found data", windowPolls / 2, 0},
		{"exactly one in four found data", windowPolls / minHitShare, 0},
		{"a window of misses pauses", 0, firstPause},
		{"another doubles the pause", windowPolls/minHitShare - 1, 2 * firstPause},
		{"and again", 0, 4 * firstPause},
		{"a good window resets it", windowPolls, 0},
		{"so the next bad one pauses from the start", 1, firstPause},
	}
	for _, st := range steps {
		k.pausedUntil.Store(at.UnixNano()) // the pause before has run out
		window(&k, st.hits)
		if got := pausedFor(); got != st.want {
			t.Fatalf("%s: paused for %v, want %v", st.name, got, st.want)
		}
	}
	for range 20 {
		window(&k, 0)
	}
	if got := pausedFor(); got != maxPause {
		t.Fatalf("after many bad windows: paused for %v, want the bound %v", got, maxPause)
	}
}

// writeWhilePolling writes msg on c once a reader of p polls.
func writeWhilePolling(t *testing.T, p *Poller, c net.Conn, msg string) {
	go func() {
		for !p.polling.Load() {
			time.Sleep(10 * time.Microsecond)
		}
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Errorf("write: %v", err)
		}
	}()
}

func TestPausedKindReadsWithoutPolling(t *testing.T) {
	client, server := pair(t)
	clock := time.Unix(1000, 0)
	p := &Poller{budget: time.Minute, now: func() time.Time { return clock }}
	p.kind(0).pausedUntil.Store(clock.Add(time.Second).UnixNano())
	writeAfter(t, client, time.Millisecond, "ping")
	if got := readString(t, p, server, 0); got != "ping" {
		t.Fatalf("read %q", got)
	}
	if hits, misses, paused := p.Stats(); hits != 0 || misses != 0 || paused != 1 {
		t.Fatalf("hits %d misses %d paused %d, want one paused read", hits, misses, paused)
	}
	// Reads of another kind still poll.
	writeWhilePolling(t, p, client, "pong")
	if got := readString(t, p, server, 2); got != "pong" {
		t.Fatalf("read %q", got)
	}
	if hits, _, _ := p.Stats(); hits != 1 {
		t.Fatalf("the other kind's read did not poll: hits %d", hits)
	}
	// Once the pause has passed, the first kind polls again.
	clock = clock.Add(2 * time.Second)
	writeWhilePolling(t, p, client, "ping")
	if got := readString(t, p, server, 0); got != "ping" {
		t.Fatalf("read %q", got)
	}
	if hits, _, paused := p.Stats(); hits != 2 || paused != 1 {
		t.Fatalf("after the pause: hits %d paused %d, want 2 and 1", hits, paused)
	}
}

// Polls says whether a read for own calls may poll: only with a Poller, and
// only while no more calls than own are in flight.
func TestPolls(t *testing.T) {
	var none *Poller
	if none.Polls(2) {
		t.Error("a nil Poller polls")
	}
	p := New(100 * time.Microsecond)
	if !p.Polls(0) {
		t.Error("with no call in flight, a read for none does not poll")
	}
	p.Begin()
	p.Begin()
	if p.Polls(1) || !p.Polls(2) {
		t.Errorf("with 2 calls in flight: Polls(1) = %v, Polls(2) = %v; want false, true", p.Polls(1), p.Polls(2))
	}
	p.End()
	p.End()
}
