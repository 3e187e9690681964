package forward

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"

	silopb "github.com/granaryhq/granary/proto/silo"
)

// quietLogger drops everything; tests assert on results, not logs.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// countingListener counts the connections a gRPC server accepts and
// reports when the server side of one is closed.
type countingListener struct {
	net.Listener

	mu       sync.Mutex
	accepted int
	closed   chan struct{} // receives once per closed connection
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.accepted++
	l.mu.Unlock()
	return &notifyingConn{Conn: c, closed: l.closed}, nil
}

func (l *countingListener) accepts() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.accepted
}

type notifyingConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *notifyingConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.closed <- struct{}{} })
	return err
}

// startSilo serves a Server for handler on a loopback port until the test
// ends, and returns its address and listener.
func startSilo(tb testing.TB, handler fasthttp.RequestHandler) (string, *countingListener) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	cl := &countingListener{Listener: ln, closed: make(chan struct{}, 128)}
	serveSilo(tb, cl, handler)
	return ln.Addr().String(), cl
}

// serveSilo serves a Server for handler on ln until the test ends, and
// returns the gRPC server, which a test may stop sooner.
func serveSilo(tb testing.TB, ln net.Listener, handler fasthttp.RequestHandler) *grpc.Server {
	tb.Helper()
	gs := grpc.NewServer(ServerOptions()...)
	silopb.RegisterSiloServer(gs, NewServer(handler, quietLogger()))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(ln)
	}()
	tb.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return gs
}

func newTestClient(tb testing.TB) *Client {
	tb.Helper()
	c := NewClient(quietLogger())
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Errorf("close client: %v", err)
		}
	})
	return c
}

// parseRequest reads raw as the gateway's server would have.
func parseRequest(tb testing.TB, raw []byte) *fasthttp.Request {
	tb.Helper()
	req := new(fasthttp.Request)
	if err := req.Read(bufio.NewReader(bytes.NewReader(raw))); err != nil {
		tb.Fatalf("parse request: %v", err)
	}
	return req
}

// postRequest builds a request the way the gateway would receive it.
func postRequest(uri string, body []byte) *fasthttp.Request {
	req := new(fasthttp.Request)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(uri)
	req.Header.SetHost("silo-a:3500")
	req.SetBody(body)
	return req
}

// echo answers with the request's body.
func echo(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/octet-stream")
	ctx.SetBody(ctx.PostBody())
}

// field is one header field as a handler sees it.
type field struct{ name, value string }

func requestFields(h *fasthttp.RequestHeader) []field {
	var out []field
	for k, v := range h.All() {
		out = append(out, field{string(k), string(v)})
	}
	return out
}

func replyFields(hs []*silopb.Header) []field {
	var out []field
	for _, h := range hs {
		out = append(out, field{h.GetName(), string(h.GetValue())})
	}
	return out
}

func responseFields(h *fasthttp.ResponseHeader) []field {
	var out []field
	for k, v := range h.All() {
		out = append(out, field{string(k), string(v)})
	}
	return out
}

// allBytes is every byte value once, then the reverse.
func allBytes() []byte {
	b := make([]byte, 512)
	for i := range 256 {
		b[i] = byte(i)
		b[511-i] = byte(i)
	}
	return b
}

// patterned returns n bytes that differ from their neighbours, so a
// shifted or truncated copy does not compare equal.
func patterned(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}
