package main

// The HTTP scenarios: granary dev and the Go Counter example app, reminders
// registered and fired over the callback protocol.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/granaryhq/granary/bench/internal/benchproc"
	"github.com/granaryhq/granary/bench/loadgen"
)

const counterType = "Counter"

// How the HTTP scenarios' clients send their registrations (--http-client).
const (
	httpClientRaw     = "raw"
	httpClientNetHTTP = "nethttp"
)

func (b *bench) http(ctx context.Context) (r result) {
	n := b.o.httpActors * b.o.httpPerActor
	r.Title = "registration and fires over HTTP (granary dev + examples/counter-go)"
	r.Setup = fmt.Sprintf("embedded bbolt store; %d Counter actors × %d reminders = %d, all due at one instant (period 1h); "+
		"%d keep-alive clients register; every fire is an HTTP callback that increments the actor's count in actor state",
		b.o.httpActors, b.o.httpPerActor, n, b.o.httpClients)
	s, ok := b.startHTTP(ctx, &r, nil)
	if !ok {
		return r
	}
	defer s.close(&r)

	lead := b.o.httpLead
	if lead == 0 {
		lead = autoLead(n, 2000)
	}
	due := time.Now().Add(lead).UTC().Truncate(time.Millisecond)
	body := `{"dueTime":"` + due.Format(time.RFC3339Nano) + `","period":"1h"}`
	b.progress("registering %d reminders due at %s (in %v)", n, due.Format(time.RFC3339Nano), lead.Round(time.Millisecond))
	took, hist, err := s.register(ctx, b, n, func(int) string { return body })
	if err != nil {
		r.fail(err)
		return r
	}
	rate := rateMetric("registrations/s", perSecond(n, took))
	if b.o.httpClients == httpRegisterClients {
		rate = rate.atLeast(registerTarget, fmt.Sprintf("%d/s", registerTarget))
	}
	r.add(rate,
		durationMetric("registration latency p50", hist.Quantile(0.50)),
		durationMetric("registration latency p99", hist.Quantile(0.99)))
	if late := time.Since(due); late > 0 {
		r.failf("registration ended %v after the due time, so fires overlapped registration; raise --http-lead", late.Round(time.Millisecond))
	} else {
		b.progress("registered in %v (%.0f/s); waiting %v for the due time", took.Round(time.Millisecond), perSecond(n, took), -late.Round(time.Millisecond))
	}
	if err := s.waitLogged(ctx, b, n); err != nil {
		r.fail(err)
		return r
	}
	span := s.fires.last.Sub(due)
	r.add(rateMetric("fires/s", perSecond(n, span)), durationMetric("due time to last callback", span))
	s.checkCounts(ctx, b, &r, n)
	return r
}

// httpLateness registers reminders over HTTP with absolute due times spread
// evenly at a fixed rate, so that they come due together at that rate
// whatever the speed of registration, and measures how late each callback
// reaches the app.
func (b *bench) httpLateness(ctx context.Context) (r result) {
	n, lead, rate := b.o.httpLatenessN, b.o.httpLatenessDue, b.o.httpLatenessRate
	spacing := time.Duration(float64(time.Second) / float64(rate))
	r.Title = "lateness over HTTP of reminders due together (granary dev + a net/http actor app in the bench)"
	r.Setup = fmt.Sprintf("embedded bbolt store; %d reminders on %d actors registered by %d keep-alive clients, "+
		"due one after another at %d/s from %v after registration starts (over %v), period 1h; "+
		"the app answers every callback at once and records its arrival; lateness is that time minus the reminder's due time",
		n, b.o.httpActors, b.o.httpClients, rate, lead, (time.Duration(n) * spacing).Round(time.Millisecond))
	rc, err := startReceiver()
	if err != nil {
		r.fail(fmt.Errorf("starting the receiving app: %w", err))
		return r
	}
	defer func() {
		if err := rc.close(); err != nil {
			r.note("stopping the receiving app: %v", err)
		}
	}()
	s, ok := b.startHTTP(ctx, &r, rc)
	if !ok {
		return r
	}
	defer s.close(&r)

	allFired := rc.expect(n)
	started := time.Now()
	first := started.Add(lead).Truncate(time.Microsecond)
	dueOf := func(i int) time.Time { return first.Add(time.Duration(i) * spacing) }
	b.progress("registering %d reminders, due at %d/s from %s", n, rate, first.Format(time.RFC3339Nano))
	took, hist, err := s.register(ctx, b, n, func(i int) string {
		return `{"dueTime":"` + dueOf(i).UTC().Format(time.RFC3339Nano) + `","period":"1h"}`
	})
	if err != nil {
		r.fail(err)
		return r
	}
	r.add(rateMetric("registrations/s", perSecond(n, took)),
		durationMetric("registration latency p99", hist.Quantile(0.99)))
	if overlap := time.Since(first); overlap > 0 {
		r.note("registration went on %v past the first due time, so fires and registrations overlapped", overlap.Round(time.Millisecond))
	}
	err = b.waitFires(ctx, allFired, "fired", func() string {
		count, _ := rc.arrivals()
		return fmt.Sprintf("%d/%d callbacks arrived", count, n)
	})
	if err != nil {
		r.fail(err)
		return r
	}
	count, at := rc.arrivals()
	var lat loadgen.Histogram
	var missing int64
	for i := range n {
		t, ok := at[s.reminderKey(i)]
		if !ok {
			missing++
			continue
		}
		lat.Record(max(0, t.Sub(dueOf(i))))
	}
	r.add(
		durationMetric("lateness p50", lat.Quantile(0.50)),
		durationMetric("lateness p90", lat.Quantile(0.90)),
		durationMetric("lateness p99", lat.Quantile(0.99)).atMost(float64(httpLatenessTarget)/float64(time.Millisecond), loadgen.FormatDuration(httpLatenessTarget)),
		durationMetric("lateness max", lat.Max()),
		countMetric("reminders without a callback", missing).atMost(0, "0"),
		countMetric("callbacks beyond one per reminder", int64(count-len(at))))
	if failed := linesWith(s.granary, "reminder fire failed"); len(failed) > 0 {
		r.note("granary logged %d failed fire attempts (see its log); first: %s", len(failed), failed[0])
	}
	return r
}

