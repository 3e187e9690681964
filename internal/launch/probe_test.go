package launch_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/granaryhq/granary/internal/launch"
)

// closedAddr returns a 127.0.0.1 address nothing listens on a moment later.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusNoContent)
		case "/busy":
			http.Error(w, "not yet", http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	closed := closedAddr(t)

	cases := []struct {
		name   string
		client *http.Client
		spec   launch.Spec
		want   string // a substring of the error; "" for ready
	}{
		{"2xx", srv.Client(), launch.Spec{ReadyURL: srv.URL + "/ok"}, ""},
		{"2xx with the default client", nil, launch.Spec{ReadyURL: srv.URL + "/ok"}, ""},
		{"503", srv.Client(), launch.Spec{ReadyURL: srv.URL + "/busy"}, "status 503 Service Unavailable"},
		{"404", srv.Client(), launch.Spec{ReadyURL: srv.URL + "/missing"}, "status 404"},
		{"the URL wins over the address", srv.Client(), launch.Spec{ReadyURL: srv.URL + "/busy", ReadyAddr: ln.Addr().String()}, "status 503"},
		{"nothing on the URL's port", srv.Client(), launch.Spec{ReadyURL: "http://" + closed + "/ok"}, "connect"},
		{"an address that accepts", nil, launch.Spec{ReadyAddr: ln.Addr().String()}, ""},
		{"an address that refuses", nil, launch.Spec{ReadyAddr: closed}, "connect"},
		{"nothing to check", nil, launch.Spec{}, ""},
	}
	for _, c := range cases {
		err := launch.Probe(context.Background(), c.client, c.spec)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want ready", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want an error mentioning %q", c.name, err, c.want)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := launch.Probe(ctx, srv.Client(), launch.Spec{ReadyURL: srv.URL + "/ok"}); err == nil {
		t.Error("a probe with an ended context succeeded")
	}
}
