package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	silopb "github.com/granaryhq/granary/proto/silo"
)

// seen is what a handler observed of one request.
type seen struct {
	method, requestURI, host, pathOriginal, path, query string
	fields                                              []field
	body                                                []byte
	remote                                              net.Addr
}

func observe(ctx *fasthttp.RequestCtx) seen {
	return seen{
		method:       string(ctx.Method()),
		requestURI:   string(ctx.Request.Header.RequestURI()),
		host:         string(ctx.Host()),
		pathOriginal: string(ctx.URI().PathOriginal()),
		path:         string(ctx.Path()),
		query:        string(ctx.URI().QueryString()),
		fields:       requestFields(&ctx.Request.Header),
		body:         bytes.Clone(ctx.PostBody()),
		remote:       ctx.RemoteAddr(),
	}
}

func TestRoundTripPreservesRequestAndResponse(t *testing.T) {
	body := allBytes()
	uri := "/v1.0/actors/my%2Ftype/a%20b/method/do%3Fit?x=1&y=%2F%20&x=2"
	raw := "POST " + uri + " HTTP/1.1\r\n" +
		"Host: silo-a:3500\r\n" +
		"X-Multi: one\r\n" +
		"Content-Type: application/octet-stream\r\n" +
		"X-Multi: two\r\n" +
		"Connection: keep-alive, X-Hop\r\n" +
		"X-Other: z\r\n" +
		"X-Hop: secret\r\n" +
		"Keep-Alive: timeout=5\r\n" +
		"TE: trailers\r\n" +
		"Upgrade: h2c\r\n" +
		"X-Multi: three\r\n" +
		"Date: Tue, 01 Sep 2026 10:00:00 GMT\r\n" +
		"Granary-Forwarded: 999\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
		"\r\n" + string(body)
	req := parseRequest(t, []byte(raw))

	seenCh := make(chan seen, 1)
	handler := func(ctx *fasthttp.RequestCtx) {
		got := observe(ctx)
		seenCh <- got
		ctx.SetStatusCode(http.StatusCreated)
		ctx.SetContentType("application/x-reply")
		ctx.Response.Header.Set("Content-Encoding", "identity")
		ctx.Response.Header.Add("X-Reply", "a")
		ctx.Response.Header.Add("X-Reply", "b")
		ctx.Response.Header.Add("Set-Cookie", "k1=v1; Path=/")
		ctx.Response.Header.Add("Set-Cookie", "k2=v2")
		ctx.Response.Header.Set("Connection", "X-Resp-Hop")
		ctx.Response.Header.Set("X-Resp-Hop", "v")
		ctx.Response.Header.Set("Keep-Alive", "timeout=1")
		ctx.Response.Header.Set("Server", "inner")
		ctx.Response.Header.Add("X-Reply", "c")
		reversed := slices.Clone(got.body)
		slices.Reverse(reversed)
		ctx.SetBody(reversed)
	}
	addr, _ := startSilo(t, handler)
	c := newTestClient(t)

	reply, err := c.Forward(context.Background(), addr, 7, "my/type", "a b", req)
	if err != nil {
		t.Fatalf("Forward: %v", err)
	}

	// The request as the owner's handler saw it.
	got := <-seenCh
	if got.method != "POST" || got.requestURI != uri || got.host != "silo-a:3500" {
		t.Errorf("method, URI, host = %q %q %q; want POST %q silo-a:3500", got.method, got.requestURI, got.host, uri)
	}
	if !bytes.Equal(got.body, body) {
		t.Errorf("body differs: got %d bytes %x..., want %d bytes", len(got.body), got.body[:min(16, len(got.body))], len(body))
	}
	wantFields := []field{
		{"Host", "silo-a:3500"},
		{"Content-Length", strconv.Itoa(len(body))},
		{"Content-Type", "application/octet-stream"},
		{"X-Multi", "one"},
		{"X-Multi", "two"},
		{"X-Other", "z"},
		{"X-Multi", "three"},
		{"Date", "Tue, 01 Sep 2026 10:00:00 GMT"},
		{HeaderForwarded, "7"},
	}
	if !slices.Equal(got.fields, wantFields) {
		t.Errorf("handler saw fields\n%q\nwant\n%q", got.fields, wantFields)
	}
	if got.remote == nil || !got.remote.(*net.TCPAddr).IP.IsLoopback() {
		t.Errorf("remote address %v; want the forwarding silo's loopback address", got.remote)
	}

	// The same request handed to the handler directly routes the same way.
	var ctx fasthttp.RequestCtx
	ctx.Init(parseRequest(t, []byte(raw)), nil, nil)
	direct := observe(&ctx)
	if got.path != direct.path || got.pathOriginal != direct.pathOriginal || got.query != direct.query || got.host != direct.host {
		t.Errorf("forwarded path %q (original %q) query %q host %q; direct %q (%q) %q %q",
			got.path, got.pathOriginal, got.query, got.host, direct.path, direct.pathOriginal, direct.query, direct.host)
	}

	// The reply.
	if reply.GetNotOwnerVersion() != 0 || reply.GetStatus() != http.StatusCreated {
		t.Errorf("reply not-owner %d status %d; want 0 201", reply.GetNotOwnerVersion(), reply.GetStatus())
	}
	wantReply := []field{
		{"Content-Type", "application/x-reply"},
		{"Content-Encoding", "identity"},
		{"Set-Cookie", "k1=v1; Path=/"},
		{"Set-Cookie", "k2=v2"},
		{"X-Reply", "a"},
		{"X-Reply", "b"},
		{"X-Reply", "c"},
	}
	if f := replyFields(reply.GetHeaders()); !slices.Equal(f, wantReply) {
		t.Errorf("reply fields\n%q\nwant\n%q", f, wantReply)
	}
	wantBody := slices.Clone(body)
	slices.Reverse(wantBody)
	if !bytes.Equal(reply.GetBody(), wantBody) {
		t.Errorf("reply body differs")
	}

	// Written into the forwarding silo's response.
	var out fasthttp.RequestCtx
	out.Response.Header.SetNoDefaultContentType(true)
	WriteReply(&out, reply)
	if out.Response.StatusCode() != http.StatusCreated || !bytes.Equal(out.Response.Body(), wantBody) {
		t.Errorf("written status %d, body equal %v", out.Response.StatusCode(), bytes.Equal(out.Response.Body(), wantBody))
	}
	if f := responseFields(&out.Response.Header); !slices.Equal(f, wantReply) {
		t.Errorf("written fields\n%q\nwant\n%q", f, wantReply)
	}
}

