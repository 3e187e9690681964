package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// conn is one proxied connection: the client's socket, the target's once
// dialed, and per direction a reader and a writer goroutine (a pipe).
type conn struct {
	p      *Proxy
	client net.Conn
	dead   [2]atomic.Bool // per direction: hit by a Blackhole cut, discards for good
	done   chan struct{}  // closed by shut

	mu       sync.Mutex
	target   net.Conn
	closed   bool
	finished int // directions whose end has been forwarded
}

// serve connects to the target once no cut stops new connections, then
// starts forwarding.
func (c *conn) serve() {
	defer c.p.wg.Done()
	target := c.connect()
	if target == nil {
		return
	}
	up := &pipe{c: c, dir: upstream, src: c.client, dst: target, queue: make(chan chunk, queuedChunks)}
	down := &pipe{c: c, dir: downstream, src: target, dst: c.client, queue: make(chan chunk, queuedChunks)}
	c.p.wg.Add(4)
	go up.read()
	go up.write()
	go down.read()
	go down.write()
}

// connect waits while a cut stops new connections and dials the target. It
// returns nil when the connection ended instead: closed, reset, blackholed,
// or the dial failed.
func (c *conn) connect() net.Conn {
	for {
		if c.dead[upstream].Load() || c.dead[downstream].Load() {
			c.blackhole()
			return nil
		}
		cut, changed := c.p.newConnCut()
		if cut == uncut {
			break
		}
		// Held. A Drop or Blackhole cut reaches this connection through
		// shut or its dead flags before changed is closed.
		select {
		case <-changed:
		case <-c.done:
			return nil
		}
	}
	ctx, cancel := context.WithTimeout(c.p.ctx, dialTimeout)
	var d net.Dialer
	target, err := d.DialContext(ctx, "tcp", c.p.currentTarget())
	cancel()
	if err != nil {
		if !c.isClosed() {
			c.p.logger.Warn("proxy: dial target failed", "client", c.client.RemoteAddr().String(), "err", err)
		}
		c.shut(refuse) // as close to a refusal as an accepted connection gets
		return nil
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		target.Close()
		return nil
	}
	c.target = target
	c.mu.Unlock()
	return target
}

// blackhole reads and discards whatever the client sends, until it goes away
// or the proxy closes.
func (c *conn) blackhole() {
	buf := make([]byte, readBufferSize)
	for {
		n, err := c.client.Read(buf)
		c.p.discarded.Add(int64(n))
		if err != nil {
			c.shut(finish)
			return
		}
	}
}

// ending is how shut ends a connection.
type ending int

const (
	finish ending = iota // close with a FIN
	refuse               // close with a reset
	drop                 // close with a reset, counted as dropped
)

// shut closes both sockets as how says. It reports whether this call closed
// the connection.
func (c *conn) shut(how ending) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	target := c.target
	c.mu.Unlock()
	if how == drop {
		c.p.dropped.Add(1) // before the peers can see the reset
	}
	close(c.done)
	for _, s := range []net.Conn{c.client, target} {
		if s == nil {
			continue
		}
		if tc, ok := s.(*net.TCPConn); ok && how != finish {
			_ = tc.SetLinger(0)
		}
		s.Close()
	}
	c.p.forget(c)
	c.p.logger.Debug("proxy: connection closed", "client", c.client.RemoteAddr().String(), "reset", how != finish)
	return true
}

