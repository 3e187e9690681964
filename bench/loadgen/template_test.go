package loadgen

import (
	"strings"
	"testing"
)

func TestTemplateRender(t *testing.T) {
	tests := []struct {
		tmpl string
		want string // rendered with actor "a7" and n 42
	}{
		{"", ""},
		{"/plain", "/plain"},
		{"/v1.0/actors/Echo/{actor}/method/echo", "/v1.0/actors/Echo/a7/method/echo"},
		{"{actor}", "a7"},
		{"{actor}{n}{actor}", "a742a7"},
		{`{"n":{n},"id":"{actor}"}`, `{"n":42,"id":"a7"}`},
		{`[{"operation":"upsert","request":{"key":"k{n}","value":{"v":{n}}}}]`,
			`[{"operation":"upsert","request":{"key":"k42","value":{"v":42}}}]`},
		{"{", "{"},
		{"{actor", "{actor"},
		{"{{n}}", "{42}"},
		{"{nope}{N}{ACTOR}", "{nope}{N}{ACTOR}"},
	}
	for _, tt := range tests {
		got := string(parseTemplate(tt.tmpl).render(nil, "a7", 42))
		if got != tt.want {
			t.Errorf("render(%q) = %q, want %q", tt.tmpl, got, tt.want)
		}
	}
}

func TestCompileRequestRejects(t *testing.T) {
	tests := []struct {
		name string
		req  Request
	}{
		{"no method", Request{Path: "/"}},
		{"method with space", Request{Method: "G T", Path: "/"}},
		{"relative path", Request{Method: "GET", Path: "x"}},
		{"path with space", Request{Method: "GET", Path: "/a b"}},
		{"path with newline", Request{Method: "GET", Path: "/a\r\nX: y"}},
		{"actor without IDs", Request{Method: "GET", Path: "/{actor}"}},
		{"actor in body without IDs", Request{Method: "POST", Path: "/", Body: "{actor}"}},
		{"header injection", Request{Method: "GET", Path: "/", Headers: map[string]string{"X": "a\r\nY: b"}}},
		{"bad header name", Request{Method: "GET", Path: "/", Headers: map[string]string{"X Y": "a"}}},
		{"own Host", Request{Method: "GET", Path: "/", Headers: map[string]string{"host": "x"}}},
		{"own Content-Length", Request{Method: "GET", Path: "/", Headers: map[string]string{"Content-Length": "1"}}},
		{"own Connection", Request{Method: "GET", Path: "/", Headers: map[string]string{"Connection": "close"}}},
	}
	for _, tt := range tests {
		if _, err := compileRequest(tt.req, "h:1"); err == nil {
			t.Errorf("%s: accepted %+v", tt.name, tt.req)
		}
	}
}

func TestCompiledRequestBytes(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		n    uint64
		want string
	}{
		{"GET", Request{Method: "GET", Path: "/v1.0/healthz"}, 0,
			"GET /v1.0/healthz HTTP/1.1\r\nHost: h:1\r\n\r\n"},
		{"POST without body sends a zero length",
			Request{Method: "POST", Path: "/v1.0/actors/Echo/{actor}/method/echo", Actors: []string{"a"}}, 5,
			"POST /v1.0/actors/Echo/a/method/echo HTTP/1.1\r\nHost: h:1\r\nContent-Length: 0\r\n\r\n"},
		{"round-robin actor and body",
			Request{Method: "PUT", Path: "/actors/Echo/{actor}/method/echo", Body: `{"n":{n}}`, Actors: ActorIDs("x", 3),
				Headers: map[string]string{"X-B": "2", "X-A": "1"}}, 10,
			"PUT /actors/Echo/x1/method/echo HTTP/1.1\r\nHost: h:1\r\nX-A: 1\r\nX-B: 2\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n{\"n\":10}"},
		{"own content type",
			Request{Method: "POST", Path: "/", Body: "hi", Headers: map[string]string{"content-type": "text/plain"}}, 0,
			"POST / HTTP/1.1\r\nHost: h:1\r\ncontent-type: text/plain\r\nContent-Length: 2\r\n\r\nhi"},
	}
	for _, tt := range tests {
		c, err := compileRequest(tt.req, "h:1")
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got, _ := c.render(nil, nil, tt.n)
		if string(got) != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
}

func TestActorIDs(t *testing.T) {
	got := strings.Join(ActorIDs("a-", 3), ",")
	if got != "a-0,a-1,a-2" {
		t.Errorf("ActorIDs = %s", got)
	}
}
