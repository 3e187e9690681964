//go:build !linux

package rawsock

import (
	"net"
	"time"
)

func wrap(c net.Conn) net.Conn { return c }

func setUserTimeout(net.Conn, time.Duration) error { return nil }

func userTimeout(net.Conn) (time.Duration, error) { return 0, nil }
