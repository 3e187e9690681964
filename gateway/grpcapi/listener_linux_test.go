//go:build linux

package grpcapi

import (
	"net"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/rawsock"
)

// The API's connections read and write with raw system calls and keep the
// TCP user timeout grpc-go would set from the keepalive timeout.
func TestListenerRawWithUserTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Listener(ln)
	defer l.Close()
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			time.Sleep(time.Second)
			c.Close()
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*rawsock.Socket); !ok {
		t.Fatalf("accepted a %T, want a *rawsock.Socket", c)
	}
	if got, err := rawsock.UserTimeout(c); got != keepaliveTimeout || err != nil {
		t.Fatalf("TCP_USER_TIMEOUT = %v, %v; want %v", got, err, keepaliveTimeout)
	}
}
