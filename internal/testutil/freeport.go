package testutil

import (
	"net"
	"sync"
	"testing"
)

// handedOut remembers the ports FreePort returned in this process, so two
// callers never get the same port even if the kernel offers it twice.
var handedOut struct {
	mu    sync.Mutex
	ports map[int]bool
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listened on a moment
// ago. Another process may still take it before the caller binds it; the
// kernel hands out ephemeral ports in turn, so that is rare on a test machine.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("testutil: finding a free port: %v", err)
	}
	return port
}

func freePort() (int, error) {
	handedOut.mu.Lock()
	defer handedOut.mu.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if err := ln.Close(); err != nil {
			return 0, err
		}
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port, nil
		}
	}
}