// httpSetup is granary dev in front of an actor app (counter-go, or the
// bench's receiver), with the actors activated. With counter-go, the app's
// log is read up to the first registration.
type httpSetup struct {
	dir          string
	gwURL        string
	typ          string // the actor type served
	granary, app *benchproc.Process
	client       *http.Client
	// conns are the registering clients' connections when they write
	// requests themselves (--http-client raw): taken by a request, put back
	// after it.
	conns  chan *loadgen.Conn
	ids    []string
	appLog *os.File
	fires  *fireLog
}

// startHTTP starts the processes of an HTTP scenario: granary dev in front
// of rc, or of counter-go when rc is nil. On failure it records why in r and
// returns false, having stopped what it started.
func (b *bench) startHTTP(ctx context.Context, r *result, rc *receiver) (s *httpSetup, ok bool) {
	s = &httpSetup{typ: counterType}
	defer func() {
		if !ok {
			s.close(r)
		}
	}()
	bins := []string{b.o.granary, b.o.app}
	if rc != nil {
		s.typ, bins = receiverType, bins[:1]
	}
	for _, bin := range bins {
		if !benchproc.Executable(bin) {
			r.failf("%s is not an executable file (`make build` builds bin/granary and bin/counter-go)", bin)
			return s, false
		}
	}
	var err error
	if s.dir, err = os.MkdirTemp(b.o.dataDir, "reminderbench-http-"); err != nil {
		r.fail(err)
		return s, false
	}
	ports, err := benchproc.FreePorts(2)
	if err != nil {
		r.fail(err)
		return s, false
	}
	gwPort, appPort := strconv.Itoa(ports[0]), strconv.Itoa(ports[1])
	s.gwURL = "http://127.0.0.1:" + gwPort
	appURL := "http://127.0.0.1:" + appPort

	if rc != nil {
		appURL = rc.url()
	} else {
		s.app, err = benchproc.Start("counter-go", s.dir, b.o.app, []string{"APP_HOST=127.0.0.1", "APP_PORT=" + appPort, "DAPR_HTTP_PORT=" + gwPort})
		if err != nil {
			r.fail(err)
			return s, false
		}
		if err := s.app.WaitForStatus(ctx, "GET", appURL+"/healthz", http.StatusOK, 15*time.Second); err != nil {
			r.failf("counter-go not ready: %v; its log ends:\n%s", err, s.app.Tail(20))
			return s, false
		}
	}
	args := []string{"dev", "--http-port", gwPort, "--app-url", appURL,
		"--data-dir", filepath.Join(s.dir, "data"), "--log-level", "warn"}
	if b.o.httpDebugAddr != "" {
		args = append(args, "--debug-addr", b.o.httpDebugAddr)
	}
	s.granary, err = benchproc.Start("granary", s.dir, b.o.granary, nil, args...)
	if err != nil {
		r.fail(err)
		return s, false
	}
	if err := s.granary.WaitForStatus(ctx, "GET", s.gwURL+"/v1.0/healthz", http.StatusNoContent, 15*time.Second); err != nil {
		r.failf("granary not ready: %v; its log ends:\n%s", err, s.granary.Tail(20))
		return s, false
	}
	if s.app != nil {
		b.progress("granary dev (pid %d) on %s, counter-go (pid %d) on %s", s.granary.Pid(), s.gwURL, s.app.Pid(), appURL)
	} else {
		b.progress("granary dev (pid %d) on %s, the receiving app on %s", s.granary.Pid(), s.gwURL, appURL)
	}

	s.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: b.o.httpClients, MaxIdleConnsPerHost: b.o.httpClients, MaxConnsPerHost: b.o.httpClients,
	}}
	if b.o.httpClient == httpClientRaw {
		s.conns = make(chan *loadgen.Conn, b.o.httpClients)
		for range b.o.httpClients {
			s.conns <- loadgen.NewConn(strings.TrimPrefix(s.gwURL, "http://"), 30*time.Second)
		}
	}
	s.ids = make([]string, b.o.httpActors)
	for i := range s.ids {
		s.ids[i] = "c-" + strconv.Itoa(i)
	}
	// The app may still be registering its type right after the gateway
	// answers; the first call waits for it.
	if err := s.granary.WaitForStatus(ctx, "POST", s.methodURL(s.ids[0], "get"), http.StatusOK, 15*time.Second); err != nil {
		r.failf("the %s type is not served: %v", s.typ, err)
		return s, false
	}
	b.progress("activating %d %s actors", len(s.ids), s.typ)
	_, _, err = runParallel(ctx, len(s.ids), b.o.httpClients, b.o.every,
		func(done int, _ time.Duration) { b.progress("  activated %d/%d actors", done, len(s.ids)) },
		func(ctx context.Context, i int) error {
			_, err := benchproc.Call(ctx, s.client, "POST", s.methodURL(s.ids[i], "get"), "", http.StatusOK)
			return err
		})
	if err != nil {
		r.fail(err)
		return s, false
	}
	if s.app == nil {
		return s, true
	}
	s.fires = &fireLog{}
	if s.appLog, err = os.Open(s.app.LogPath); err != nil {
		r.fail(err)
		return s, false
	}
	if _, err := s.fires.readFrom(s.appLog); err != nil { // skip what the app logged so far
		r.fail(err)
		return s, false
	}
	s.fires.count = 0
	return s, true
}

