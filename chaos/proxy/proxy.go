// Package proxy is a fault-injecting TCP proxy for chaos tests: it forwards
// every connection it accepts to one target and, while traffic flows, can
// partition the link, delay it or limit its bandwidth, without root.
//
// Put one in front of each link a test may break and point the client at it:
//
//	p, err := proxy.New("127.0.0.1:0", redisAddr, logger)
//	// the silo dials p.Addr() instead of redisAddr
//	p.Cut()                                                 // partition
//	p.Heal()                                                // and heal it
//	p.SetLatency(50*time.Millisecond, 10*time.Millisecond)  // 40–60 ms each way
//	p.SetBandwidth(64 << 10)                                // 64 KiB/s each way
//	p.Close()
//
// Every fault can be switched at any time and applies at once to the
// connections already open as well as to new ones. Upstream is the direction
// client→target, Downstream target→client.
//
// # Cuts
//
// Cut partitions both directions in Hold mode; CutWith chooses the mode and
// the directions. Heal ends every cut.
//
//   - Hold is packet loss that TCP survives. Bytes of a held direction are no
//     longer read or forwarded: they wait in the proxy and in the kernel's
//     buffers, and after Heal they are delivered in order, as retransmission
//     would deliver them. A new connection is accepted, so the client's
//     connect succeeds, but the target is dialed only after Heal: the client
//     sees a hang, not a refusal.
//   - Drop is a reset. Every open connection is closed with RST at once, and
//     until Heal every new connection is accepted and reset. A reset ends both
//     directions, so Drop closes whole connections whatever the direction.
//   - Blackhole reads bytes and discards them, and never answers. A new
//     connection is accepted, its bytes discarded, and the target never
//     dialed. A connection that a Blackhole cut has hit stays dead after Heal:
//     bytes are missing from its stream, so, as TCP would after its
//     retransmission timeout, it never carries traffic again; its peers must
//     notice by their own timeouts or keepalives and reconnect. Only
//     connections accepted after Heal carry traffic.
//
// A new connection needs both directions for its handshake, so a cut of
// either direction holds, resets or blackholes new connections; the
// harshest cut in force decides (Drop over Blackhole over Hold). A one-way cut
// of an open connection stops only the direction it names.
//
// # Latency and bandwidth
//
// SetLatency makes each chunk wait until d ± jitter after it was read before
// it is forwarded; chunks of one direction keep their order, so a chunk never
// overtakes an earlier one whose jitter drew a longer wait. SetBandwidth
// limits each direction of each connection to a rate, with a token bucket
// holding 50 ms worth of bytes. Both apply to both directions.
//
// Stats reports counters for the assertions of a test.
package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/granaryhq/granary/internal/clock"
)

// Direction names one or both directions of a proxied connection.
type Direction uint8

const (
	// Upstream is the direction client→target.
	Upstream Direction = 1 << iota
	// Downstream is the direction target→client.
	Downstream
	// Both is Upstream and Downstream.
	Both = Upstream | Downstream
)