func TestRequestWithoutBodyOrHost(t *testing.T) {
	seenCh := make(chan seen, 1)
	addr, _ := startSilo(t, func(ctx *fasthttp.RequestCtx) { seenCh <- observe(ctx) })
	c := newTestClient(t)
	req := parseRequest(t, []byte("GET /v1.0/healthz HTTP/1.0\r\nX-A: 1\r\n\r\n"))
	reply, err := c.Forward(context.Background(), addr, 3, "", "", req)
	if err != nil {
		t.Fatalf("Forward: %v", err)
	}
	got := <-seenCh
	want := []field{{"X-A", "1"}, {HeaderForwarded, "3"}}
	if got.method != "GET" || got.requestURI != "/v1.0/healthz" || !slices.Equal(got.fields, want) || len(got.body) != 0 {
		t.Errorf("handler saw %s %s %q body %d bytes; want GET /v1.0/healthz %q, no body", got.method, got.requestURI, got.fields, len(got.body), want)
	}
	if reply.GetStatus() != http.StatusOK || len(reply.GetHeaders()) != 0 || len(reply.GetBody()) != 0 {
		t.Errorf("reply %d %q %d bytes; want 200, no fields (no default Content-Type), no body",
			reply.GetStatus(), replyFields(reply.GetHeaders()), len(reply.GetBody()))
	}
}