// close stops what startHTTP started, noting in r a process that had to be killed.
func (s *httpSetup) close(r *result) {
	if s.appLog != nil {
		s.appLog.Close()
	}
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
	if s.conns != nil {
		for range cap(s.conns) {
			(<-s.conns).Close()
		}
	}
	if s.granary != nil {
		stopInto(s.granary, r)
	}
	if s.app != nil {
		stopInto(s.app, r)
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

func (s *httpSetup) methodURL(id, method string) string {
	return s.gwURL + "/v1.0/actors/" + s.typ + "/" + url.PathEscape(id) + "/method/" + method
}

// reminderOf names reminder i: the actors take turns, r0 first.
func (s *httpSetup) reminderOf(i int) (id, name string) {
	return s.ids[i%len(s.ids)], "r" + strconv.Itoa(i/len(s.ids))
}

// reminderKey is how the fire log keys reminder i.
func (s *httpSetup) reminderKey(i int) string {
	id, name := s.reminderOf(i)
	return id + " " + name
}

// register registers reminders 0..n-1, reminder i with body(i), from the
// scenario's clients.
func (s *httpSetup) register(ctx context.Context, b *bench, n int, body func(i int) string) (time.Duration, loadgen.Histogram, error) {
	return runParallel(ctx, n, b.o.httpClients, b.o.every,
		func(done int, elapsed time.Duration) {
			b.progress("  registered %d/%d (%.0f/s)", done, n, perSecond(done, elapsed))
		},
		func(ctx context.Context, i int) error {
			id, name := s.reminderOf(i)
			path := "/v1.0/actors/" + s.typ + "/" + url.PathEscape(id) + "/reminders/" + name
			if s.conns == nil {
				_, err := benchproc.Call(ctx, s.client, "POST", s.gwURL+path, body(i), http.StatusNoContent)
				return err
			}
			c := <-s.conns
			defer func() { s.conns <- c }()
			status, err := c.Do(ctx, "POST", path, body(i))
			if err == nil && status != http.StatusNoContent {
				err = fmt.Errorf("POST %s: status %d, want %d", path, status, http.StatusNoContent)
			}
			return err
		})
}

// waitLogged follows the app's log until it holds n reminder callbacks.
func (s *httpSetup) waitLogged(ctx context.Context, b *bench, n int) error {
	allFired := make(chan struct{})
	var (
		logMu   sync.Mutex
		readErr error
	)
	stopTail := make(chan struct{})
	tailDone := make(chan struct{})
	go func() {
		defer close(tailDone)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			logMu.Lock()
			_, err := s.fires.readFrom(s.appLog)
			done := s.fires.count >= int64(n)
			if err != nil {
				readErr = err
			}
			logMu.Unlock()
			if done || err != nil {
				close(allFired)
				return
			}
			select {
			case <-stopTail:
				return
			case <-t.C:
			}
		}
	}()
	err := b.waitFires(ctx, allFired, "fired", func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return fmt.Sprintf("%d/%d callbacks logged by the app", s.fires.count, n)
	})
	close(stopTail)
	<-tailDone
	if err == nil && readErr != nil {
		err = fmt.Errorf("reading the app's log: %w", readErr)
	}
	return err
}

