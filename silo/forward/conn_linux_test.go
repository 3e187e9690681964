//go:build linux

package forward

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/rawsock"
	"github.com/granaryhq/granary/internal/testutil"
)

// The connections between silos read and write with raw system calls, and
// keep the TCP user timeout that grpc-go gives the connections it makes
// itself: the keepalive timeout, on both ends.
func TestSiloConnectionsAreRawWithUserTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Listener(ln)
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, sc := testutil.Connect(t, l, func(addr string) (net.Conn, error) { return dial(ctx, addr) })
	for _, end := range []struct {
		name string
		c    net.Conn
		want time.Duration
	}{{"dialled", c, keepaliveTimeout}, {"accepted", sc, serverKeepaliveTimeout}} {
		if _, ok := end.c.(*rawsock.Socket); !ok {
			t.Errorf("%s connection is a %T, want a *rawsock.Socket", end.name, end.c)
		}
		if got, err := rawsock.UserTimeout(end.c); got != end.want || err != nil {
			t.Errorf("%s connection: TCP_USER_TIMEOUT %v, %v; want %v", end.name, got, err, end.want)
		}
	}
}