func TestBodies(t *testing.T) {
	addr, _ := startSilo(t, echo)
	c := newTestClient(t)
	for _, tc := range []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"4MiB", 4 << 20},
		{"10MiB", 10 << 20},
		{"MaxBodySize", MaxBodySize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := patterned(tc.size)
			reply, err := c.Forward(context.Background(), addr, 1, "t", "i", postRequest("/echo", body))
			if err != nil {
				t.Fatalf("Forward: %v", err)
			}
			if reply.GetStatus() != http.StatusOK || !bytes.Equal(reply.GetBody(), body) {
				t.Errorf("status %d, %d bytes back of %d, equal %v", reply.GetStatus(), len(reply.GetBody()), len(body), bytes.Equal(reply.GetBody(), body))
			}
		})
	}
}

func TestBodyOverLimit(t *testing.T) {
	var calls atomic.Int32
	addr, _ := startSilo(t, func(ctx *fasthttp.RequestCtx) {
		calls.Add(1)
		ctx.SetBody(make([]byte, MaxBodySize+1))
	})
	c := newTestClient(t)

	_, err := c.Forward(context.Background(), addr, 1, "t", "i", postRequest("/big", make([]byte, MaxBodySize+1)))
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("request body over the limit: err %v; want ErrTooLarge", err)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the handler ran %d times for a request refused before sending", n)
	}

	_, err = c.Forward(context.Background(), addr, 1, "t", "i", postRequest("/small", nil))
	if !errors.Is(err, ErrTooLarge) || status.Code(err) != codes.ResourceExhausted {
		t.Errorf("response body over the limit: err %v (code %v); want ErrTooLarge, ResourceExhausted", err, status.Code(err))
	}
}

func TestForwardedHeaderReplacesCallers(t *testing.T) {
	var got []string
	srv := NewServer(func(ctx *fasthttp.RequestCtx) {
		for _, v := range ctx.Request.Header.PeekAll(HeaderForwarded) {
			got = append(got, string(v))
		}
	}, quietLogger())
	_, err := srv.Forward(context.Background(), &silopb.ForwardRequest{
		TableVersion: 12,
		Method:       "POST",
		Uri:          "/x",
		Headers: []*silopb.Header{
			{Name: "granary-forwarded", Value: []byte("1")},
			{Name: "X-A", Value: []byte("a")},
			{Name: "GRANARY-FORWARDED", Value: []byte("2")},
		},
	})
	if err != nil {
		t.Fatalf("Forward: %v", err)
	}
	if !slices.Equal(got, []string{"12"}) {
		t.Errorf("handler saw %s values %q; want only the table version [12]", HeaderForwarded, got)
	}
}

func TestNotOwner(t *testing.T) {
	for _, tc := range []struct {
		value       string
		wantVersion uint64
		wantCode    codes.Code
	}{
		{"42", 42, codes.OK},
		{"18446744073709551615", 1<<64 - 1, codes.OK},
		{"0", 0, codes.Internal},
		{"-1", 0, codes.Internal},
		{"v42", 0, codes.Internal},
	} {
		t.Run(tc.value, func(t *testing.T) {
			srv := NewServer(func(ctx *fasthttp.RequestCtx) {
				ctx.SetStatusCode(http.StatusConflict)
				ctx.Response.Header.Set(HeaderNotOwner, tc.value)
				ctx.Response.Header.Set("X-Other", "x")
				ctx.SetBodyString("not mine")
			}, quietLogger())
			reply, err := srv.Forward(context.Background(), &silopb.ForwardRequest{TableVersion: 41, Method: "GET", Uri: "/x"})
			if status.Code(err) != tc.wantCode {
				t.Fatalf("err %v (code %v); want code %v", err, status.Code(err), tc.wantCode)
			}
			if err != nil {
				return
			}
			if reply.GetNotOwnerVersion() != tc.wantVersion || reply.GetStatus() != 0 || reply.GetHeaders() != nil || reply.GetBody() != nil {
				t.Errorf("reply %v; want only not-owner version %d", reply, tc.wantVersion)
			}
		})
	}
}

