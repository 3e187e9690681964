package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"time"
)

// Conn is one keep-alive connection on which its owner sends requests one
// at a time and reads each response, for loads that are not a timed run of
// one request template (a fixed number of requests, each with its own path
// and body). Like Run's connections it writes and parses HTTP/1.1 itself,
// so that the client costs the machine little beside the server. A Conn is
// used by one goroutine at a time.
type Conn struct {
	addr    string
	timeout time.Duration
	conn    net.Conn
	br      *bufio.Reader
	buf     []byte
}

// NewConn returns a Conn to addr (host:port). It connects on the first Do,
// and again after a failure or a response that closes the connection.
// timeout bounds connecting and each request; 10 s when zero.
func NewConn(addr string, timeout time.Duration) *Conn {
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	return &Conn{addr: addr, timeout: timeout}
}

// Do sends one request with a JSON body (none when body is empty) and
// returns the response's status, its body discarded. After an error the
// connection is closed, and the next Do opens a new one.
func (c *Conn) Do(ctx context.Context, method, path, body string) (int, error) {
	if err := checkRequestLine(method, path); err != nil {
		return 0, err
	}
	if c.conn == nil {
		d := net.Dialer{Timeout: c.timeout}
		conn, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return 0, fmt.Errorf("connect to %s: %w", c.addr, err)
		}
		c.conn = conn
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, readBufferSize)
		} else {
			c.br.Reset(conn)
		}
	}
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn := c.conn // the hook runs on another goroutine, maybe after Close
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	b := append(c.buf[:0], method...)
	b = append(b, ' ')
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.addr...)
	if body != "" {
		b = append(b, "\r\nContent-Type: application/json"...)
	}
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	c.buf = b
	err := conn.SetDeadline(deadline)
	if err == nil {
		_, err = conn.Write(b)
	}
	var resp response
	if err == nil {
		resp, err = readResponse(c.br, method == "HEAD")
	}
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		c.Close()
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if !resp.keepAlive {
		c.Close()
	}
	return resp.status, nil
}

// Close closes the connection, if one is open.
func (c *Conn) Close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}
