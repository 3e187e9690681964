package gateway

import (
	"bytes"
	"errors"
	"net"
	"sync/atomic"

	"github.com/valyala/fasthttp"

	"github.com/granaryhq/granary/internal/busypoll"
)

// The phases of a connection, as Shutdown sees them.
const (
	connWaiting int32 = iota // open with no request begun: new, or idle between requests
	connReading              // a request has begun and has not reached the handler yet
	connServing              // a request is in the handler or its answer is being written
	connClosing              // Shutdown has closed it
)

// errBareLF fails the read of a request whose header block has a line
// ending in LF alone. fasthttp takes such a line, then waits for a CRLFCRLF
// that may never come, so the client would get no answer until the read
// timeout.
var errBareLF = errors.New("a line of the request header ends in a bare LF; HTTP/1.1 lines end in CRLF")

// listener hands the server tracked connections.
type listener struct {
	net.Listener
	s *Server
}

func (l *listener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &conn{Conn: nc, poller: l.s.cfg.Poller}
	c.scan.begin()
	l.s.track(c)
	return c, nil
}

// conn is an accepted connection. It knows its phase, so that Shutdown can
// close the connections no handler serves without cutting off those that
// one does, and it scans each request's header block as it is read.
type conn struct {
	net.Conn
	poller *busypoll.Poller // nil: reads never poll
	phase  atomic.Int32
	// scan is used only by the goroutine serving the connection (its reads,
	// the handler and the error handler all run there), and by Accept
	// before that goroutine has the connection.
	scan headerScan
}

func (c *conn) Read(p []byte) (int, error) {
	if c.scan.bareLF {
		// fasthttp wants more of a block it would wait on for good, or the
		// body of a request the handler will refuse: fail the request now.
		return 0, errBareLF
	}
	n, err := c.poller.Read(c.Conn, p, 0)
	if n > 0 {
		c.scan.feed(p[:n])
	}
	return n, err
}

// enter moves the connection to connServing when its request reaches the
// handler, and reports false if Shutdown closed it first: then nobody will
// read an answer, and the request must not run. The compare-and-swap makes
// the two exclusive: Shutdown closes only a connection it moved out of
// connReading or connWaiting itself.
func (c *conn) enter(h *fasthttp.RequestHeader) bool {
	for {
		switch p := c.phase.Load(); p {
		case connClosing:
			return false
		case connServing:
			return true
		default:
			if c.phase.CompareAndSwap(p, connServing) {
				c.scan.served(h)
				return true
			}
		}
	}
}

// closeIfUnserved closes the connection unless a handler serves it.
func (c *conn) closeIfUnserved() {
	for {
		p := c.phase.Load()
		if p != connWaiting && p != connReading {
			return
		}
		if c.phase.CompareAndSwap(p, connClosing) {
			c.Conn.Close()
			return
		}
	}
}

// track and untrack keep the set of open connections for Shutdown.
func (s *Server) track(c *conn) {
	s.connsMu.Lock()
	s.conns[c] = struct{}{}
	s.connsMu.Unlock()
}

func (s *Server) untrack(c *conn) {
	s.connsMu.Lock()
	delete(s.conns, c)
	s.connsMu.Unlock()
}

// connState follows fasthttp's view of each connection: StateActive comes
// with the first byte of a request, before its headers are read; StateIdle
// after its answer is written.
func (s *Server) connState(nc net.Conn, state fasthttp.ConnState) {
	c, ok := nc.(*conn)
	if !ok {
		return
	}
	switch state {
	case fasthttp.StateActive:
		c.phase.CompareAndSwap(connWaiting, connReading)
	case fasthttp.StateIdle:
		c.phase.CompareAndSwap(connServing, connWaiting)
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		s.untrack(c)
	}
}

// closeUnserved closes every connection no handler serves: idle ones, new
// ones and those part-way through sending a request.
func (s *Server) closeUnserved() {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	for c := range s.conns {
		c.closeIfUnserved()
	}
}

