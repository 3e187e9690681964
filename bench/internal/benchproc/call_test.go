package benchproc

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCall(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusTeapot)
			io.WriteString(w, strings.Repeat("x", 2000))
			return
		}
		io.WriteString(w, r.Method+" "+r.Header.Get("Content-Type")+" "+string(b))
	}))
	defer srv.Close()
	got, err := Call(context.Background(), srv.Client(), "POST", srv.URL+"/ok", `{"a":1}`, http.StatusOK)
	if err != nil || string(got) != `POST application/json {"a":1}` {
		t.Fatalf("Call: %q, %v", got, err)
	}
	_, err = Call(context.Background(), srv.Client(), "GET", srv.URL+"/fail", "", http.StatusOK)
	if err == nil || !strings.Contains(err.Error(), "status 418 (want 200)") || len(err.Error()) > 700 {
		t.Fatalf("a wrong status: %v", err)
	}
}
