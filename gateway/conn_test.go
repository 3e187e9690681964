package gateway

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// scanOf feeds raw to a fresh scan in the given pieces.
func scanOf(pieces ...string) *headerScan {
	var h headerScan
	h.begin()
	for _, p := range pieces {
		h.feed([]byte(p))
	}
	return &h
}

func TestHeaderScanFindsTheBlock(t *testing.T) {
	const req = "PUT /v1.0/actors/T/1/method/m HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\n"
	// Every way of cutting the block into two reads gives the same scan.
	for cut := 0; cut <= len(req); cut++ {
		h := scanOf(req[:cut], req[cut:]+"a\nb")
		if h.bareLF || h.on || h.end != int64(len(req)) {
			t.Fatalf("cut at %d: bareLF %v, on %v, end %d; want the block to end at %d", cut, h.bareLF, h.on, h.end, len(req))
		}
		if h.reqLine != len("PUT /v1.0/actors/T/1/method/m HTTP/1.1\r\n") || h.method != 3 {
			t.Fatalf("cut at %d: request line %d bytes, method %d", cut, h.reqLine, h.method)
		}
	}
	// Empty lines before the request line are skipped, as servers do.
	h := scanOf("\r\n\r\n" + req)
	if h.lead != 4 || h.end != int64(4+len(req)) || h.bareLF {
		t.Errorf("leading empty lines: lead %d, end %d, bareLF %v", h.lead, h.end, h.bareLF)
	}
	// A block still open.
	h = scanOf("GET /a HTTP/1.1\r\nHost: gw\r\n")
	if !h.on || h.end != 0 || h.bareLF {
		t.Errorf("open block: on %v, end %d, bareLF %v", h.on, h.end, h.bareLF)
	}
}

func TestHeaderScanFindsBareLF(t *testing.T) {
	for _, raw := range []string{
		"\n",
		"GET / HTTP/1.1\n",
		"GET / HTTP/1.1\r\nHost: gw\n",
		"GET / HTTP/1.1\r\nHost: gw\r\n\n",
		"\r\n\n",
		"GET / HTTP/1.1\r\r\nHost: gw\r\n\rX\n",
	} {
		for cut := 0; cut <= len(raw); cut++ {
			if h := scanOf(raw[:cut], raw[cut:]); !h.bareLF || h.on {
				t.Errorf("%q cut at %d: bare LF not found", raw, cut)
			}
		}
	}
	// Past the block's end, a bare LF is body.
	if h := scanOf("GET / HTTP/1.1\r\nHost: gw\r\n\r\n\n\n"); h.bareLF {
		t.Error("a bare LF after the block was taken for part of it")
	}
}

func TestHeaderScanOverflow(t *testing.T) {
	rows := []struct {
		raw       string
		uri, know bool
	}{
		{"GET /" + strings.Repeat("u", readBufferSize), true, true},
		{"GET /" + strings.Repeat("u", MaxURILength-1) + " HTTP/1.1\r\nX: " + strings.Repeat("h", MaxHeaderBytes), false, true},
		{"GET /" + strings.Repeat("u", MaxURILength) + " HTTP/1.1\r\nX: " + strings.Repeat("h", MaxHeaderBytes), true, true},
		{"DELETE /" + strings.Repeat("u", MaxURILength-1) + " HTTP/1.1\r\nX: " + strings.Repeat("h", MaxHeaderBytes), false, true},
		{"GET /a HTTP/1.1\nX: " + strings.Repeat("h", MaxHeaderBytes), false, false},
	}
	for _, r := range rows {
		uri, known := scanOf(r.raw).overflow()
		if uri != r.uri || known != r.know {
			t.Errorf("%.40q…: overflow() = %v, %v; want %v, %v", r.raw, uri, known, r.uri, r.know)
		}
	}
	h := scanOf("GET /a HTTP/1.1\r\n")
	h.stop()
	if _, known := h.overflow(); known {
		t.Error("a stopped scan claims to know what overflowed")
	}
}

// parsed reads one request the way the server does, for served.
func parsed(t *testing.T, raw string) *fasthttp.Request {
	t.Helper()
	req := new(fasthttp.Request)
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil && err != io.EOF {
		t.Fatalf("parsing %q: %v", raw, err)
	}
	return req
}

