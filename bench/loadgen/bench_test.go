package loadgen

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// cannedConn is a net.Conn whose reads return the same response forever and
// whose writes vanish, so a benchmark measures only the generator's own work.
type cannedConn struct {
	net.Conn // nil: methods not overridden here are never called
	resp     string
	off      int
}

func (c *cannedConn) Read(p []byte) (int, error) {
	n := copy(p, c.resp[c.off:])
	c.off = (c.off + n) % len(c.resp)
	return n, nil
}

func (c *cannedConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *cannedConn) SetDeadline(time.Time) error      { return nil }
func (c *cannedConn) Close() error                     { return nil }
func (c *cannedConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *cannedConn) SetReadDeadline(time.Time) error  { return nil }
func (c *cannedConn) SetWriteDeadline(time.Time) error { return nil }

// benchmarkRoundTrip measures one request as the generator does it:
// numbering, rendering, timing, writing, parsing the response and recording
// its latency.
func benchmarkRoundTrip(b *testing.B, req Request, resp string) {
	r, err := newRun(Config{Addr: "127.0.0.1:3500", Connections: 1, Duration: time.Second, Request: req})
	if err != nil {
		b.Fatal(err)
	}
	r.end = time.Now().Add(time.Hour)
	conn := &cannedConn{resp: resp}
	w := &worker{run: r, conn: conn, stop: func() bool { return true }, codes: map[int]int64{},
		br: bufio.NewReaderSize(conn, readBufferSize)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		w.roundTrip(ctx)
	}
	if w.errs.Total() != 0 || w.hist.Count() == 0 {
		b.Fatalf("errors %+v (%v), %d recorded", w.errs, w.firstErr, w.hist.Count())
	}
}

func BenchmarkRoundTripInvoke(b *testing.B) {
	benchmarkRoundTrip(b,
		Request{Method: "POST", Path: "/v1.0/actors/Echo/{actor}/method/echo", Actors: ActorIDs("actor-", 1000)},
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
}

func BenchmarkRoundTripStateTransaction(b *testing.B) {
	benchmarkRoundTrip(b,
		Request{Method: "POST", Path: "/v1.0/actors/Echo/{actor}/state", Actors: ActorIDs("actor-", 1000),
			Body: `[{"operation":"upsert","request":{"key":"k","value":{"n":{n},"who":"{actor}"}}}]`},
		"HTTP/1.1 204 No Content\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\n\r\n")
}

func BenchmarkRoundTripChunked(b *testing.B) {
	benchmarkRoundTrip(b,
		Request{Method: "GET", Path: "/big"},
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n"+strings.Repeat("x", 0x800)+"\r\n800\r\n"+strings.Repeat("y", 0x800)+"\r\n0\r\n\r\n")
}
