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
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
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