func (c *conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// directionDone records that one direction has ended; the connection closes
// when both have.
func (c *conn) directionDone() {
	c.mu.Lock()
	c.finished++
	both := c.finished == 2
	c.mu.Unlock()
	if both {
		c.shut(finish)
	}
}

// chunk is what one read returned, waiting to be forwarded.
type chunk struct {
	data   []byte
	readAt time.Time
	jitter float64 // in [-1, 1): the share of the jitter this chunk draws
}

// pipe forwards one direction of a connection: read reads src into queue,
// write applies the faults and writes dst.
type pipe struct {
	c        *conn
	dir      int
	src, dst net.Conn
	queue    chan chunk
	bucket   tokenBucket // used by write only
}

func (pp *pipe) dead() bool { return pp.c.dead[pp.dir].Load() }

func (pp *pipe) read() {
	p := pp.c.p
	defer p.wg.Done()
	defer close(pp.queue)
	buf := make([]byte, readBufferSize)
	for {
		if !pp.awaitReadable() {
			return
		}
		n, err := pp.src.Read(buf)
		if n > 0 {
			if pp.dead() {
				p.discarded.Add(int64(n))
			} else {
				ch := chunk{data: bytes.Clone(buf[:n]), readAt: p.clk.Now(), jitter: rand.Float64()*2 - 1}
				select {
				case pp.queue <- ch:
				case <-pp.c.done:
					return
				}
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !pp.c.isClosed() {
				p.logger.Debug("proxy: read failed", "direction", Direction(1<<pp.dir), "err", err)
			}
			return
		}
	}
}

// awaitReadable waits while this direction is cut and not dead, so that held
// bytes stay in the kernel's buffers. It reports false once the connection is closed.
func (pp *pipe) awaitReadable() bool {
	for {
		if pp.dead() {
			return true
		}
		f, changed := pp.c.p.faultsOf(pp.dir)
		if f.cut == uncut {
			return true
		}
		select {
		case <-changed:
		case <-pp.c.done:
			return false
		}
	}
}

func (pp *pipe) write() {
	defer pp.c.p.wg.Done()
	for ch := range pp.queue {
		if !pp.deliver(ch) {
			pp.c.shut(finish)
			return
		}
	}
	// src has ended: pass the end on, unless a blackhole swallows it.
	if !pp.dead() {
		if cw, ok := pp.dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}
	pp.c.directionDone()
}

// deliver forwards one chunk once the faults let it. It reports false when
// the connection is closed or the write failed.
func (pp *pipe) deliver(ch chunk) bool {
	p := pp.c.p
	data := ch.data
	for len(data) > 0 {
		if pp.dead() {
			p.discarded.Add(int64(len(data)))
			return true
		}
		f, changed := p.faultsOf(pp.dir)
		if f.cut != uncut {
			if !pp.sleep(0, changed) {
				return false
			}
			continue
		}
		now := p.clk.Now()
		delay := max(0, f.latency+time.Duration(ch.jitter*float64(f.jitter)))
		if due := ch.readAt.Add(delay); now.Before(due) {
			if !pp.sleep(due.Sub(now), changed) {
				return false
			}
			continue
		}
		n := len(data)
		if f.bytesPerSecond > 0 {
			n = min(n, burstSize(f.bytesPerSecond))
			if wait := pp.bucket.take(now, n, f.bytesPerSecond); wait > 0 {
				if !pp.sleep(wait, changed) {
					return false
				}
				continue
			}
		} else {
			pp.bucket = tokenBucket{}
		}
		w, err := pp.dst.Write(data[:n])
		p.delivered[pp.dir].Add(int64(w))
		if err != nil {
			if !pp.c.isClosed() {
				p.logger.Debug("proxy: write failed", "direction", Direction(1<<pp.dir), "err", err)
			}
			return false
		}
		data = data[n:]
	}
	return true
}

// sleep waits for d to pass (forever when d is 0) or the faults to change. It
// reports false once the connection is closed.
func (pp *pipe) sleep(d time.Duration, changed <-chan struct{}) bool {
	var fired <-chan time.Time
	if d > 0 {
		t := pp.c.p.clk.NewTimer(d)
		defer t.Stop()
		fired = t.C()
	}
	select {
	case <-fired:
		return true
	case <-changed:
		return true
	case <-pp.c.done:
		return false
	}
}

// burstSize is how many bytes a bucket for rate holds: 50 ms worth.
func burstSize(rate int) int { return max(1, rate/20) }

// tokenBucket paces one direction of one connection: it holds up to
// burstSize(rate) bytes and refills at rate bytes per second.
type tokenBucket struct {
	rate   int
	tokens float64
	last   time.Time
}

// take takes n tokens (n at most burstSize(rate)) and returns 0, or returns
// how long to wait until n will be there and takes nothing. A bucket starts
// full and restarts full when the rate changes.
func (b *tokenBucket) take(now time.Time, n, rate int) time.Duration {
	burst := float64(burstSize(rate))
	if b.rate != rate {
		*b = tokenBucket{rate: rate, tokens: burst, last: now}
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(burst, b.tokens+float64(elapsed)*float64(rate)/float64(time.Second))
		b.last = now
	}
	if missing := float64(n) - b.tokens; missing > 0 {
		return time.Duration(math.Ceil(missing * float64(time.Second) / float64(rate)))
	}
	b.tokens -= float64(n)
	return 0
}
