package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/testutil"
)

// nestApp hosts two actor types: Inner answers its calls, and Outer's
// method "call" calls Inner/{body} through the gateway of its silo, passing
// on the trace context it was called with, as an instrumented app would.
type nestApp struct {
	srv     *httptest.Server
	gateway atomic.Pointer[string] // base URL of the app's silo
	fires   atomic.Int64
}

func newNestApp(t *testing.T) *nestApp {
	a := &nestApp{}
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: nil}}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/") // actors/{type}/{id}/method/{name}...
		switch {
		case r.URL.Path == "/dapr/config":
			io.WriteString(w, `{"entities":["Outer","Inner"]}`)
		case r.URL.Path == "/healthz":
		case len(parts) >= 3 && parts[0] == "actors" && r.Method == http.MethodDelete:
		case len(parts) >= 6 && parts[4] == "remind":
			a.fires.Add(1)
		case len(parts) >= 5 && parts[1] == "Outer" && parts[4] == "call":
			inner, _ := io.ReadAll(r.Body)
			req, _ := http.NewRequest(http.MethodPost, *a.gateway.Load()+"/v1.0/actors/Inner/"+string(inner)+"/method/echo", strings.NewReader("hi"))
			if tp := r.Header.Get("traceparent"); tp != "" {
				req.Header.Set("traceparent", tp)
			}
			resp, err := client.Do(req)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				http.Error(w, fmt.Sprintf("inner answered %d: %s", resp.StatusCode, b), http.StatusBadGateway)
				return
			}
			w.Write(b)
		case len(parts) >= 5 && parts[1] == "Inner":
			fmt.Fprintf(w, `{"inner":%q}`, parts[2])
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// scrape reads a Prometheus text exposition into a map from each series,
// as printed (name{labels}), to its value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: status %d", url, resp.StatusCode)
	}
	series := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scraping %s: line %q: %v", url, line, err)
		}
		series[line[:i]] = v
	}
	return series
}

func post(t *testing.T, url, body string) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestMetricsAfterAKnownWorkload runs calls, a reminder and state writes
// through granary dev and reads the counts back from /metrics.
func TestMetricsAfterAKnownWorkload(t *testing.T) {
	app := newNestApp(t)
	mport := strconv.Itoa(testutil.FreePort(t))
	d := startDev(t, "--app-url", "app="+app.srv.URL, "--metrics-port", mport)
	app.gateway.Store(&d.base)
	metricsURL := "http://127.0.0.1:" + mport + "/metrics"

	for i := range 5 {
		if st := post(t, d.base+"/v1.0/actors/Inner/a/method/echo", "{}"); st != http.StatusOK {
			t.Fatalf("call %d: status %d", i, st)
		}
	}
	for range 2 {
		if st := post(t, d.base+"/v1.0/actors/Outer/o/method/call", "b"); st != http.StatusOK {
			t.Fatalf("nested call: status %d", st)
		}
	}
	if st := post(t, d.base+"/v1.0/actors/Inner/a/method/nope-missing-type-is-fine", "{}"); st != http.StatusOK {
		t.Fatalf("call: status %d", st)
	}
	if st := post(t, d.base+"/v1.0/actors/Nobody/x/method/m", "{}"); st < 400 {
		t.Fatalf("call of an unhosted type: status %d", st)
	}
	if st := post(t, d.base+"/v1.0/actors/Inner/a/reminders/r", `{"dueTime":"0s"}`); st != http.StatusNoContent {
		t.Fatalf("reminder: status %d", st)
	}
	if st := post(t, d.base+"/v1.0/state/statestore", `[{"key":"k","value":1}]`); st != http.StatusNoContent {
		t.Fatalf("state save: status %d", st)
	}
	testutil.Eventually(t, 10*time.Second, "the reminder to fire", func() error {
		if app.fires.Load() == 0 {
			return fmt.Errorf("no fire yet")
		}
		return nil
	})

	var m map[string]float64
	testutil.Eventually(t, 10*time.Second, "the fire to be counted", func() error {
		m = scrape(t, metricsURL)
		if m[`granary_reminders_fired_total{type="Inner"}`] != 1 {
			return fmt.Errorf("granary_reminders_fired_total{type=\"Inner\"} = %v", m[`granary_reminders_fired_total{type="Inner"}`])
		}
		return nil
	})
	want := map[string]float64{
		// 6 calls of Inner/a, 2 of Outer/o, and the 2 nested calls of Inner/b.
		`granary_gateway_requests_total{route="actors/method",status="200"}`:    10,
		`granary_gateway_requests_total{route="actors/reminders",status="204"}`: 1,
		`granary_gateway_requests_total{route="state",status="204"}`:            1,
		`granary_gateway_request_duration_seconds_count{route="actors/method"}`: 11,
		// Inner: 8 method turns and the fire; Outer: 2.
		`granary_actor_turn_duration_seconds_count{type="Inner"}`:    9,
		`granary_actor_turn_queue_wait_seconds_count{type="Inner"}`:  9,
		`granary_actor_turn_duration_seconds_count{type="Outer"}`:    2,
		`granary_actor_turns_in_flight{type="Inner"}`:                0,
		`granary_actor_turn_errors_total{type="Inner"}`:              0,
		`granary_actor_activations_total{type="Inner"}`:              2,
		`granary_actor_activations_total{type="Outer"}`:              1,
		`granary_actor_deactivations_total{type="Inner"}`:            0,
		`granary_actors_active{type="Inner"}`:                        2,
		`granary_actors_active{type="Outer"}`:                        1,
		`granary_app_call_duration_seconds_count{app="app"}`:         11,
		`granary_app_call_errors_total{app="app"}`:                   0,
		`granary_reminders_scheduled_total{type="Inner"}`:            1,
		`granary_reminders_fired_total{type="Inner"}`:                1,
		`granary_reminders_failed_total{type="Inner"}`:               0,
		`granary_reminder_fire_lateness_seconds_count{type="Inner"}`: 1,
	}
	for series, v := range want {
		if got, ok := m[series]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, v)
		}
	}
	if n := m[`granary_gateway_requests_total{route="actors/method",status="404"}`] + m[`granary_gateway_requests_total{route="actors/method",status="500"}`]; n != 1 {
		t.Errorf("the unhosted type's call is counted %v times under a 4xx/5xx status", n)
	}
	if m[`granary_store_operation_duration_seconds_count{op="transact",store="bbolt"}`] == 0 {
		t.Errorf("no bbolt transact counted")
	}
	// Each call came after the gateway had read the one before, so the
	// idle connection's reads polled (--busy-poll is on by default; it
	// polls on Linux only).
	if n := m[`granary_busy_polls_total{result="found"}`] + m[`granary_busy_polls_total{result="parked"}`]; n == 0 && runtime.GOOS == "linux" {
		t.Errorf("granary_busy_polls_total counts no poll")
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := m[name]; !ok {
			t.Errorf("%s is missing", name)
		}
	}
	for series := range m {
		if strings.Contains(series, `"a"`) || strings.Contains(series, `"o"`) || strings.Contains(series, `"b"`) {
			t.Errorf("series %s carries an actor ID", series)
		}
	}
}
