package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/testutil"
)

// Paths set up by TestMain.
var (
	moduleRoot   string
	granaryBin   string
	counterGoBin string
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	root, err := testutil.ModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	moduleRoot = root
	dir, err := os.MkdirTemp("", "granary-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bins, err := testutil.Build(dir, "./cmd/granary", "./examples/counter-go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the commands under test:", err)
		return 1
	}
	granaryBin, counterGoBin = bins["./cmd/granary"], bins["./examples/counter-go"]
	return m.Run()
}

// Timeouts for real processes. Race-enabled binaries on a busy two-core
// machine start in well under a second; these leave ample room.
const (
	readyTimeout = 20 * time.Second // a process starts answering
	stopTimeout  = 5 * time.Second  // SIGTERM to exit
)

// counterApp is one of the Counter examples.
type counterApp struct {
	name    string
	command func(t *testing.T) *exec.Cmd // skips the test if the app cannot run here
}

var (
	goCounter = counterApp{"counter-go", func(*testing.T) *exec.Cmd {
		return exec.Command(counterGoBin)
	}}
	pythonCounter = counterApp{"counter-python", func(t *testing.T) *exec.Cmd {
		return exec.Command(interpreter(t, "python3"), filepath.Join(moduleRoot, "examples", "counter-python", "app.py"))
	}}
	jsCounter = counterApp{"counter-js", func(t *testing.T) *exec.Cmd {
		return exec.Command(interpreter(t, "node"), filepath.Join(moduleRoot, "examples", "counter-js", "app.js"))
	}}
)

// interpreter finds name on PATH or skips the test, loudly: a missing
// interpreter is the one precondition these tests may lack.
func interpreter(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("SKIPPED: %s is not on PATH, so this example app cannot be tested here (%v); install %s to run it", name, err, name)
	}
	return p
}

// cluster is one app process and one `granary dev` in front of it, sharing a
// data directory across restarts.
type cluster struct {
	t        *testing.T
	app      counterApp
	appPort  int
	httpPort int
	dataDir  string
	// granaryArgs are more flags for every start of granary dev.
	granaryArgs []string
	base        string // the gateway's base URL
	client      *http.Client

	appProc     *testutil.Proc
	granaryProc *testutil.Proc
	appStarts   int
	gwStarts    int
}

func newCluster(t *testing.T, app counterApp) *cluster {
	c := &cluster{
		t:        t,
		app:      app,
		appPort:  testutil.FreePort(t),
		httpPort: testutil.FreePort(t),
		dataDir:  t.TempDir(),
		client:   &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}},
	}
	c.base = "http://127.0.0.1:" + strconv.Itoa(c.httpPort)
	t.Cleanup(c.client.CloseIdleConnections)
	return c
}

// start starts the app, then granary, and waits until both are ready.
func (c *cluster) start() {
	c.t.Helper()
	c.startApp()
	c.startGranary()
}

// startApp starts the app on its port and waits for its /healthz.
func (c *cluster) startApp() {
	c.t.Helper()
	cmd := c.app.command(c.t)
	cmd.Env = testutil.Env(
		"APP_HOST=127.0.0.1",
		"APP_PORT="+strconv.Itoa(c.appPort),
		"DAPR_HTTP_PORT="+strconv.Itoa(c.httpPort),
		"GRANARY_URL=", "DAPR_API_TOKEN=", "APP_API_TOKEN=",
	)
	c.appStarts++
	c.appProc = testutil.Start(c.t, fmt.Sprintf("%s#%d", c.app.name, c.appStarts), cmd)
	c.appProc.WaitHTTP(c.t, fmt.Sprintf("http://127.0.0.1:%d/healthz", c.appPort), readyTimeout, wantStatus(http.StatusOK))
}

// startGranary starts `granary dev` and waits until it is ready and hosts Counter.
func (c *cluster) startGranary() {
	c.t.Helper()
	c.startGranaryAlone()
	c.waitReady(c.granaryProc)
}