// String returns "upstream", "downstream" or "both".
func (d Direction) String() string {
	switch d {
	case Upstream:
		return "upstream"
	case Downstream:
		return "downstream"
	case Both:
		return "both"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// includes reports whether d names the direction with index i (see upstream, downstream).
func (d Direction) includes(i int) bool { return d&(1<<i) != 0 }

// Indexes of the two directions in per-direction arrays.
const (
	upstream   = 0
	downstream = 1
)

// CutMode is how a cut treats the bytes and connections it stops; see the
// package comment. The modes are ordered from the mildest to the harshest.
type CutMode uint8

const (
	uncut CutMode = iota
	// Hold stops bytes without losing them: like packet loss, undone by Heal.
	Hold
	// Blackhole reads bytes and discards them; the connections it hits stay dead.
	Blackhole
	// Drop resets connections.
	Drop
)

// String returns "hold", "blackhole" or "drop".
func (m CutMode) String() string {
	switch m {
	case uncut:
		return "none"
	case Hold:
		return "hold"
	case Blackhole:
		return "blackhole"
	case Drop:
		return "drop"
	}
	return fmt.Sprintf("CutMode(%d)", uint8(m))
}

// Stats are the proxy's counters since New.
type Stats struct {
	// Accepted counts the connections accepted from clients.
	Accepted int64 `json:"accepted"`
	// Open counts the connections the proxy holds now: forwarding, held or dead.
	Open int64 `json:"open"`
	// Dropped counts the connections a Drop cut reset.
	Dropped int64 `json:"dropped"`
	// BytesUpstream counts the bytes delivered to the target.
	BytesUpstream int64 `json:"bytes_upstream"`
	// BytesDownstream counts the bytes delivered to clients.
	BytesDownstream int64 `json:"bytes_downstream"`
	// BytesDiscarded counts the bytes a Blackhole cut read and threw away.
	BytesDiscarded int64 `json:"bytes_discarded"`
}

const (
	readBufferSize = 32 << 10
	queuedChunks   = 64
	dialTimeout    = 10 * time.Second
	acceptBackoff  = 50 * time.Millisecond
)

// linkFaults are the faults in force on one direction.
type linkFaults struct {
	cut            CutMode
	latency        time.Duration
	jitter         time.Duration
	bytesPerSecond int
}

// Proxy forwards the connections it accepts to one target, with faults.
type Proxy struct {
	ln     net.Listener
	logger *slog.Logger
	clk    clock.Clock
	ctx    context.Context // cancelled by Close; bounds dials to the target
	cancel context.CancelFunc

	mu      sync.Mutex
	target  string // guarded by mu: Retarget changes it
	faults  [2]linkFaults
	changed chan struct{} // closed and replaced whenever faults change
	conns   map[*conn]struct{}
	closed  bool

	wg        sync.WaitGroup // the accept loop and every connection goroutine
	closeOnce sync.Once
	closeErr  error

	accepted  atomic.Int64
	open      atomic.Int64
	dropped   atomic.Int64
	delivered [2]atomic.Int64
	discarded atomic.Int64
}

// New listens on listen (such as "127.0.0.1:0") and forwards every connection
// it accepts to target, a host:port. A nil logger discards the logs.
func New(listen, target string, logger *slog.Logger) (*Proxy, error) {
	return newWithClock(listen, target, logger, clock.Real)
}

func newWithClock(listen, target string, logger *slog.Logger, clk clock.Clock) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("proxy: target %q: %w", target, err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("proxy: listen on %s: %w", listen, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target:  target,
		ln:      ln,
		logger:  logger.With("proxy", ln.Addr().String(), "target", target),
		clk:     clk,
		ctx:     ctx,
		cancel:  cancel,
		changed: make(chan struct{}),
		conns:   make(map[*conn]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the address the proxy listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut partitions the link both ways in Hold mode; see the package comment.
func (p *Proxy) Cut() { p.CutWith(Hold, Both) }

// CutWith cuts the directions dirs in the given mode, leaving the faults of
// the other direction as they are. It panics on an unknown mode or direction.
func (p *Proxy) CutWith(mode CutMode, dirs Direction) {
	if mode < Hold || mode > Drop {
		panic(fmt.Sprintf("proxy: CutWith: unknown mode %d", mode))
	}
	if dirs == 0 || dirs&^Both != 0 {
		panic(fmt.Sprintf("proxy: CutWith: unknown direction %d", dirs))
	}
	var victims []*conn
	p.mu.Lock()
	for i := range p.faults {
		if dirs.includes(i) {
			p.faults[i].cut = mode
		}
	}
	switch mode {
	case Blackhole:
		// Marked under p.mu, with the state, so that no pipe sees a
		// Blackhole cut on a connection that is not yet dead.
		for c := range p.conns {
			for i := range c.dead {
				if dirs.includes(i) {
					c.dead[i].Store(true)
				}
			}
		}
	case Drop:
		victims = slices.Collect(maps.Keys(p.conns))
	}
	p.notifyLocked()
	p.mu.Unlock()
	for _, c := range victims {
		c.shut(drop)
	}
	p.logger.Info("proxy: cut", "mode", mode, "direction", dirs, "reset", len(victims))
}

// Retarget sends the connections accepted from now on to target instead,
// and resets every open one, as a name that moved to another machine would:
// clients reconnect and reach the new target. The faults in force stay.
func (p *Proxy) Retarget(target string) error {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return fmt.Errorf("proxy: target %q: %w", target, err)
	}
	p.mu.Lock()
	p.target = target
	victims := slices.Collect(maps.Keys(p.conns))
	p.mu.Unlock()
	for _, c := range victims {
		c.shut(drop)
	}
	p.logger.Info("proxy: retargeted", "to", target, "reset", len(victims))
	return nil
}

func (p *Proxy) currentTarget() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

// Heal ends every cut. Connections a Blackhole cut hit stay dead.
func (p *Proxy) Heal() {
	p.mu.Lock()
	for i := range p.faults {
		p.faults[i].cut = uncut
	}
	p.notifyLocked()
	p.mu.Unlock()
	p.logger.Info("proxy: healed")
}

// SetLatency makes every chunk, both ways, wait d ± jitter (uniformly drawn)
// after it was read before it is forwarded, keeping the order of each
// direction. Zero d and jitter remove the delay; negative values count as zero.
func (p *Proxy) SetLatency(d, jitter time.Duration) {
	d, jitter = max(d, 0), max(jitter, 0)
	p.mu.Lock()
	for i := range p.faults {
		p.faults[i].latency, p.faults[i].jitter = d, jitter
	}
	p.notifyLocked()
	p.mu.Unlock()
	p.logger.Info("proxy: latency set", "latency", d, "jitter", jitter)
}

// SetBandwidth limits each direction of each connection to bytesPerSecond;
// 0 (or less) removes the limit.
func (p *Proxy) SetBandwidth(bytesPerSecond int) {
	bytesPerSecond = max(bytesPerSecond, 0)
	p.mu.Lock()
	for i := range p.faults {
		p.faults[i].bytesPerSecond = bytesPerSecond
	}
	p.notifyLocked()
	p.mu.Unlock()
	p.logger.Info("proxy: bandwidth set", "bytes_per_second", bytesPerSecond)
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Accepted:        p.accepted.Load(),
		Open:            p.open.Load(),
		Dropped:         p.dropped.Load(),
		BytesUpstream:   p.delivered[upstream].Load(),
		BytesDownstream: p.delivered[downstream].Load(),
		BytesDiscarded:  p.discarded.Load(),
	}
}

// Close stops listening, closes every connection and waits for the proxy's
// goroutines to end. Later calls do nothing and return the first one's result.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		conns := slices.Collect(maps.Keys(p.conns))
		p.mu.Unlock()
		p.cancel()
		if err := p.ln.Close(); err != nil {
			p.closeErr = fmt.Errorf("proxy: close listener %s: %w", p.Addr(), err)
		}
		for _, c := range conns {
			c.shut(finish)
		}
		p.wg.Wait()
		p.logger.Info("proxy: closed")
	})
	return p.closeErr
}