func TestHeaderScanFollowsKeepAlive(t *testing.T) {
	head := "PUT /v1.0/actors/T/1/method/m HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\r\n"
	for _, lead := range []string{"", "\r\n"} {
		h := scanOf(lead+head, "a\nb\n")
		h.served(&parsed(t, lead+head+"a\nb\n").Header)
		if !h.on || h.lost || h.start != int64(len(lead+head)+4) {
			t.Fatalf("lead %q: after the first request: on %v, lost %v, start %d", lead, h.on, h.lost, h.start)
		}
		h.feed([]byte("GET / HTTP/1.1\nHost: gw\n\n"))
		if !h.bareLF {
			t.Errorf("lead %q: the second request's bare LF was missed", lead)
		}
	}

	// The next request's bytes already read with this one: the scan stops.
	h := scanOf(head + "abcdGET / HTTP/1.1\r\n")
	h.served(&parsed(t, head+"abcd").Header)
	if h.on || !h.lost {
		t.Errorf("pipelined: on %v, lost %v; want the scan stopped", h.on, h.lost)
	}
	h.feed([]byte("X: y\n\n"))
	if h.bareLF {
		t.Error("a stopped scan reported a bare LF")
	}

	// A chunked body: its length on the wire is unknown.
	chunked := "PUT /m HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
	h = scanOf(chunked, "1\r\na\r\n0\r\n\r\n")
	h.served(&parsed(t, chunked+"1\r\na\r\n0\r\n\r\n").Header)
	if h.on || !h.lost {
		t.Errorf("chunked: on %v, lost %v; want the scan stopped", h.on, h.lost)
	}

	// fasthttp framed the block differently from the scan: stop.
	h = scanOf(head, "abcd")
	h.served(&parsed(t, "PUT /other HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\r\nabcd").Header)
	if h.on || !h.lost {
		t.Errorf("different framing: on %v, lost %v; want the scan stopped", h.on, h.lost)
	}
}

// BenchmarkHeaderScan measures the scan of a typical request's header block,
// which every request pays on a real connection.
func BenchmarkHeaderScan(b *testing.B) {
	raw := []byte("POST /v1.0/actors/Counter/c-1/method/increment HTTP/1.1\r\nHost: 127.0.0.1:3500\r\n" +
		"User-Agent: bench/1.0\r\nContent-Type: application/json\r\nContent-Length: 8\r\n" +
		"Dapr-Api-Token: tok\r\nTraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n")
	var h headerScan
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		h.begin()
		h.feed(raw)
		if h.end == 0 {
			b.Fatal("no block end")
		}
	}
}

// FuzzHeaderScan checks that how the bytes are split into reads does not
// change the scan, and that what it finds holds for the bytes themselves.
func FuzzHeaderScan(f *testing.F) {
	f.Add([]byte("PUT /m HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\n\r\na"), uint8(3))
	f.Add([]byte("\r\nGET / HTTP/1.1\nHost: gw\n\n"), uint8(1))
	f.Add([]byte("GET / HTTP/1.1\r\r\nX\r\n\r\n"), uint8(7))
	f.Fuzz(func(t *testing.T, raw []byte, step uint8) {
		whole := scanOf(string(raw))
		var cut headerScan
		cut.begin()
		n := int(step%16) + 1
		for p := raw; len(p) > 0; {
			k := min(n, len(p))
			cut.feed(p[:k])
			p = p[k:]
		}
		// Where a stopped scan stood inside its last line does not matter.
		if !cut.on {
			cut.line, cut.lastCR = 0, false
		}
		if !whole.on {
			whole.line, whole.lastCR = 0, false
		}
		if cut != *whole {
			t.Fatalf("%q in reads of %d: %+v; in one read: %+v", raw, n, cut, *whole)
		}
		// The first LF without a CR before it, if any.
		bare := -1
		for i, c := range raw {
			if c == '\n' && (i == 0 || raw[i-1] != '\r') {
				bare = i
				break
			}
		}
		switch {
		case whole.end > 0:
			block := raw[:whole.end]
			if !bytes.HasSuffix(block, []byte("\r\n\r\n")) && !bytes.Equal(block[whole.lead:], []byte("\r\n")) {
				t.Fatalf("%q: the block %q does not end in an empty line", raw, block)
			}
			if bare >= 0 && bare < int(whole.end) {
				t.Fatalf("%q: bare LF at %d inside the block that ends at %d", raw, bare, whole.end)
			}
			if whole.reqLine < 3 || whole.lead+whole.reqLine > int(whole.end) {
				t.Fatalf("%q: request line of %d bytes after %d of empty lines, block of %d", raw, whole.reqLine, whole.lead, whole.end)
			}
		case whole.bareLF:
			if bare < 0 {
				t.Fatalf("%q: bare LF reported where there is none", raw)
			}
		default:
			if !whole.on || bare >= 0 {
				t.Fatalf("%q: the scan stopped (%+v) without a block end or a bare LF", raw, *whole)
			}
		}
	})
}
