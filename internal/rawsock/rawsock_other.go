//go:build !linux

package rawsock

import (
	"net"
	"time"
)

func wrap(c net.Conn) net.Conn { return c }

func exchange(c net.Conn, w, r []byte) (int, error) { return exchangeInTurn(c, w, r) }

func setUserTimeout(net.Conn, time.Duration) error { return nil }

func userTimeout(net.Conn) (time.Duration, error) { return 0, nil }
