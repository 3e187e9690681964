//go:build linux

package main

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/mtls"
	"github.com/granaryhq/granary/internal/rawsock"
	"github.com/granaryhq/granary/internal/testutil"
)

// The gateway's connections read and write with raw system calls, beneath
// TLS when it is on.
func TestGatewayListenerIsRaw(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if err := mtls.InitCA(dir, now, time.Hour); err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, err := mtls.Issue(dir, "gateway", dir, nil, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
	}{{"plain", nil}, {"TLS", &tls.Config{Certificates: []tls.Certificate{cert}}}} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			l := gatewayListener(ln, tc.cfg)
			defer l.Close()
			_, c := testutil.Connect(t, l, nil)
			if tc.cfg != nil {
				tc, ok := c.(*tls.Conn)
				if !ok {
					t.Fatalf("accepted a %T, want a *tls.Conn", c)
				}
				c = tc.NetConn()
			}
			if _, ok := c.(*rawsock.Socket); !ok {
				t.Fatalf("the accepted socket is a %T, want a *rawsock.Socket", c)
			}
		})
	}
}
