package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/granaryhq/granary/actor"
)

// readListener is a loopback listener whose connections report, on got, the
// first time the server reads bytes from them: a test can then be sure the
// server has begun reading a request.
type readListener struct {
	net.Listener
	got chan struct{}
}

func (l *readListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &readConn{Conn: c, got: l.got}, nil
}

type readConn struct {
	net.Conn
	got  chan struct{}
	once sync.Once
}

func (c *readConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.once.Do(func() { c.got <- struct{}{} })
	}
	return n, err
}

// tcpGateway is a gateway serving on a loopback TCP listener.
type tcpGateway struct {
	s    *Server
	addr string
	got  chan struct{} // one value per connection, at its first read
	done chan error    // Serve's result
}

// serveTCP starts a gateway on loopback; the test shuts it down itself or,
// failing that, cleanup does.
func serveTCP(t *testing.T, backend Backend, cfg Config) *tcpGateway {
	t.Helper()
	return startTCP(t, backend, cfg, true)
}

// servePlainTCP is serveTCP without the signal of each connection's first
// read, so that the gateway reads the accepted sockets themselves (and its
// reads can poll them); got stays empty.
func servePlainTCP(t *testing.T, backend Backend, cfg Config) *tcpGateway {
	t.Helper()
	return startTCP(t, backend, cfg, false)
}

func startTCP(t *testing.T, backend Backend, cfg Config, signalReads bool) *tcpGateway {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("no loopback TCP listener: %v", err)
	}
	var ln net.Listener = inner
	got := make(chan struct{}, 64)
	if signalReads {
		ln = &readListener{Listener: inner, got: got}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	g := &tcpGateway{s: New(backend, cfg), addr: inner.Addr().String(), got: got, done: make(chan error, 1)}
	go func() { g.done <- g.s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.s.Shutdown(ctx)
	})
	return g
}

// dial opens a connection to the gateway with a deadline for the whole test.
func (g *tcpGateway) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitRead waits until the server has read from a connection.
func (g *tcpGateway) waitRead(t *testing.T) {
	t.Helper()
	select {
	case <-g.got:
	case <-time.After(10 * time.Second):
		t.Fatal("the server never read from the connection")
	}
}

// shutdownWithin shuts the gateway down with a deadline of limit and checks
// that Shutdown and Serve both return nil well before it.
func (g *tcpGateway) shutdownWithin(t *testing.T, limit time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	err := g.s.Shutdown(ctx)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Shutdown after %v: %v", took.Round(time.Millisecond), err)
	}
	if took > limit/2 {
		t.Errorf("Shutdown took %v; want well under %v", took.Round(time.Millisecond), limit)
	}
	select {
	case err := <-g.done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(limit):
		t.Error("Serve did not return after Shutdown")
	}
}

// readResponse reads one response off c.
func readResponse(t *testing.T, br *bufio.Reader) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response body: %v", err)
	}
	return resp, body
}

// wantClosedSilently checks that the server closed c without answering.
func wantClosedSilently(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection is still open; read %q", got)
	}
	if len(got) > 0 {
		t.Errorf("the server answered %q on a connection it should have closed", got)
	}
}

func TestShutdownClosesHalfSentRequests(t *testing.T) {
	partial := []struct{ name, raw string }{
		{"headers without the final CRLF", "PUT /v1.0/actors/T/1/method/m HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n"},
		{"request line only", "PUT /v1.0/actors/T/1/method/m HTTP/1.1\r\n"},
		{"part of the request line", "PU"},
		{"body cut short", "PUT /v1.0/actors/T/1/method/m HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n\r\nabc"},
	}
	for _, p := range partial {
		t.Run(p.name, func(t *testing.T) {
			f := &fakeBackend{}
			g := serveTCP(t, f, Config{})
			c := g.dial(t)
			if _, err := io.WriteString(c, p.raw); err != nil {
				t.Fatal(err)
			}
			g.waitRead(t)
			g.shutdownWithin(t, 4*time.Second)
			wantClosedSilently(t, c)
			wantCalls(t, p.name, f)
		})
	}
}