// checkCounts reads every Counter's count and checks that they add up to n,
// one per reminder, and notes the fires granary logged as failed.
func (s *httpSetup) checkCounts(ctx context.Context, b *bench, r *result, n int) {
	var total atomic.Int64
	_, _, err := runParallel(ctx, len(s.ids), b.o.httpClients, b.o.every,
		func(done int, _ time.Duration) { b.progress("  read %d/%d counts", done, len(s.ids)) },
		func(ctx context.Context, i int) error {
			data, err := benchproc.Call(ctx, s.client, "POST", s.methodURL(s.ids[i], "get"), "", http.StatusOK)
			if err != nil {
				return err
			}
			var v struct {
				Count *int64 `json:"count"`
			}
			if err := json.Unmarshal(data, &v); err != nil || v.Count == nil {
				return fmt.Errorf("count of %s: unexpected answer %q", s.ids[i], data)
			}
			total.Add(*v.Count)
			return nil
		})
	if err != nil {
		r.fail(err)
		return
	}
	r.add(countMetric("sum of the counts", total.Load()).atLeast(float64(n), strconv.Itoa(n)+" (one per reminder)"))
	if failed := linesWith(s.granary, "reminder fire failed"); len(failed) > 0 {
		r.note("granary logged %d failed fire attempts (see its log); first: %s", len(failed), failed[0])
	}
}

// fireLog counts the reminder callbacks in the Go Counter app's log (one
// slog text line `time=… level=INFO msg="reminder fired" …` per callback)
// and keeps the time of the last one.
type fireLog struct {
	count   int64
	last    time.Time
	partial []byte // an unfinished last line
	buf     []byte
}

var fireMarker = []byte(`msg="reminder fired"`)

// readFrom reads what r has beyond what was read before and counts it.
func (l *fireLog) readFrom(r io.Reader) (int64, error) {
	if l.buf == nil {
		l.buf = make([]byte, 256<<10)
	}
	var total int64
	for {
		n, err := r.Read(l.buf)
		if n > 0 {
			total += int64(n)
			l.feed(l.buf[:n])
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, nil
		}
	}
}

// feed counts the complete lines in data, keeping an unfinished last line for later.
func (l *fireLog) feed(data []byte) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			l.partial = append(l.partial, data...)
			return
		}
		line := data[:i]
		if len(l.partial) > 0 {
			line = append(l.partial, line...)
			l.partial = l.partial[:0]
		}
		l.line(line)
		data = data[i+1:]
	}
}

func (l *fireLog) line(line []byte) {
	if !bytes.Contains(line, fireMarker) {
		return
	}
	l.count++
	if ts, ok := bytes.CutPrefix(line, []byte("time=")); ok {
		if end := bytes.IndexByte(ts, ' '); end > 0 {
			if t, err := time.Parse(time.RFC3339Nano, string(ts[:end])); err == nil && t.After(l.last) {
				l.last = t
			}
		}
	}
}

// stopInto stops p and notes in r when it had to be killed.
func stopInto(p *benchproc.Process, r *result) {
	if err := p.Stop(60 * time.Second); err != nil {
		r.note("%v", err)
	}
}

// linesWith returns the lines of p's log that contain substr.
func linesWith(p *benchproc.Process, substr string) []string {
	var out []string
	for _, l := range p.Lines() {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}
