package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/testutil"
)

// hangApp is an app in the test process serving the callback protocol for
// the type Hang, whose method "hang" never answers until the test ends.
type hangApp struct {
	srv     *httptest.Server
	config  string
	entered atomic.Int32
	release chan struct{}
}

func newHangApp(t *testing.T, config string) *hangApp {
	a := &hangApp{config: config, release: make(chan struct{})}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/dapr/config":
			io.WriteString(w, a.config)
		case r.URL.Path == "/healthz":
		case strings.HasSuffix(r.URL.Path, "/method/hang"):
			a.entered.Add(1)
			select {
			case <-a.release:
			case <-r.Context().Done():
			}
		default:
			io.WriteString(w, "{}")
		}
	}))
	t.Cleanup(func() {
		close(a.release)
		a.srv.Close()
	})
	return a
}

// startDev starts granary dev with the given flags and waits for its healthz.
func startDev(t *testing.T, name string, args ...string) (p *testutil.Proc, base string) {
	t.Helper()
	port := testutil.FreePort(t)
	base = "http://127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(granaryBin, append([]string{"dev", "--http-port", strconv.Itoa(port), "--data-dir", t.TempDir(), "--metrics-port", "0", "--grpc-port", "0"}, args...)...)
	cmd.Env = testutil.Env()
	p = testutil.Start(t, name, cmd)
	p.WaitHTTP(t, base+"/v1.0/healthz", readyTimeout, wantStatus(http.StatusNoContent))
	return p, base
}

// A call held by an app that never answers is aborted at its type's drain
// timeout: the client gets 503 ERR_ACTOR_RUNTIME_CLOSED then, and the process
// exits soon after instead of at the shutdown timeout.
func TestDrainTimeoutAbortsAHungAppCall(t *testing.T) {
	t.Parallel()
	app := newHangApp(t, `{"entities":["Hang"],"drainOngoingCallTimeout":"2s"}`)
	p, base := startDev(t, "granary-hung-app", "--app-url", "hang="+app.srv.URL, "--shutdown-timeout", "45s")
	p.WaitHTTP(t, base+"/v1.0/metadata", readyTimeout, func(status int, body []byte) error {
		if !strings.Contains(string(body), `"Hang"`) {
			return fmt.Errorf("type Hang not registered yet: %s", body)
		}
		return nil
	})
	type result struct {
		status int
		body   string
		at     time.Time
		err    error
	}
	done := make(chan result, 1)
	go func() {
		client := &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{Proxy: nil}}
		resp, err := client.Post(base+"/v1.0/actors/Hang/a/method/hang", "application/json", nil)
		if err != nil {
			done <- result{err: err, at: time.Now()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{status: resp.StatusCode, body: string(b), at: time.Now()}
	}()
	testutil.Eventually(t, 10*time.Second, "the call reaches the app", func() error {
		if app.entered.Load() == 0 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	term := time.Now()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("no answer to the hung call within 30s of SIGTERM")
	}
	if r.err != nil {
		t.Fatalf("hung call: %v (after %v)", r.err, r.at.Sub(term))
	}
	var e struct{ ErrorCode string }
	json.Unmarshal([]byte(r.body), &e)
	if r.status != http.StatusServiceUnavailable || e.ErrorCode != "ERR_ACTOR_RUNTIME_CLOSED" {
		t.Fatalf("hung call answered %d %s, want 503 ERR_ACTOR_RUNTIME_CLOSED", r.status, r.body)
	}
	if took := r.at.Sub(term); took < 1500*time.Millisecond || took > 6*time.Second {
		t.Errorf("hung call answered %v after SIGTERM, want about the 2s drain timeout", took)
	}
	if !p.WaitExit(10 * time.Second) {
		t.Fatalf("granary dev still running 10s after SIGTERM (drain timeout 2s)")
	}
	t.Logf("answered %v and exited %v after SIGTERM", r.at.Sub(term).Round(time.Millisecond), time.Since(term).Round(time.Millisecond))
	if code := p.ExitCode(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// Registering a URL that is not an app is refused with a 400 naming what
// was wrong; an app on IPv6 loopback can be registered.
func TestRegisteringWhatIsNotAnApp(t *testing.T) {
	t.Parallel()
	_, base := startDev(t, "granary-registration")
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	register := func(id, url string) (int, string) {
		req, _ := http.NewRequest("PUT", base+"/v1.0-alpha1/apps/"+id, strings.NewReader(`{"url":"`+url+`"}`))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("register %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	notFound := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notFound.Close)
	for _, tc := range []struct{ what, url, mention string }{
		{"the gateway itself", base, "404"},
		{"a server without /dapr/config", notFound.URL, "404"},
		{"a port out of range", "http://127.0.0.1:70000", "65535"},
		{"port zero", "http://127.0.0.1:0", "65535"},
	} {
		status, body := register("x", tc.url)
		if status != http.StatusBadRequest || !strings.Contains(body, "ERR_BAD_REQUEST") || !strings.Contains(body, tc.mention) {
			t.Errorf("%s (%s): %d %s, want 400 ERR_BAD_REQUEST mentioning %q", tc.what, tc.url, status, body, tc.mention)
		}
	}
	// An app that declares too many types.
	var names []string
	for i := range 1001 {
		names = append(names, fmt.Sprintf("%q", fmt.Sprintf("T%d", i)))
	}
	big := newHangApp(t, `{"entities":[`+strings.Join(names, ",")+`]}`)
	if status, body := register("big", big.srv.URL); status != http.StatusBadRequest || !strings.Contains(body, "1000") {
		t.Errorf("an app with 1001 types: %d %s, want 400 naming the limit of 1000", status, body)
	}
	resp, err := client.Get(base + "/v1.0/metadata")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(b), `"x"`) || strings.Contains(string(b), `"big"`) {
		t.Errorf("a refused app shows in metadata: %.300s…", b)
	}
}
