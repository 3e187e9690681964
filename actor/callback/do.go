package callback

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/internal/busypoll"
	"github.com/granaryhq/granary/internal/rawsock"
)

// callPool is the keep-alive connections that the actor calls of one app's
// types with one drain timeout share. Its calls can be aborted: fasthttp
// cannot abandon a request in flight and runs each to its timeout, so
// AbortCalls closes the pool's connections, and every call on them fails at
// once. A turn stuck in an app that never answers thus ends at its type's
// drain timeout. The pool costs nothing per call (a goroutine per call that
// could be abandoned instead added about 40µs at p50 to a call through the
// gateway on two shared cores: a wake-up across CPUs in each direction).
type callPool struct {
	hc     *fasthttp.HostClient
	poller *busypoll.Poller // nil: reads never poll

	mu     sync.Mutex
	conns  map[*poolConn]struct{}
	closed bool // aborted: connections dialled afterwards are closed at once
}

func newCallPool(addr string, opts *Options) *callPool {
	p := &callPool{conns: map[*poolConn]struct{}{}, poller: opts.Poller}
	p.hc = newHostClient(addr, opts)
	p.hc.Dial = p.dial
	return p
}

// newHostClient is the fasthttp client of one app: a pool of keep-alive
// connections that never retries a call (an app may have acted on it).
func newHostClient(addr string, opts *Options) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:                      addr,
		Name:                      "granary",
		MaxConns:                  opts.MaxConns,
		MaxIdleConnDuration:       opts.IdleConnTimeout,
		MaxResponseBodySize:       opts.MaxResponseSize,
		MaxIdemponentCallAttempts: 1,
		RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		NoDefaultUserAgentHeader:  true,
		DisablePathNormalizing:    true,
		// Without it fasthttp dials IPv4 only, and http://[::1]:port fails.
		DialDualStack: true,
	}
}

// poolConn is a connection of a callPool.
//
// It sends a request with the read of its answer: Write keeps what fasthttp
// writes, and the next Read sends it and waits for the answer in one step
// (rawsock.Exchange), which saves a read that would find nothing. fasthttp
// reads the answer of every request it writes, and a Write sends what an
// earlier one kept before it keeps its own, so bytes go out in order; a
// request still kept when the connection closes was never going to be
// answered.
type poolConn struct {
	net.Conn
	pool *callPool
	once sync.Once
	kept []byte // written and not yet sent; only fasthttp's call uses it
}

// keepAtMost bounds what a Write keeps for the next Read, and so what a
// connection holds on to: fasthttp's write buffer, which a request that
// fits in it fills in one Write. A larger write is sent at once.
const keepAtMost = 4 << 10

func (c *poolConn) Write(b []byte) (int, error) {
	if err := c.sendKept(); err != nil {
		return 0, err
	}
	if len(b) > keepAtMost {
		return c.Conn.Write(b)
	}
	c.kept = append(c.kept[:0], b...)
	return len(b), nil
}

func (c *poolConn) sendKept() error {
	if len(c.kept) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.kept)
	c.kept = c.kept[:0]
	return err
}

// Read sends what Write kept, and may poll for the app's answer (see
// busypoll): the call counts as one call in flight, and the request it
// serves, if any, as another. A read that will not poll sends and waits in
// one step.
func (c *poolConn) Read(b []byte) (int, error) {
	const own = 2
	if len(c.kept) > 0 && !c.pool.poller.Polls(own) {
		w := c.kept
		c.kept = c.kept[:0]
		return rawsock.Exchange(c.Conn, w, b)
	}
	if err := c.sendKept(); err != nil {
		return 0, err
	}
	return c.pool.poller.Read(c.Conn, b, own)
}

func (c *poolConn) Close() error {
	var err error
	c.once.Do(func() {
		c.pool.mu.Lock()
		delete(c.pool.conns, c)
		c.pool.mu.Unlock()
		err = c.Conn.Close()
	})
	return err
}

var dialer = net.Dialer{Timeout: 10 * time.Second}

// dial connects to the app. The connection reads and writes with raw
// system calls (internal/rawsock); app calls are plain HTTP.
func (p *callPool) dial(addr string) (net.Conn, error) {
	nc, err := dialer.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &poolConn{Conn: rawsock.Wrap(nc), pool: p}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		nc.Close()
		return nil, errCallsAborted
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	return c, nil
}

// errCallsAborted fails the calls of an aborted pool.
var errCallsAborted = errors.New("calls to the app were aborted at the drain timeout")

// abort closes every connection of the pool, failing the calls on them, and
// refuses new ones.
func (p *callPool) abort() {
	p.mu.Lock()
	p.closed = true
	conns := make([]*poolConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// do sends req on the pool's connections, counting it in flight for the
// poller while it runs; see do.
func (p *callPool) do(ctx context.Context, req *fasthttp.Request, timeout time.Duration) (*fasthttp.Response, error) {
	p.poller.Begin()
	defer p.poller.End()
	return do(ctx, p.hc, req, timeout)
}

// do sends req on hc and returns the response, which the caller releases.
// It takes req and releases it. A call whose context has already ended is
// not sent.
func do(ctx context.Context, hc *fasthttp.HostClient, req *fasthttp.Request, timeout time.Duration) (*fasthttp.Response, error) {
	defer fasthttp.ReleaseRequest(req)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("call not sent: %w", context.Cause(ctx))
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("no time left for the call (%w)", fasthttp.ErrTimeout)
	}
	resp := fasthttp.AcquireResponse()
	if err := hc.DoTimeout(req, resp, timeout); err != nil {
		fasthttp.ReleaseResponse(resp)
		return nil, err
	}
	return resp, nil
}

// isTimeout reports whether err is fasthttp's timeout.
func isTimeout(err error) bool { return errors.Is(err, fasthttp.ErrTimeout) }
