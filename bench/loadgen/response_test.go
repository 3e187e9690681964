package loadgen

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

type errKind int

const (
	noErr errKind = iota
	protoErr
	ioErr
)

func kindOf(err error) errKind {
	switch {
	case err == nil:
		return noErr
	case errors.Is(err, errProtocol):
		return protoErr
	}
	return ioErr
}

func TestReadResponse(t *testing.T) {
	const next = "HTTP/1.1 200 OK\r\n\r\n"
	tests := []struct {
		name      string
		in        string
		head      bool
		status    int
		keepAlive bool
		err       errKind
		rest      string // what must be left unread
	}{
		{name: "content length", in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + next,
			status: 200, keepAlive: true, rest: next},
		{name: "bare LF line ends", in: "HTTP/1.1 200 OK\nContent-Length: 2\n\nok" + next,
			status: 200, keepAlive: true, rest: next},
		{name: "header case and spaces", in: "HTTP/1.1 201 Created\r\ncontent-LENGTH:   3  \r\nX-A: b\r\n\r\nabc" + next,
			status: 201, keepAlive: true, rest: next},
		{name: "no reason phrase", in: "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n" + next,
			status: 200, keepAlive: true, rest: next},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n" + next,
			status: 200, keepAlive: true, rest: next},
		{name: "chunked with trailers", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n" + next,
			status: 200, keepAlive: true, rest: next},
		{name: "chunked wins over length", in: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n" + next,
			status: 200, keepAlive: true, rest: next},
		{name: "connection close", in: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
			status: 200, keepAlive: false},
		{name: "HTTP/1.0 closes by default", in: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
			status: 200, keepAlive: false},
		{name: "HTTP/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok" + next,
			status: 200, keepAlive: true, rest: next},
		{name: "no content 204", in: "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n" + next,
			status: 204, keepAlive: true, rest: next},
		{name: "not modified 304", in: "HTTP/1.1 304 Not Modified\r\n\r\n" + next,
			status: 304, keepAlive: true, rest: next},
		{name: "interim 100 then final", in: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx" + next,
			status: 200, keepAlive: true, rest: next},
		{name: "HEAD has no body", in: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + next, head: true,
			status: 200, keepAlive: true, rest: next},
		{name: "body until close", in: "HTTP/1.1 200 OK\r\n\r\nall the rest",
			status: 200, keepAlive: false},
		{name: "error status is a response", in: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy" + next,
			status: 503, keepAlive: true, rest: next},

		{name: "not HTTP", in: "SSH-2.0-OpenSSH\r\n\r\n", err: protoErr},
		{name: "HTTP/2 status line", in: "HTTP/2 200\r\n\r\n", err: protoErr},
		{name: "HTTP/1.x version", in: "HTTP/1.x 200 OK\r\n\r\n", err: protoErr},
		{name: "short status", in: "HTTP/1.1 20\r\n\r\n", err: protoErr},
		{name: "status with letters", in: "HTTP/1.1 2x0 OK\r\n\r\n", err: protoErr},
		{name: "status too long", in: "HTTP/1.1 2000 OK\r\n\r\n", err: protoErr},
		{name: "status below 100", in: "HTTP/1.1 099 Odd\r\n\r\n", err: protoErr},
		{name: "header without colon", in: "HTTP/1.1 200 OK\r\nBroken\r\n\r\n", err: protoErr},
		{name: "bad content length", in: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", err: protoErr},
		{name: "conflicting lengths", in: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", err: protoErr},
		{name: "unsupported encoding", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", err: protoErr},
		{name: "bad chunk size", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", err: protoErr},
		{name: "chunk without CRLF", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n0\r\n\r\n", err: protoErr},
		{name: "line longer than buffer", in: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 5000) + "\r\n\r\n", err: protoErr},

		{name: "empty", in: "", err: ioErr},
		{name: "cut in status line", in: "HTTP/1.1 2", err: ioErr},
		{name: "cut in headers", in: "HTTP/1.1 200 OK\r\nContent-Len", err: ioErr},
		{name: "cut in body", in: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", err: ioErr},
		{name: "cut in chunk", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc", err: ioErr},
		{name: "cut before last chunk", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n", err: ioErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tt.in), 4096)
			resp, err := readResponse(br, tt.head)
			if got := kindOf(err); got != tt.err {
				t.Fatalf("error %v (kind %d), want kind %d", err, got, tt.err)
			}
			if tt.err != noErr {
				return
			}
			if resp.status != tt.status || resp.keepAlive != tt.keepAlive {
				t.Errorf("got status %d keepAlive %v, want %d %v", resp.status, resp.keepAlive, tt.status, tt.keepAlive)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != tt.rest {
				t.Errorf("left unread %q, want %q", rest, tt.rest)
			}
		})
	}
}

// FuzzReadResponse checks that no server output makes the parser panic or
// consume more than it was given, and that it always stops.
func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nT: 1\r\n\r\n"), false)
	f.Add([]byte("HTTP/1.0 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"), true)
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 999999999999999999\r\n\r\n"), false)
	f.Fuzz(func(t *testing.T, in []byte, head bool) {
		r := strings.NewReader(string(in))
		br := bufio.NewReaderSize(r, 64)
		resp, err := readResponse(br, head)
		if err == nil && (resp.status < 100 || resp.status > 999) {
			t.Fatalf("accepted status %d", resp.status)
		}
	})
}