func TestNotOwnerOverGRPC(t *testing.T) {
	addr, _ := startSilo(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set(HeaderNotOwner, "9")
	})
	c := newTestClient(t)
	reply, err := c.Forward(context.Background(), addr, 8, "t", "i", postRequest("/x", nil))
	if err != nil {
		t.Fatalf("Forward: %v", err)
	}
	if reply.GetNotOwnerVersion() != 9 {
		t.Errorf("not-owner version %d; want 9", reply.GetNotOwnerVersion())
	}
	var out fasthttp.RequestCtx
	WriteReply(&out, reply)
	if out.Response.StatusCode() != http.StatusBadGateway || len(out.Response.Header.Peek(HeaderNotOwner)) != 0 {
		t.Errorf("a not-owner reply written: status %d, header %q; want 502 without it",
			out.Response.StatusCode(), out.Response.Header.Peek(HeaderNotOwner))
	}
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatalf("close listener: %v", err)
	}
	c := newTestClient(t)
	for attempt := range 2 {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.Forward(ctx, addr, 1, "t", "i", postRequest("/x", nil))
		cancel()
		elapsed := time.Since(start)
		if !errors.Is(err, ErrUnreachable) || status.Code(err) != codes.Unavailable {
			t.Errorf("attempt %d: err %v (code %v); want ErrUnreachable, Unavailable", attempt, err, status.Code(err))
		}
		if elapsed > 2*time.Second {
			t.Errorf("attempt %d took %v; a refused connection must fail at once", attempt, elapsed)
		}
	}
}

func TestRetainClosesDroppedConnections(t *testing.T) {
	addrA, lnA := startSilo(t, echo)
	addrB, lnB := startSilo(t, echo)
	c := newTestClient(t)
	call := func(addr string) {
		t.Helper()
		if _, err := c.Forward(context.Background(), addr, 1, "t", "i", postRequest("/x", []byte("hi"))); err != nil {
			t.Fatalf("Forward to %s: %v", addr, err)
		}
	}
	call(addrA)
	call(addrB)
	call(addrA)
	if lnA.accepts() != 1 || lnB.accepts() != 1 {
		t.Fatalf("connections accepted A %d B %d; want one each, reused", lnA.accepts(), lnB.accepts())
	}

	c.Retain([]string{addrB})
	select {
	case <-lnA.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection to the dropped silo was not closed")
	}
	select {
	case <-lnB.closed:
		t.Fatal("the connection to the retained silo was closed")
	default:
	}

	call(addrB)
	call(addrA)
	if lnA.accepts() != 2 || lnB.accepts() != 1 {
		t.Errorf("connections accepted A %d B %d; want A dialled again, B reused", lnA.accepts(), lnB.accepts())
	}
}

