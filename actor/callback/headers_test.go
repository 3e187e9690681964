package callback_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// rawApp serves the callback protocol on a bare TCP listener, writing its
// answers byte for byte, so that it can send header lines net/http would
// refuse to write. actorAnswer is the status line and header lines of every
// actor call's answer, without the Content-Length and final empty line.
func rawApp(t *testing.T, config, actorAnswer, actorBody string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("no loopback listener: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					head, body := "HTTP/1.1 404 Not Found\r\n", ""
					switch {
					case req.URL.Path == "/dapr/config":
						head, body = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", config
					case req.URL.Path == "/healthz":
						head = "HTTP/1.1 200 OK\r\n"
					case strings.HasPrefix(req.URL.Path, "/actors/"):
						head, body = actorAnswer, actorBody
					}
					if _, err := fmt.Fprintf(c, "%sContent-Length: %d\r\n\r\n%s", head, len(body), body); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestInvokeResponseHeaders checks which of an app's response headers reach
// the caller: not those with invalid names, not hop-by-hop ones, and not
// those the response's Connection header names.
func TestInvokeResponseHeaders(t *testing.T) {
	answer := "HTTP/1.1 200 OK\r\n" +
		"X-Kept: k\r\n" +
		"X-Weird Name: w\r\n" +
		"Connection: X-Listed, x-also\r\n" +
		"X-Listed: l\r\n" +
		"X-Also: a\r\n" +
		"Connection: X-Third\r\n" +
		"X-Third: 3\r\n" +
		"Keep-Alive: timeout=5\r\n" +
		"Proxy-Authenticate: Basic\r\n" +
		"Upgrade: h2c\r\n" +
		"Set-Cookie: a=b\r\n" +
		"X-Kept-Too: k2\r\n"
	url := rawApp(t, `{"entities":["Raw"]}`, answer, "ok")
	rt := newRuntime(t)
	reg := newRegistry(t, rt, calmOptions())
	ctx := ctxFor(t)
	if err := reg.Register(ctx, "raw", url, true); err != nil {
		t.Fatal(err)
	}
	status, body, hdr, _, err := invoke(ctx, rt, "Raw", "r1", "m", nil)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	if status != 200 || body != "ok" {
		t.Fatalf("answer %d %q", status, body)
	}
	want := http.Header{"X-Kept": {"k"}, "X-Kept-Too": {"k2"}, "Set-Cookie": {"a=b"}}
	for name, v := range hdr {
		if _, ok := want[name]; !ok {
			t.Errorf("response header %q = %q reached the caller", name, v)
		}
	}
	for name, v := range want {
		if got := hdr.Values(name); strings.Join(got, ",") != strings.Join(v, ",") {
			t.Errorf("response header %s = %q; want %q", name, got, v)
		}
	}
}