func TestShutdownClosesNewAndIdleConnections(t *testing.T) {
	f := &fakeBackend{}
	g := serveTCP(t, f, Config{})
	idle := g.dial(t)
	if _, err := io.WriteString(idle, "GET /v1.0/healthz HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, body := readResponse(t, bufio.NewReader(idle)); resp.StatusCode != 204 {
		t.Fatalf("healthz: %d %s", resp.StatusCode, body)
	}
	fresh := g.dial(t) // connected, nothing sent
	g.shutdownWithin(t, 4*time.Second)
	wantClosedSilently(t, idle)
	wantClosedSilently(t, fresh)
}

// lastInvoke returns what the backend saw in its last Invoke.
func (f *fakeBackend) lastInvoke() seenInvoke {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.invoke
}

// blockingBackend holds every Invoke until release is closed.
type blockingBackend struct {
	fakeBackend
	entered chan struct{}
	release chan struct{}
}

func (b *blockingBackend) Invoke(ctx context.Context, id actor.ID, req *actor.Request) (*actor.Response, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.fakeBackend.Invoke(ctx, id, req)
}

func TestShutdownLetsRequestsInTheHandlerFinish(t *testing.T) {
	b := &blockingBackend{entered: make(chan struct{}, 1), release: make(chan struct{})}
	b.resp.Body = []byte("done")
	g := serveTCP(t, b, Config{})
	busy := g.dial(t)
	if _, err := io.WriteString(busy, invokeRequest("x", "")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the backend")
	}
	// Another connection is half-way through its request: it must not
	// hold shutdown up, and the call in progress must still finish.
	half := g.dial(t)
	if _, err := io.WriteString(half, "PUT /v1.0/actors/T/2/method/m HTTP/1.1\r\nHost: gw\r\n"); err != nil {
		t.Fatal(err)
	}
	g.waitRead(t)
	g.waitRead(t)

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- g.s.Shutdown(ctx)
	}()
	wantClosedSilently(t, half)
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a call was in the handler", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(b.release)
	resp, body := readResponse(t, bufio.NewReader(busy))
	if resp.StatusCode != 200 || string(body) != "done" {
		t.Errorf("the call in progress got %d %q; want 200 done", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Errorf("the answer during shutdown does not close the connection")
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last call finished")
	}
	wantCalls(t, "shutdown", &b.fakeBackend, "Invoke T/1")
}

func TestBareLFRequestsAreRefused(t *testing.T) {
	rows := []struct{ name, raw string }{
		{"every line", "GET /v1.0/healthz HTTP/1.1\nHost: gw\n\n"},
		{"request line", "GET /v1.0/healthz HTTP/1.1\nHost: gw\r\n\r\n"},
		{"one header line", "GET /v1.0/healthz HTTP/1.1\r\nHost: gw\nX-A: b\r\n\r\n"},
		{"final empty line", "GET /v1.0/healthz HTTP/1.1\r\nHost: gw\r\n\n"},
		{"a leading empty line", "\nGET /v1.0/healthz HTTP/1.1\r\nHost: gw\r\n\r\n"},
		{"with a body", "PUT /v1.0/actors/T/1/method/m HTTP/1.1\nHost: gw\nContent-Length: 2\n\nab"},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			f := &fakeBackend{}
			g := serveTCP(t, f, Config{})
			c := g.dial(t)
			// A prompt answer, not one at the read timeout.
			if err := c.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(c, r.raw); err != nil {
				t.Fatal(err)
			}
			resp, body := readResponse(t, bufio.NewReader(c))
			wantWireError(t, r.name, resp, body, 400, "ERR_MALFORMED_REQUEST", "bare LF")
			wantCalls(t, r.name, f)
		})
	}
}

