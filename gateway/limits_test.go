package gateway

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/statestore"
)

// longName is a name of actor.MaxNameLength bytes (512 × "é") and its
// percent-encoding, three times as long.
func longName() (name, escaped string) {
	return strings.Repeat("é", actor.MaxNameLength/2), strings.Repeat("%C3%A9", actor.MaxNameLength/2)
}

// TestLongestNamesFit sends names at the documented limit, percent-encoded,
// on every route: each request line must fit.
func TestLongestNamesFit(t *testing.T) {
	name, esc := longName()
	f := &fakeBackend{}
	f.item = statestore.Item{Value: []byte("1"), ETag: "1"}
	ln := serve(t, f, Config{})
	base := "/v1.0/actors/" + esc + "/" + esc
	rows := []struct {
		method, path, body string
		status             int
	}{
		{"PUT", base + "/method/" + esc + "?q=" + strings.Repeat("v", 512), "", 200},
		{"PUT", base + "/reminders/" + esc, `{"dueTime":"1h"}`, 204},
		{"GET", base + "/reminders/" + esc, "", 200},
		{"DELETE", base + "/reminders/" + esc, "", 204},
		{"PUT", base + "/timers/" + esc, `{"dueTime":"1h"}`, 204},
		{"DELETE", base + "/timers/" + esc, "", 204},
		{"GET", base + "/state/" + esc, "", 200},
		{"PUT", "/v1.0-alpha1/apps/" + esc, `{"url":"http://127.0.0.1:1"}`, 204},
	}
	for _, r := range rows {
		raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n%s", r.method, r.path, len(r.body), r.body)
		resp, body := roundTrip(t, ln, raw)
		if resp.StatusCode != r.status {
			t.Errorf("%s %.60s… (%d bytes): status %d, want %d; body %.200s", r.method, r.path, len(r.path), resp.StatusCode, r.status, body)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stateID != (actor.ID{Type: name, ID: name}) || f.stateKey != name || f.name != name || f.appID != name {
		t.Errorf("the backend got type %d bytes, id %d bytes, key %d bytes, name %d bytes, app id %d bytes; want %d each",
			len(f.stateID.Type), len(f.stateID.ID), len(f.stateKey), len(f.name), len(f.appID), len(name))
	}
}

// uriOfLength returns an invoke path padded with a query string to n bytes.
func uriOfLength(n int) string {
	p := "/v1.0/actors/T/1/method/m?pad="
	return p + strings.Repeat("p", n-len(p))
}

func TestURITooLong(t *testing.T) {
	f := &fakeBackend{}
	ln := serve(t, f, Config{})
	limit := strconv.Itoa(MaxURILength)

	at := uriOfLength(MaxURILength)
	resp, body := roundTrip(t, ln, "PUT "+at+" HTTP/1.1\r\nHost: gw\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("URI at the limit: status %d; body %.200s", resp.StatusCode, body)
	}

	for _, n := range []int{MaxURILength + 1, MaxURILength + MaxHeaderBytes/2, 4 * MaxURILength} {
		raw := "PUT " + uriOfLength(n) + " HTTP/1.1\r\nHost: gw\r\n\r\n"
		resp, body := roundTrip(t, ln, raw)
		wantWireError(t, fmt.Sprintf("URI of %d bytes", n), resp, body, 414, "ERR_URI_TOO_LONG", limit)
	}
	// Both too long: the request line is what the client must shorten first.
	raw := "PUT " + uriOfLength(2*MaxURILength) + " HTTP/1.1\r\nHost: gw\r\nX-Big: " + strings.Repeat("h", 2*MaxHeaderBytes) + "\r\n\r\n"
	resp, body = roundTrip(t, ln, raw)
	wantWireError(t, "long URI and headers", resp, body, 414, "ERR_URI_TOO_LONG", limit)
	wantCalls(t, "long URIs", f, "Invoke T/1")
}

// headerBlock returns header lines, Host first, whose block (with the final
// empty line) is n bytes long.
func headerBlock(n int) string {
	const head, tail = "Host: gw\r\nX-Pad: ", "\r\n\r\n"
	return head + strings.Repeat("h", n-len(head)-len(tail)) + tail
}

func TestHeadersAtTheLimits(t *testing.T) {
	f := &fakeBackend{}
	ln := serve(t, f, Config{})
	limit := strconv.Itoa(MaxHeaderBytes)

	// The longest URI with the largest header block still fits.
	resp, body := roundTrip(t, ln, "PUT "+uriOfLength(MaxURILength)+" HTTP/1.1\r\n"+headerBlock(MaxHeaderBytes))
	if resp.StatusCode != 200 {
		t.Fatalf("URI and headers at their limits: status %d; body %.200s", resp.StatusCode, body)
	}
	for _, n := range []int{MaxHeaderBytes + 1, MaxHeaderBytes + MaxURILength/2, 4 * MaxHeaderBytes} {
		for _, uri := range []string{"/v1.0/healthz", uriOfLength(MaxURILength)} {
			what := fmt.Sprintf("headers of %d bytes after a URI of %d", n, len(uri))
			resp, body := roundTrip(t, ln, "PUT "+uri+" HTTP/1.1\r\n"+headerBlock(n))
			wantWireError(t, what, resp, body, 431, "ERR_HEADERS_TOO_LARGE", limit)
		}
	}
	wantCalls(t, "large headers", f, "Invoke T/1")
}
