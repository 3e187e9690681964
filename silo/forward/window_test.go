package forward

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"
)

// tapListener keeps a copy of every byte its connections read and write.
type tapListener struct {
	net.Listener
	mu            sync.Mutex
	read, written bytes.Buffer
}

func (l *tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tapConn{Conn: c, l: l}, nil
}

type tapConn struct {
	net.Conn
	l *tapListener
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.l.keep(&c.l.read, p[:n])
	return n, err
}

func (c *tapConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.l.keep(&c.l.written, p[:n])
	return n, err
}

func (l *tapListener) keep(to *bytes.Buffer, p []byte) {
	l.mu.Lock()
	to.Write(p)
	l.mu.Unlock()
}

const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// http2FrameTypes counts the frames of an HTTP/2 byte stream by type, and
// reports whether the stream ended on a frame boundary.
func http2FrameTypes(b []byte) (map[byte]int, bool) {
	b = bytes.TrimPrefix(b, []byte(http2Preface))
	types := map[byte]int{}
	for len(b) >= 9 {
		length := int(b[0])<<16 | int(binary.BigEndian.Uint16(b[1:3]))
		if len(b) < 9+length {
			return types, false
		}
		types[b[3]]++
		b = b[9+length:]
	}
	return types, len(b) == 0
}

// Calls one after another must not each cost a flow-control PING and its
// answer: grpc-go's bandwidth estimate, which sends them, is off between
// silos.
func TestForwardsSendNoPingPerCall(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tap := &tapListener{Listener: ln}
	gs := serveSilo(t, tap, echo)
	c := newTestClient(t)
	const calls = 50
	for i := range calls {
		reply, err := c.Forward(context.Background(), ln.Addr().String(), 1, "t", "a", postRequest("/echo", []byte("ping?")))
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if string(reply.GetBody()) != "ping?" {
			t.Fatalf("call %d answered %q", i, reply.GetBody())
		}
	}
	gs.Stop() // every frame is on the wire, and the tap's buffers are final

	const typePing, typeData = 0x6, 0x0
	tap.mu.Lock()
	defer tap.mu.Unlock()
	for _, dir := range []struct {
		name string
		b    []byte
	}{{"client to silo", tap.read.Bytes()}, {"silo to client", tap.written.Bytes()}} {
		types, whole := http2FrameTypes(dir.b)
		if !whole || types[typeData] < calls {
			t.Fatalf("%s: %d bytes do not parse as the frames of %d calls: %v", dir.name, len(dir.b), calls, types)
		}
		if types[typePing] > 2 {
			t.Errorf("%s: %d PING frames for %d calls, want at most 2", dir.name, types[typePing], calls)
		}
	}
}