// startGranaryAlone starts `granary dev` and waits only for its healthz, for
// tests where the app is not up.
func (c *cluster) startGranaryAlone() {
	c.t.Helper()
	cmd := exec.Command(granaryBin, "dev",
		"--http-port", strconv.Itoa(c.httpPort),
		"--app-url", fmt.Sprintf("counter=http://127.0.0.1:%d", c.appPort),
		"--data-dir", c.dataDir,
		"--shutdown-timeout", "10s",
		"--metrics-port", "0", "--grpc-port", "0",
	)
	cmd.Args = append(cmd.Args, c.granaryArgs...)
	cmd.Env = testutil.Env()
	c.gwStarts++
	c.granaryProc = testutil.Start(c.t, fmt.Sprintf("granary#%d", c.gwStarts), cmd)
	c.granaryProc.WaitHTTP(c.t, c.base+"/v1.0/healthz", readyTimeout, wantStatus(http.StatusNoContent))
}

// waitReady waits until the gateway answers /v1.0/healthz with 204 and its
// metadata lists Counter as available.
func (c *cluster) waitReady(p *testutil.Proc) {
	c.t.Helper()
	p.WaitHTTP(c.t, c.base+"/v1.0/healthz", readyTimeout, wantStatus(http.StatusNoContent))
	p.WaitHTTP(c.t, c.base+"/v1.0/metadata", readyTimeout, func(status int, body []byte) error {
		if status != http.StatusOK {
			return fmt.Errorf("status %d: %s", status, body)
		}
		md, err := decodeMetadata(body)
		if err != nil {
			return err
		}
		if ct, ok := md.actorType("Counter"); !ok || !ct.Available {
			return fmt.Errorf("Counter is not an available actor type yet: %s", body)
		}
		return nil
	})
}

