//go:build linux

// Busy polling is implemented on Linux only (see internal/busypoll).

package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/internal/busypoll"
)

// TestServeWithBusyPolling serves keep-alive requests over TCP with a
// poller: requests sent one at a time, two pipelined in one write, and one
// whose bytes come in two writes far apart, all answered right, with the
// idle reads polled and every request counted out of flight again.
func TestServeWithBusyPolling(t *testing.T) {
	f := &fakeBackend{resp: actor.Response{Status: 200, Body: []byte(`{"ok":1}`)}}
	poller := busypoll.New(busypoll.MaxBudget)
	c := servePlainTCP(t, f, Config{Poller: poller}).dial(t)
	r := bufio.NewReader(c)
	const req = "POST /v1.0/actors/T/a/method/m HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
	read := func(what string) {
		t.Helper()
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != `{"ok":1}` {
			t.Fatalf("%s: %d %q", what, resp.StatusCode, body)
		}
	}
	for i := range 20 {
		// Write after the server has begun to read, however loaded the
		// machine: that read finds nothing and polls.
		time.Sleep(2 * time.Millisecond)
		io.WriteString(c, req)
		read(fmt.Sprintf("request %d", i))
	}
	io.WriteString(c, req+req)
	read("first pipelined request")
	read("second pipelined request")
	io.WriteString(c, req[:20])
	time.Sleep(5 * time.Millisecond) // past the budget: the server parks mid-request
	io.WriteString(c, req[20:])
	read("request in two writes")

	if hits, misses, _ := poller.Stats(); hits+misses == 0 {
		t.Error("no read polled, though each request came well after the server had answered the one before")
	}
	// The handler's End runs before the answer is written, so the count
	// is back to 0 once the client has read the last answer.
	if n := poller.InFlight(); n != 0 {
		t.Errorf("%d requests still counted in flight", n)
	}
}
