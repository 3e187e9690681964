package callback

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/busypoll"
)

// A poolConn keeps what is written until the next read or write, sends
// it first, and sends a write too large to keep at once.
func TestPoolConnSendsWritesInOrder(t *testing.T) {
	for _, tt := range []struct {
		name   string
		poller *busypoll.Poller
	}{
		{"without polling", nil},
		{"with polling", busypoll.New(busypoll.MaxBudget)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, peer := net.Pipe()
			defer c.Close()
			defer peer.Close()
			pc := &poolConn{Conn: c, pool: &callPool{poller: tt.poller}}

			if n, err := pc.Write([]byte("first ")); n != 6 || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			peer.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if n, err := peer.Read(make([]byte, 16)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("the peer read %d bytes, %v, before the next read or write: want nothing", n, err)
			}
			peer.SetReadDeadline(time.Time{})

			got := make(chan []byte, 1)
			big := bytes.Repeat([]byte("x"), keepAtMost+1)
			want := append([]byte("first second "), big...)
			want = append(want, "last"...)
			go func() {
				b := make([]byte, len(want))
				io.ReadFull(peer, b)
				got <- b
				peer.Write([]byte("answer"))
			}()
			for _, w := range [][]byte{[]byte("second "), big, []byte("last")} {
				if n, err := pc.Write(w); n != len(w) || err != nil {
					t.Fatalf("Write of %d bytes = %d, %v", len(w), n, err)
				}
			}
			buf := make([]byte, 16)
			n, err := pc.Read(buf)
			if err != nil || string(buf[:n]) != "answer" {
				t.Fatalf("Read = %q, %v; want answer", buf[:n], err)
			}
			if b := <-got; !bytes.Equal(b, want) {
				t.Fatalf("the peer got %d bytes that differ from the %d written in order", len(b), len(want))
			}
			if len(pc.kept) != 0 {
				t.Fatalf("%d bytes still kept after the read", len(pc.kept))
			}
		})
	}
}

// A failed send of what was kept is the read's error.
func TestPoolConnReadReportsTheSend(t *testing.T) {
	c, peer := net.Pipe()
	pc := &poolConn{Conn: c, pool: &callPool{}}
	if _, err := pc.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	peer.Close()
	if _, err := pc.Read(make([]byte, 16)); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Read after the peer closed = %v, want the write's io.ErrClosedPipe", err)
	}
	c.Close()
}
