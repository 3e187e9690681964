package testutil

import (
	"net"
	"testing"
)

// TCPPair returns the two ends of a loopback TCP connection, both closed
// when the test ends.
func TCPPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testutil: listen: %v", err)
	}
	defer ln.Close()
	return Connect(t, ln, nil)
}

// Connect dials l's address with dial (net.Dial's "tcp" when nil) and
// returns the dialled end and the end l accepted, both closed when the test
// ends. l itself stays open.
func Connect(t testing.TB, l net.Listener, dial func(addr string) (net.Conn, error)) (client, server net.Conn) {
	t.Helper()
	if dial == nil {
		dial = func(addr string) (net.Conn, error) { return net.Dial("tcp", addr) }
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := dial(l.Addr().String())
	if err != nil {
		t.Fatalf("testutil: dial: %v", err)
	}
	server, ok := <-accepted
	if !ok {
		client.Close()
		t.Fatal("testutil: accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}
