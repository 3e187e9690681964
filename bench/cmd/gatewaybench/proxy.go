package main

import (
	"fmt"
	"io"
	"net"
	"strings"
)

// proxyFlag is the hidden mode in which gatewaybench runs as the reference
// proxy: --proxy LISTEN=TARGET.
const proxyFlag = "--proxy"

// runProxy copies bytes between each connection accepted on listen and a
// connection of its own to target, both ways, and nothing else: no parsing,
// no routing. Run as a process of its own in front of the app, it measures
// what any proxy process in the path costs on this machine: under load (a)
// the wake-ups of one more process per request, the floor under what the
// gateway adds; under load (b) its socket reads and writes, two of each per
// request, the ceiling over the gateway's share of direct rps.
func runProxy(spec string) error {
	listen, target, ok := strings.Cut(spec, "=")
	if !ok {
		return fmt.Errorf("%s %q: want LISTEN=TARGET", proxyFlag, spec)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			u, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer u.Close()
			go func() {
				copyBytes(u, c)
				u.Close()
			}()
			copyBytes(c, u)
		}()
	}
}

// copyBytes copies from src to dst with a read and a write per chunk, as
// the gateway moves its messages, not with splice(2), which io.Copy uses
// between two TCP connections.
func copyBytes(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, buf)
}