// headerScan follows the bytes a connection delivers to find the header
// block of each request: whether a line in it ends in a bare LF, how long
// its request line is (to tell a long URI from large headers when the block
// overflows the read buffer), and where it ends.
//
// It needs to know where a block starts. The first one starts the
// connection; the next one starts after the body of the request before,
// which is known once that request reaches the handler. When the bytes of
// the next request came with the previous one (pipelining) or the body's
// length on the wire is unknown (chunked), the scan stops for the rest of
// the connection: it must never take a body's bytes for a header.
type headerScan struct {
	pos   int64 // bytes delivered so far
	on    bool  // pos is inside a header block whose start is known
	lost  bool  // the scan lost the start of the next block; it stays off
	start int64 // where the block began

	line    int   // bytes of the current line so far
	lastCR  bool  // the last byte delivered was CR
	lead    int   // bytes of empty lines before the request line, which servers skip
	reqLine int   // length of the request line with its CRLF; 0 until it is complete
	method  int   // length of the method (where the first space is); -1 until seen
	end     int64 // where the block ends, just past its final CRLF; 0 until then
	bareLF  bool
}

// begin starts a block at pos.
func (h *headerScan) begin() {
	*h = headerScan{pos: h.pos, on: true, start: h.pos, method: -1}
}

// feed scans bytes just read.
func (h *headerScan) feed(p []byte) {
	at := h.pos
	h.pos += int64(len(p))
	for h.on && len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		if h.reqLine == 0 && h.method < 0 {
			if j := bytes.IndexByte(seg, ' '); j >= 0 {
				h.method = h.line + j
			}
		}
		if i < 0 {
			h.line += len(p)
			h.lastCR = p[len(p)-1] == '\r'
			return
		}
		cr := h.lastCR
		if i > 0 {
			cr = p[i-1] == '\r'
		}
		n := h.line + i // the line's bytes before its LF
		switch {
		case !cr: // a bare LF
			h.bareLF, h.on = true, false
			return
		case n == 1 && h.reqLine == 0: // an empty line before the request line
			h.lead += 2
		case n == 1: // the empty line that ends the block
			h.end, h.on = at+int64(i)+1, false
			return
		case h.reqLine == 0: // the request line
			h.reqLine = n + 1
		}
		h.line, h.lastCR = 0, false
		at += int64(i) + 1
		p = p[i+1:]
	}
}

// served is called when the request whose block was scanned reaches the
// handler, its body read; it sets up the scan of the next block.
func (h *headerScan) served(hdr *fasthttp.RequestHeader) {
	if h.lost {
		return
	}
	// Check that fasthttp framed the block as the scan did: its request
	// line and header lines, the latter with their final empty line.
	fields := max(len(hdr.RawHeaders()), 2)
	line := len(hdr.Method()) + len(hdr.RequestURI()) + len(hdr.Protocol()) + len("  \r\n")
	body := hdr.ContentLength() // -1: chunked; -2: none
	if h.end == 0 || h.reqLine != line || h.end-h.start != int64(h.lead+line+fields) || body == -1 {
		h.stop()
		return
	}
	if body < 0 {
		body = 0
	}
	if h.end+int64(body) != h.pos {
		h.stop()
		return
	}
	h.begin()
}

func (h *headerScan) stop() { h.on, h.lost = false, true }

// overflow says what made a header block too large for the read buffer:
// the URI when the request line is incomplete or holds a URI over
// MaxURILength, the header lines otherwise. known is false when the scan
// could not follow the block.
func (h *headerScan) overflow() (uri, known bool) {
	if h.lost || h.bareLF {
		return false, false
	}
	if h.reqLine == 0 {
		return true, true
	}
	// The request line is "METHOD URI HTTP/x.y\r\n".
	return h.reqLine-h.method-len("  HTTP/1.1\r\n") > MaxURILength, true
}
