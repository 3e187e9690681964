package e2e

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestShutdownWithHalfSentRequest opens a connection that sends a request's
// headers without their final empty line, then stops granary dev: it must
// exit promptly instead of waiting for the client, and close the connection.
func TestShutdownWithHalfSentRequest(t *testing.T) {
	t.Parallel()
	c := newCluster(t, goCounter)
	c.start()
	c.expectCount("a", "increment", "", 1)

	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(c.base, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST /v1.0/actors/Counter/a/method/increment HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n"); err != nil {
		t.Fatal(err)
	}
	// The gateway reads what arrives at once; give it a moment so that the
	// connection is mid-request, not merely open, when the signal comes.
	time.Sleep(300 * time.Millisecond)

	start := time.Now()
	c.stopGranary() // fails the test unless granary exits 0 within stopTimeout
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("granary dev took %v to exit after SIGTERM with a half-sent request open", took.Round(time.Millisecond))
	}
	if out := c.granaryProc.Output(); strings.Contains(out, "gateway shutdown") {
		t.Errorf("the gateway did not shut down cleanly; the log says:\n%s", out)
	}

	// The connection was closed without an answer.
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the half-sent request's connection is still open after granary exited")
	}
	if len(got) > 0 {
		t.Errorf("the half-sent request got an answer: %q", got)
	}
}
