package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestReceiver(t *testing.T) {
	rc, err := startReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.close()
	call := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, rc.url()+path, strings.NewReader(`{"data":null}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := call("GET", "/dapr/config"); code != 200 || body != `{"entities":["Bench"]}` {
		t.Errorf("config: %d %s", code, body)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/healthz"}, {"PUT", "/actors/Bench/a/method/get"}, {"PUT", "/actors/Bench/a/method/timer/t"},
		{"DELETE", "/actors/Bench/a"},
	} {
		if code, _ := call(c.method, c.path); code != 200 {
			t.Errorf("%s %s: %d", c.method, c.path, code)
		}
	}
	if code, _ := call("PUT", "/actors/Other/a/method/get"); code != 404 {
		t.Errorf("another type: %d, want 404", code)
	}

	reached := rc.expect(3)
	start := time.Now()
	call("PUT", "/actors/Bench/a/method/remind/r0")
	call("PUT", "/actors/Bench/b/method/remind/r0")
	select {
	case <-reached:
		t.Fatal("reached after 2 of 3 callbacks")
	default:
	}
	call("PUT", "/actors/Bench/a/method/remind/r0") // a repeat keeps the first arrival
	select {
	case <-reached:
	case <-time.After(5 * time.Second):
		t.Fatal("not reached after 3 callbacks")
	}
	count, at := rc.arrivals()
	if count != 3 || len(at) != 2 || at["a r0"].Before(start) || !at["a r0"].Before(at["b r0"]) {
		t.Errorf("count %d, arrivals %v", count, at)
	}
}
