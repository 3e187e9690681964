package gateway

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"testing"
)

func TestInvokeRefusesInvalidHeaderNames(t *testing.T) {
	for _, name := range []string{"X-Weird Name", "X(y)", "a/b", "x{y}", "é", "X@y", "a=b", "x,y", "x\"y", "[x]"} {
		f, h := newServer(Config{})
		resp := do(t, h, "PUT", "/v1.0/actors/T/1/method/m", "", name, "v")
		wantError(t, "header "+name, resp, 400, "ERR_MALFORMED_REQUEST", "header name", strconv.Quote(name))
		wantCalls(t, "header "+name, f)
	}
	// Every token character is allowed.
	f, h := newServer(Config{})
	const token = "!#$%&'*+-.^_`|~09azAZ"
	wantStatus(t, "token", do(t, h, "PUT", "/v1.0/actors/T/1/method/m", "", token, "v"), 200)
	if got := f.lastInvoke().Header[strings.ToLower(token)]; got != "v" {
		t.Errorf("header %s = %q at the backend; want v", token, got)
	}

	// Over the wire, where fasthttp's parser lets a space in a name pass.
	f = &fakeBackend{}
	ln := serve(t, f, Config{})
	resp, body := roundTrip(t, ln, invokeRequest("", "X-Weird Name: v\r\n"))
	wantWireError(t, "space in a name", resp, body, 400, "ERR_MALFORMED_REQUEST", "X-Weird Name")
	wantCalls(t, "space in a name", f)
}

func TestInvokeDropsHopByHopHeaders(t *testing.T) {
	f, h := newServer(Config{})
	resp := do(t, h, "PUT", "/v1.0/actors/T/1/method/m", "body",
		"X-Kept", "k",
		"Keep-Alive", "timeout=5",
		"Proxy-Connection", "keep-alive",
		"TE", "trailers",
		"Upgrade", "h2c",
		"Trailer", "X-T",
		"Proxy-Authorization", "Basic eA==",
		"Proxy-Authenticate", "Basic",
		"Dapr-Api-Token", "forged",
		"Dapr-Reentrancy-Id", "chain-1",
		"Date", "Mon, 01 Jan 2024 00:00:00 GMT",
		"Server", "client",
		"Content-Type", "text/plain",
		"Connection", "X-Secret, x-other",
		"X-Secret", "s",
		"X-Other", "o",
		"X-Fourth", "4",
	)
	wantStatus(t, "hop-by-hop", resp, 200)
	got := f.lastInvoke()
	for name := range got.Header {
		if name != "x-kept" && name != "x-fourth" {
			t.Errorf("header %s = %q reached the backend", name, got.Header[name])
		}
	}
	if got.Header["x-kept"] != "k" || got.Header["x-fourth"] != "4" {
		t.Errorf("backend headers %v; want x-kept and x-fourth", got.Header)
	}
	if got.Chain != "chain-1" || got.ContentType != "text/plain" || got.Body != "body" {
		t.Errorf("chain %q, content type %q, body %q: dropping the headers lost what the gateway reads from them",
			got.Chain, got.ContentType, got.Body)
	}

	// Over the wire, where fasthttp adds Host and Content-Length and a
	// message may carry several Connection fields.
	f = &fakeBackend{}
	ln := serve(t, f, Config{})
	resp2, body := roundTrip(t, ln, invokeRequest("abc",
		"Connection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nX-Kept: k\r\nConnection: X-Third\r\nX-Third: 3\r\n"))
	if resp2.StatusCode != 200 {
		t.Fatalf("over the wire: %d %s", resp2.StatusCode, body)
	}
	got = f.lastInvoke()
	if len(got.Header) != 1 || got.Header["x-kept"] != "k" {
		t.Errorf("over the wire the backend got headers %v; want only x-kept", got.Header)
	}
}

func TestInvokeExpect(t *testing.T) {
	for _, v := range []string{"200-ok", "100-continue, x", "100-continuex", "x, 100-continue"} {
		f, h := newServer(Config{})
		resp := do(t, h, "PUT", "/v1.0/actors/T/1/method/m", "b", "Expect", v)
		wantError(t, "Expect "+v, resp, 417, "ERR_EXPECTATION_FAILED", "Expect")
		wantCalls(t, "Expect "+v, f)
	}
	// An empty list expects nothing.
	for _, v := range []string{"100-continue", "100-Continue", " 100-continue ", ""} {
		f, h := newServer(Config{})
		wantStatus(t, "Expect "+v, do(t, h, "PUT", "/v1.0/actors/T/1/method/m", "b", "Expect", v), 200)
		if got, ok := f.lastInvoke().Header["expect"]; ok {
			t.Errorf("Expect: %s reached the backend as %q", v, got)
		}
	}

	// Over the wire, 100-continue is answered before the body is sent.
	f := &fakeBackend{}
	ln := serve(t, f, Config{})
	c, err := ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if _, err := io.WriteString(c, "PUT /v1.0/actors/T/1/method/m HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("interim answer %q, %v; want 100 Continue", line, err)
	}
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "body"); err != nil {
		t.Fatal(err)
	}
	resp, body := readResponse(t, br)
	if resp.StatusCode != 200 || f.lastInvoke().Body != "body" {
		t.Fatalf("after 100 Continue: %d %s; backend body %q", resp.StatusCode, body, f.lastInvoke().Body)
	}
	if _, ok := f.lastInvoke().Header["expect"]; ok {
		t.Error("Expect reached the backend")
	}

	resp, body = roundTrip(t, ln, invokeRequest("b", "Expect: 200-ok\r\n"))
	wantWireError(t, "Expect over the wire", resp, body, 417, "ERR_EXPECTATION_FAILED", "200-ok")
}

// TestInvokeForwardsMultipartBodyAsSent checks that a multipart body reaches
// the app byte for byte, not parsed and written anew.
func TestInvokeForwardsMultipartBodyAsSent(t *testing.T) {
	f := &fakeBackend{}
	ln := serve(t, f, Config{})
	body := "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue-a\r\n--XyZ--\r\nepilogue"
	resp, got := roundTrip(t, ln, invokeRequest(body, "Content-Type: multipart/form-data; boundary=XyZ\r\n"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	if in := f.lastInvoke(); in.Body != body || in.ContentType != "multipart/form-data; boundary=XyZ" {
		t.Errorf("the app got body %q, content type %q; want %q as sent", in.Body, in.ContentType, body)
	}
}