func TestConcurrentForwardsShareOneConnection(t *testing.T) {
	const n = 64
	var arrived sync.WaitGroup
	arrived.Add(n)
	allIn := make(chan struct{})
	go func() {
		arrived.Wait()
		close(allIn)
	}()
	addr, ln := startSilo(t, func(ctx *fasthttp.RequestCtx) {
		arrived.Done()
		// Every call waits until all are in the handler at once, which
		// they can only be if the connection carries them together.
		select {
		case <-allIn:
		case <-time.After(10 * time.Second):
			ctx.SetStatusCode(http.StatusGatewayTimeout)
			return
		}
		echo(ctx)
	})
	c := newTestClient(t)

	errs := make(chan error, n)
	for i := range n {
		go func() {
			body := []byte(fmt.Sprintf("call %d", i))
			reply, err := c.Forward(context.Background(), addr, 1, "t", strconv.Itoa(i), postRequest("/x", body))
			switch {
			case err != nil:
				errs <- err
			case reply.GetStatus() != http.StatusOK || !bytes.Equal(reply.GetBody(), body):
				errs <- fmt.Errorf("call %d: status %d body %q", i, reply.GetStatus(), reply.GetBody())
			default:
				errs <- nil
			}
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if ln.accepts() != 1 {
		t.Errorf("%d connections accepted; want 1", ln.accepts())
	}
}

func TestDeadlineHonoured(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	addr, _ := startSilo(t, func(ctx *fasthttp.RequestCtx) {
		entered <- struct{}{}
		<-release
	})
	defer close(release)
	c := newTestClient(t)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Forward(ctx, addr, 1, "t", "i", postRequest("/slow", nil))
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || status.Code(err) != codes.DeadlineExceeded || errors.Is(err, ErrUnreachable) {
		t.Errorf("err %v (code %v); want the deadline, not ErrUnreachable", err, status.Code(err))
	}
	if elapsed > 2*time.Second {
		t.Errorf("Forward returned after %v; want soon after the 200ms deadline", elapsed)
	}
	select {
	case <-entered:
	default:
		t.Error("the handler never ran")
	}
}

func TestServerHonoursContext(t *testing.T) {
	t.Run("expired before the call", func(t *testing.T) {
		ran := false
		srv := NewServer(func(*fasthttp.RequestCtx) { ran = true }, quietLogger())
		ctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
		defer cancel()
		_, err := srv.Forward(ctx, &silopb.ForwardRequest{Method: "GET", Uri: "/"})
		if status.Code(err) != codes.DeadlineExceeded || ran {
			t.Errorf("err %v (code %v), handler ran %v; want DeadlineExceeded without running it", err, status.Code(err), ran)
		}
	})
	t.Run("cancelled during the handler", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		srv := NewServer(func(rctx *fasthttp.RequestCtx) {
			cancel()
			rctx.SetBodyString("too late")
		}, quietLogger())
		reply, err := srv.Forward(ctx, &silopb.ForwardRequest{Method: "GET", Uri: "/"})
		if status.Code(err) != codes.Canceled || reply != nil {
			t.Errorf("reply %v err %v (code %v); want Canceled", reply, err, status.Code(err))
		}
	})
	t.Run("no method", func(t *testing.T) {
		srv := NewServer(func(*fasthttp.RequestCtx) {}, quietLogger())
		_, err := srv.Forward(context.Background(), &silopb.ForwardRequest{Uri: "/"})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("err %v; want InvalidArgument", err)
		}
	})
}

