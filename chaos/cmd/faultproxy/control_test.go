package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/granaryhq/granary/chaos/proxy"
)

// recorder is a faults that writes down every call.
type recorder struct {
	calls []string
	stats proxy.Stats
}

func (r *recorder) CutWith(mode proxy.CutMode, dirs proxy.Direction) {
	r.calls = append(r.calls, fmt.Sprintf("cut %v %v", mode, dirs))
}
func (r *recorder) Heal() { r.calls = append(r.calls, "heal") }
func (r *recorder) SetLatency(d, jitter time.Duration) {
	r.calls = append(r.calls, fmt.Sprintf("latency %v %v", d, jitter))
}
func (r *recorder) SetBandwidth(bps int) { r.calls = append(r.calls, fmt.Sprintf("bandwidth %d", bps)) }
func (r *recorder) Stats() proxy.Stats   { return r.stats }

func TestControlHandlerDrivesTheFaults(t *testing.T) {
	for _, tc := range []struct {
		method, target string
		wantStatus     int
		wantCall       string // "" for none
	}{
		{"POST", "/cut", 204, "cut hold both"},
		{"POST", "/cut?mode=drop", 204, "cut drop both"},
		{"POST", "/cut?mode=blackhole&dir=up", 204, "cut blackhole upstream"},
		{"POST", "/cut?mode=hold&dir=downstream", 204, "cut hold downstream"},
		{"POST", "/cut?mode=reset", 400, ""},
		{"POST", "/cut?dir=sideways", 400, ""},
		{"GET", "/cut", 405, ""},
		{"POST", "/heal", 204, "heal"},
		{"POST", "/latency?d=50ms&jitter=10ms", 204, "latency 50ms 10ms"},
		{"POST", "/latency?d=1s", 204, "latency 1s 0s"},
		{"POST", "/latency?d=0", 204, "latency 0s 0s"},
		{"POST", "/latency", 400, ""},
		{"POST", "/latency?d=fast", 400, ""},
		{"POST", "/latency?d=-5ms", 400, ""},
		{"POST", "/latency?d=5ms&jitter=-1ms", 400, ""},
		{"POST", "/latency?d=5ms&jitter=", 400, ""},
		{"POST", "/bandwidth?bps=65536", 204, "bandwidth 65536"},
		{"POST", "/bandwidth?bps=0", 204, "bandwidth 0"},
		{"POST", "/bandwidth", 400, ""},
		{"POST", "/bandwidth?bps=1.5", 400, ""},
		{"POST", "/bandwidth?bps=-1", 400, ""},
		{"POST", "/stats", 405, ""},
		{"POST", "/reboot", 404, ""},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			rec := &recorder{}
			h := newControlHandler(rec, slog.New(slog.DiscardHandler))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(tc.method, tc.target, nil))
			if w.Code != tc.wantStatus {
				t.Errorf("status = %d (%q), want %d", w.Code, w.Body.String(), tc.wantStatus)
			}
			var want []string
			if tc.wantCall != "" {
				want = []string{tc.wantCall}
			}
			if !slices.Equal(rec.calls, want) {
				t.Errorf("calls = %q, want %q", rec.calls, want)
			}
		})
	}
}

func TestControlHandlerServesStatsAsJSON(t *testing.T) {
	rec := &recorder{stats: proxy.Stats{Accepted: 7, Open: 2, Dropped: 3, BytesUpstream: 100, BytesDownstream: 200, BytesDiscarded: 5}}
	srv := httptest.NewServer(newControlHandler(rec, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var got proxy.Stats
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got != rec.stats {
		t.Errorf("stats = %+v, want %+v", got, rec.stats)
	}
}

// TestControlPortCutsARealProxy drives a proxy in front of an echo server
// through the control port: a drop cut resets new connections, heal lets
// them through again.
func TestControlPortCutsARealProxy(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	p, err := proxy.New("127.0.0.1:0", echo.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	srv := httptest.NewServer(newControlHandler(p, slog.New(slog.DiscardHandler)))
	defer srv.Close()

	post := func(path string) {
		t.Helper()
		resp, err := http.Post(srv.URL+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("POST %s: status %d", path, resp.StatusCode)
		}
	}
	// echoes reports whether a new connection through the proxy echoes a byte.
	echoes := func() bool {
		c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte{'x'}); err != nil {
			return false
		}
		buf := make([]byte, 1)
		_, err = io.ReadFull(c, buf)
		return err == nil && buf[0] == 'x'
	}

	if !echoes() {
		t.Fatal("no echo before the cut")
	}
	// Let the proxy finish that connection, or the cut would reset it too.
	for deadline := time.Now().Add(3 * time.Second); p.Stats().Open != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the first connection is still open: %+v", p.Stats())
		}
	}
	post("/cut?mode=drop")
	if echoes() {
		t.Error("echo through a dropped link")
	}
	post("/heal")
	if !echoes() {
		t.Error("no echo after heal")
	}
	resp, err := http.Get(srv.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st proxy.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Accepted != 3 || st.Dropped != 1 {
		t.Errorf("stats = %+v, want 3 accepted and 1 dropped", st)
	}
}