func TestBareLFRequestsAreRefusedInPieces(t *testing.T) {
	f := &fakeBackend{}
	g := serveTCP(t, f, Config{})
	c := g.dial(t)
	if err := c.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, piece := range []string{"GET /v1.0/healthz HTTP/1.1\r", "\nHost: gw\r\n", "X-A: b\n", "\r\n"} {
		if _, err := io.WriteString(c, piece); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, body := readResponse(t, bufio.NewReader(c))
	wantWireError(t, "in pieces", resp, body, 400, "ERR_MALFORMED_REQUEST", "bare LF")
	wantCalls(t, "in pieces", f)
}

// TestBareLFOnKeepAliveConnection sends bodies full of bare LFs, which are
// data, then a request whose own header block has one.
func TestBareLFOnKeepAliveConnection(t *testing.T) {
	f := &fakeBackend{}
	g := serveTCP(t, f, Config{})
	c := g.dial(t)
	br := bufio.NewReader(c)
	bodies := []string{"a\nb\n\n", "\n", "\r\n\r\n\n", "x"}
	for _, body := range bodies {
		if _, err := io.WriteString(c, invokeRequest(body, "")); err != nil {
			t.Fatal(err)
		}
		resp, got := readResponse(t, br)
		if resp.StatusCode != 200 {
			t.Fatalf("body %q: %d %s", body, resp.StatusCode, got)
		}
		if f.lastInvoke().Body != body {
			t.Errorf("body %q arrived as %q", body, f.lastInvoke().Body)
		}
	}
	// A chunked body, whose framing the gateway does not follow.
	chunked := "PUT /v1.0/actors/T/1/method/m HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n3\r\na\nb\r\n0\r\n\r\n"
	if _, err := io.WriteString(c, chunked); err != nil {
		t.Fatal(err)
	}
	if resp, got := readResponse(t, br); resp.StatusCode != 200 || f.lastInvoke().Body != "a\nb" {
		t.Fatalf("chunked: %d %s, body %q", resp.StatusCode, got, f.lastInvoke().Body)
	}
	if _, err := io.WriteString(c, invokeRequest("y", "")); err != nil {
		t.Fatal(err)
	}
	if resp, got := readResponse(t, br); resp.StatusCode != 200 {
		t.Fatalf("after the chunked body: %d %s", resp.StatusCode, got)
	}

	c2 := g.dial(t)
	br2 := bufio.NewReader(c2)
	if err := c2.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c2, invokeRequest("a\nb", "")); err != nil {
		t.Fatal(err)
	}
	if resp, got := readResponse(t, br2); resp.StatusCode != 200 {
		t.Fatalf("first request: %d %s", resp.StatusCode, got)
	}
	// Some clients send a CRLF after a body; servers skip it.
	if _, err := io.WriteString(c2, "\r\n"+invokeRequest("c", "")); err != nil {
		t.Fatal(err)
	}
	if resp, got := readResponse(t, br2); resp.StatusCode != 200 {
		t.Fatalf("request after an empty line: %d %s", resp.StatusCode, got)
	}
	if _, err := io.WriteString(c2, "GET /v1.0/healthz HTTP/1.1\nHost: gw\n\n"); err != nil {
		t.Fatal(err)
	}
	resp, body := readResponse(t, br2)
	wantWireError(t, "second request", resp, body, 400, "ERR_MALFORMED_REQUEST", "bare LF")
}

// TestPipelinedRequests sends several requests in one write; bodies with
// bare LFs among them are data.
func TestPipelinedRequests(t *testing.T) {
	f := &fakeBackend{}
	g := serveTCP(t, f, Config{})
	c := g.dial(t)
	br := bufio.NewReader(c)
	var all strings.Builder
	bodies := []string{"a\n", "\n\n", "b"}
	for _, body := range bodies {
		all.WriteString(invokeRequest(body, ""))
	}
	all.WriteString("GET /v1.0/healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
	if _, err := io.WriteString(c, all.String()); err != nil {
		t.Fatal(err)
	}
	for i := range bodies {
		if resp, got := readResponse(t, br); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, got)
		}
	}
	if resp, got := readResponse(t, br); resp.StatusCode != 204 {
		t.Fatalf("healthz: %d %s", resp.StatusCode, got)
	}
	want := []string{"Invoke T/1", "Invoke T/1", "Invoke T/1", "Ready"}
	wantCalls(t, fmt.Sprintf("%d pipelined requests", len(want)), f, want...)
}