// stopGranary stops granary with SIGTERM and checks that it exits 0 in time.
func (c *cluster) stopGranary() {
	c.t.Helper()
	start := time.Now()
	if err := c.granaryProc.Stop(stopTimeout); err != nil {
		c.t.Fatalf("granary dev after SIGTERM: %v", err)
	}
	c.t.Logf("granary dev exited 0, %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	c.client.CloseIdleConnections()
}

// stopApp stops the app with SIGTERM and checks that it exits 0 in time.
func (c *cluster) stopApp() {
	c.t.Helper()
	if err := c.appProc.Stop(stopTimeout); err != nil {
		c.t.Fatalf("%s after SIGTERM: %v", c.appProc.Name(), err)
	}
}

// reply is a gateway answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// try sends one request to the gateway; path is appended to the base URL as
// written, percent escapes included.
func (c *cluster) try(method, path, body string) (reply, error) {
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// tryRaw sends a request line the Go client refuses to build (such as a
// path with a bad percent escape) over a fresh connection.
func (c *cluster) tryRaw(method, target, body string) (reply, error) {
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(c.base, "http://"), 5*time.Second)
	if err != nil {
		return reply{}, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return reply{}, err
	}
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		method, target, strings.TrimPrefix(c.base, "http://"), len(body), body)
	if _, err := io.WriteString(conn, req); err != nil {
		return reply{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// do is try that fails the test when no answer comes.
func (c *cluster) do(method, path, body string) reply {
	c.t.Helper()
	r, err := c.try(method, path, body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// call invokes a Counter method on actor id and returns the count it answers.
func (c *cluster) call(id, method, body string) int64 {
	c.t.Helper()
	r := c.do(http.MethodPost, "/v1.0/actors/Counter/"+id+"/method/"+method, body)
	n, err := countOf(r)
	if err != nil {
		c.t.Fatalf("Counter %s %s: %v", id, method, err)
	}
	return n
}

// expectCount invokes a method and checks the count it answers.
func (c *cluster) expectCount(id, method, body string, want int64) {
	c.t.Helper()
	if got := c.call(id, method, body); got != want {
		what := "Counter " + id + " " + method
		if body != "" {
			what += " " + body
		}
		c.t.Fatalf("%s answered count %d, want %d", what, got, want)
	}
}

// storedCount reads actor id's saved count straight from the gateway's state
// API, which reads the store without asking the app.
func (c *cluster) storedCount(id string) (int64, bool) {
	c.t.Helper()
	r := c.do(http.MethodGet, "/v1.0/actors/Counter/"+id+"/state/count", "")
	switch r.status {
	case http.StatusNoContent:
		return 0, false
	case http.StatusOK:
		n, err := strconv.ParseInt(string(bytes.TrimSpace(r.body)), 10, 64)
		if err != nil {
			c.t.Fatalf("stored count of %s is %q, not an integer", id, r.body)
		}
		return n, true
	}
	c.t.Fatalf("GET state/count of %s: %v", id, r)
	return 0, false
}

// countOf decodes a Counter method's answer: 200 with {"count": n}.
func countOf(r reply) (int64, error) {
	if r.status != http.StatusOK {
		return 0, fmt.Errorf("answer %v, want 200", r)
	}
	var v struct {
		Count *int64 `json:"count"`
	}
	if err := json.Unmarshal(r.body, &v); err != nil || v.Count == nil {
		return 0, fmt.Errorf("answer body %q is not {\"count\": n}", r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return 0, fmt.Errorf("answer Content-Type %q, want application/json", ct)
	}
	return *v.Count, nil
}

// apiError is the gateway's JSON error body.
type apiError struct {
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
}

// errorOf checks that r is a JSON error with the given status and returns it.
func errorOf(r reply, status int) (apiError, error) {
	var e apiError
	if r.status != status {
		return e, fmt.Errorf("answer %v, want status %d", r, status)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return e, fmt.Errorf("error Content-Type %q, want application/json (body %s)", ct, r.body)
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		return e, fmt.Errorf("error body %q is not JSON: %v", r.body, err)
	}
	if e.ErrorCode == "" || e.Message == "" {
		return e, fmt.Errorf("error body %s lacks errorCode or message", r.body)
	}
	return e, nil
}

// expectError checks that r is the JSON error with status and code.
func expectError(t *testing.T, what string, r reply, status int, code string) apiError {
	t.Helper()
	e, err := errorOf(r, status)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if e.ErrorCode != code {
		t.Fatalf("%s: errorCode %q (message %q), want %q", what, e.ErrorCode, e.Message, code)
	}
	return e
}

// metadata is the part of GET /v1.0/metadata these tests read.
type metadata struct {
	ID        string          `json:"id"`
	Reminders int             `json:"reminders"`
	Actors    []actorTypeInfo `json:"actors"`
	Apps      []struct {
		ID      string   `json:"id"`
		URL     string   `json:"url"`
		Healthy bool     `json:"healthy"`
		Types   []string `json:"actorTypes"`
	} `json:"apps"`
	Placement struct {
		TableVersion uint64 `json:"tableVersion"`
		Claim        string `json:"claim"`
	} `json:"placement"`
}

// actorTypeInfo is one entry of the metadata's actors list.
type actorTypeInfo struct {
	Type      string `json:"type"`
	Count     int    `json:"count"`
	Available bool   `json:"available"`
}

func decodeMetadata(body []byte) (metadata, error) {
	var md metadata
	if err := json.Unmarshal(body, &md); err != nil {
		return md, fmt.Errorf("metadata %q is not JSON: %v", body, err)
	}
	return md, nil
}

func (md metadata) actorType(name string) (actorTypeInfo, bool) {
	i := slices.IndexFunc(md.Actors, func(a actorTypeInfo) bool { return a.Type == name })
	if i < 0 {
		return actorTypeInfo{}, false
	}
	return md.Actors[i], true
}

// metadata fetches and decodes the gateway's metadata.
func (c *cluster) metadata() metadata {
	c.t.Helper()
	r := c.do(http.MethodGet, "/v1.0/metadata", "")
	if r.status != http.StatusOK {
		c.t.Fatalf("GET /v1.0/metadata: %v", r)
	}
	md, err := decodeMetadata(r.body)
	if err != nil {
		c.t.Fatal(err)
	}
	return md
}

// expectActive checks how many Counter actors the metadata reports active.
func (c *cluster) expectActive(want int) {
	c.t.Helper()
	ct, ok := c.metadata().actorType("Counter")
	if !ok || ct.Count != want {
		c.t.Fatalf("metadata reports Counter %+v (listed: %v), want %d active", ct, ok, want)
	}
}

func wantStatus(want int) func(int, []byte) error {
	return func(status int, body []byte) error {
		if status != want {
			return fmt.Errorf("status %d, want %d: %s", status, want, body)
		}
		return nil
	}
}