// notifyLocked wakes everything waiting for a change of faults. It requires p.mu.
func (p *Proxy) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// faultsOf returns the faults in force on direction i and a channel closed
// when they next change.
func (p *Proxy) faultsOf(i int) (linkFaults, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults[i], p.changed
}

// newConnCut returns the cut in force on new connections and a channel closed
// when it may have changed.
func (p *Proxy) newConnCut() (CutMode, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.newConnCutLocked(), p.changed
}

// newConnCutLocked requires p.mu.
func (p *Proxy) newConnCutLocked() CutMode {
	return max(p.faults[upstream].cut, p.faults[downstream].cut)
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			p.logger.Warn("proxy: accept failed", "err", err)
			t := p.clk.NewTimer(acceptBackoff)
			select {
			case <-t.C():
			case <-p.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		p.admit(nc)
	}
}

// admit registers an accepted connection and serves it as the cut in force says.
func (p *Proxy) admit(nc net.Conn) {
	p.accepted.Add(1)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		nc.Close()
		return
	}
	cut := p.newConnCutLocked()
	if cut == Drop {
		p.mu.Unlock()
		p.dropped.Add(1) // before the client can see the reset
		abort(nc)
		p.logger.Debug("proxy: new connection reset", "client", nc.RemoteAddr().String())
		return
	}
	c := &conn{p: p, client: nc, done: make(chan struct{})}
	if cut == Blackhole {
		c.dead[upstream].Store(true)
		c.dead[downstream].Store(true)
	}
	p.conns[c] = struct{}{}
	p.open.Add(1)
	p.wg.Add(1)
	p.mu.Unlock()
	p.logger.Debug("proxy: connection accepted", "client", nc.RemoteAddr().String(), "cut", cut)
	go c.serve()
}

// forget unregisters a closed connection.
func (p *Proxy) forget(c *conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	p.open.Add(-1)
}

// abort closes nc with a reset rather than a FIN.
func abort(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	nc.Close()
}
