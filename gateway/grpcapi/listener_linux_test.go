//go:build linux

package grpcapi

import (
	"net"
	"testing"

	"github.com/granaryhq/granary/internal/rawsock"
	"github.com/granaryhq/granary/internal/testutil"
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
	_, c := testutil.Connect(t, l, nil)
	if _, ok := c.(*rawsock.Socket); !ok {
		t.Fatalf("accepted a %T, want a *rawsock.Socket", c)
	}
	if got, err := rawsock.UserTimeout(c); got != keepaliveTimeout || err != nil {
		t.Fatalf("TCP_USER_TIMEOUT = %v, %v; want %v", got, err, keepaliveTimeout)
	}
}