func TestClosedClient(t *testing.T) {
	addr, _ := startSilo(t, echo)
	c := NewClient(quietLogger())
	if _, err := c.Forward(context.Background(), addr, 1, "t", "i", postRequest("/x", nil)); err != nil {
		t.Fatalf("Forward: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := c.Forward(context.Background(), addr, 1, "t", "i", postRequest("/x", nil)); !errors.Is(err, ErrClosed) {
		t.Errorf("Forward after Close: %v; want ErrClosed", err)
	}
}

func TestFieldFilter(t *testing.T) {
	for _, tc := range []struct {
		name       string
		connection string // the message's Connection value
		response   bool
		want       bool
	}{
		{"X-Custom", "", false, false},
		{"Host", "", false, false},
		{"Content-Type", "", false, false},
		{"Date", "", false, false},
		{"Date", "", true, true},
		{"server", "", true, true},
		{"Server", "", false, false},
		{"connection", "", false, true},
		{"Keep-Alive", "", false, true},
		{"TRANSFER-ENCODING", "", true, true},
		{"Content-Length", "", false, true},
		{"Te", "", false, true},
		{"Upgrade", "", false, true},
		{"Trailer", "", false, true},
		{"Proxy-Connection", "", false, true},
		{"Granary-Forwarded", "", false, true},
		{"Granary-Not-Owner", "", false, false},
		{"Granary-Not-Owner", "", true, true},
		{"X-Hop", "close, x-hop", false, true},
		{"X-Hop", " keep-alive ,X-Hop ", true, true},
		{"X-Hop", "X-Hopper", false, false},
		{"X-Hopper", "X-Hop", false, false},
		{"X-Hop", ",,", false, false},
	} {
		f := fieldFilter{response: tc.response}
		f.addConnection([]byte(tc.connection))
		if got := drops(&f, tc.name); got != tc.want {
			t.Errorf("%q (Connection %q, response %v): drops %v; want %v", tc.name, tc.connection, tc.response, got, tc.want)
		}
		if got := drops(&f, []byte(tc.name)); got != tc.want {
			t.Errorf("%q as bytes: drops %v; want %v", tc.name, got, tc.want)
		}
	}
}

func TestRepliesDoNotShareMemory(t *testing.T) {
	// The Server recycles request contexts; a reply must own its body and
	// fields, and a call must not see what an earlier one left behind.
	srv := NewServer(func(ctx *fasthttp.RequestCtx) {
		if v := ctx.UserValue("left"); v != nil {
			ctx.SetStatusCode(http.StatusInternalServerError)
			return
		}
		ctx.SetUserValue("left", "behind")
		if len(ctx.Response.Header.Peek("X-Call")) != 0 || len(ctx.Response.Body()) != 0 {
			ctx.SetStatusCode(http.StatusInternalServerError)
			return
		}
		ctx.Response.Header.Set("X-Call", string(ctx.PostBody()))
		ctx.Write(ctx.PostBody())
		ctx.Write([]byte(" again"))
	}, quietLogger())
	var replies []*silopb.ForwardReply
	for i := range 20 {
		body := []byte(fmt.Sprintf("call-%02d", i))
		reply, err := srv.Forward(context.Background(), &silopb.ForwardRequest{Method: "POST", Uri: "/", Body: body})
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		replies = append(replies, reply)
	}
	for i, reply := range replies {
		want := fmt.Sprintf("call-%02d", i)
		if reply.GetStatus() != http.StatusOK || string(reply.GetBody()) != want+" again" ||
			!slices.Equal(replyFields(reply.GetHeaders()), []field{{"X-Call", want}}) {
			t.Errorf("reply %d: status %d body %q fields %q; want 200 %q [X-Call %s]",
				i, reply.GetStatus(), reply.GetBody(), replyFields(reply.GetHeaders()), want+" again", want)
		}
	}
}

func TestHostReachesHandler(t *testing.T) {
	type hosts struct{ uri, header string }
	seenCh := make(chan hosts, 1)
	addr, _ := startSilo(t, func(ctx *fasthttp.RequestCtx) {
		seenCh <- hosts{string(ctx.Host()), string(ctx.Request.Header.Host())}
	})
	c := newTestClient(t)
	for _, tc := range []struct {
		name  string
		build func() *fasthttp.Request
		want  hosts
	}{
		{"Host field", func() *fasthttp.Request {
			return parseRequest(t, []byte("GET /x HTTP/1.1\r\nHost: silo-a:3500\r\n\r\n"))
		}, hosts{"silo-a:3500", "silo-a:3500"}},
		{"absolute URI and Host field", func() *fasthttp.Request {
			return parseRequest(t, []byte("GET http://silo-b:3500/x HTTP/1.1\r\nHost: silo-a:3500\r\n\r\n"))
		}, hosts{"silo-b:3500", "silo-a:3500"}},
		{"host only in the URI", func() *fasthttp.Request {
			req := new(fasthttp.Request)
			req.SetRequestURI("/x?y=1")
			req.SetHost("silo-c:3500")
			return req
		}, hosts{"silo-c:3500", "silo-c:3500"}},
		{"no host", func() *fasthttp.Request {
			return parseRequest(t, []byte("GET /x HTTP/1.0\r\n\r\n"))
		}, hosts{"", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.Forward(context.Background(), addr, 1, "t", "i", tc.build()); err != nil {
				t.Fatalf("Forward: %v", err)
			}
			if got := <-seenCh; got != tc.want {
				t.Errorf("handler saw host %q, Host field %q; want %q, %q", got.uri, got.header, tc.want.uri, tc.want.header)
			}
		})
	}
}

func TestRetainFailsCallsUnderWay(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	addr, _ := startSilo(t, func(*fasthttp.RequestCtx) {
		entered <- struct{}{}
		<-release
	})
	defer close(release)
	c := newTestClient(t)
	errCh := make(chan error, 1)
	go func() {
		_, err := c.Forward(context.Background(), addr, 1, "t", "i", postRequest("/x", nil))
		errCh <- err
	}()
	<-entered
	c.Retain(nil)
	select {
	case err := <-errCh:
		if !errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, ErrUnreachable) {
			t.Errorf("a call on a connection Retain closed while the owner ran it: %v; want ErrOutcomeUnknown", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call did not end when Retain closed its connection")
	}
}
