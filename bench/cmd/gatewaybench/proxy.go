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
// what any proxy process in the path costs on this machine (the wake-ups of
// one more process per request), the floor under what the gateway adds.
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
				io.Copy(u, c)
				u.Close()
			}()
			io.Copy(c, u)
		}()
	}
}
